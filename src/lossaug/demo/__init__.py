"""``lossaug demo``: baseline against proposed on the bundled mini CIFAR-10, sized to a wall-clock budget.

**Plan.** Unless ``epochs`` is given, a short calibration times the training step of each arm and
``calibration.plan_epochs`` takes the most epochs (at least 3) that fit the budget; after the first epoch of
both arms, ``replan`` sets the final count from their measured time and both runs resume with it.

**Alternate.** Each arm is one ordinary run, opened and driven epoch by epoch through the run's public epoch
API (``epochs.open_run``) as ``train`` drives it, so its run directory is exactly what ``lossaug train``
writes for the same config (``lossaug train --resume --epochs N`` after the re-check). ``alternation`` takes
the arms' epochs in turn in one thread, so both arms see the same machine load.

**Report.** Errors, total training time and its ratio, and the ratio of median per-step times (each step timed
between the run's steps), which one slow stretch of the machine barely moves; ``summary.json`` and
``comparison.png`` in ``out``.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lossaug.data import load_mini_cifar10
from lossaug.demo.alternation import Alternation, DemoInterrupted, Rotation, train_alternating
from lossaug.demo.calibration import (
    CALIBRATION_REPEATS,
    CALIBRATION_WARMUP,
    EPOCH_OVERHEAD_SECONDS,
    MAX_EPOCHS,
    MIN_EPOCHS,
    RESERVE_SECONDS,
    Calibration,
    Plan,
    calibrate,
    choose_epochs,
    plan_epochs,
    replan,
)
from lossaug.demo.calibration import count_epochs as _count
from lossaug.errors import InputError
from lossaug.progress import Reporter
from lossaug.run.config import DEVICES, PRESETS, RunResult, TrainConfig
from lossaug.run.metadata import write_json
from lossaug.run.rundir import run_files

__all__ = [
    "ARMS",
    "BUDGET_SECONDS",
    "CALIBRATION_REPEATS",
    "CALIBRATION_WARMUP",
    "EPOCH_OVERHEAD_SECONDS",
    "MAX_EPOCHS",
    "MIN_EPOCHS",
    "NOTE",
    "RESERVE_SECONDS",
    "Alternation",
    "Calibration",
    "DemoConfig",
    "DemoInterrupted",
    "DemoResult",
    "Plan",
    "Rotation",
    "arm_configs",
    "calibrate",
    "choose_epochs",
    "format_table",
    "median_step_ratio",
    "note",
    "plan_epochs",
    "remaining_seconds",
    "replan",
    "run_demo",
    "summary",
    "train_alternating",
]

ARMS = ("baseline", "proposed")
# Wall-clock for the whole demo: with Python and torch start-up (a few seconds) it ends within 5 minutes; the plan
# keeps a margin inside it (demo.calibration).
BUDGET_SECONDS = 240.0

NOTE = """\
What this shows: both arms ran the same model, data, epochs and seed, alternating epoch by epoch on the same
machine, so the step ratio (median time per step) is the price of scoring {candidates} candidates per image on
this device; the time ratio (total training time) agrees with it when the machine was steady. What it cannot show:
whether selection helps. This is one seed of a small CNN on 5,000 images for {epochs}, far from the
published regime (PreActResNet-18, 50,000 images, 200 epochs); a single seed cannot tell an effect of a point or
two from seed-to-seed noise. Settle that with several seeds per arm."""


@dataclass(frozen=True)
class DemoConfig:
    """One demo. The arms are the ``demo`` preset (mini, cnn, batch 128, lr 0.2), setting A."""

    out: str = "runs/demo"  # out/baseline and out/proposed are run directories; summary.json, comparison.png
    epochs: int | None = None  # per arm; None: chosen by the calibration to fit ``budget``
    budget: float = BUDGET_SECONDS  # wall-clock seconds for the whole demo, calibration included
    width: int = PRESETS["demo"]["width"]  # cnn width
    num_candidates: int = 4  # M of the proposed arm
    seed: int = 0
    device: str = "auto"
    overwrite: bool = False  # replace runs already in out/baseline and out/proposed

    def __post_init__(self) -> None:
        if self.epochs is not None and self.epochs < 1:
            raise InputError(f"epochs must be >= 1, got {self.epochs}")
        if not (math.isfinite(self.budget) and self.budget > 0):
            raise InputError(f"budget must be a positive number of seconds, got {self.budget}")
        for name in ("width", "num_candidates"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.device not in DEVICES:
            raise InputError(f"unknown device {self.device!r}; choose from {list(DEVICES)}")


def arm_configs(config: DemoConfig, epochs: int) -> dict[str, TrainConfig]:
    """The two runs: identical but for the method; run directories ``out/<arm>``."""
    common = {
        **PRESETS["demo"],
        "width": config.width,
        "epochs": epochs,
        "setting": "A",
        "seed": config.seed,
        "device": config.device,
        "num_candidates": config.num_candidates,
    }
    return {arm: TrainConfig(**common, method=arm, out=str(Path(config.out) / arm)) for arm in ARMS}


# ---------------------------------------------------------------- alternation
def median_step_ratio(step_seconds: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """Each arm's median step time over the first arm's (the baseline's)."""
    if any(len(times) == 0 for times in step_seconds.values()):
        raise ValueError(f"every arm needs timed steps, got {[len(t) for t in step_seconds.values()]}")
    medians = {name: statistics.median(times) for name, times in step_seconds.items()}
    first = next(iter(medians.values()))
    return {name: median / first for name, median in medians.items()}


def remaining_seconds(epoch_seconds: Mapping[str, Sequence[float]], epochs: int) -> float:
    """Estimated wall-clock left: each arm's remaining epochs at the mean of its finished ones (an arm with
    none finished counts at the others' mean)."""
    means = {name: statistics.fmean(s) for name, s in epoch_seconds.items() if s}
    if not means:
        return math.nan
    fallback = statistics.fmean(means.values())
    return sum((epochs - len(s)) * means.get(name, fallback) for name, s in epoch_seconds.items())


def _minutes(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    return f"{seconds // 60}:{seconds % 60:02d}"


class _Eta:
    """After each round (every arm one epoch further), one line: epochs done, time elapsed, time left."""

    def __init__(self, epochs: int, log: Callable[[str], None], started: float, clock: Callable[[], float]):
        self.epochs, self.log, self.started, self.clock = epochs, log, started, clock
        self.seconds: dict[str, list[float]] = {arm: [] for arm in ARMS}

    def __call__(self, arm: str, seconds: float) -> None:
        self.seconds[arm].append(seconds)
        done = {len(s) for s in self.seconds.values()}
        if len(done) == 1 and 0 < (epoch := done.pop()) < self.epochs:
            left = remaining_seconds(self.seconds, self.epochs)
            self.log(
                f"demo: epoch {epoch}/{self.epochs} of both arms done, {_minutes(self.clock() - self.started)} "
                f"elapsed, about {_minutes(left)} left"
            )


# ---------------------------------------------------------------- the demo


@dataclass(frozen=True)
class DemoResult:
    """What ``run_demo`` returns; ``summary`` and ``format_table`` read it."""

    config: DemoConfig
    plan: Plan
    runs: dict[str, RunResult]
    step_seconds: dict[str, tuple[float, ...]]
    wall_seconds: float  # the whole demo, calibration and plots included
    summary_path: Path
    plot_path: Path | None  # None: matplotlib missing, no plot written


def _refuse_existing_runs(config: DemoConfig) -> None:
    """Fail before calibrating, rather than after, when a run directory already holds a run."""
    if config.overwrite:
        return
    for arm in ARMS:
        found = run_files(Path(config.out) / arm)
        if found:
            raise InputError(
                f"{Path(config.out) / arm} already holds a run ({', '.join(p.name for p in found)}); "
                "pass --overwrite to replace it, or another --out"
            )


def run_demo(
    config: DemoConfig, reporter: Reporter | None = None, clock: Callable[[], float] = time.perf_counter
) -> DemoResult:
    """Plan, train both arms in alternation (re-planned after their first epoch), and write ``summary.json`` and
    ``comparison.png`` into ``config.out``; ``reporter`` gets the plan, the progress of both arms and an ETA after
    each epoch."""
    started = clock()
    log = reporter.log if reporter is not None else (lambda line: None)
    _refuse_existing_runs(config)
    data = load_mini_cifar10()  # decoded once per process (~0.5 s); the arms' loads are then copies (a few ms)
    sizes = (len(data.train.labels), len(data.test.labels))
    if config.epochs is None:
        log(
            f"demo: calibrating for a {config.budget:.0f} s budget (lossaug bench: each arm's step, "
            f"{CALIBRATION_WARMUP} warm-up + {CALIBRATION_REPEATS} interleaved repeats)"
        )
    calibration = calibrate(config) if config.epochs is None else None
    plan = plan_epochs(config, calibration, clock() - started, sizes)
    log(f"demo: {plan.reason}")
    if plan.round_seconds is None:
        eta = _Eta(plan.epochs, log, started, clock)
        alternation = train_alternating(
            arm_configs(config, plan.epochs), reporter, overwrite=config.overwrite, on_epoch=eta, clock=clock
        )
    else:
        log(f"demo: alternating the arms epoch by epoch, about {_minutes(plan.epochs * plan.round_seconds)} to go")
        plan, alternation = _train_replanned(config, plan, reporter, started, clock)
    from lossaug.plots import plot_curves

    out = Path(config.out)
    plot = plot_curves(
        {arm: r.metrics for arm, r in alternation.results.items()}, out / "comparison.png", title="lossaug demo"
    )
    result = DemoResult(
        config, plan, alternation.results, alternation.step_seconds, clock() - started, out / "summary.json", plot
    )
    write_json(summary(result), result.summary_path)
    return result


def _train_replanned(
    config: DemoConfig, plan: Plan, reporter: Reporter | None, started: float, clock: Callable[[], float]
) -> tuple[Plan, Alternation]:
    """The first epoch of both arms as ``plan`` has it, the re-check, then both runs resumed with the re-checked
    epochs (their LR schedule stretched or shortened from epoch 2 on, as ``lossaug train --resume --epochs N``)."""
    log = reporter.log if reporter is not None else (lambda line: None)
    configs = arm_configs(config, plan.epochs)
    first = train_alternating(configs, reporter, overwrite=config.overwrite, rounds=1, clock=clock)
    setup = sum(first.setup_seconds.values())  # what resuming both will cost, about
    plan = replan(config, plan, first.epoch_seconds, setup, clock() - started)
    log(f"demo: {plan.reason}")
    eta = _Eta(plan.epochs, log, started, clock)
    eta.seconds = {arm: list(seconds) for arm, seconds in first.epoch_seconds.items()}
    with warnings.catch_warnings():  # the re-check said so just above: not a surprise worth a warning
        warnings.filterwarnings("ignore", message=r"resuming .* with changed epochs: \d+ -> \d+$")
        rest = train_alternating(arm_configs(config, plan.epochs), reporter, resume=True, on_epoch=eta, clock=clock)
    joined = Alternation(
        rest.results,
        {arm: first.step_seconds[arm] + rest.step_seconds[arm] for arm in ARMS},
        first.taken + rest.taken,
        {arm: first.epoch_seconds[arm] + rest.epoch_seconds[arm] for arm in ARMS},
        {arm: first.setup_seconds[arm] + rest.setup_seconds[arm] for arm in ARMS},
    )
    return plan, joined


def summary(result: DemoResult) -> dict[str, Any]:
    """summary.json: per arm (as before, plus step times), then the demo's ratios, plan and wall-clock."""
    runs, steps = result.runs, result.step_seconds
    base, step_ratio = runs[ARMS[0]], median_step_ratio(steps)
    out: dict[str, Any] = {
        arm: {
            "test_error": r.test_error,
            "train_error": r.train_error,
            "seconds": r.seconds,
            "time_ratio": r.seconds / base.seconds,
            "median_step_seconds": statistics.median(steps[arm]),
            "step_ratio": step_ratio[arm],
            "steps": len(steps[arm]),
            "run_dir": str(r.out_dir),
        }
        for arm, r in runs.items()
    }
    plan, calibration = result.plan, result.plan.calibration
    calibrated = (
        None if calibration is None else {**dataclasses.asdict(calibration), "round_seconds": plan.round_seconds}
    )
    out.update(
        time_ratio=runs[ARMS[1]].seconds / base.seconds,
        median_step_ratio=step_ratio[ARMS[1]],
        epochs=plan.epochs,
        epochs_from="given" if calibration is None else "calibration",
        plan=plan.reason,
        calibration=calibrated,
        budget_seconds=result.config.budget,
        wall_seconds=result.wall_seconds,
        device=base.device,
        alternation="epoch by epoch, baseline first",
    )
    return out


def format_table(result: DemoResult) -> str:
    """The printed result: a heading, one row per arm, the wall-clock line."""
    runs, steps, config = result.runs, result.step_seconds, result.config
    base, step_ratio = runs[ARMS[0]], median_step_ratio(steps)
    rows = [("method", "test error", "train error", "train time", "time ratio", "median step", "step ratio")]
    for arm, r in runs.items():
        rows.append(
            (
                arm,
                f"{r.test_error:.2%}",
                f"{r.train_error:.2%}",
                f"{r.seconds:.1f}s",
                f"{r.seconds / base.seconds:.2f}x",
                f"{1e3 * statistics.median(steps[arm]):.0f} ms",
                f"{step_ratio[arm]:.2f}x",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    chosen = "as given" if result.plan.calibration is None else f"calibrated to the {config.budget:.0f} s budget"
    lines = [
        f"lossaug demo: mini CIFAR-10, cnn width {config.width}, {_count(result.plan.epochs)} per arm ({chosen}), "
        f"seed {config.seed}, {base.device}"
    ]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    budget = f" (budget {_minutes(config.budget)})" if result.plan.calibration is not None else ""
    lines.append(f"whole demo {_minutes(result.wall_seconds)} wall-clock{budget}; arms alternated epoch by epoch")
    return "\n".join(lines)


def note(result: DemoResult) -> str:
    """What the demo shows and what it cannot."""
    return NOTE.format(candidates=result.config.num_candidates, epochs=_count(result.plan.epochs))
