#!/usr/bin/env bash
# D-SGD against C-SGD across total batch size (Zhu et al., ICML 2023), as dsgd sweeps: the grid is
# in mlp.yaml (16 workers, total batch 128/1024/4096/8192, complete/ring/one-peer exponential,
# 3 seeds, 1,500 rounds), the 8,192 cells at a lower rate in mlp-8192-lower-rate.yaml (the linearly
# scaled rate collapses C-SGD), the smoke test in mlp-quick.yaml.
#
#   experiments/dsgd-vs-csgd/run.sh [--quick] [--out DIR] [--parallel K]
#
# Resumable: run it again to finish an interrupted grid. Writes DIR/comparison.md (every cell, every
# figure over seeds, sharpness after the last round) and DIR/comparison-750.md (sharpness after
# round 750, the end of the high-rate phase). DSGD_BIN=/path/to/dsgd skips the build.
set -euo pipefail
help_lines=2,12
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=experiments/common.sh
source "$here/../common.sh"
specs=(mlp mlp-8192-lower-rate); high_phase_end=750
if [[ $quick -eq 1 ]]; then specs=(mlp-quick); high_phase_end=30; fi
suffix=""
[[ $quick -eq 1 ]] && suffix="-quick"
out="${out:-$root/runs/sweeps/dsgd-vs-csgd$suffix}"
status=0
cells=()
for spec in "${specs[@]}"; do
    "$DSGD_BIN" sweep "$here/$spec.yaml" --sweep-dir "$out/$spec" --parallel "$parallel" || status=$?
    mapfile -t -O "${#cells[@]}" cells < <(completed_cells "$out/$spec")
done
if [[ ${#cells[@]} -gt 0 ]]; then
    "$DSGD_BIN" report compare "${cells[@]}" --by-seed \
        --output "$out/comparison.html" --markdown "$out/comparison.md" >/dev/null
    "$DSGD_BIN" report compare "${cells[@]}" --by-seed --sharpness-round "$high_phase_end" \
        --output "$out/comparison-$high_phase_end.html" --markdown "$out/comparison-$high_phase_end.md" >/dev/null
fi
echo "results: $out/comparison.md, $out/comparison-$high_phase_end.md" >&2
exit "$status"
