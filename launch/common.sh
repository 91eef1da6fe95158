# Shared by launch/local.sh and launch/mpirun.sh (sourced, not run): the run flags both take, their
# defaults, and how the coordinator's run arguments are formed from them.
# shellcheck shell=bash

workers=8
topology=ring
rounds=500
model=784-256-256-10
batch=32
lr=0.05
data=auto
partition=iid
seed=0
run_dir=""
curve_keys=""
build=1
extra=()
resume_dir=""
run_settings_given=0

need() { [[ $# -ge 2 && -n "$2" ]] || { echo "$launcher: $1 needs a value" >&2; exit 2; }; }

# Handles one shared flag at "$@"; sets `consumed` to the arguments it used (0: not a shared flag).
run_flag() {
    consumed=2
    case "$1" in
        --workers|--topology|--rounds|--model|--batch|--lr|--data|--partition|--seed) run_settings_given=1 ;;
    esac
    case "$1" in
        --workers) need "$@"; workers="$2" ;;
        --topology) need "$@"; topology="$2" ;;
        --rounds) need "$@"; rounds="$2" ;;
        --model) need "$@"; model="$2" ;;
        --batch) need "$@"; batch="$2" ;;
        --lr) need "$@"; lr="$2" ;;
        --data) need "$@"; data="$2" ;;
        --partition) need "$@"; partition="$2" ;;
        --seed) need "$@"; seed="$2" ;;
        --run-dir) need "$@"; run_dir="$2" ;;
        --resume) need "$@"; resume_dir="$2" ;;
        --curve-keys) need "$@"; curve_keys="$2" ;;
        --no-build) build=0; consumed=1 ;;
        *) consumed=0 ;;
    esac
}

check_workers() {
    [[ "$workers" =~ ^[1-9][0-9]*$ ]] || { echo "$launcher: --workers must be a positive integer, got '$workers'" >&2; exit 2; }
}

# The launcher's own flags may also come after --: they are taken by the launcher (the value
# it acts on: the workers it starts, the run folder it finalizes and reports) and removed from
# the flags passed on, so dsgd and the launcher never disagree. Flags the launcher sets for every
# process itself are refused there.
absorb_extra() {
    local kept=() name value
    set -- "${extra[@]+"${extra[@]}"}"
    while [[ $# -gt 0 ]]; do
        name="${1%%=*}"
        case "$name" in
            --bind|--endpoint-file|--run-id-file|--abort-reason-file|--coordinator)
                echo "$launcher: $name is set by the launcher for every process; it cannot be given after --" >&2
                exit 2 ;;
        esac
        if [[ "$1" == *=* ]]; then
            value="${1#*=}"
            run_flag "$name" "$value"
            if [[ $consumed -eq 2 ]]; then shift; continue; fi
        else
            run_flag "$@"
            if [[ $consumed -gt 0 ]]; then shift "$consumed"; continue; fi
        fi
        kept+=("$1")
        shift
    done
    extra=("${kept[@]+"${kept[@]}"}")
}

# The worker count in a run folder's config.json (the configuration's own "workers", one level in).
config_workers() {
    sed -n 's/^    "workers" : \([0-9][0-9]*\),\{0,1\}$/\1/p' "$1" | head -n 1
}

# --resume RUN_DIR: the run folder and its settings are the interrupted run's (its config.json);
# run flags with it are refused, since the checkpoint holds that configuration's state only.
prepare_resume() {
    [[ -n "$resume_dir" ]] || return 0
    if [[ $run_settings_given -eq 1 ]]; then
        echo "$launcher: --resume continues the run in $resume_dir with its own settings (its config.json); give no run flags with it" >&2
        exit 2
    fi
    if [[ -n "$run_dir" && "$run_dir" != "$resume_dir" ]]; then
        echo "$launcher: --resume $resume_dir and --run-dir $run_dir name different run folders" >&2
        exit 2
    fi
    [[ -f "$resume_dir/config.json" ]] || { echo "$launcher: --resume $resume_dir: no config.json there (not a run folder)" >&2; exit 2; }
    [[ -d "$resume_dir/checkpoints" ]] || { echo "$launcher: --resume $resume_dir: the run wrote no checkpoint (checkpoints/ is missing)" >&2; exit 2; }
    workers="$(config_workers "$resume_dir/config.json")"
    [[ -n "$workers" ]] || { echo "$launcher: --resume $resume_dir: config.json names no worker count" >&2; exit 2; }
    run_dir="$resume_dir"
}

# The coordinator's run arguments.
run_arguments() {
    if [[ -n "$resume_dir" ]]; then
        printf '%s\n' --config "$run_dir/config.json" --resume
        return
    fi
    printf '%s\n' --workers "$workers" --topology "$topology" --rounds "$rounds" --model "$model" --batch "$batch" \
        --lr "$lr" --data "$data" --partition "$partition" --seed "$seed"
}

# A run folder name from the time, the topology and the worker count.
default_run_dir() {
    echo "$1/runs/$(date -u +%Y%m%d-%H%M%S)-$(basename "$topology" .edges)-n$workers"
}

# Removes what a run left in /dev/shm on this host: the shared-memory segments of its processes
# (/dev/shm/dsgd-<run id>-rank<r> and -coordinator; the run id, from the file the coordinator
# wrote with --run-id-file, padded to 16 hex digits). Owners unlink their segments when they exit;
# this is for processes that were killed. With a second argument, only that owner's segment
# ("rank3", "coordinator"): for a host that other processes of the run may still be using.
remove_run_segments() {
    local file="$1" owner="${2:-}" id
    [[ -s "$file" ]] || return 0
    id="$(tr -dc '0-9a-f' < "$file")"
    [[ -n "$id" && ${#id} -le 16 ]] || return 0
    while [[ ${#id} -lt 16 ]]; do id="0$id"; done
    if [[ -n "$owner" ]]; then
        rm -f "/dev/shm/dsgd-$id-$owner"
    else
        rm -f "/dev/shm/dsgd-$id-"rank* "/dev/shm/dsgd-$id-coordinator"
    fi
}
