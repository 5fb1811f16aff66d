"""GPU protocol of docs/REPRODUCTION.md: baseline vs proposed on the full JPEG CIFAR-10, PreActResNet-18, a short
schedule, as many seeds as fit in a time budget (default 8 minutes on one H100, startup included).

Seeds run as baseline/proposed pairs into one ``lossaug compare`` directory; before each new pair the script
checks that the slowest pair so far still fits the remaining budget. Also writes ``gpu_record.json`` with the card,
torch version, commit and per-epoch seconds of each arm (the epoch timing the training issue asks for).

    python experiments/gpu_protocol.py --data data/cifar10-jpeg.tar.xz --out docs/results/gpu-protocol
    python experiments/gpu_protocol.py --tiny --out /tmp/gpu-tiny      # CPU smoke test of the same code path
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lossaug.compare import CompareConfig, run_compare
from lossaug.progress import ConsoleReporter
from lossaug.train import TrainConfig, device_name, git_commit

# Full data, the published model; batch 512 at lr 0.2 (0.1 at 128 scaled by sqrt(4); linear scaling to 0.4 was
# not tried), one warm-up epoch, cosine decay. 15 epochs is an estimate of what lets 2+ seed pairs fit in 8 minutes
# on an H100; it has not been run on a GPU yet: the budget check below stops early if a pair is slower.
FULL = dict(dataset="folder", model="preact_resnet18", width=None, epochs=15, batch_size=512, lr=0.2,
            warmup_epochs=1.0, num_candidates=4, setting="A", eval_every=5, device="cuda")  # fmt: skip
TINY = dict(dataset="mini", model="cnn", width=4, epochs=1, batch_size=64, lr=0.05, train_size=256,
            num_candidates=2, setting="A", device="cpu")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/cifar10-jpeg.tar.xz", help="JPEG CIFAR-10 archive or folder")
    parser.add_argument("--cache-dir", default="data/cache")
    parser.add_argument("--out", default="docs/results/gpu-protocol")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for everything (default 480)")
    parser.add_argument("--max-seeds", type=int, default=8)
    parser.add_argument("--epochs", type=int, help="override the schedule's epochs")
    parser.add_argument("--tiny", action="store_true", help="CPU smoke test: bundled mini data, tiny model")
    args = parser.parse_args()

    started = time.monotonic()
    values = dict(TINY) if args.tiny else {**FULL, "data": args.data, "cache_dir": args.cache_dir}
    if args.epochs:
        values["epochs"] = args.epochs
    base = TrainConfig(**values)
    reporter = ConsoleReporter()
    out = Path(args.out)
    pair_seconds: list[float] = []
    seeds: list[int] = []
    for seed in range(args.max_seeds):
        remaining = args.budget - (time.monotonic() - started)
        needed = max(pair_seconds, default=0.0) * 1.1
        if seeds and remaining < needed:
            reporter.log(f"stopping after {len(seeds)} seeds: {remaining:.0f}s left, a pair takes ~{needed:.0f}s")
            break
        pair_started = time.monotonic()
        seeds.append(seed)
        config = CompareConfig(base=base, out=str(out), arms=("baseline", "proposed"), seeds=tuple(seeds))
        summary = run_compare(config, reporter=reporter)
        pair_seconds.append(time.monotonic() - pair_started)

    device = torch.device(base.device)
    record = {
        "device": device_name(device),
        "torch_version": torch.__version__,
        "git_commit": git_commit(),
        "budget_seconds": args.budget,
        "wall_seconds": time.monotonic() - started,
        "seeds_completed": seeds,
        "pair_wall_seconds": pair_seconds,
        "epoch_seconds": {
            arm: {seed: run["seconds"] / run["epochs"] for seed, run in row["per_seed"].items()}
            for arm, row in summary["settings"]["A"].items()
        },
        "summary": summary["settings"]["A"],
    }
    (out / "gpu_record.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"wrote {out / 'gpu_record.json'} and {out / 'summary.md'}")


if __name__ == "__main__":
    main()
