#!/usr/bin/env bash
# D-SGD against C-SGD across total batch size (Zhu et al., ICML 2023), as dsgd sweeps, with the MLP
# and with the CNN: mlp.yaml (16 workers, total batch 128/1024/4096/8192, complete/ring/one-peer
# exponential, 3 seeds, 1,500 rounds) with the 8,192 cells at a lower rate in
# mlp-8192-lower-rate.yaml (the linearly scaled rate collapses C-SGD); cnn.yaml (the same grid with
# a half-width CNN, scaled to 200 rounds: see the README); smoke tests in *-quick.yaml.
#
#   experiments/dsgd-vs-csgd/run.sh [--quick] [--out DIR] [--parallel K]
#
# Resumable: run it again to finish an interrupted grid. Writes, per model M (mlp, cnn),
# DIR/comparison-M.md (every cell, every figure over seeds, sharpness after the last round) and
# DIR/comparison-M-at-R.md (sharpness after round R, the end of the high-rate phase: 750 for the
# MLP, 100 for the CNN). DSGD_BIN=/path/to/dsgd skips the build.
set -euo pipefail
help_lines=2,13
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=experiments/common.sh
source "$here/../common.sh"
# model:specs (comma-separated):round at the end of the high-rate phase
studies=("mlp:mlp,mlp-8192-lower-rate:750" "cnn:cnn:100")
if [[ $quick -eq 1 ]]; then studies=("mlp:mlp-quick:30" "cnn:cnn-quick:10"); fi
suffix=""
[[ $quick -eq 1 ]] && suffix="-quick"
out="${out:-$root/runs/sweeps/dsgd-vs-csgd$suffix}"
status=0
for study in "${studies[@]}"; do
    IFS=: read -r model specs high_phase_end <<<"$study"
    IFS=, read -r -a spec_list <<<"$specs"
    cells=()
    for spec in "${spec_list[@]}"; do
        "$DSGD_BIN" sweep "$here/$spec.yaml" --sweep-dir "$out/$spec" --parallel "$parallel" || status=$?
        mapfile -t -O "${#cells[@]}" cells < <(completed_cells "$out/$spec")
    done
    if [[ ${#cells[@]} -gt 0 ]]; then
        "$DSGD_BIN" report compare "${cells[@]}" --by-seed \
            --output "$out/comparison-$model.html" --markdown "$out/comparison-$model.md" >/dev/null
        "$DSGD_BIN" report compare "${cells[@]}" --by-seed --sharpness-round "$high_phase_end" \
            --output "$out/comparison-$model-at-$high_phase_end.html" \
            --markdown "$out/comparison-$model-at-$high_phase_end.md" >/dev/null
        echo "results ($model): $out/comparison-$model.md, $out/comparison-$model-at-$high_phase_end.md" >&2
    fi
done
exit "$status"
