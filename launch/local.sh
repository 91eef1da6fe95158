#!/usr/bin/env bash
# Launch a local dsgd cluster: one coordinator and N worker processes on 127.0.0.1.
#
#   launch/local.sh [--workers N] [--topology FILE|GENERATOR|SCHEDULE] [--rounds R] [--model SPEC]
#                   [--batch B] [--lr η] [--data DIR|synthetic|auto] [--partition iid|dirichlet:α]
#                   [--seed S] [--run-dir DIR] [--transport ipc|tcp] [--curve-keys DIR] [--build-dir DIR] [--no-build]
#                   [--workers-per-process K]
#                   [-- further dsgd flags]
#   launch/local.sh --resume RUN_DIR [--transport ...] [-- further dsgd flags]
#
# Builds dsgd in release mode (incremental), starts everything with free ports, streams the
# coordinator's progress, and on success, failure or Ctrl-C stops every process it started.
# --resume continues an interrupted run (a dead worker, Ctrl-C, a killed coordinator) from the
# newest checkpoint in RUN_DIR, with that run's settings (its config.json). --workers-per-process K
# runs K workers in each worker process (for many more workers than cores; numbers unchanged).
# --transport: the messages go over Unix-domain sockets (ipc, the default: faster on one host) or
# TCP on 127.0.0.1; models go through shared memory either way (dsgd --payloads auto).
# Exit status: 0 when the run completed, non-zero otherwise. Prints where the report is.
# DSGD_BIN=/path/to/dsgd skips the build and uses that binary (the tests use the debug build).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"

launcher=local.sh
# shellcheck source=launch/common.sh
source "$here/common.sh"
transport=ipc
per_process=1
build_dir="${DSGD_BUILD_DIR:-$root/.build}"

usage() { sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
    run_flag "$@"
    if [[ $consumed -gt 0 ]]; then shift "$consumed"; continue; fi
    case "$1" in
        --transport) need "$@"; transport="$2"; shift 2 ;;
        --build-dir) need "$@"; build_dir="$2"; shift 2 ;;
        --workers-per-process) need "$@"; per_process="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        --) shift; extra=("$@"); break ;;
        *) echo "local.sh: unknown flag '$1' (see --help; dsgd flags go after --)" >&2; exit 2 ;;
    esac
done

absorb_extra
prepare_resume
check_workers
[[ "$per_process" =~ ^[1-9][0-9]*$ ]] || { echo "local.sh: --workers-per-process must be a positive integer, got '$per_process'" >&2; exit 2; }
[[ "$transport" == tcp || "$transport" == ipc ]] || { echo "local.sh: --transport must be tcp or ipc, got '$transport'" >&2; exit 2; }

if [[ -n "${DSGD_BIN:-}" ]]; then
    build=0
fi
if [[ $build -eq 1 ]]; then
    echo "local.sh: building dsgd (release)..." >&2
    swift build -c release --package-path "$root" --scratch-path "$build_dir" --product dsgd >&2
fi
# SwiftPM links "$build_dir/release" to the release products; asking swift for the path costs
# about 0.4 s, so it is asked only when that link is missing.
if [[ -z "${DSGD_BIN:-}" && -x "$build_dir/release/dsgd" ]]; then
    bin="$build_dir/release/dsgd"
else
    bin="${DSGD_BIN:-$(swift build -c release --package-path "$root" --scratch-path "$build_dir" --show-bin-path)/dsgd}"
fi
[[ -x "$bin" ]] || { echo "local.sh: $bin not found (build first or drop --no-build)" >&2; exit 2; }

[[ -n "$run_dir" ]] || run_dir="$(default_run_dir "$root")"
mkdir -p "$run_dir"
scratch="$(mktemp -d "${TMPDIR:-/tmp}/dsgd-run.XXXXXX")"
endpoint_file="$scratch/coordinator.endpoint"
if [[ "$transport" == ipc ]]; then
    coordinator_bind="ipc://$scratch/coordinator"
    worker_bind() { echo "ipc://$scratch/worker-$1"; }
else
    coordinator_bind="tcp://127.0.0.1:*"
    worker_bind() { echo "tcp://127.0.0.1:*"; }
fi

