#!/usr/bin/env bash
# One rank of a multi-host launch (used by launch/mpirun.sh and launch/slurm.sbatch): the
# launcher's rank 0 runs the coordinator, every other rank a worker (worker rank = rank − 1).
# Settings come from the environment: DSGD_BIN, DSGD_COORDINATOR_HOST, DSGD_PORT (optional),
# DSGD_REMOTE (1 to listen on all interfaces), DSGD_RUN_DIR (on a filesystem every rank shares),
# DSGD_CURVE_KEYS (optional); the arguments are the coordinator's run flags.
# Without DSGD_PORT the coordinator binds a port the system picks (no free-port guess that another
# process can take first) and publishes its endpoint in $DSGD_RUN_DIR/coordinator.endpoint, which
# the workers wait for.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
launcher=rank.sh
# shellcheck source=launch/common.sh
source "$here/common.sh"
rank="${OMPI_COMM_WORLD_RANK:-${PMIX_RANK:-${SLURM_PROCID:-}}}"
[[ -n "$rank" ]] || { echo "rank.sh: no launcher rank (OMPI_COMM_WORLD_RANK or SLURM_PROCID)" >&2; exit 2; }
export OPENBLAS_NUM_THREADS=1
bin="${DSGD_BIN:?rank.sh: DSGD_BIN is not set}"
host="${DSGD_COORDINATOR_HOST:-127.0.0.1}"
port="${DSGD_PORT:-}"
run_dir="${DSGD_RUN_DIR:?rank.sh: DSGD_RUN_DIR is not set}"
endpoint_file="$run_dir/coordinator.endpoint"
remote=()
[[ -n "${DSGD_CURVE_KEYS:-}" ]] && remote+=(--curve-keys "$DSGD_CURVE_KEYS")
bind_host=127.0.0.1
if [[ "${DSGD_REMOTE:-0}" == 1 ]]; then
    remote+=(--allow-remote --advertise-host "$(hostname -f 2>/dev/null || hostname)")
    bind_host=0.0.0.0
fi
run_id_file="$run_dir/run-id"
if [[ "$rank" == 0 ]]; then
    rm -f "$run_id_file"
    set +e
    "$bin" coordinator --bind "tcp://$bind_host:${port:-*}" --run-dir "$run_dir" --endpoint-file "$endpoint_file" \
        --run-id-file "$run_id_file" "${remote[@]+"${remote[@]}"}" "$@"
    status=$?
    # A killed process leaves its shared-memory segment: remove this process's own.
    remove_run_segments "$run_id_file" coordinator
    exit $status
else
    if [[ -n "$port" ]]; then
        coordinator="tcp://$host:$port"
        # Give the coordinator a moment to bind; a worker that cannot reach it gives up after --peer-timeout.
        sleep 0.5
    else
        # The endpoint file appears once the coordinator is bound (written atomically).
        for _ in $(seq 1 1200); do [[ -s "$endpoint_file" ]] && break; sleep 0.1; done
        [[ -s "$endpoint_file" ]] || { echo "rank.sh: $endpoint_file did not appear within 120 s" >&2; exit 1; }
        coordinator="$(cat "$endpoint_file")"
    fi
    set +e
    "$bin" worker --coordinator "$coordinator" --rank-offset 1 --bind "tcp://$bind_host:*" \
        "${remote[@]+"${remote[@]}"}" 2> >(sed -u "s/^/[worker $((rank - 1))] /" >&2)
    status=$?
    remove_run_segments "$run_id_file" "rank$((rank - 1))"
    exit $status
fi
