"""fast_resnet at a small scale on the CPU: test error and time of the baseline and the method (issue 13's smoke
figures; the suite checks that it learns, this script times it). Prints a table and writes JSON.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/fast_resnet_cpu.py --out docs/results/fast-resnet-cpu/bench.json

Both runs: the bundled mini CIFAR-10 (1,000 train / 200 test JPEG images, decoded before any timing), fast_resnet
at ``--width`` (8), 3 epochs at batch 64, lr 0.4 with half an epoch of warm-up, seed 0, setting A; the method
with M = 4. ``seconds`` is the loop's own training time (``RunResult.seconds``: no start-up, data loading or
evaluation). Run it alone: on a shared 2-core machine another busy process slows it several times.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from lossaug.data import load_dataset
from lossaug.run.config import TrainConfig
from lossaug.run.metadata import device_name, git_commit, git_dirty, write_json
from lossaug.run.train import train


def run(method: str, width: int, epochs: int, cache: Path) -> dict:
    config = TrainConfig(dataset="mini", cache_dir=str(cache), model="fast_resnet", width=width, method=method,
                         epochs=epochs, train_size=1000, batch_size=64, lr=0.4, warmup_epochs=0.5,
                         eval_every=epochs, device="cpu", seed=0)  # fmt: skip
    started = time.perf_counter()
    result = train(config)
    return {
        "method": method,
        "test_error": result.test_error,
        "train_error": result.train_error,
        "seconds": result.seconds,
        "epoch_seconds": [m["seconds"] for m in result.metrics],
        "wall_seconds": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, help="JSON file to write")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as cache:
        load_dataset("mini", cache_dir=Path(cache))  # decode once, untimed
        runs = [run(method, args.width, args.epochs, Path(cache)) for method in ("baseline", "proposed")]
    ratio = runs[1]["seconds"] / runs[0]["seconds"]
    print(f"fast_resnet width {args.width}, {args.epochs} epochs of 1,000 mini CIFAR-10 images, "
          f"{device_name(torch.device('cpu'))}, torch {torch.__version__}")  # fmt: skip
    print("| method | test error | train error | training s | wall s |\n|---|---|---|---|---|")
    for r in runs:
        print(f"| {r['method']} | {r['test_error']:.2%} | {r['train_error']:.2%} | {r['seconds']:.1f} | "
              f"{r['wall_seconds']:.1f} |")  # fmt: skip
    print(f"time ratio proposed / baseline: {ratio:.2f}x")
    if args.out:
        write_json({"benchmark": "fast_resnet_cpu", "width": args.width, "epochs": args.epochs, "train_size": 1000,
                    "batch_size": 64, "device": device_name(torch.device("cpu")), "torch_version": torch.__version__,
                    "git_commit": git_commit(), "git_dirty": git_dirty(), "runs": runs, "time_ratio": ratio},
                   args.out)  # fmt: skip
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
