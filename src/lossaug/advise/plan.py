"""What ``lossaug advise`` is asked (``AdviseConfig``) and how it is sized: the compute budgets of the baseline that
bracket every arm, the comparison it runs for the first k seeds, and what one seed costs in time.

Compute is in baseline runs, as in ``lossaug.compare`` (the baseline of E epochs = 1).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from lossaug.compare.arms import arm_named, budget_arm
from lossaug.compare.config import CompareConfig
from lossaug.errors import InputError
from lossaug.run.config import TrainConfig

__all__ = [
    "DEFAULT_ARMS",
    "AdviseConfig",
    "bracketing_budgets",
    "compare_config",
    "parse_duration",
    "seconds_text",
    "seed_compute",
    "validate_advise",
]

DEFAULT_ARMS = ("proposed", "gated", "proposed-m2")
MAX_SEEDS = 1000  # a bound on --max-seeds: seeds are trained one after another, each minutes at least
_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> float:
    """Seconds of ``"45m"``, ``"1h30m"``, ``"90s"``, ``"2h"`` or a plain number of seconds (> 0, at most a week)."""
    cleaned = text.strip().lower()
    parts = re.fullmatch(r"((\d+(\.\d+)?)\s*[hms]\s*)+", cleaned)
    if re.fullmatch(r"\d+(\.\d+)?", cleaned):
        seconds = float(cleaned)
    elif parts:
        seconds = sum(float(n) * _UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", cleaned))
    else:
        raise InputError(f"--time {text!r} is not a duration; write e.g. 45m, 1h30m, 90s or 2h")
    if not 0 < seconds <= 7 * 24 * 3600:
        raise InputError(f"--time must be more than 0 and at most a week, got {text!r}")
    return seconds


@dataclass(frozen=True)
class AdviseConfig:
    """``base`` holds the train options every run shares; its ``seed`` is the first seed, the next seeds follow it.
    Errors and the margin are fractions of test examples (0.005 = 0.5 points)."""

    base: TrainConfig
    time: float  # seconds the whole advice may take, calibration included
    out: str = "runs/advise"
    arms: tuple[str, ...] = DEFAULT_ARMS
    settings: tuple[str, ...] = ("A",)
    margin: float = 0.005  # δ of "equivalent within ±δ": 0.5 points
    max_seeds: int = 30
    branch_at: float = 0.5  # F: every arm continues from the baseline's checkpoint at this fraction of its steps
    confidence: float = 0.95  # of the whole family of arms (Bonferroni)
    cost_ratio: float | None = None  # declared R of the proposed step (None: measured by bench)
    cost_ratios: Mapping[str, float] = field(default_factory=dict)  # declared R of other step kinds

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(range(self.base.seed, self.base.seed + self.max_seeds))


def validate_advise(config: AdviseConfig) -> None:
    """Refuse a bad request in one line, before anything is measured or written."""
    if not config.arms:
        raise InputError("--arms must name at least one arm, got none")
    for name in config.arms:
        arm = arm_named(name)
        if not arm.selects:
            raise InputError(
                f"--arms {name}: advise runs the baseline and its budgets itself; name selection arms "
                "(proposed, gated, weighted, ...)"
            )
    if isinstance(config.max_seeds, bool) or not 2 <= config.max_seeds <= MAX_SEEDS:
        raise InputError(f"--max-seeds must be in [2, {MAX_SEEDS}], got {config.max_seeds}")
    if not 0 < config.branch_at < 1:
        raise InputError(f"--branch-at must be in (0, 1) for advise (arms share a trunk), got {config.branch_at}")
    if not 0 < config.margin < 1:
        raise InputError(f"--margin must be in (0, 100) points, got {100 * config.margin:g}")
    epochs, shorter = config.base.epochs, min(config.branch_at, 1 - config.branch_at)
    if epochs * shorter < 1:
        raise InputError(
            f"--epochs {epochs} is too few to branch at {config.branch_at:g}: the trunk and each arm after it "
            f"need an epoch at least; give --epochs {math.ceil(1 / shorter)} or more"
        )
    if not config.time > 0:
        raise InputError(f"--time must be > 0 seconds, got {config.time}")


def compare_config(config: AdviseConfig, seeds: tuple[int, ...], budgets: tuple[float, ...]) -> CompareConfig:
    """The comparison advise runs: its arms and the baseline at ``budgets``, every arm branched from one trunk per
    seed, into ``config.out``."""
    return CompareConfig(
        base=config.base,
        out=config.out,
        arms=("baseline", *dict.fromkeys(config.arms)),
        settings=config.settings,
        seeds=seeds,
        branch_at=config.branch_at,
        cost_ratio=config.cost_ratio,
        margin=config.margin,
        budgets=budgets,
        cost_ratios=dict(config.cost_ratios),
    )


def _budget_compute(config: AdviseConfig, budget: float) -> float:
    compute = arm_named(budget_arm(budget)).compute(config.base.epochs, config.branch_at, {})
    assert compute is not None, "a baseline budget needs no cost ratio"
    return compute


def bracketing_budgets(config: AdviseConfig, ratios: Mapping[str, Mapping[str, float]]) -> tuple[float, ...]:
    """×1 and the whole budgets ×2, ×3, ... up to the first that reaches the most expensive arm's compute; below ×1,
    the quarter budget at or under the cheapest arm's (a weighted arm at the baseline's compute). ``ratios``: per
    setting the cost ratio of each step kind."""
    computes = []
    for setting in config.settings:
        for name in config.arms:
            compute = arm_named(name).compute(config.base.epochs, config.branch_at, ratios[setting])
            assert compute is not None, f"arm {name}: its cost ratio was not resolved"
            computes.append(compute)
    top = 1
    while _budget_compute(config, top) < max(computes):
        top += 1
    budgets = [float(b) for b in range(1, top + 1)]
    bottom = 1.0
    while _budget_compute(config, bottom) > min(computes) and bottom > 0.25:
        bottom -= 0.25
    return (bottom, *budgets) if bottom < 1 else tuple(budgets)


def seed_compute(comparison: CompareConfig, ratios: Mapping[str, Mapping[str, float]]) -> float:
    """What one seed costs in baseline runs: per setting its trunk and every arm's tail after the branch."""
    base, branch = comparison.base, comparison.branch_at
    total = 0.0
    for setting in comparison.settings:
        names = (*comparison.arms, *(budget_arm(b) for b in comparison.budgets))
        computes = [arm_named(name).compute(base.epochs, branch, ratios[setting]) for name in dict.fromkeys(names)]
        total += branch + sum(c - branch for c in computes if c is not None)
    return total


def seconds_text(seconds: float) -> str:
    """``"42 s"``, ``"12 min"``, ``"2.5 h"``."""
    if not math.isfinite(seconds):
        return "unknown"
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"
