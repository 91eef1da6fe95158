#!/usr/bin/env bash
# "Train longer, generalize better" (Hoffer, Hubara and Soudry, NeurIPS 2017) on Fashion-MNIST
# with dsgd's CNN, 8 workers, on the complete graph (C-SGD) and the ring (D-SGD):
#
#   small batch      128 in total (16 per worker), learning rate η
#   large batch     4096 in total (512 per worker), η·√32, plain batch norm, the same epochs
#   + GBN            the same, ghost batch norm with ghost batches of 128
#   + GBN + RA       the same, regime adaptation: 32× the rounds (as many updates as small batch)
#
# plus one single-worker reference run (batch 128). Writes one table (results.md) with the final
# test accuracy of x̄, its generalization gap, λ_max and tr(H) and the slope of ‖x̄_t − x₀‖ against ln t.
#
#   experiments/ghost-batch-norm/run.sh [--quick] [--resume] [--out DIR]
#
# Full: 2 epochs of small batch (938 rounds; the single-worker run: 5 epochs), about 30 minutes
# on 2 idle cores. --quick: 0.1 epoch (47 rounds; single worker 0.5 epoch), a few minutes.
# --resume skips the runs whose folder already holds a completed run and continues interrupted ones
# from their newest checkpoint. DSGD_BIN=/path/to/dsgd skips the build.
set -euo pipefail
help_lines=2,18
# shellcheck source=experiments/common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/common.sh"
if [[ $quick -eq 1 ]]; then
    small_rounds=47; single_rounds=235; examples=256; out="${out:-$root/runs/ghost-batch-norm-quick}"
else
    small_rounds=938; single_rounds=2345; examples=1024; out="${out:-$root/runs/ghost-batch-norm}"
fi
ratio=32                                       # 4096 / 128
large_rounds=$(( (small_rounds + ratio - 1) / ratio ))
mkdir -p "$out"
lr=0.05
common=(--model cnn --momentum 0.9 --weight-decay 0.0001 --clip-norm 5 --data auto --seed 1
        --sharpness-examples "$examples" --sharpness-bn inference --no-eval-workers --metrics-every 1 --overwrite
        --failure-timeout 60)

# run NAME TOPOLOGY ROUNDS BATCH [dsgd flags...]: one local cluster of 8 workers.
run() {
    if completed "$out/$1"; then return 0; fi
    if interrupted "$out/$1"; then
        "$root/launch/local.sh" --no-build --resume "$out/$1" >&2
        return
    fi
    local name="$1" topology="$2" rounds="$3" batch="$4"
    shift 4
    local every=$(( rounds / 10 > 0 ? rounds / 10 : 1 ))
    echo "== $name ($topology, batch $batch per worker)" >&2
    "$root/launch/local.sh" --no-build --workers 8 --topology "$topology" --rounds "$rounds" --batch "$batch" \
        --lr "$lr" --run-dir "$out/$name" -- "${common[@]}" --eval-every "$every" --checkpoint-every "$every" "$@" >&2
}

runs=()
for topology in complete ring; do
    # Ends with a sharpness measurement after the last round (--sharpness-every = the rounds).
    run "$topology-small-128" "$topology" "$small_rounds" 16 --sharpness-every "$small_rounds"
    runs+=("$out/$topology-small-128")
    large=(--reference-batch 128 --lr-scaling sqrt)
    run "$topology-large-4096" "$topology" "$large_rounds" 512 "${large[@]}" --sharpness-every "$large_rounds"
    run "$topology-large-4096-gbn128" "$topology" "$large_rounds" 512 "${large[@]}" --virtual-batch-size 128 \
        --sharpness-every "$large_rounds"
    run "$topology-large-4096-gbn128-ra" "$topology" "$large_rounds" 512 "${large[@]}" --virtual-batch-size 128 \
        --regime-adaptation --sharpness-every $(( large_rounds * ratio ))
    runs+=("$out/$topology-large-4096" "$out/$topology-large-4096-gbn128" "$out/$topology-large-4096-gbn128-ra")
done
# The single-worker reference: one process, batch 128.
echo "== single-worker-128" >&2
if interrupted "$out/single-worker-128"; then
"$DSGD_BIN" simulate --config "$out/single-worker-128/config.json" --run-dir "$out/single-worker-128" --resume >&2
elif ! completed "$out/single-worker-128"; then
"$DSGD_BIN" simulate --workers 1 --topology solo --rounds "$single_rounds" --batch 128 --lr "$lr" \
    --run-dir "$out/single-worker-128" "${common[@]}" --eval-every $(( single_rounds / 10 )) \
    --checkpoint-every $(( single_rounds / 10 )) \
    --sharpness-every "$single_rounds" >&2
fi
runs+=("$out/single-worker-128")
"$DSGD_BIN" report compare "${runs[@]}" --output "$out/comparison.html" --markdown "$out/results.md"
echo "table: $out/results.md; charts: $out/comparison.html"
