#!/usr/bin/env bash
# Cheaper-selection options against the CPU protocol (experiments/cpu_protocol.sh), setting A, seeds 0,1,2:
# the proposed arm with select_every=3, with select_from=0.5, and scored by a proxy (cnn width 4). Same data,
# model, epochs and seeds as the protocol; its baseline and proposed runs are the reference. Then draws the
# Pareto plot (test error against training time). Re-running skips finished runs.
# Usage: experiments/cheap_options.sh   (about 15 min on 2 cores after the protocol)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=docs/results/cheap-options
DATA=${LOSSAUG_CIFAR10_JPEG:-../shared/data/cifar10-jpeg.tar.xz}
COMMON=(--arms proposed --settings A --seeds 0,1,2 --dataset folder --data "$DATA"
  --cache-dir "${LOSSAUG_CACHE:-data/cache}" --train-size 1000 --model preact_resnet18 --width 8 --epochs 100
  --batch-size 64 --lr 0.05 --candidates 4 --eval-every 25 --device cpu)
lossaug compare --out "$OUT/select-every-3" "${COMMON[@]}" --select-every 3
lossaug compare --out "$OUT/select-from-0.5" "${COMMON[@]}" --select-from 0.5
lossaug compare --out "$OUT/proxy-cnn-4" "${COMMON[@]}" --proxy-model cnn --proxy-width 4
python experiments/pareto.py --protocol docs/results/cpu-protocol --options "$OUT" --out "$OUT"
