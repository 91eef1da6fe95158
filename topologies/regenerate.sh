#!/usr/bin/env bash
# Regenerates the shipped topology files and the table in topologies/README.md from `dsgd topology`.
#   topologies/regenerate.sh [path/to/dsgd]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="${1:-$here/../.build/release/dsgd}"
[[ -x "$bin" ]] || { echo "regenerate.sh: $bin not found; build with 'swift build -c release' or pass the binary" >&2; exit 2; }
rm -f "$here"/*.edges "$here"/*.schedule
table="$here/.table.md"
echo "| file | nodes | edges | spectral gap | Ξ² contraction per round |" > "$table"
echo "|---|---|---|---|---|" >> "$table"
for n in 8 16 32; do
    case $n in 8) torus=2x4 ;; 16) torus=4x4 ;; 32) torus=4x8 ;; esac
    for spec in ring "torus:$torus" exponential complete star hypercube watts-strogatz:4:0.2 two-cliques one-peer-exponential; do
        name="${spec%%:*}"
        [[ "$name" == watts-strogatz ]] && name=small-world
        extension=edges
        [[ "$spec" == one-peer-exponential ]] && extension=schedule
        file="$here/$name-$n.$extension"
        "$bin" topology generate "$spec" --nodes "$n" > "$file"
        json="$("$bin" topology inspect "$file" --json)"
        row="$(python3 -c '
import json, sys
r = json.loads(sys.argv[1]); s = r["spectrum"]
c = s.get("consensus_contraction_per_round")
print("| `%s` | %d | %d%s | %.6f | %s |" % (sys.argv[2], r["nodes"], r["edges"], " (directed)" if r["directed"] else "",
      s["spectral_gap"], "%.6f" % c if c is not None else "n/a"))' "$json" "$(basename "$file")")"
        echo "$row" >> "$table"
    done
done
python3 - "$here/README.md" "$table" <<'PY'
import sys
readme, table = sys.argv[1], open(sys.argv[2]).read()
text = open(readme).read()
start, end = "<!-- table:start -->", "<!-- table:end -->"
head, rest = text.split(start)
_, tail = rest.split(end)
open(readme, "w").write(head + start + "\n" + table + end + tail)
PY
rm -f "$table"
echo "regenerated $(ls "$here"/*.edges "$here"/*.schedule | wc -l) files"
