#!/usr/bin/env bash
# Runs launch/slurm.sbatch on a real Slurm: a one-node cluster on this machine (munged, slurmctld
# and slurmd started here, configuration and state in a temporary folder, no systemd), 4 workers,
# then checks the run folder is complete and its rounds equal a launch/local.sh run with the same
# seed and flags, submits `slurm.sbatch --resume` on it (continued from its newest checkpoint: the
# same rounds again), and stops the daemons it started.
#
#   launch/test-slurm.sh [--install]
#
# Needs root (the daemons) and Debian's slurm-wlm and munge (--install runs apt-get for them);
# uses DSGD_BIN when set (the tests pass the debug build), else the release build (built if
# missing). Exits 0 when the check passes, 1 when it fails, 77 (skipped) with the reason when it
# cannot run here.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
skip() { echo "test-slurm.sh: skipped: $*" >&2; exit 77; }
[[ $(id -u) -eq 0 ]] || skip "needs root to start munged, slurmctld and slurmd"
if [[ "${1:-}" == --install ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y slurm-wlm munge >/dev/null ||
        skip "apt-get install slurm-wlm munge failed"
fi
for tool in munged slurmctld slurmd sbatch squeue scontrol; do
    command -v "$tool" >/dev/null || skip "$tool not installed (apt-get install slurm-wlm munge, or --install)"
done
if [[ -z "${DSGD_BIN:-}" ]]; then
    export DSGD_BIN="$root/.build/release/dsgd"
    [[ -x "$DSGD_BIN" ]] || (cd "$root" && swift build -c release --product dsgd >/dev/null)
fi
[[ -x "$DSGD_BIN" ]] || { echo "test-slurm.sh: $DSGD_BIN is not an executable" >&2; exit 1; }

work="$(mktemp -d /tmp/dsgd-slurm-XXXXXX)"
chmod 755 "$work"
pids=()
cleanup() {
    local status=$?
    for pid in "${pids[@]+"${pids[@]}"}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]+"${pids[@]}"}"; do wait "$pid" 2>/dev/null || true; done
    if [[ $status -ne 0 ]]; then
        echo "test-slurm.sh: failed; logs in $work" >&2
        tail -n 20 "$work"/*.log >&2 2>/dev/null || true
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

host="$(hostname -s)"
# munge: a key and a socket of this test's own.
mkdir -p "$work/munge"
dd if=/dev/urandom of="$work/munge/munge.key" bs=1 count=1024 status=none
chown munge:munge "$work/munge" "$work/munge/munge.key" 2>/dev/null || true
chmod 700 "$work/munge"
chmod 400 "$work/munge/munge.key"
socket="$work/munge/munge.socket"
munged --force --key-file="$work/munge/munge.key" --socket="$socket" --pid-file="$work/munge/munged.pid" \
    --log-file="$work/munged.log" --seed-file="$work/munge/munged.seed" --foreground >>"$work/munged.log" 2>&1 &
pids+=($!)

mkdir -p "$work/state" "$work/spool"
cat >"$work/slurm.conf" <<CONF
ClusterName=dsgdtest
SlurmctldHost=$host
SlurmctldPort=$((6817 + RANDOM % 1000))
SlurmdPort=$((7817 + RANDOM % 1000))
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
# The node declares 16 CPUs whatever it has (config_overrides), so a job of workers + 1 tasks runs
# on a 2-core machine: the processes then share the cores, as under launch/local.sh.
SlurmdParameters=config_overrides
NodeName=$host CPUs=16 Boards=1 SocketsPerBoard=1 CoresPerSocket=16 ThreadsPerCore=1 State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$work/slurm.conf"
for _ in $(seq 1 50); do [[ -S "$socket" ]] && break; sleep 0.1; done
[[ -S "$socket" ]] || { echo "test-slurm.sh: munged did not start" >&2; exit 1; }
slurmctld -D -i -f "$SLURM_CONF" >>"$work/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -f "$SLURM_CONF" >>"$work/slurmd.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
    sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)' && break
    sleep 0.2
done
sinfo -h -o %T | grep -qE '^(idle|mixed|allocated)' || { echo "test-slurm.sh: the node did not come up" >&2; exit 1; }

flags=(--rounds 30 -- --model 784-16-10 --data synthetic --seed 7 --eval-every 10 --sharpness-every 0
       --checkpoint-every 10)
run="$work/slurm-run"
# wait_job ID: waits for the job to end; fails the test unless it COMPLETED.
wait_job() {
    local job="$1" state=PENDING details=""
    for _ in $(seq 1 600); do
        details=$(scontrol show job "$job" 2>/dev/null || true)
        state=$(grep -o 'JobState=[A-Z_]*' <<<"$details" | cut -d= -f2 || true)
        [[ "$state" == COMPLETED || "$state" == FAILED || "$state" == CANCELLED || "$state" == TIMEOUT ]] && break
        sleep 0.5
    done
    echo "test-slurm.sh: job $job ended $state ($(grep -o 'Reason=[^ ]*' <<<"$details" || true))"
    [[ "$state" == COMPLETED ]] || { cat "$work/job.log" >&2; exit 1; }
}
job=$(cd "$root" && DSGD_RUN_DIR="$run" sbatch --parsable --ntasks=5 --output="$work/job.log" \
    launch/slurm.sbatch --workers 4 "${flags[@]}")
wait_job "$job"
for file in config.json rounds.jsonl rounds.csv summary.json report.html; do
    [[ -s "$run/$file" ]] || { echo "test-slurm.sh: $run/$file missing" >&2; exit 1; }
done
grep -q '"status" : "completed"' "$run/summary.json" || { echo "test-slurm.sh: the run did not complete" >&2; exit 1; }

local_run="$work/local-run"
"$root/launch/local.sh" --workers 4 --run-dir "$local_run" "${flags[@]}" >"$work/local.log" 2>&1
# The same numbers: every round's record, timings and traffic aside.
compare_with_local() {
python3 - "$run/rounds.jsonl" "$local_run/rounds.jsonl" <<'PY'
import json, sys
skip = {"elapsed_seconds", "bytes_sent", "bytes_sent_by_worker", "round_seconds"}
def rows(path):
    return [{k: v for k, v in json.loads(line).items() if k not in skip and "seconds" not in k}
            for line in open(path)]
a, b = rows(sys.argv[1]), rows(sys.argv[2])
if len(a) != len(b) or a != b:
    first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    sys.exit(f"test-slurm.sh: the Slurm run and the local run differ from record {first + 1}")
print(f"test-slurm.sh: {len(a)} rounds, the Slurm run equals launch/local.sh's record for record")
PY
}
compare_with_local

# slurm.sbatch --resume: the run continued from its newest checkpoint (round 20) by a second job
# ends with the same records.
job=$(cd "$root" && sbatch --parsable --ntasks=5 --output="$work/job.log" launch/slurm.sbatch --resume "$run")
wait_job "$job"
grep -q '"resumed after round 20' "$run/summary.json" || { echo "test-slurm.sh: the second job did not resume" >&2; exit 1; }
compare_with_local
