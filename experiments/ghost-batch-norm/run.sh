#!/usr/bin/env bash
# "Train longer, generalize better" (Hoffer, Hubara and Soudry, NeurIPS 2017) on Fashion-MNIST with
# dsgd's CNN, 4 workers on the complete graph (C-SGD: exact averaging every step), seeds 0, 1, 2,
# every run with the same step schedule shape (multistep: × 0.1 at 50 % and 75 % of its steps):
#
#   small-128            total batch 128 (32 per worker), η = 0.05, 4 epochs: the baseline, decayed
#   large-2048 cells     total batch 2048 (512 per worker), the same 4 epochs (16× fewer steps):
#     plain-sqrt                  batch norm over each worker's 512 rows, η·√16 (--lr-scaling sqrt)
#     gbn128-sequential-sqrt      ghost batches of 128; running statistics one update per ghost
#     gbn128-averaged-sqrt        ghost batches of 128; one update per step from the mean ghost
#                                 statistics (the control: as many updates as plain batch norm)
#     gbn16-sequential-sqrt, gbn16-averaged-sqrt   the same with ghost batches of 16
#     gbn128-sequential-sqrt-recomputed   x̄ evaluated with statistics recomputed for its weights
#     gbn128-sequential-linear-warmup     η·16 (--lr-scaling linear) after a linear warm-up over
#                                 5 % of the steps (Goyal et al. 2017), decays at the same steps
#     gbn128-sequential-sqrt-ra   regime adaptation: 16× the steps (as many as small-128) and the
#                                 schedule stretched with them (--regime-adaptation)
#
# Writes results.md (accuracy and generalization gap), growth.md (‖x̄_t − x₀‖ against ln t and
# against a power law over the constant-rate phase, with R²), sharpness-constant.md (λ_max and tr(H)
# of x̄ at the end of the constant-rate phase, with their own uncertainty, against the heavy-ball
# threshold 2(1+β)/η) and sharpness-end.md (the same after the last step): every figure mean ± sd
# [95 % interval] over the seeds, then the differences from the baselines paired by seed, with
# their 95 % interval and p-value; and comparison.html (curves).
#
#   experiments/ghost-batch-norm/run.sh [--quick] [--resume] [--out DIR] [--parallel K]
#
# Full: about 45 minutes on 2 cores. --quick: 0.2 epoch, about 4 minutes (a smoke test, no result).
# Sweeps resume by themselves: run it again to finish an interrupted recipe (--resume is accepted
# and changes nothing). DSGD_BIN=/path/to/dsgd skips the build.
set -euo pipefail
help_lines=2,30
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=experiments/common.sh
source "$here/../common.sh"
ratio=16    # 2048 / 128
if [[ $quick -eq 1 ]]; then
    large_rounds=6; metrics_small=4; eval_small=24; eval_large=3; examples=256; warmup=1
    out="${out:-$root/runs/ghost-batch-norm-quick}"
else
    # 4 epochs of 15,000 examples per worker in batches of 512: ⌈117.2⌉ steps.
    large_rounds=118; metrics_small=4; eval_small=118; eval_large=10; examples=1024; warmup=6
    out="${out:-$root/runs/ghost-batch-norm}"
fi
small_rounds=$(( large_rounds * ratio ))
# The decays, × 0.1 at 50 % and 75 % of the steps.
first=$(( large_rounds / 2 )); second=$(( large_rounds * 3 / 4 ))
mkdir -p "$out/specs"

# shared_flags: the flags every cell shares.
shared_flags() {
    echo "runner: simulate"
    echo "flags:"
    echo "  workers: 4"
    echo "  topology: complete"
    echo "  model: cnn"
    echo "  lr: 0.05"
    echo "  momentum: 0.9"
    echo "  weight-decay: 0.0001"
    echo "  clip-norm: 5"
    echo "  data: auto"
    echo "  sharpness-examples: $examples"
    echo "  sharpness-bn: inference"
    echo "  no-per-layer-curvature: true"
    echo "  hutchinson-probes: 12"
    echo "  no-eval-workers: true"
    # A checkpoint every eighth of the longest runs: a killed recipe, run again, continues its
    # interrupted cells from there (the numbers are those of an uninterrupted run, bit for bit).
    echo "  checkpoint-every: $(( small_rounds / 8 ))"
}

# The small batch: 16× the steps, so its milestones and measurements are 16× the large batch's.
{
    shared_flags
    echo "  batch: 32"
    echo "  rounds: $small_rounds"
    echo "  lr-schedule: \"multistep:$(( first * ratio )),$(( second * ratio )):0.1\""
    echo "  sharpness-every: $(( first * ratio ))"
    echo "  eval-every: $eval_small"
    echo "  metrics-every: $metrics_small"
    echo "axes:"
    echo "  batch:"
    echo "    - {label: small-128}"
    echo "  seed: [0, 1, 2]"
} >"$out/specs/small.yaml"

