"""Why does the weighted mode fail on small data? A control, exploratory (not pre-registered).

The weighted mode trains on all M candidates of B/M distinct images per step, each candidate's loss weighted by
its share of the scores (``--method weighted``). Two things differ from the baseline: the weighting, and a step of
B/M distinct images seen M times (batch augmentation). This reruns each seed's ``weighted`` run of a finished
comparison with ``temperature = inf`` (uniform weights: batch augmentation alone), from the same trunk, into the arm
``weighted-uniform``, and prints the paired differences. If the uniform control fails as much, the weighting is not
what fails.

    PYTHONPATH=src OMP_NUM_THREADS=1 python experiments/weighted_control.py docs/results/frontier/transfer-C C \\
        [--seeds 0,2,4]

Run it where the comparison's trunk checkpoints still exist (its worktree); the new runs record that commit.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

from lossaug.compare.stats import paired_difference
from lossaug.errors import InputError
from lossaug.run.config import TrainConfig
from lossaug.run.runfiles import read_json
from lossaug.run.train import train

ARM = "weighted-uniform"


def control_config(weighted_run: Path, out: Path) -> TrainConfig:
    """The weighted run's resolved config with uniform weights, written to ``out``."""
    config = TrainConfig.from_dict(read_json(weighted_run / "config.json", {"config": (dict,)})["config"])
    return dataclasses.replace(config, temperature=math.inf, out=str(out))


def errors(arm_dir: Path) -> dict[int, float]:
    finals = arm_dir.glob("seed-*/final.json")
    return {int(f.parent.name.removeprefix("seed-")): 100 * json.loads(f.read_text())["test_error"] for f in finals}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("comparison", type=Path)
    parser.add_argument("setting")
    parser.add_argument("--seeds", type=lambda text: [int(s) for s in text.split(",")],
                        help="comma-separated seeds to run (default: every finished weighted seed)")  # fmt: skip
    args = parser.parse_args(argv)
    root = args.comparison / f"setting-{args.setting}"
    if not (root / "weighted").is_dir():
        print(f"weighted_control: error: {root / 'weighted'}: no weighted arm there", file=sys.stderr)
        return 2
    try:
        for seed in args.seeds or sorted(errors(root / "weighted")):
            out = root / ARM / f"seed-{seed}"
            if not (out / "final.json").exists():
                train(control_config(root / "weighted" / f"seed-{seed}", out), overwrite=True)
    except (InputError, FileNotFoundError) as error:
        print(f"weighted_control: error: {error}", file=sys.stderr)
        return 2
    base, weighted, uniform = (errors(root / arm) for arm in ("baseline", "weighted", ARM))
    common = sorted(base.keys() & weighted.keys() & uniform.keys())
    for label, a, b in (
        ("weighted - weighted-uniform", weighted, uniform),
        ("weighted-uniform - baseline", uniform, base),
    ):
        d = paired_difference([a[s] - b[s] for s in common])
        print(f"{label}: {d.mean:+.2f} +- {d.half_width:.2f} points (n = {d.n})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
