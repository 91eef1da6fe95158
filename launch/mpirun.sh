#!/usr/bin/env bash
# Launches dsgd with Open MPI's mpirun (no MPI calls in dsgd: ZeroMQ carries all traffic).
# mpirun starts N+1 ranks; rank 0 is the coordinator, ranks 1..N the workers.
#
#   launch/mpirun.sh [--hostfile FILE] [--coordinator-host H] [--port P] [--curve-keys DIR] [--workers N]
#                    [--topology T] [--rounds R] [--model SPEC] [--batch B] [--lr η] [--data D]
#                    [--partition P] [--seed S] [--run-dir DIR] [--no-build] [-- further dsgd flags]
#
# Without --hostfile everything runs on this machine over loopback. With one, the coordinator runs
# on the first host of the file (or --coordinator-host), everything listens on all interfaces
# (--allow-remote) and advertises its host name; use --curve-keys DIR across hosts (the folder
# must exist at the same path on every host).
# The run folder is written on the coordinator's host. Exit status: mpirun's (non-zero if any
# rank failed; mpirun then stops the others).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
workers=8 topology=ring rounds=500 model=784-256-256-10 batch=32 lr=0.05 data=auto partition=iid seed=0
run_dir="" hostfile="" coordinator_host="" port="" build=1
extra=()
need() { [[ $# -ge 2 && -n "$2" ]] || { echo "mpirun.sh: $1 needs a value" >&2; exit 2; }; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --hostfile) need "$@"; hostfile="$2"; shift 2 ;;
        --coordinator-host) need "$@"; coordinator_host="$2"; shift 2 ;;
        --port) need "$@"; port="$2"; shift 2 ;;
        --curve-keys) need "$@"; export DSGD_CURVE_KEYS="$2"; shift 2 ;;
        --workers) need "$@"; workers="$2"; shift 2 ;;
        --topology) need "$@"; topology="$2"; shift 2 ;;
        --rounds) need "$@"; rounds="$2"; shift 2 ;;
        --model) need "$@"; model="$2"; shift 2 ;;
        --batch) need "$@"; batch="$2"; shift 2 ;;
        --lr) need "$@"; lr="$2"; shift 2 ;;
        --data) need "$@"; data="$2"; shift 2 ;;
        --partition) need "$@"; partition="$2"; shift 2 ;;
        --seed) need "$@"; seed="$2"; shift 2 ;;
        --run-dir) need "$@"; run_dir="$2"; shift 2 ;;
        --no-build) build=0; shift ;;
        -h|--help) sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --) shift; extra=("$@"); break ;;
        *) echo "mpirun.sh: unknown flag '$1' (see --help; dsgd flags go after --)" >&2; exit 2 ;;
    esac
done
command -v mpirun >/dev/null || { echo "mpirun.sh: mpirun not found (apt-get install -y openmpi-bin)" >&2; exit 2; }
[[ "$workers" =~ ^[1-9][0-9]*$ ]] || { echo "mpirun.sh: --workers must be a positive integer" >&2; exit 2; }
if [[ -z "${DSGD_BIN:-}" ]]; then
    [[ $build -eq 1 ]] && swift build -c release --package-path "$root" --product dsgd >&2
    DSGD_BIN="$(swift build -c release --package-path "$root" --show-bin-path)/dsgd"
fi
export DSGD_BIN
remote=0
mpi_hosts=()
if [[ -n "$hostfile" ]]; then
    [[ -f "$hostfile" ]] || { echo "mpirun.sh: hostfile '$hostfile' not found" >&2; exit 2; }
    remote=1
    first_host="$(grep -v '^\s*#' "$hostfile" | awk 'NF {print $1; exit}')"
    coordinator_host="${coordinator_host:-$first_host}"
    mpi_hosts=(--hostfile "$hostfile")
fi
coordinator_host="${coordinator_host:-127.0.0.1}"
if [[ -z "$port" ]]; then
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || echo 29517)"
fi
run_dir="${run_dir:-$root/runs/$(date -u +%Y%m%d-%H%M%S)-$(basename "$topology" .edges)-n$workers}"
mkdir -p "$(dirname "$run_dir")"
export DSGD_CURVE_KEYS="${DSGD_CURVE_KEYS:-}"
export DSGD_COORDINATOR_HOST="$coordinator_host" DSGD_PORT="$port" DSGD_REMOTE="$remote" DSGD_RUN_DIR="$run_dir"
export DSGD_GIT_COMMIT="$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)"
root_flags=()
[[ $(id -u) -eq 0 ]] && root_flags=(--allow-run-as-root)
set +e
mpirun "${root_flags[@]+"${root_flags[@]}"}" --oversubscribe "${mpi_hosts[@]+"${mpi_hosts[@]}"}" -np $((workers + 1)) \
    -x OPENBLAS_NUM_THREADS=1 -x DSGD_BIN -x DSGD_COORDINATOR_HOST -x DSGD_PORT -x DSGD_REMOTE -x DSGD_RUN_DIR -x DSGD_GIT_COMMIT -x DSGD_CURVE_KEYS \
    "$here/rank.sh" --workers "$workers" --topology "$topology" --rounds "$rounds" --model "$model" --batch "$batch" \
    --lr "$lr" --data "$data" --partition "$partition" --seed "$seed" "${extra[@]+"${extra[@]}"}"
status=$?
set -e
if [[ $status -eq 0 ]]; then echo "mpirun.sh: run completed; report in $run_dir" >&2; else echo "mpirun.sh: run FAILED (status $status); report in $run_dir" >&2; fi
exit $status
