#!/usr/bin/env bash
# CPU protocol of docs/REPRODUCTION.md: all four arms x settings A and B x seeds 0,1,2 on a fixed, class-balanced
# 1,000-image subset of the JPEG CIFAR-10 training set (full 10,000-image test set), PreActResNet-18 at width 8,
# 100 epochs, batch 64, lr 0.05 (0.1 at batch 128, scaled), cosine decay, M = 4.
# Chosen so that the baseline fits its training data (train error ~2% at the end): the regime in which the
# method is guessed to pay off. Re-running resumes: finished runs are skipped.
# Usage: experiments/cpu_protocol.sh [OUT_DIR]   (default docs/results/cpu-protocol; about 45-60 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-docs/results/cpu-protocol}
DATA=${LOSSAUG_CIFAR10_JPEG:-../shared/data/cifar10-jpeg.tar.xz}
exec lossaug compare --out "$OUT" --arms baseline,proposed,maxup,baseline-equal-time --settings A,B --seeds 0,1,2 \
  --dataset folder --data "$DATA" --cache-dir "${LOSSAUG_CACHE:-data/cache}" --train-size 1000 \
  --model preact_resnet18 --width 8 --epochs 100 --batch-size 64 --lr 0.05 --candidates 4 \
  --eval-every 25 --device cpu
