# Shared by the experiment recipes (sourced, not run): their flags (--quick, --resume, --out,
# --parallel, --help), the dsgd build, the data check, whether a run folder already holds a
# completed run or an interrupted one to continue, and a sweep's completed cells.
# The sourcing script sets `help_lines` (the sed range of its header comment) first.
# shellcheck shell=bash
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
quick=0
resume=0
out=""
parallel=2
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) quick=1; shift ;;
        --resume) resume=1; shift ;;
        --out) out="$2"; shift 2 ;;
        --parallel) parallel="$2"; shift 2 ;;
        -h|--help) sed -n "${help_lines}p" "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "$(basename "$0"): unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
if [[ -z "${DSGD_BIN:-}" ]]; then
    swift build -c release --package-path "$root" --product dsgd >&2
    DSGD_BIN="$(swift build -c release --package-path "$root" --show-bin-path)/dsgd"
fi
export DSGD_BIN
if [[ ! -d /usr/share/datasets/fashion-mnist ]]; then
    echo "$(basename "$0"): Fashion-MNIST not found; install Debian's dataset-fashion-mnist" >&2
    exit 1
fi

# completed DIR: true when --resume is on and DIR holds a completed run (which is then skipped).
completed() {
    if [[ $resume -eq 1 ]] && grep -qs '"status" : "completed"' "$1/summary.json"; then
        echo "== $(basename "$1"): already completed, skipped (--resume)" >&2
        return 0
    fi
    return 1
}

# interrupted DIR: true when --resume is on and DIR holds a run that stopped after writing a
# checkpoint (it is then continued from its newest checkpoint, not started again from zero).
interrupted() {
    if [[ $resume -eq 1 ]] && compgen -G "$1/checkpoints/round-*.ckpt" >/dev/null && [[ -f "$1/config.json" ]]; then
        echo "== $(basename "$1"): interrupted; continuing from its newest checkpoint (--resume)" >&2
        return 0
    fi
    return 1
}

# completed_cells SWEEP_DIR: the folders of a dsgd sweep's completed cells, one per line.
completed_cells() {
    local cell
    for cell in "$1"/*/; do
        grep -qs '"status":"completed"' "$cell/cell.json" && echo "${cell%/}"
    done
    return 0
}