# variant LABEL FLAGS: one large-batch cell; the constant phase ends at step $first (sharpness there
# and after the last step), x̄ evaluated every $eval_large rounds, its distance from x₀ every round.
variant() {
    echo "    - {label: $1, lr-schedule: \"multistep:$first,$second:0.1\", sharpness-every: $first, eval-every: $eval_large, metrics-every: 1${2:+, $2}}"
}
{
    shared_flags
    echo "  batch: 512"
    echo "  rounds: $large_rounds"
    echo "  reference-batch: 128"
    echo "axes:"
    echo "  batch:"
    # Regime adaptation multiplies the rounds and the milestones by 16; the measurements follow.
    # First in the grid: the three longest cells start first, so the cheap ones fill the cores
    # around the last of them.
    echo "    - {label: gbn128-sequential-sqrt-ra, lr-schedule: \"multistep:$first,$second:0.1\", sharpness-every: $(( first * ratio )), eval-every: $eval_small, metrics-every: $metrics_small, lr-scaling: sqrt, virtual-batch-size: 128, running-stats: sequential, regime-adaptation: true}"
    variant plain-sqrt "lr-scaling: sqrt"
    variant gbn128-sequential-sqrt "lr-scaling: sqrt, virtual-batch-size: 128, running-stats: sequential"
    variant gbn128-averaged-sqrt "lr-scaling: sqrt, virtual-batch-size: 128, running-stats: averaged"
    variant gbn16-sequential-sqrt "lr-scaling: sqrt, virtual-batch-size: 16, running-stats: sequential"
    variant gbn16-averaged-sqrt "lr-scaling: sqrt, virtual-batch-size: 16, running-stats: averaged"
    variant gbn128-sequential-sqrt-recomputed \
        "lr-scaling: sqrt, virtual-batch-size: 128, running-stats: sequential, average-model-bn: recomputed"
    # The warm-up's steps come before the schedule's own: its milestones move back by as many, so
    # the decays fall on the same steps as every other cell's.
    echo "    - {label: gbn128-sequential-linear-warmup, lr-schedule: \"multistep:$(( first - warmup )),$(( second - warmup )):0.1\", warmup: $warmup, sharpness-every: $first, eval-every: $eval_large, metrics-every: 1, lr-scaling: linear, virtual-batch-size: 128, running-stats: sequential}"
    echo "  seed: [0, 1, 2]"
} >"$out/specs/large.yaml"

status=0
sweep() { "$DSGD_BIN" sweep "$1" --sweep-dir "$2" --parallel "$parallel" || status=$?; }
sweep "$out/specs/large.yaml" "$out/large"
sweep "$out/specs/small.yaml" "$out/small"

cells=()
for dir in "$out/small" "$out/large"; do mapfile -t -O "${#cells[@]}" cells < <(completed_cells "$dir"); done
if [[ ${#cells[@]} -eq 0 ]]; then
    echo "no completed run" >&2
    exit 1
fi
compare() { "$DSGD_BIN" report compare "${cells[@]}" --by-seed "$@" >/dev/null; }
# Each table is followed by the differences from the baselines a claim compares against: the small
# batch, plain batch norm at the large batch, and ghost batch norm 128 with sequential running
# statistics (the paper's rule). Paired by seed: cells of one seed share the initialization and the
# shards (and, at one batch size, the batches), so the paired t interval over the 3 seeds is used.
baselines=(--paired --difference-from batch=small-128 --difference-from batch=plain-sqrt
           --difference-from batch=gbn128-sequential-sqrt)
compare --output "$out/comparison.html" --markdown "$out/results.md" "${baselines[@]}" \
    --figures "test acc,train acc,gen. gap,test loss,wall s"
compare --output "$out/growth.html" --markdown "$out/growth.md" \
    --figures "dist ~ ln t,R² ln t,dist ~ t^α,R² t^α"
compare --sharpness-first --output "$out/sharpness-constant.html" --markdown "$out/sharpness-constant.md" \
    "${baselines[@]}" \
    --figures "λ_max @first,λ_max residual @first,threshold @first,λ_max/threshold @first,tr(H) @first,tr(H) ±95 % @first"
compare --output "$out/sharpness-end.html" --markdown "$out/sharpness-end.md" "${baselines[@]}" \
    --figures "λ_max,λ_max residual,threshold,λ_max/threshold,tr(H),tr(H) ±95 %"
echo "tables: $out/results.md, $out/growth.md, $out/sharpness-constant.md, $out/sharpness-end.md; charts: $out/comparison.html" >&2
exit "$status"
