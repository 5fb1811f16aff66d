"""The arms a comparison can run, one registry: each arm's method, option overrides, how its epochs and its compute
derive from the base epochs E, the branch fraction F and the cost ratios R of the step kinds, and the arms it is
reported against. Baseline budgets (``baseline-x1.5``), gating fractions (``gated-0.5``) and the points of an M
sweep (``proposed-m8``: the proposed arm at M = 8 candidates, priced by its own benched R) are generated from their
names.

Compute is counted in baseline runs (the baseline of E epochs = 1): an epoch before the branch costs 1/E, an epoch
after it R/E, where R is the cost ratio of the arm's step kind: one of its epochs in baseline epochs, i.e. per
distinct image processed (the baseline's is 1; ``weighted``'s is about M times its step's ratio, since its steps
take B/M images).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lossaug.errors import InputError
from lossaug.methods import METHOD_REGISTRY, method_named

__all__ = [
    "ARMS",
    "ARM_REGISTRY",
    "BASELINE_ARM",
    "BASELINE_STEP",
    "ENDPOINTS",
    "PROPOSED_STEP",
    "WEIGHTED_STEP",
    "Arm",
    "arm_named",
    "budget_arm",
    "candidates_arm",
    "equal_compute_epochs",
    "sweep_candidates",
]

BASELINE_ARM = "baseline"  # the reference arm (budget 1): every endpoint's control, the frontier's anchor
# The step kinds of the methods (methods.py); arms add kinds of their own (gated-Q, proposed-mM).
BASELINE_STEP = METHOD_REGISTRY["baseline"].step  # the step kind whose cost ratio is 1 by definition
PROPOSED_STEP = METHOD_REGISTRY["proposed"].step  # its R is the public cost_ratio; every other kind's is cost_ratios
WEIGHTED_STEP = METHOD_REGISTRY["weighted"].step  # bench times it as its "weighted" option, priced per image
GATED_FRACTION = 0.25  # Q of the arm named plain "gated" (issue 20's protocols); "gated-0.5" names another Q


def equal_compute_epochs(base_epochs: int, cost_ratio: float, branch_at: float = 0.0) -> int:
    """Epochs of the baseline that cost what the proposed arm costs in baseline steps: its ``E·F`` epochs before
    the branch count 1 each, its ``E·(1-F)`` after count R each; ``E·F + E·(1-F)·R`` rounded half up."""
    return math.floor(base_epochs * branch_at + base_epochs * (1 - branch_at) * cost_ratio + 0.5)


@dataclass(frozen=True)
class Arm:
    """One arm: trained with ``method`` (and ``options``, other ``TrainConfig`` fields), its epochs priced by the
    cost ratio of ``step`` (a step kind: ``"baseline"`` costs 1; ``"proposed"`` is what ``lossaug bench`` times
    at M candidates). ``budget``: the compute its tail after the branch is given, in baseline tails: None, its own
    at E epochs; a number, that multiple (a baseline budget); a step kind, what an arm of that kind costs at E
    epochs (``baseline-equal-time`` gets the proposed arm's). ``compared_to``: the arms it is reported against as
    paired endpoints, in order; ``needs``: arms that must run beside it."""

    name: str
    method: str = "baseline"
    step: str = BASELINE_STEP
    budget: float | str | None = None
    options: tuple[tuple[str, Any], ...] = ()
    compared_to: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    note: str = ""  # how it is sized, for the summary's design lines (empty: nothing to say)

    @property
    def selects(self) -> bool:
        """Whether it is a selection arm (a point against the baseline's curve) rather than a baseline budget."""
        return method_named(self.method).selects

    def kinds(self) -> set[str]:
        """The step kinds whose cost ratios its epochs and compute depend on."""
        kinds = {self.step, self.budget} if isinstance(self.budget, str) else {self.step}
        return kinds - {BASELINE_STEP}

    def epochs(self, base_epochs: int, branch_at: float, ratios: Mapping[str, float]) -> int | None:
        """Its epochs: E for its own budget, else E·F + E·(1-F)·b/R rounded half up for a tail budget b at step
        ratio R; None when a ratio it needs is unknown."""
        if self.budget is None:
            return base_epochs
        budget = ratios.get(self.budget) if isinstance(self.budget, str) else self.budget
        ratio = 1.0 if self.step == BASELINE_STEP else ratios.get(self.step)
        if budget is None or ratio is None:
            return None
        return equal_compute_epochs(base_epochs, budget if ratio == 1 else budget / ratio, branch_at)

    def compute(self, base_epochs: int, branch_at: float, ratios: Mapping[str, float]) -> float | None:
        """Its compute in baseline runs: F + (1-F)·R at its own budget, epochs / E for baseline steps, else its
        epochs priced (E·F + (epochs - E·F)·R) / E; None when a ratio it needs is unknown."""
        epochs = self.epochs(base_epochs, branch_at, ratios)
        ratio = 1.0 if self.step == BASELINE_STEP else ratios.get(self.step)
        if epochs is None or ratio is None:
            return None
        if self.step == BASELINE_STEP:
            return epochs / base_epochs
        if self.budget is None:
            return branch_at + (1 - branch_at) * ratio
        shared = base_epochs * branch_at
        return (shared + (epochs - shared) * ratio) / base_epochs


# The arms, in report order. Plain literal: an arm is a row here, not a case in the runner or the summary.
ARM_REGISTRY = {
    "baseline": Arm("baseline"),
    "proposed": Arm("proposed", method="proposed", step="proposed", compared_to=("baseline", "baseline-equal-time")),
    # stale-loss gating (issue 19): only the Q·B images of highest last training loss get M candidates scored
    "gated": Arm(
        "gated",
        method="proposed",
        step="gated",
        options=(("score_fraction", GATED_FRACTION),),
        compared_to=("baseline",),
        note=f"gated is proposed with score_fraction {GATED_FRACTION:g}.",
    ),
    # all M candidates of B/M images in one pass, weighted by loss (issue 19): given the baseline's compute ...
    "weighted": Arm(
        "weighted",
        method="weighted",
        step="weighted",
        budget=1.0,
        compared_to=("baseline",),
        note="weighted gets the baseline's compute: E·F + E·(1−F)/R_weighted epochs.",
    ),
    # ... and the proposed arm's
    "weighted-equal-time": Arm(
        "weighted-equal-time",
        method="weighted",
        step="weighted",
        budget="proposed",
        compared_to=("baseline", "proposed", "weighted-uniform-equal-time"),
        needs=("proposed",),
        note="weighted-equal-time gets the proposed arm's compute: E·F + E·(1−F)·R/R_weighted epochs.",
    ),
    # the same with uniform weights (temperature inf): multiplicity without loss weighting, so that weighted-equal-time
    # against it measures the weighting's own share; its step costs what the weighted step costs
    "weighted-uniform-equal-time": Arm(
        "weighted-uniform-equal-time",
        method="weighted",
        step="weighted",
        budget="proposed",
        options=(("temperature", math.inf),),
        compared_to=("baseline",),
        needs=("proposed",),
        note="weighted-uniform-equal-time is weighted-equal-time with temperature inf (uniform weights).",
    ),
    # maxup scores the same M candidates as proposed: its step is priced at the proposed arm's R.
    "maxup": Arm("maxup", method="maxup", step="proposed", compared_to=("baseline",)),
    "baseline-equal-time": Arm(
        "baseline-equal-time",
        budget="proposed",
        needs=("baseline", "proposed"),
        note="baseline-equal-time gets E·F + E·(1−F)·R epochs.",
    ),
}
ARMS = ("baseline", "proposed", "maxup", "baseline-equal-time")  # the default arms of a comparison
# (treatment, control) pairs reported as endpoints when both arms ran; the first two are the primary ones.
ENDPOINTS = tuple((name, control) for name, arm in ARM_REGISTRY.items() for control in arm.compared_to)


def budget_arm(budget: float) -> str:
    """The name of the baseline arm whose tail after the branch is stretched ``budget`` times (x1: ``baseline``)."""
    return BASELINE_ARM if budget == 1 else f"baseline-x{budget:g}"


def candidates_arm(num_candidates: int) -> str:
    """The name of the proposed arm at M = ``num_candidates`` candidates, a point of an M sweep: ``proposed-m8``."""
    return f"proposed-m{num_candidates}"


def sweep_candidates(name: str) -> int | None:
    """M of an M sweep's arm or step kind ``proposed-mM`` (M >= 2, written as ``candidates_arm`` writes it); None
    for any other name."""
    value = _number_after(name, "proposed-m")
    if value is None or value < 2 or value != int(value) or name != candidates_arm(int(value)):
        return None
    return int(value)


def _number_after(name: str, prefix: str) -> float | None:
    if not name.startswith(prefix):
        return None
    try:
        value = float(name[len(prefix) :])
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _canonical(name: str) -> str | None:
    """The generated arm a name means when its number is written another way (``gated-0.50``, ``baseline-x2.0``,
    ``proposed-m08``), else None."""
    for prefix in ("baseline-x", "gated-", "proposed-m"):
        value = _number_after(name, prefix)
        if value is not None and value > 0:
            canonical = f"{prefix}{value:g}" if prefix != "baseline-x" else budget_arm(value)
            if prefix == "proposed-m" and value == int(value):
                canonical = candidates_arm(int(value))
            if canonical != name:
                return canonical
    return None


def arm_named(name: str) -> Arm:
    """The registry's arm, or a generated one: ``baseline-xB`` (the baseline's tail stretched B > 0 times),
    ``gated-Q`` (gating at score fraction 0 < Q <= 1) and ``proposed-mM`` (the proposed arm at M >= 2 candidates,
    its step a kind of its own: R grows with M)."""
    if name in ARM_REGISTRY:
        return ARM_REGISTRY[name]
    budget = _number_after(name, "baseline-x")
    if budget is not None and budget > 0 and name == budget_arm(budget):
        return Arm(name, budget=budget)
    fraction = _number_after(name, "gated-")
    if fraction is not None and 0 < fraction <= 1 and name == f"gated-{fraction:g}":
        return Arm(
            name, method="proposed", step=name, options=(("score_fraction", fraction),), compared_to=("baseline",)
        )
    candidates = sweep_candidates(name)
    if candidates is not None:
        return Arm(
            name, method="proposed", step=name, options=(("num_candidates", candidates),), compared_to=("baseline",)
        )
    canonical = _canonical(name)
    if canonical is not None:  # gated-0.50: one arm, one name (its folder, its cost ratio's key)
        raise InputError(f"unknown arm {name!r}; did you mean {canonical!r}?")
    raise InputError(
        f"unknown arm {name!r}; choose from {list(ARM_REGISTRY)}, baseline-xB (B > 0: a baseline "
        "budget), gated-Q (0 < Q <= 1) or proposed-mM (M >= 2 candidates)"
    )
