"""GPU protocol of issue 13 (experiments/protocols/gpu-fast-A.toml): baseline, proposed and baseline-equal-time
(and maxup with ``--maxup``) on the full JPEG CIFAR-10 with ``fast_resnet`` and its recipe, branched at 50% with
common random numbers, as many paired seeds as fit in a wall-clock budget (default 480 s from the start of
``main``: decoding the data and measuring the cost ratios are charged to it; ``data_seconds`` and
``startup_seconds`` in the record say how much). Any comparison ``lossaug compare`` plans runs the same way:
``--protocol experiments/protocols/gpu-frontier-A.toml`` is issue 20's frontier (the baseline at budgets x1-x3,
gated and weighted arms, every step kind's R benched once at the start).

    PYTHONPATH=src python3 experiments/gpu_protocol.py [--budget 480] [--maxup]      # the protocol file, on CUDA
    PYTHONPATH=src python3 experiments/gpu_protocol.py --tiny --out runs/gpu-tiny     # CPU smoke test, seconds

Seeds run one at a time in the protocol's order: the trunk (the baseline to ``branch_at``), then every arm from
it, each trained here with a budget hook. The budget is checked before every run (this run and the rest of the
seed, at the times the same runs took in the previous seed) and at the start of every epoch (the run's remaining
epochs at its last epoch's pace, plus the rest of the seed); a run it stops raises, keeps its last epoch-end
checkpoint (the same command continues it) and is not counted. After every finished seed ``lossaug compare`` reads
the finished runs back and rewrites ``summary.json``, ``summary.md`` (endpoints and verdicts) and ``forest.png``,
and ``gpu_record.json`` is rewritten with the card, torch version, commit, budget and times, so an outer kill loses
at most the seed in progress. The checkpoints of a finished seed are then deleted (``--keep-checkpoints`` keeps
them): an unfinished run keeps its own, so the same command continues it. The summary table is printed at the end.
Exit status: 0 when a seed finished, 3 when none did within the budget, 143 or 130 when stopped by a signal, 2 on
bad usage (no CUDA without ``--tiny`` included).

Options override single values of the protocol file; the record lists them under ``overrides``. ``--tiny``
replaces its [train] table with ``TINY`` (bundled mini data, 128 images, fast_resnet width 4, 2 epochs, batch 32,
R declared as 2) so the test suite runs the same code path on the CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lossaug.cli.options import UsageError, load_protocol_file
from lossaug.compare import (
    ARMS,
    CompareConfig,
    check_arm_epochs,
    config_from_protocol,
    plan,
    resolve_costs,
    run_compare,
    summary_markdown,
)
from lossaug.compare.costs import ratio_values
from lossaug.data import load_dataset
from lossaug.errors import InputError
from lossaug.progress import ConsoleReporter, Reporter
from lossaug.run.checkpoint import has_checkpoint
from lossaug.run.config import TrainConfig
from lossaug.run.interrupts import TrainingInterrupted
from lossaug.run.metadata import device_name, git_commit, git_dirty, write_json
from lossaug.run.pipeline import resolve_device
from lossaug.run.train import train
from lossaug.selection import Selection

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = ROOT / "experiments" / "protocols" / "gpu-fast-A.toml"
SETTING = "A"
RECORD = "gpu_record.json"
# The CPU smoke test: the same code path in seconds. 128 mini images at batch 32 are 4 steps per epoch; 2 epochs
# branched at 0.5 give a one-epoch trunk. Label smoothing and warm-up as in the recipe, so their code runs too.
TINY = dict(dataset="mini", data=None, train_size=128, model="fast_resnet", width=4, epochs=2, batch_size=32,
            lr=0.2, label_smoothing=0.2, warmup_epochs=0.5, num_candidates=4, eval_every=2, device="cpu")  # fmt: skip
# declared: a bench on a busy 2-core machine would cost more than the runs (gated and weighted: a frontier protocol's)
TINY_COST_RATIO = {"proposed": 2.0, "gated": 1.25, "weighted": 1.0}
TINY_OUT = "runs/gpu-protocol-tiny"
NO_SEED_EXIT = 3  # no seed finished within the budget: a budget too short, not a failure (gpu_session.sh: a SKIP)


# ---------------------------------------------------------------- the budget


class OutOfBudget(Exception):
    """What is left of the budget cannot cover what is left of the seed in progress."""


@dataclass
class Budget:
    """``seconds`` of wall-clock from construction, read from ``clock`` (a fake one in tests)."""

    seconds: float
    clock: Callable[[], float] = time.monotonic
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def elapsed(self) -> float:
        return self.clock() - self.started

    def left(self) -> float:
        return self.seconds - self.elapsed()

    def require(self, needed: float, what: str) -> None:
        """Raise ``OutOfBudget`` unless ``needed`` seconds (an estimate, >= 0) are left and the time is not up."""
        left = self.left()
        if left <= 0:
            raise OutOfBudget(f"{what}: the {self.seconds:g} s budget is spent")
        if needed > left:
            raise OutOfBudget(f"{what}: needs ~{needed:.1f} s, {left:.1f} s of {self.seconds:g} s left")


@dataclass
class RunTimes:
    """Wall-clock seconds of each run of a seed (``"trunk"`` or an arm), as the latest seed took them: the
    estimate of the same run in the next seed. A run not yet timed is estimated at 0 s (the first seed)."""

    seconds: dict[str, float] = field(default_factory=dict)

    def estimate(self, names: Sequence[str]) -> float:
        return sum(self.seconds.get(name, 0.0) for name in names)


class EpochGuard:
    """``train``'s on_step hook for one run: at every step, the time must not be up; after the first step of
    every epoch (its checkpoint is the previous epoch's end, so stopping there loses one step), the run's
    remaining epochs at the pace of the epoch just ended plus ``later`` seconds (the seed's runs after this one)
    must fit the budget."""

    def __init__(self, budget: Budget, steps_per_epoch: int, last_step: int, later: float, what: str):
        self.budget, self.steps_per_epoch, self.last_step = budget, steps_per_epoch, last_step
        self.later, self.what = later, what
        self.epoch_started: float | None = None

    def __call__(self, global_step: int, selection: Selection) -> None:
        if (global_step - 1) % self.steps_per_epoch:
            self.budget.require(0.0, f"{self.what}, step {global_step}")
            return
        now = self.budget.clock()
        pace, self.epoch_started = (None if self.epoch_started is None else now - self.epoch_started), now
        epochs_left = (self.last_step - global_step + 1) / self.steps_per_epoch
        needed = self.later + (epochs_left * pace if pace is not None else 0.0)
        self.budget.require(needed, f"{self.what}, epoch {(global_step - 1) // self.steps_per_epoch + 1}")


# ---------------------------------------------------------------- one seed


@dataclass(frozen=True)
class PlannedRun:
    name: str  # "trunk" or the arm
    config: TrainConfig
    done_file: str  # what a finished run leaves in its directory


def seed_runs(config: CompareConfig, seed: int, ratios: Mapping[str, float]) -> list[PlannedRun]:
    """The trunk (with ``branch_at`` > 0) and every arm of ``seed`` (the budgets' baseline arms included), from
    ``lossaug compare``'s own plan, so that ``run_compare`` afterwards finds them finished and only reads them
    back. ``ratios``: the resolved cost ratio of each step kind."""
    runs = []
    for spec in plan(dataclasses.replace(config, seeds=(seed,)), {SETTING: ratios}):
        assert spec.config is not None, f"{spec.out}: its epochs wait on a cost ratio not in {dict(ratios)}"
        runs.append(PlannedRun(spec.arm or "trunk", spec.config, spec.done_file))
    return runs


def last_step(run: TrainConfig, steps_per_epoch: int) -> int:
    """The global step the run ends at: the trunk's stop step, else its epochs' steps."""
    total = run.epochs * steps_per_epoch
    return math.ceil(run.stop_at * total) if run.stop_at is not None else total  # as train computes it


def train_run(run: TrainConfig, on_step: Callable[[int, Selection], None], reporter: Reporter | None) -> None:
    """Train ``run``, continuing its checkpoint if an earlier call was stopped."""
    resume = has_checkpoint(Path(run.out))
    train(run, reporter=reporter, on_step=on_step, resume=resume, overwrite=not resume)


def run_seed(
    runs: Sequence[PlannedRun],
    budget: Budget,
    times: RunTimes,
    images_per_epoch: int,
    *,
    train_one: Callable[[TrainConfig, Callable, Reporter | None], None] = train_run,
    reporter: Reporter | None = None,
) -> dict[str, float]:
    """Train the runs of one seed not finished yet; return their wall-clock seconds (and record them in
    ``times``). Raises ``OutOfBudget`` before a run, or within one, that the budget cannot see through to the end
    of the seed. ``images_per_epoch``: the training images; a run's steps per epoch follow from its own images per
    step (the weighted arms' steps take B/M images, so they take M times the steps)."""
    seconds: dict[str, float] = {}
    for index, planned in enumerate(runs):
        if (Path(planned.config.out) / planned.done_file).exists():
            continue
        later = times.estimate([r.name for r in runs[index + 1 :]])
        what = f"seed {planned.config.seed}, {planned.name}"
        budget.require(times.estimate([planned.name]) + later, what)
        steps = images_per_epoch // planned.config.images_per_step()
        guard = EpochGuard(budget, steps, last_step(planned.config, steps), later, what)
        started = budget.clock()
        train_one(planned.config, guard, reporter)
        seconds[planned.name] = times.seconds[planned.name] = budget.clock() - started
    return seconds


# ---------------------------------------------------------------- the protocol


def protocol_config(args: argparse.Namespace) -> tuple[CompareConfig, dict[str, Any]]:
    """The protocol file's comparison with the options given applied; also the overrides, for the record."""
    table, base = load_protocol_file(Path(args.protocol))
    table = dict(table)
    overrides: dict[str, Any] = {}
    if args.tiny:
        overrides["tiny"] = TINY
        base = dataclasses.replace(base, **TINY)
        table["out"] = TINY_OUT
        table["cost_ratio"] = TINY_COST_RATIO
    for key, value in (("out", args.out), ("branch_at", args.branch_at), ("cost_ratio", args.cost_ratio),
                       ("margin_points", args.margin)):  # fmt: skip
        if value is not None:
            overrides[key] = value
            table[key] = {**TINY_COST_RATIO, "proposed": value} if key == "cost_ratio" and args.tiny else value
    arms = list(table.get("arms", ARMS))
    if args.maxup and "maxup" not in arms:
        table["arms"] = overrides["arms"] = [*arms, "maxup"]
    changes = {"data": args.data, "cache_dir": args.cache_dir, "epochs": args.epochs}
    changes = {k: v for k, v in changes.items() if v is not None}
    overrides.update(changes)
    config = config_from_protocol(table, dataclasses.replace(base, **changes))
    if args.max_seeds is not None:
        if args.max_seeds < 1:
            raise InputError(f"--max-seeds must be >= 1, got {args.max_seeds}")
        config = dataclasses.replace(config, seeds=config.seeds[: args.max_seeds])
    if config.settings != (SETTING,):
        raise InputError(f"this script runs setting {SETTING} only; the protocol has {list(config.settings)}")
    return config, overrides


def training_images(base: TrainConfig, log: Callable[[str], None]) -> int:
    """Load (and, the first time, decode and cache) the data once, before any run is timed; the training images."""
    dataset = load_dataset(base.dataset, base.data, cache_dir=Path(base.cache_dir) if base.cache_dir else None,
                           image_size=base.image_size, log=log, verify=base.verify)  # fmt: skip
    return base.train_size or len(dataset.train.labels)


@dataclass
class Record:
    """``gpu_record.json``: where and how the protocol ran, and how far it got."""

    path: Path
    values: dict[str, Any]

    def write(self, **changes: Any) -> None:
        self.values.update(changes)
        write_json(self.values, self.path)


def epoch_seconds(summary: dict) -> dict[str, dict[int, float]]:
    """Per arm and seed, the training seconds per epoch the summary charges (median epoch x epochs / epochs)."""
    rows = summary["settings"][SETTING]
    return {arm: {s: r["seconds"] / r["epochs"] for s, r in row["per_seed"].items()} for arm, row in rows.items()}


def drop_checkpoints(runs: Sequence[PlannedRun]) -> None:
    """Delete the checkpoints of a finished seed's runs (the summary reads final.json and config.json only; on the
    full data each is tens of MB)."""
    for run in runs:
        for file in Path(run.config.out).glob("checkpoint*.pt*"):
            file.unlink(missing_ok=True)


def run_protocol(config: CompareConfig, budget: Budget, record: Record, reporter: Reporter,
                 keep_checkpoints: bool = False) -> dict | None:  # fmt: skip
    """Seeds in order until the budget is spent; the summary of the finished ones (None if none finished)."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    images = training_images(config.base, reporter.log)
    data_seconds = budget.elapsed()
    costs = resolve_costs(config, reporter)
    ratios = ratio_values(costs).get(SETTING, {})
    check_arm_epochs(config, ratios)  # a measured R too small for an arm's epochs: before any training
    kept = {kind: {k: v for k, v in cost.items() if k != "bench"} for kind, cost in costs.get(SETTING, {}).items()}
    record.write(cost_ratio=kept.get("proposed"), cost_ratios=kept or None, training_images=images,
                 steps_per_epoch=images // config.base.batch_size, data_seconds=data_seconds,
                 startup_seconds=budget.elapsed())  # fmt: skip
    times, finished, wall, summary = RunTimes(), [], {}, None
    for seed in config.seeds:
        runs = seed_runs(config, seed, ratios)
        try:
            wall[seed] = run_seed(runs, budget, times, images, reporter=reporter)
        except OutOfBudget as stop:
            reporter.log(f"== stopping: {stop}; seed {seed} is not counted")
            record.write(stopped=str(stop), unfinished_seed=seed)
            break
        finished.append(seed)
        # Every run of these seeds is finished: run_compare only reads them back and writes the summary.
        summary = run_compare(dataclasses.replace(config, seeds=tuple(finished)))
        if not keep_checkpoints:
            drop_checkpoints(runs)
        record.write(seeds_completed=finished, elapsed_seconds=budget.elapsed(), run_wall_seconds=wall,
                     epoch_seconds=epoch_seconds(summary))  # fmt: skip
        reporter.log(f"== seed {seed} done: {len(finished)} seeds in {budget.elapsed():.0f} s of {budget.seconds:.0f}")
    record.write(elapsed_seconds=budget.elapsed())
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", default=str(PROTOCOL), help="protocol file (default: %(default)s)")
    parser.add_argument("--budget", type=float, default=480.0, help="wall-clock seconds for everything (480)")
    parser.add_argument("--data", help="JPEG CIFAR-10 archive or folder (default: the protocol's)")
    parser.add_argument("--cache-dir", help="decoded-data cache (default: the protocol's, data/cache)")
    parser.add_argument("--out", help="comparison directory (default: the protocol's; with --tiny " + TINY_OUT + ")")
    parser.add_argument("--branch-at", type=float, help="fraction of the baseline's steps every arm shares (0.5)")
    parser.add_argument("--cost-ratio", type=float, help="declare R instead of measuring it with lossaug bench")
    parser.add_argument("--maxup", action="store_true", help="also run the maxup arm (secondary endpoint)")
    parser.add_argument("--margin", type=float, help="δ of the verdicts in percentage points (0.5)")
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs")
    parser.add_argument("--max-seeds", type=int, help="run at most the first N of the protocol's seeds")
    parser.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="keep the checkpoints of finished seeds (default: deleted once summarised)",
    )
    parser.add_argument("--tiny", action="store_true", help="CPU smoke test: mini data, fast_resnet width 4")
    args = parser.parse_args(argv)

    budget = Budget(args.budget)  # first, so that the budget covers the start-up too
    reporter = ConsoleReporter()
    try:
        config, overrides = protocol_config(args)
        if config.base.device == "cuda" and not torch.cuda.is_available():
            raise InputError("the protocol trains on CUDA and torch.cuda.is_available() is False; --tiny runs the "
                             "CPU smoke test")  # fmt: skip
        device = resolve_device(config.base.device)
    except (InputError, UsageError, FileNotFoundError) as error:
        print(f"gpu_protocol: {error}", file=sys.stderr)
        return 2
    record = Record(Path(config.out) / RECORD, {
        "protocol": str(args.protocol), "overrides": overrides, "device": device_name(device),
        "torch_version": torch.__version__, "cuda_version": torch.version.cuda, "git_commit": git_commit(),
        "git_dirty": git_dirty(), "budget_seconds": args.budget, "seeds_planned": list(config.seeds),
        "seeds_completed": [], "stopped": None, "unfinished_seed": None,
    })  # fmt: skip
    Path(config.out).mkdir(parents=True, exist_ok=True)
    (Path(config.out) / "protocol.toml").write_text(Path(args.protocol).read_text())  # what the results ran
    record.write()
    try:
        summary = run_protocol(config, budget, record, reporter, keep_checkpoints=args.keep_checkpoints)
    except TrainingInterrupted as stop:  # SIGTERM/SIGINT: the finished seeds are already recorded
        record.write(stopped=str(stop), elapsed_seconds=budget.elapsed())
        print(f"gpu_protocol: {stop}; finished seeds are in {config.out}", file=sys.stderr)
        return stop.exit_code
    if summary is None:
        print(f"gpu_protocol: no seed finished within the {args.budget:g} s budget; see {record.path}",
              file=sys.stderr)  # fmt: skip
        return NO_SEED_EXIT
    print(summary_markdown(summary))
    plots = "forest.png, frontier.png" if config.budgets else "forest.png"
    print(f"{len(record.values['seeds_completed'])} seeds in {budget.elapsed():.0f} s; wrote {config.out}/summary.md, "
          f"summary.json, {plots} and {RECORD}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
