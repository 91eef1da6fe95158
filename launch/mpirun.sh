#!/usr/bin/env bash
# Launches dsgd with Open MPI's mpirun (no MPI calls in dsgd: ZeroMQ carries all traffic).
# mpirun starts N+1 ranks; rank 0 is the coordinator, ranks 1..N the workers.
#
#   launch/mpirun.sh [--hostfile FILE] [--coordinator-host H] [--port P] [--curve-keys DIR] [--workers N]
#                    [--topology T] [--rounds R] [--model SPEC] [--batch B] [--lr η] [--data D]
#                    [--partition P] [--seed S] [--run-dir DIR] [--no-build] [-- further dsgd flags]
#   launch/mpirun.sh --resume RUN_DIR [--hostfile FILE ...] [-- further dsgd flags]
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
launcher=mpirun.sh
# shellcheck source=launch/common.sh
source "$here/common.sh"
hostfile="" coordinator_host="" port=""
while [[ $# -gt 0 ]]; do
    run_flag "$@"
    if [[ $consumed -gt 0 ]]; then shift "$consumed"; continue; fi
    case "$1" in
        --hostfile) need "$@"; hostfile="$2"; shift 2 ;;
        --coordinator-host) need "$@"; coordinator_host="$2"; shift 2 ;;
        --port) need "$@"; port="$2"; shift 2 ;;
        -h|--help) sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --) shift; extra=("$@"); break ;;
        *) echo "mpirun.sh: unknown flag '$1' (see --help; dsgd flags go after --)" >&2; exit 2 ;;
    esac
done
command -v mpirun >/dev/null || { echo "mpirun.sh: mpirun not found (apt-get install -y openmpi-bin)" >&2; exit 2; }
absorb_extra
prepare_resume
check_workers
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
# Without --port the coordinator binds a port the system picks and publishes its endpoint in the
# run folder (rank.sh): no free-port guess that another process could take before it binds.
[[ -n "$run_dir" ]] || run_dir="$(default_run_dir "$root")"
mkdir -p "$run_dir"
rm -f "$run_dir/coordinator.endpoint"
export DSGD_CURVE_KEYS="${curve_keys:-${DSGD_CURVE_KEYS:-}}"
export DSGD_COORDINATOR_HOST="$coordinator_host" DSGD_PORT="$port" DSGD_REMOTE="$remote" DSGD_RUN_DIR="$run_dir"
export DSGD_GIT_COMMIT="$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)"
mapfile -t run_args < <(run_arguments)
root_flags=()
[[ $(id -u) -eq 0 ]] && root_flags=(--allow-run-as-root)
set +e
mpirun "${root_flags[@]+"${root_flags[@]}"}" --oversubscribe "${mpi_hosts[@]+"${mpi_hosts[@]}"}" -np $((workers + 1)) \
    -x OPENBLAS_NUM_THREADS=1 -x DSGD_BIN -x DSGD_COORDINATOR_HOST -x DSGD_PORT -x DSGD_REMOTE -x DSGD_RUN_DIR -x DSGD_GIT_COMMIT -x DSGD_CURVE_KEYS \
    "$here/rank.sh" "${run_args[@]}" "${extra[@]+"${extra[@]}"}"
status=$?
set -e
# Whatever killed processes left in this host's /dev/shm (the other hosts' rank.sh remove their own).
remove_run_segments "$run_dir/run-id"
if [[ $status -eq 0 ]]; then echo "mpirun.sh: run completed; report in $run_dir" >&2; else echo "mpirun.sh: run FAILED (status $status); report in $run_dir" >&2; fi
exit $status
