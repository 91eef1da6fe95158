#!/usr/bin/env bash
# Stability bounds as dsgd sweeps: (a) the edge of stability of full-batch GD (eos.yaml) and
# (b) SGD's linear stability, tr H and λ_max against 2/η at the end (linear-stability.yaml, and the
# C-SGD/D-SGD pair at the same step size in pair.yaml). --quick runs the *-quick.yaml smoke tests.
#
#   experiments/stability/run.sh [--quick] [--out DIR] [--parallel K]
#
# Resumable. Writes DIR/<eos|linear-stability|pair>/comparison.{md,html} (every figure over seeds)
# and DIR/eos/trajectory.md (λ_max against 2/η along training). DSGD_BIN=/path/to/dsgd skips the build.
set -euo pipefail
help_lines=2,10
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=experiments/common.sh
source "$here/../common.sh"
suffix=""
[[ $quick -eq 1 ]] && suffix="-quick"
out="${out:-$root/runs/sweeps/stability$suffix}"
status=0
for part in eos linear-stability pair; do
    "$DSGD_BIN" sweep "$here/$part$suffix.yaml" --sweep-dir "$out/$part" --parallel "$parallel" || status=$?
done
# Edge of stability: λ_max/(2/η) at every measurement, over seeds, per step size.
mapfile -t cells < <(completed_cells "$out/eos")
if [[ ${#cells[@]} -gt 0 ]]; then
    "$DSGD_BIN" report trajectory "${cells[@]}" --markdown "$out/eos/trajectory.md" >/dev/null
fi
echo "results: $out/{eos,linear-stability,pair}/comparison.md, $out/eos/trajectory.md" >&2
exit "$status"
