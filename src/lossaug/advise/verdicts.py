"""Per arm, after each seed: the paired differences against the same seed's baseline curve at the arm's compute
(``compare``'s equal-compute analysis), their anytime-valid confidence sequence with the family's multiplicity
accounted for (Bonferroni), its verdict, and the recommendation the verdicts support.

Errors are fractions of test examples; a negative difference means the arm beats training the baseline longer.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from lossaug.compare import stats
from lossaug.compare.arms import budget_arm

__all__ = ["ArmVerdict", "Recommendation", "budget_verdicts", "family_size", "recommend", "selection_verdicts"]

OUT_OF_RANGE = "out of range"


@dataclass(frozen=True)
class ArmVerdict:
    """One arm of one setting: its compute (baseline runs), mean difference ``delta`` and confidence sequence
    ``[low, high]`` (fractions; ±inf while unbounded), verdict and n; ``pairs_needed``: the seeds that would likely
    resolve it at the observed mean and sd (None: unknown yet, or resolved)."""

    name: str
    setting: str
    compute: float
    delta: float
    low: float
    high: float
    verdict: str
    n: int
    pairs_needed: int | None = None

    @property
    def resolved(self) -> bool:
        return self.verdict not in ("unresolved", OUT_OF_RANGE)

    def to_json(self) -> dict:
        def finite(value: float) -> float | None:  # JSON has no inf or NaN
            return value if math.isfinite(value) else None

        return {**asdict(self), "delta": finite(self.delta), "low": finite(self.low), "high": finite(self.high)}


def family_size(arms: Sequence[str], settings: Sequence[str], budgets: Sequence[float]) -> int:
    """How many confidence sequences one advice reads: every arm and every budget but ×1, per setting."""
    return len(settings) * (len(arms) + sum(1 for b in budgets if b != 1))


def _verdict(name: str, setting: str, compute: float, per_seed: Mapping, margin: float, confidence: float):
    differences = [per_seed[seed] for seed in sorted(per_seed, key=int)]
    n = len(differences)
    mean = statistics.fmean(differences) if n else math.nan
    low, high = stats.confidence_sequence(differences, confidence)
    half = (high - low) / 2 if math.isfinite(high - low) else math.inf
    verdict = stats.verdict(mean, half, margin) if n else "unresolved"
    needed = None
    if verdict == "unresolved" and n >= 2 and min(differences) != max(differences):
        target = max(abs(mean), margin - abs(mean))  # resolves the sign, or equivalence within ±δ
        needed = stats.sequence_pairs_needed(statistics.stdev(differences), target, n + 1, confidence)
    return ArmVerdict(name, setting, compute, mean, low, high, verdict, n, needed)


def selection_verdicts(summary: Mapping, arms: Sequence[str], margin: float, confidence: float) -> list[ArmVerdict]:
    """Each selection arm against the baseline curve at its compute, per setting, from a compare summary."""
    rows = []
    for setting, by_arm in summary.get("equal_compute", {}).items():
        for name in arms:
            entry = by_arm.get(name)
            if entry is None:
                continue
            if entry["verdict"] == OUT_OF_RANGE:
                rows.append(ArmVerdict(name, setting, entry["compute"], math.nan, -math.inf, math.inf, OUT_OF_RANGE, 0))
                continue
            rows.append(_verdict(name, setting, entry["compute"], entry["per_seed"], margin, confidence))
    return rows


def budget_verdicts(summary: Mapping, budgets: Sequence[float], margin: float, confidence: float) -> list[ArmVerdict]:
    """Each baseline budget other than ×1 against ×1 of the same seed, per setting: does training longer pay?"""
    rows = []
    for setting, by_arm in summary.get("frontier", {}).items():
        for budget in budgets:
            entry = by_arm.get(budget_arm(budget))
            if budget == 1 or entry is None:
                continue
            per_seed = entry["vs_baseline"]["per_seed"]
            rows.append(_verdict(budget_arm(budget), setting, entry["compute"], per_seed, margin, confidence))
    return rows


@dataclass(frozen=True)
class Recommendation:
    """What to do: ``arm`` (a selection arm, a baseline budget such as ``baseline-x3``, or ``baseline``) and why."""

    arm: str
    setting: str
    reason: str


def recommend(selection: Sequence[ArmVerdict], budgets: Sequence[ArmVerdict]) -> Recommendation:
    """The arm whose confidence sequence lies furthest below the curve, if any lies wholly below; else the budget
    whose sequence lies furthest below ×1, if any lies wholly below (train longer); else the baseline. Nothing else
    is recommended: an arm or budget is chosen only when its own sequence excludes no gain."""
    better = [row for row in selection if row.verdict == "better"]
    if better:
        best = min(better, key=lambda row: row.high)
        others = [row.name for row in better if row is not best]
        reason = "it beats training the baseline longer at equal compute (its confidence sequence lies below 0)"
        if others:
            reason += f"; so do {', '.join(others)}, less surely"
        return Recommendation(best.name, best.setting, reason)
    longer = [row for row in budgets if row.verdict == "better"]
    if longer:
        best = min(longer, key=lambda row: row.high)
        times = best.name.removeprefix("baseline-")
        reason = f"no arm beats training longer, and training the baseline {times} as long after the branch beats ×1"
        return Recommendation(best.name, best.setting, reason)
    setting = selection[0].setting if selection else "A"
    if selection and all(row.resolved for row in selection):
        return Recommendation(
            "baseline",
            setting,
            "no arm beats training longer (each is worse or equivalent): keep the baseline (cheapest)",
        )
    return Recommendation(
        "baseline", setting, "no arm is distinguishable from training longer: keep the baseline (cheapest)"
    )
