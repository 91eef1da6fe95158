#!/usr/bin/env bash
# Runs one configuration over a list of topologies (or batch sizes, or seeds), one run after
# another on a local cluster, then compares them (dsgd report compare).
#
#   launch/sweep.sh --topologies "ring complete topologies/torus-16.edges" [local.sh flags] [-- dsgd flags]
#   launch/sweep.sh --batches "32 128 512" [local.sh flags] [-- dsgd flags]
#   launch/sweep.sh --seeds "0 1 2" [local.sh flags] [-- dsgd flags]
#
# Runs go to runs/sweep-<time>/<value>/; the comparison page to runs/sweep-<time>/comparison.html.
# Exits non-zero if any run failed (the others still run and are compared).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
kind=""
values=""
passthrough=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --topologies) kind=topology; values="$2"; shift 2 ;;
        --batches) kind=batch; values="$2"; shift 2 ;;
        --seeds) kind=seed; values="$2"; shift 2 ;;
        --sweep-dir) sweep_dir="$2"; shift 2 ;;
        -h|--help) sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) passthrough+=("$1"); shift ;;
    esac
done
[[ -n "$kind" && -n "$values" ]] || { echo "sweep.sh: give --topologies, --batches or --seeds with a list" >&2; exit 2; }
sweep_dir="${sweep_dir:-$root/runs/sweep-$(date -u +%Y%m%d-%H%M%S)}"
mkdir -p "$sweep_dir"
# local.sh flags come before '--', dsgd flags after it.
before=()
after=()
seen_separator=0
for arg in "${passthrough[@]+"${passthrough[@]}"}"; do
    if [[ "$arg" == "--" && $seen_separator -eq 0 ]]; then seen_separator=1; continue; fi
    if [[ $seen_separator -eq 0 ]]; then before+=("$arg"); else after+=("$arg"); fi
done
# Build once.
if [[ -z "${DSGD_BIN:-}" ]]; then
    swift build -c release --package-path "$root" --product dsgd >&2
    export DSGD_BIN="$(swift build -c release --package-path "$root" --show-bin-path)/dsgd"
fi
runs=()
failed=0
for value in $values; do
    name="$(basename "$value" .edges)"
    run_dir="$sweep_dir/$kind-${name//[:\/]/_}"
    echo "sweep.sh: $kind = $value -> $run_dir" >&2
    if ! "$here/local.sh" --no-build "${before[@]+"${before[@]}"}" "--$kind" "$value" --run-dir "$run_dir" \
        -- "${after[@]+"${after[@]}"}"; then
        echo "sweep.sh: the run with $kind = $value failed" >&2
        failed=1
    fi
    [[ -f "$run_dir/config.json" ]] && runs+=("$run_dir")
done
[[ ${#runs[@]} -gt 0 ]] || { echo "sweep.sh: no run produced a report" >&2; exit 1; }
"$DSGD_BIN" report compare "${runs[@]}" --output "$sweep_dir/comparison.html"
exit "$failed"
