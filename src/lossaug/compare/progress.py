"""Progress of a comparison: "run k of N" and an ETA for the whole plan, from the seconds per epoch of the runs
this command trained so far (a run found finished costs nothing and teaches nothing)."""

from __future__ import annotations

import time

from lossaug.compare.plan import RunSpec
from lossaug.run.guards import format_duration

__all__ = ["PlanClock"]


def _epochs(spec: RunSpec, branch_at: float) -> float:
    """The epochs ``spec`` trains itself: a trunk its ``stop_at`` share, a branch the rest, else all."""
    config = spec.config
    assert config is not None, f"{spec.out}: planned before its cost ratio was known"
    if config.stop_at is not None:
        return config.epochs * config.stop_at
    return config.epochs * (1 - branch_at) if config.branch_from is not None else float(config.epochs)


class PlanClock:
    """Counts the plan's runs and times the trained ones: ``prefix(k)`` is ``[run k of N, ETA ...]``."""

    def __init__(self, specs: list[RunSpec], branch_at: float):
        self.left = [0.0 if spec.finished else _epochs(spec, branch_at) for spec in specs]
        self.count, self.seconds, self.epochs, self.started = len(specs), 0.0, 0.0, time.perf_counter()

    def start(self, index: int) -> str:
        """The prefix of run ``index`` (0-based), which starts now."""
        self.started = time.perf_counter()
        eta = ""
        if self.epochs > 0:
            eta = f", ETA {format_duration(sum(self.left[index:]) * self.seconds / self.epochs)} for the rest"
        return f"[run {index + 1} of {self.count}{eta}]"

    def done(self, index: int) -> None:
        """Run ``index`` finished: its time and epochs teach the pace."""
        if self.left[index] > 0:
            self.seconds += time.perf_counter() - self.started
            self.epochs += self.left[index]
