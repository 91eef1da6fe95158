#!/usr/bin/env bash
# One rank of a multi-host launch (used by launch/mpirun.sh and launch/slurm.sbatch): the
# launcher's rank 0 runs the coordinator, every other rank a worker (worker rank = rank − 1).
# Settings come from the environment: DSGD_BIN, DSGD_COORDINATOR_HOST, DSGD_PORT, DSGD_REMOTE (1 to
# listen on all interfaces), DSGD_RUN_DIR, DSGD_CURVE_KEYS (optional); the arguments are the
# coordinator's run flags.
set -euo pipefail
rank="${OMPI_COMM_WORLD_RANK:-${PMIX_RANK:-${SLURM_PROCID:-}}}"
[[ -n "$rank" ]] || { echo "rank.sh: no launcher rank (OMPI_COMM_WORLD_RANK or SLURM_PROCID)" >&2; exit 2; }
export OPENBLAS_NUM_THREADS=1
bin="${DSGD_BIN:?rank.sh: DSGD_BIN is not set}"
host="${DSGD_COORDINATOR_HOST:-127.0.0.1}"
port="${DSGD_PORT:?rank.sh: DSGD_PORT is not set}"
remote=()
[[ -n "${DSGD_CURVE_KEYS:-}" ]] && remote+=(--curve-keys "$DSGD_CURVE_KEYS")
bind_host=127.0.0.1
if [[ "${DSGD_REMOTE:-0}" == 1 ]]; then
    remote+=(--allow-remote --advertise-host "$(hostname -f 2>/dev/null || hostname)")
    bind_host=0.0.0.0
fi
if [[ "$rank" == 0 ]]; then
    exec "$bin" coordinator --bind "tcp://$bind_host:$port" --run-dir "${DSGD_RUN_DIR:?}" "${remote[@]+"${remote[@]}"}" "$@"
else
    # Give the coordinator a moment to bind; a worker that cannot reach it gives up after --peer-timeout.
    sleep 0.5
    exec "$bin" worker --coordinator "tcp://$host:$port" --rank-offset 1 --bind "tcp://$bind_host:*" \
        "${remote[@]+"${remote[@]}"}" 2> >(sed -u "s/^/[worker $((rank - 1))] /" >&2)
fi
