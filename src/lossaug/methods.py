"""The selection methods, one registry: a frozen row per ``--method`` saying what the rest of the code would
otherwise decide by comparing its name: whether it selects among M candidates, its default temperature, its
selection mode (and with it the images per step and the candidates a step holds), whether stale-loss gating
applies, and the step kind ``lossaug bench`` times and ``lossaug compare`` prices.

Adding a method is a row here (and, for a new mode, its code in ``selection``), never a new ``if method == ...``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from lossaug.errors import InputError
from lossaug.selection.modes import SAMPLE, WEIGHTED

__all__ = ["METHOD_REGISTRY", "Method", "method_named"]


@dataclass(frozen=True)
class Method:
    """One method: ``step`` is the step kind whose cost ratio prices its epochs (``"baseline"`` costs 1 by
    definition); ``temperature`` its default selection temperature (``--temperature`` overrides it where it
    selects); ``selects``: it draws ``--candidates`` M candidates per image (False: one random candidate, the
    baseline); ``gates``: ``--score-fraction`` applies; ``mode``: a ``selection.MODES`` name, sample one candidate
    per image or train on all M weighted by loss."""

    name: str
    step: str
    temperature: float = 1.0
    selects: bool = True
    gates: bool = False
    mode: str = SAMPLE

    @property
    def trains_all(self) -> bool:
        """Whether a step trains on every candidate of ``batch_size / M`` images, each weighted by its share of the
        loss from the training pass itself (the weighted mode: no scoring pass)."""
        return self.mode == WEIGHTED

    def candidates(self, num_candidates: int) -> int:
        """M of a step at ``--candidates num_candidates``: 1 for a method that does not select."""
        return num_candidates if self.selects else 1

    def resolved_temperature(self, temperature: float | None) -> float:
        """The temperature a step selects at: ``temperature`` (None: the method's default); inf (uniform) for a
        method that does not select, whatever is given."""
        if not self.selects:
            return math.inf
        return self.temperature if temperature is None else temperature

    def images_per_step(self, batch_size: int, num_candidates: int) -> int:
        """Distinct images per step: ``batch_size``, or ``batch_size / M`` when the step trains on all M candidates
        of each image (``batch_size`` inputs, a baseline step's cost)."""
        return batch_size // num_candidates if self.trains_all else batch_size

    def memory_candidates(self, num_candidates: int) -> int:
        """Candidates held per input of a step's ``batch_size`` inputs, for the memory estimate: the weighted
        mode's inputs are B/M images with their M candidates each, as many as a baseline step holds."""
        return 1 if self.trains_all else self.candidates(num_candidates)


# The methods, in the order of --method's choices. Plain literal: a method is a row here.
METHOD_REGISTRY: Mapping[str, Method] = {
    "baseline": Method("baseline", step="baseline", temperature=math.inf, selects=False),
    "proposed": Method("proposed", step="proposed", gates=True),
    # maxup takes the hardest of the same M scored candidates: its step costs the proposed step's
    "maxup": Method("maxup", step="proposed", temperature=0.0, gates=True),
    "weighted": Method("weighted", step="weighted", mode=WEIGHTED),
}


def method_named(name: str) -> Method:
    """The registry's row of method ``name``; an unknown name is an ``InputError`` naming it and the choices."""
    if name not in METHOD_REGISTRY:
        raise InputError(f"unknown method {name!r}; choose from {list(METHOD_REGISTRY)}")
    return METHOD_REGISTRY[name]
