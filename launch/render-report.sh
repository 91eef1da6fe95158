#!/usr/bin/env bash
# Renders a run's report.html with headless Chromium to a PNG, to look at it as a browser shows it.
#   launch/render-report.sh RUN_DIR [OUT.png]      (needs: apt-get install -y chromium)
set -euo pipefail
run="${1:?usage: render-report.sh RUN_DIR [OUT.png]}"
out="${2:-$run/report.png}"
page="$(cd "$run" && pwd)/report.html"
[[ -f "$page" ]] || { echo "render-report.sh: $page not found (run 'dsgd report $run' first)" >&2; exit 2; }
browser="$(command -v chromium || command -v chromium-browser || true)"
[[ -n "$browser" ]] || { echo "render-report.sh: chromium not installed (apt-get install -y chromium)" >&2; exit 2; }
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,2600 \
    --screenshot="$out" "file://$page" 2>/dev/null
echo "$out"
