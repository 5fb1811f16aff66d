#!/usr/bin/env bash
# Source weights of the transfer protocol (experiments/protocols/transfer-A.toml): PreActResNet-18 width 8 trained
# as the baseline (setting A) on 10,000 images of five CIFAR-10 classes of the JPEG copy, then exported as a plain
# state_dict (no optimizer, no normalisation statistics, no classifier head: the target task's head starts fresh)
# to docs/results/transfer/pretrained-preact8-5class.pt.
# Run from the repository root; re-running resumes the run and re-exports. About 20 core-minutes on a slow CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
run=docs/results/transfer/pretrain
lossaug train --resume auto --out "$run" --dataset folder --data ../shared/data/cifar10-jpeg.tar.xz \
  --cache-dir data/cache --classes airplane,automobile,bird,cat,deer --train-size 10000 --model preact_resnet18 \
  --width 8 --epochs 15 --batch-size 64 --lr 0.05 --method baseline --setting A --eval-every 5
python experiments/export_weights.py "$run" docs/results/transfer/pretrained-preact8-5class.pt --drop linear.
