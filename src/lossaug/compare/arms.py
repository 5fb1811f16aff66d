"""The arms a comparison can run, one registry: each arm's method, option overrides, how its epochs and its compute
derive from the base epochs E, the branch fraction F and the cost ratios R of the step kinds, and the arms it is
reported against.

Compute is counted in baseline runs (the baseline of E epochs = 1): an epoch before the branch costs 1/E, an epoch
after it R/E, where R is the cost ratio of the arm's step kind (one step in baseline steps; the baseline's is 1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lossaug.errors import InputError

__all__ = ["ARMS", "ARM_REGISTRY", "ENDPOINTS", "Arm", "arm_named", "equal_compute_epochs"]

BASELINE_STEP = "baseline"  # the step kind whose cost ratio is 1 by definition


def equal_compute_epochs(base_epochs: int, cost_ratio: float, branch_at: float = 0.0) -> int:
    """Epochs of the baseline that cost what the proposed arm costs in baseline steps: its ``E·F`` epochs before
    the branch count 1 each, its ``E·(1-F)`` after count R each; ``E·F + E·(1-F)·R`` rounded half up."""
    return math.floor(base_epochs * branch_at + base_epochs * (1 - branch_at) * cost_ratio + 0.5)


@dataclass(frozen=True)
class Arm:
    """One arm: trained with ``method`` (and ``options``, other ``TrainConfig`` fields), its steps priced by the
    cost ratio of ``step`` (a step kind: ``"baseline"`` costs 1, ``"proposed"`` is what ``lossaug bench`` times),
    its tail after the branch stretched by ``stretch``: a number (a baseline budget) or the step kind whose
    compute it is given (``baseline-equal-time`` gets the proposed arm's). ``compared_to``: the arms it is
    reported against as paired endpoints, in order; ``needs``: arms that must run beside it."""

    name: str
    method: str = "baseline"
    step: str = BASELINE_STEP
    stretch: float | str = 1.0
    options: tuple[tuple[str, Any], ...] = ()
    compared_to: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    note: str = ""  # how it is sized, for the summary's design lines (empty: nothing to say)

    def stretch_kind(self) -> str | None:
        """The step kind whose cost ratio sizes this arm's epochs (None: its epochs do not wait on one)."""
        return self.stretch if isinstance(self.stretch, str) else None

    def epochs(self, base_epochs: int, branch_at: float, ratios: Mapping[str, float]) -> int | None:
        """Its epochs: E, or E·F + E·(1-F)·s rounded half up for a stretch s ≠ 1; None if s waits on an unknown R."""
        stretch = ratios.get(self.stretch) if isinstance(self.stretch, str) else self.stretch
        if stretch is None:
            return None
        return base_epochs if stretch == 1 else equal_compute_epochs(base_epochs, stretch, branch_at)

    def compute(self, base_epochs: int, branch_at: float, ratios: Mapping[str, float]) -> float | None:
        """Its compute in baseline runs: F + (1-F)·R for a step kind of ratio R at E epochs, epochs / E for a
        baseline step at any epochs; None if an R it needs is unknown."""
        if self.step == BASELINE_STEP:
            epochs = self.epochs(base_epochs, branch_at, ratios)
            return None if epochs is None else epochs / base_epochs
        ratio = ratios.get(self.step)
        if ratio is None:
            return None
        assert self.stretch == 1, f"arm {self.name}: a stretched tail is priced only for baseline steps"
        return branch_at + (1 - branch_at) * ratio


# The arms, in report order. Plain literal: an arm is a row here, not a case in the runner or the summary.
ARM_REGISTRY = {
    "baseline": Arm("baseline"),
    "proposed": Arm("proposed", method="proposed", step="proposed", compared_to=("baseline", "baseline-equal-time")),
    # maxup scores the same M candidates as proposed: its step is priced at the proposed arm's R.
    "maxup": Arm("maxup", method="maxup", step="proposed", compared_to=("baseline",)),
    "baseline-equal-time": Arm(
        "baseline-equal-time",
        stretch="proposed",
        needs=("baseline", "proposed"),
        note="baseline-equal-time gets E·F + E·(1−F)·R epochs.",
    ),
}
ARMS = tuple(ARM_REGISTRY)  # the default arms of a comparison
# (treatment, control) pairs reported as endpoints when both arms ran; the first two are the primary ones.
ENDPOINTS = tuple((name, control) for name, arm in ARM_REGISTRY.items() for control in arm.compared_to)


def arm_named(name: str) -> Arm:
    try:
        return ARM_REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown arm {name!r}; choose from {list(ARM_REGISTRY)}") from None
