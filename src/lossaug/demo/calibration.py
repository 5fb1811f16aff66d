"""How many epochs ``lossaug demo`` runs: planned from a calibration, then re-planned after the first epoch.

**Calibration.** ``lossaug.bench`` times each arm's training step (M = 1 and M = ``num_candidates``), interleaved,
and keeps the median of ``CALIBRATION_REPEATS`` steps per arm after ``CALIBRATION_WARMUP`` untimed ones.
``plan_epochs`` takes the most epochs whose rounds (one epoch of every arm, evaluation included) fit in what is
left of the budget after the calibration, the set-ups, the plots and a margin; fewer than ``MIN_EPOCHS`` is refused
in one line saying what would fit.

**Re-check.** ``replan`` takes the first round's measured epoch times (steps, evaluation and checkpoint as they
really ran) and sets the final count, so that a calibration off by a factor is corrected with budget left.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lossaug.bench import BenchConfig, run_bench
from lossaug.errors import InputError
from lossaug.run.config import PRESETS

if TYPE_CHECKING:
    from lossaug.demo import DemoConfig

__all__ = ["Calibration", "Plan", "calibrate", "choose_epochs", "count_epochs", "plan_epochs", "replan"]

MIN_EPOCHS = 3  # fewer draws dots, not curves, in comparison.png
MAX_EPOCHS = 25  # the demo's former fixed length; a longer run adds nothing a one-seed demo can show
# A loaded 2-core machine timed steps at 1,344 / 1,725 ms from 4 repeats after 1 warm-up, whose real medians over
# an epoch were 281 / 941 ms: a median of 7 after 2 untimed repeats survives 3 slow ones per arm.
CALIBRATION_REPEATS = 7
CALIBRATION_WARMUP = 2
# Estimates, not measured by the calibration: both arms' set-up (data copy, model, config.json; a resume also
# loads the checkpoint) ...
SETUP_SECONDS = 5.0
# ... their final.json and curves.png and the comparison plot (matplotlib's import alone takes a second or two on
# a slow machine) ...
FINISH_SECONDS = 5.0
# ... so the first plan keeps both set-ups (at the start and on resuming after the re-check) and the finish;
RESERVE_SECONDS = 2 * SETUP_SECONDS + FINISH_SECONDS
# ... and per arm and epoch: the checkpoint (fsynced twice), the metrics line and the progress lines.
EPOCH_OVERHEAD_SECONDS = 0.3
# The fraction of the training time left unplanned: the later epochs may run a tenth slower than the measured
# ones (the load of a shared machine changes) and the demo still ends within its budget.
MARGIN = 0.1


def count_epochs(epochs: int) -> str:
    return f"{epochs} epoch{'s' if epochs != 1 else ''}"


@dataclass(frozen=True)
class Calibration:
    """Medians measured on this machine, in seconds."""

    step_seconds: dict[str, float]  # arm -> one training step of a batch
    forward_seconds: float  # one no-grad forward over a batch (evaluation is made of these)
    seconds: float  # what the calibration itself took


def calibrate(config: DemoConfig) -> Calibration:
    """Time each arm's training step with ``lossaug.bench`` (random images; the step ``train`` runs), and the
    scoring forward (what evaluation is made of); nothing else the bench can time."""
    preset, m = PRESETS["demo"], config.num_candidates
    bench = run_bench(
        BenchConfig(
            model=preset["model"],
            width=config.width,
            batch_size=preset["batch_size"],
            candidate_counts=tuple(sorted({1, m})),
            setting="A",
            device=config.device,
            repeats=CALIBRATION_REPEATS,
            warmup=CALIBRATION_WARMUP,
            seed=config.seed,
            score_fractions=(),
            weighted=False,
        )
    )
    baseline, proposed = bench.timing(1), bench.timing(m)
    assert baseline is not None and proposed is not None  # both M were benched (candidate_counts above)
    steps = {"baseline": baseline.step.median / 1e3, "proposed": proposed.step.median / 1e3}
    return Calibration(steps, bench.score_forward.median / 1e3, bench.seconds)


def choose_epochs(round_seconds: float, seconds_left: float, floor: int = MIN_EPOCHS, ceiling: int = MAX_EPOCHS) -> int:
    """The most epochs per arm whose rounds (one epoch of every arm, ``round_seconds``) fit in ``seconds_left``,
    but at least ``floor`` and at most ``ceiling``."""
    if not round_seconds > 0 or not 1 <= floor <= ceiling:
        raise ValueError(f"need round_seconds > 0 and 1 <= floor <= ceiling, got {round_seconds}, {floor}, {ceiling}")
    return max(floor, min(ceiling, math.floor(max(seconds_left, 0.0) / round_seconds)))


@dataclass(frozen=True)
class Plan:
    """How long each arm trains, and why."""

    epochs: int
    reason: str  # one line for the log
    calibration: Calibration | None = None  # None when the epochs were given
    round_seconds: float | None = None  # wall-clock of one epoch of both arms: estimated, or measured (re-check)
    first: Plan | None = None  # the calibration's plan, when this one is its re-check after the first epoch


def plan_epochs(config: DemoConfig, calibration: Calibration | None, spent: float, sizes: tuple[int, int]) -> Plan:
    """The epochs: ``config.epochs`` if given, else the most that fit the budget after ``spent`` seconds.
    ``sizes``: (training images, test images). A round costs every arm's steps, one evaluation each
    (``forward_seconds`` per batch of test images) and ``EPOCH_OVERHEAD_SECONDS`` each; ``RESERVE_SECONDS`` and
    ``MARGIN`` of the rest are kept. Raises ``InputError`` when fewer than ``MIN_EPOCHS`` fit."""
    if config.epochs is not None:
        return Plan(config.epochs, f"{count_epochs(config.epochs)} per arm, as given (no calibration)")
    assert calibration is not None
    batch = PRESETS["demo"]["batch_size"]
    steps, evaluation = sizes[0] // batch, math.ceil(sizes[1] / batch) * calibration.forward_seconds
    per_round = sum(steps * s + evaluation + EPOCH_OVERHEAD_SECONDS for s in calibration.step_seconds.values())
    left = config.budget - spent - RESERVE_SECONDS
    fit = _fit(per_round, left)
    ms = {arm: f"{1e3 * s:.0f} ms" for arm, s in calibration.step_seconds.items()}
    measured = (
        f"calibration (median of {CALIBRATION_REPEATS} steps per arm after {CALIBRATION_WARMUP} warm-up): baseline "
        f"{ms['baseline']}/step, proposed {ms['proposed']}/step (M={config.num_candidates}), evaluation "
        f"{evaluation:.1f} s; {steps} steps/epoch -> {per_round:.1f} s per epoch of both arms"
    )
    if fit < MIN_EPOCHS:
        raise InputError(f"demo: {measured}; {_too_short(config.budget, per_round, left, fit)}")
    epochs = min(fit, MAX_EPOCHS)
    reason = (
        f"{measured}; {left:.0f} s of the {config.budget:.0f} s budget left after set-ups and plots, less a "
        f"{MARGIN:.0%} margin -> {count_epochs(epochs)} per arm (between {MIN_EPOCHS} and {MAX_EPOCHS}), "
        "re-checked after the first"
    )
    return Plan(epochs, reason, calibration, per_round)


def replan(
    config: DemoConfig, plan: Plan, epoch_seconds: Mapping[str, Sequence[float]], setup_seconds: float, spent: float
) -> Plan:
    """The epochs from the first round's measured ``epoch_seconds`` (arm -> its finished epochs' wall-clock,
    evaluation and checkpoint included), once ``spent`` seconds of the budget are gone and a resume costing
    ``setup_seconds`` (the first set-up's) is ahead. Never fewer than ``MIN_EPOCHS``; when those do not fit, the
    reason says by how much they pass the budget."""
    if any(len(s) != 1 for s in epoch_seconds.values()) or not setup_seconds >= 0:
        raise ValueError(f"need one finished epoch per arm, got {[len(s) for s in epoch_seconds.values()]}")
    per_round = sum(s[0] for s in epoch_seconds.values())
    left = config.budget - spent - setup_seconds - FINISH_SECONDS
    fit = 1 + _fit(per_round, left)
    epochs = min(max(fit, MIN_EPOCHS), MAX_EPOCHS)
    seconds = ", ".join(f"{arm} {s[0]:.1f} s" for arm, s in epoch_seconds.items())
    reason = (
        f"re-check after epoch 1: {seconds} -> {per_round:.1f} s per epoch of both arms (calibrated "
        f"{plan.round_seconds or math.nan:.1f} s); {left:.0f} s of the budget left -> {count_epochs(epochs)} per arm "
        f"(planned {plan.epochs})"
    )
    if fit < MIN_EPOCHS:
        over = (MIN_EPOCHS - 1) * per_round - left
        reason += (
            f"; over budget: {MIN_EPOCHS} epochs per arm, the fewest that draw curves, end about {over:.0f} s past "
            f"the {config.budget:.0f} s budget on this machine, which fits {count_epochs(fit)}"
        )
    return Plan(epochs, reason, plan.calibration, per_round, first=plan)


def _fit(round_seconds: float, seconds_left: float) -> int:
    """The rounds of ``round_seconds`` that fit in ``seconds_left`` less ``MARGIN`` of it."""
    return math.floor(max(seconds_left, 0.0) * (1 - MARGIN) / round_seconds)


def _too_short(budget: float, round_seconds: float, left: float, fit: int) -> str:
    """The one line for a budget that fits fewer than ``MIN_EPOCHS``: what fits, and the budget that would."""
    needed = budget - left + MIN_EPOCHS * round_seconds / (1 - MARGIN)
    return (
        f"the {budget:.0f} s budget fits {count_epochs(fit)} per arm, fewer than the {MIN_EPOCHS} that draw curves; "
        f"pass --budget {math.ceil(needed / 10) * 10} for {MIN_EPOCHS}, or --epochs N to skip the calibration"
    )