pids=()
names=()
coordinator_pid=""
stop_cause=""
# Seconds the coordinator gets after SIGTERM to flush its records and write summary.json (it may be
# in the middle of an evaluation or a sharpness measurement); workers get 5 s.
grace="${DSGD_STOP_GRACE:-30}"
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    local waited=0 alive pid
    while :; do
        alive=0
        for pid in "${pids[@]}"; do if kill -0 "$pid" 2>/dev/null; then alive=1; fi; done
        if [[ $alive -eq 0 ]]; then break; fi
        if [[ $waited -ge 50 ]]; then  # workers: 5 s
            for pid in "${pids[@]}"; do
                if [[ "$pid" != "$coordinator_pid" ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
            done
        fi
        if [[ $waited -ge $((grace * 10)) ]]; then break; fi  # the coordinator: the grace period
        sleep 0.1
        waited=$((waited + 1))
    done
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    # Every run folder gets a summary.json: when the coordinator could not write one, say why.
    if [[ -f "$run_dir/config.json" && ! -f "$run_dir/summary.json" ]]; then
        local cause="${stop_cause:-the launcher stopped with status $status}"
        if "$bin" report finalize "$run_dir" --reason "$cause" >/dev/null 2>&1; then
            echo "local.sh: the coordinator wrote no summary; wrote one marked failed: $cause" >&2
        fi
    fi
    remove_run_segments "$run_dir/run-id"
    rm -rf "$scratch"
    exit "$status"
}
trap cleanup EXIT
trap 'stop_cause="interrupted (SIGINT or SIGTERM to the launcher)"; echo "local.sh: interrupted; stopping every process" >&2; exit 130' INT TERM

export OPENBLAS_NUM_THREADS=1
security=()
[[ -n "$curve_keys" ]] && security=(--curve-keys "$curve_keys")
export DSGD_GIT_COMMIT="$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)"

mapfile -t run_args < <(run_arguments)
"$bin" coordinator "${run_args[@]}" \
    --run-dir "$run_dir" --bind "$coordinator_bind" --endpoint-file "$endpoint_file" \
    --abort-reason-file "$scratch/abort-reason" --run-id-file "$run_dir/run-id" "${security[@]+"${security[@]}"}" "${extra[@]+"${extra[@]}"}" &
coordinator_pid=$!
pids+=("$coordinator_pid"); names+=("coordinator")

for _ in $(seq 1 300); do
    [[ -s "$endpoint_file" ]] && break
    kill -0 "$coordinator_pid" 2>/dev/null || break
    sleep 0.1
done
if [[ ! -s "$endpoint_file" ]]; then
    wait "$coordinator_pid" || true
    echo "local.sh: the coordinator did not start (see the message above)" >&2
    exit 1
fi
endpoint="$(cat "$endpoint_file")"

for ((rank = 0; rank < workers; rank += per_process)); do
    group=$(( workers - rank < per_process ? workers - rank : per_process ))
    label="worker $rank"
    [[ $group -gt 1 ]] && label="workers $rank-$((rank + group - 1))"
    "$bin" worker --coordinator "$endpoint" --bind "$(worker_bind "$rank")" --rank "$rank" \
        --workers-per-process "$group" "${security[@]+"${security[@]}"}" 2> >(sed -u "s/^/[$label] /" >&2) &
    pids+=("$!"); names+=("$label")
done

# Wait for the coordinator; if any worker dies first, the run has failed — unless the run was
# started with '--on-failure continue', where the coordinator removes the dead worker and goes on.
continue_on_failure=0
previous=""
for arg in "${extra[@]+"${extra[@]}"}"; do
    [[ "$previous" == "--on-failure" && "$arg" == "continue" ]] && continue_on_failure=1
    [[ "$arg" == "--on-failure=continue" ]] && continue_on_failure=1
    previous="$arg"
done
status=0
live=("${pids[@]}")
while [[ ${#live[@]} -gt 0 ]]; do
    finished_pid=""
    set +e
    wait -n -p finished_pid "${live[@]}"
    code=$?
    set -e
    [[ -z "$finished_pid" ]] && break
    name="?"
    for i in "${!pids[@]}"; do [[ "${pids[$i]}" == "$finished_pid" ]] && name="${names[$i]}"; done
    remaining=()
    for pid in "${live[@]}"; do [[ "$pid" != "$finished_pid" ]] && remaining+=("$pid"); done
    live=("${remaining[@]}")
    if [[ "$name" == coordinator ]]; then
        status=$code
        if [[ $code -ne 0 ]]; then
            stop_cause="the coordinator exited with status $code"
            [[ $code -gt 128 ]] && stop_cause="$stop_cause (killed by signal $((code - 128)))"
            break
        fi
        # The run is complete and every worker has been told so: let them finish on their own
        # (write their message tallies, close their sockets) instead of stopping them mid-write.
        for ((waited = 0; waited < grace * 10; waited++)); do
            alive=0
            for pid in "${live[@]+"${live[@]}"}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
            [[ $alive -eq 0 ]] && break
            sleep 0.1
        done
        for pid in "${live[@]+"${live[@]}"}"; do
            for i in "${!pids[@]}"; do [[ "${pids[$i]}" == "$pid" ]] && name="${names[$i]}"; done
            if kill -0 "$pid" 2>/dev/null; then
                echo "local.sh: $name (pid $pid) had not exited ${grace} s after the run completed; stopping it" >&2
                # Under '--on-failure continue' it may be a worker the run went on without.
                [[ $continue_on_failure -eq 0 ]] && status=1
                continue
            fi
            set +e
            wait "$pid"
            code=$?
            set -e
            [[ $code -eq 0 ]] && continue
            echo "local.sh: $name (pid $pid) exited with status $code after the run completed" >&2
            status=1
        done
        break
    fi
    if [[ $code -ne 0 && $continue_on_failure -eq 1 ]]; then
        echo "local.sh: $name (pid $finished_pid) exited with status $code; the coordinator continues without it" >&2
        continue
    fi
    if [[ $code -ne 0 ]]; then
        cause="$name (pid $finished_pid) exited with status $code"
        [[ $code -gt 128 ]] && cause="$cause (killed by signal $((code - 128)))"
        echo "local.sh: $cause; stopping the run" >&2
        echo "$cause" > "$scratch/abort-reason"
        stop_cause="$cause"
        kill -TERM "$coordinator_pid" 2>/dev/null || true
        wait "$coordinator_pid" 2>/dev/null || true
        status=1
        break
    fi
done

if [[ $status -eq 0 ]]; then
    echo "local.sh: run completed; report in $run_dir" >&2
else
    echo "local.sh: run FAILED (status $status); partial report in $run_dir" >&2
fi
exit "$status"
