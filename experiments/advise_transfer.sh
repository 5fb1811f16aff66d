#!/usr/bin/env bash
# Issue 29's validation of lossaug advise on the transfer regime: one advice on frontier-transfer's recipe
# (experiments/protocols/frontier-transfer.toml: PreActResNet-18 width 8 from the committed 5-class pre-trained
# weights, 50 training images per class of dog, frog, horse, ship and truck, 30 epochs, batch 32, lr 0.02, M = 4,
# setting A), its arms at equal compute (proposed, gated, weighted-equal-time), its margin (0.5 points) and its
# measured cost ratios declared (docs/results/frontier/transfer/cost_ratio.json), seeds from 100 on (independent of
# the truth's 0-11), 30 minutes. The truth is that frontier's committed n = 12 summary. Resumable: the same command
# continues. Compare with the truth by
#   python experiments/advise_vs_truth.py
# Usage (from the repository root, one thread, nothing else running for the timings to mean anything):
#   OMP_NUM_THREADS=1 experiments/advise_transfer.sh
set -euo pipefail
echo "== lossaug advise, transfer regime" >&2
lossaug advise --dataset folder --data ../shared/data/cifar10-jpeg.tar.xz --cache-dir data/cache \
  --classes dog,frog,horse,ship,truck --train-size 250 \
  --init docs/results/transfer/pretrained-preact8-5class.pt --backbone-lr-scale 1.0 \
  --model preact_resnet18 --width 8 --epochs 30 --batch-size 32 --lr 0.02 --candidates 4 --eval-every 30 \
  --arms proposed,gated,weighted-equal-time --margin 0.5 \
  --cost-ratio 2.274 --cost-ratios gated=1.423,weighted=4.948 --seed 100 --device cpu --time "${TIME:-30m}" \
  --out docs/results/advise/transfer
