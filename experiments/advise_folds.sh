#!/usr/bin/env bash
# Issue 29's validation of lossaug advise on real data: one advice per held-out speaker of the spoken-digit data,
# frontier-fsdd's recipe and the ground truth's arms, margin and declared cost ratios
# (experiments/protocols/advise-truth-*.toml), seeds from 100 on (independent of the truth's 0-7), 30 minutes each.
# Resumable: the same command continues each fold's advice. Compare with the truth by
#   python experiments/advise_vs_truth.py
# Usage (from the repository root, one thread, nothing else running for the timings to mean anything):
#   OMP_NUM_THREADS=1 experiments/advise_folds.sh [SPEAKER ...]   (default: all six)
set -euo pipefail
cd "$(dirname "$0")/.."
speakers=("$@")
[ "${#speakers[@]}" -gt 0 ] || speakers=(george jackson lucas nicolas theo yweweler)
for speaker in "${speakers[@]}"; do
  echo "== lossaug advise, held-out speaker $speaker" >&2
  lossaug advise --dataset fsdd --data ../shared/data/fsdd.tar.xz --cache-dir data/cache --test-speaker "$speaker" \
    --sample-rate 8000 --clip-seconds 0.68 --model audio_cnn --width 16 --epochs 15 --batch-size 64 --lr 0.05 \
    --candidates 4 --eval-every 15 \
    --arms proposed,gated,weighted-equal-time,weighted-uniform-equal-time --margin 1 \
    --cost-ratio 3.20 --cost-ratios gated=1.53,weighted=4.27 --seed 100 --device cpu --time "${TIME:-30m}" \
    --out "docs/results/advise/folds/$speaker"
done
