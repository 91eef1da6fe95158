#!/usr/bin/env bash
# Personalization on Fashion-MNIST with 16 clients: local-only, FedAvg, FedAvg + fine-tuning,
# FedPer, Ditto and the additive (FedRAP-style) model, with a server (star, federated mode) and
# over a ring (gossip, no server), on Dirichlet(0.1) label skew and on 2 classes per client.
# Every client is evaluated with its own personalized model on its own test split (drawn from its
# own label distribution, disjoint from its training data). Writes one table (results.md).
#
#   experiments/personalization/run.sh [--quick] [--resume] [--out DIR]
#
# Full: 100 rounds of 10 local steps, about 10 minutes on 2 cores; --quick: 15 rounds, a few
# minutes. --resume skips the runs whose folder already holds a completed run and continues
# interrupted ones from their newest checkpoint. DSGD_BIN=/path/to/dsgd skips the build.
set -euo pipefail
help_lines=2,12
# shellcheck source=experiments/common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/common.sh"
if [[ $quick -eq 1 ]]; then
    rounds=15; out="${out:-$root/runs/personalization-quick}"
else
    rounds=100; out="${out:-$root/runs/personalization}"
fi
mkdir -p "$out"
every=$(( rounds / 5 ))
common=(--model 784-100-10 --batch 32 --lr 0.05 --momentum 0.9 --local-steps 10 --data auto --seed 1
        --client-test-size 200 --eval-every "$every" --metrics-every "$every" --sharpness-every 0
        --no-eval-workers --overwrite --checkpoint-every "$every"
        --failure-timeout 60)

# run NAME TOPOLOGY PARTITION [dsgd flags...]: one local cluster of 16 clients.
run() {
    if completed "$out/$1"; then return 0; fi
    if interrupted "$out/$1"; then
        "$root/launch/local.sh" --no-build --resume "$out/$1" >&2
        return
    fi
    local name="$1" topology="$2" partition="$3"
    shift 3
    echo "== $name" >&2
    "$root/launch/local.sh" --no-build --workers 16 --topology "$topology" --rounds "$rounds" \
        --partition "$partition" --run-dir "$out/$name" -- "${common[@]}" "$@" >&2
}

runs=()
for partition in dirichlet:0.1 pathological:2; do
    tag="${partition/:/}"
    run "$tag-local-only" solo "$partition" --personalization local-only
    runs+=("$out/$tag-local-only")
    for mode in server ring; do
        if [[ $mode == server ]]; then where=(--federated fedavg); topology=ring; else where=(); topology=ring; fi
        for algorithm in none fine-tune fedper ditto additive; do
            name="$tag-$mode-${algorithm/none/fedavg}"
            run "$name" "$topology" "$partition" "${where[@]+"${where[@]}"}" --personalization "$algorithm"
            runs+=("$out/$name")
        done
    done
done
"$DSGD_BIN" report compare "${runs[@]}" --clients --output "$out/comparison.html" --markdown "$out/results.md"
echo "table: $out/results.md; charts: $out/comparison.html"
