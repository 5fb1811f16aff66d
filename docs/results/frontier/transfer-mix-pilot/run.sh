#!/usr/bin/env bash
set -u
cd /work/main
. .venv/bin/activate
export OMP_NUM_THREADS=1
for pair in "mixup:flip,crop:4,mixup:0.2" "cutmix:flip,crop:4,cutmix:1.0"; do
  name=${pair%%:*}; spec=${pair#*:}
  echo "== $name $spec $(date -u +%H:%M:%S)"
  nice -n 10 lossaug train --dataset folder --data ../shared/data/cifar10-jpeg.tar.xz --cache-dir data/cache \
    --classes dog,frog,horse,ship,truck --train-size 250 --init docs/results/transfer/pretrained-preact8-5class.pt \
    --backbone-lr-scale 1.0 --model preact_resnet18 --width 8 --epochs 30 --batch-size 32 --lr 0.02 \
    --method baseline --augment "$spec" --device cpu --eval-every 30 --seed 0 --out /tmp/pilot/$name --overwrite
  echo "== done $name $(date -u +%H:%M:%S)"
done
