#!/usr/bin/env bash
# D-SGD against C-SGD across total batch size (Zhu et al., ICML 2023), as a dsgd sweep: the grid is
# in mlp.yaml (16 workers, total batch 128/1024/4096/8192, complete/ring/one-peer exponential,
# 3 seeds, 1,500 rounds), the smoke test in mlp-quick.yaml.
#
#   experiments/dsgd-vs-csgd/run.sh [--quick] [--out DIR] [--parallel K]
#
# Resumable: run it again to finish an interrupted grid. Writes DIR/comparison.{md,html} (every
# figure over seeds, sharpness after the last round) and DIR/comparison-750.md (sharpness at the
# end of the high learning-rate phase). DSGD_BIN=/path/to/dsgd skips the build.
set -euo pipefail
help_lines=2,11
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=experiments/common.sh
source "$here/../common.sh"
spec="$here/mlp.yaml"; high_phase_end=750
if [[ $quick -eq 1 ]]; then spec="$here/mlp-quick.yaml"; high_phase_end=30; fi
out="${out:-$root/runs/sweeps/dsgd-vs-csgd-$(basename "$spec" .yaml)}"
status=0
"$DSGD_BIN" sweep "$spec" --sweep-dir "$out" --parallel "$parallel" || status=$?
mapfile -t cells < <(completed_cells "$out")
if [[ ${#cells[@]} -gt 0 ]]; then
    "$DSGD_BIN" report compare "${cells[@]}" --by-seed --sharpness-round "$high_phase_end" \
        --output "$out/comparison-$high_phase_end.html" --markdown "$out/comparison-$high_phase_end.md" >/dev/null
fi
echo "results: $out/comparison.md, $out/comparison-$high_phase_end.md" >&2
exit "$status"
