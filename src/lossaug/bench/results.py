"""What ``lossaug bench`` measured: timings with their spread (``Spread``), the step per M (``CandidateTiming``)
and the whole result (``BenchResult``: the cheaper-selection options and their cost, JSON)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from lossaug.bench.config import PUBLISHED_CANDIDATES, PUBLISHED_RATIO, BenchConfig, cheap_candidates


@dataclass(frozen=True)
class Spread:
    """Repeated timings in ms (``samples`` in run order) and their median, extremes and quartiles."""

    samples: tuple[float, ...]
    median: float
    min: float
    q1: float
    q3: float
    max: float

    @classmethod
    def of(cls, samples: list[float]) -> Spread:
        low, q1, median, q3, high = (float(v) for v in np.percentile(samples, [0, 25, 50, 75, 100]))
        return cls(tuple(samples), median, low, q1, q3, high)

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "iqr": self.iqr}


@dataclass(frozen=True)
class CandidateTiming:
    """The full step with ``num_candidates`` (M) and its parts; ``ratio`` is R(M), ``floor`` is 1 + M*c."""

    num_candidates: int
    step: Spread  # augment + select + train, summed per repeat
    augment: Spread  # make_candidates
    select: Spread  # select_candidates: scoring, probabilities, sampling, gather
    train: Spread  # forward, backward, non-finite check, SGD update
    ratio: float
    floor: float
    efficiency: float
    images_per_second: float

    def to_json(self) -> dict[str, Any]:
        return {
            "candidates": self.num_candidates,
            "step_ms": self.step.to_json(),
            "augment_ms": self.augment.to_json(),
            "select_ms": self.select.to_json(),
            "train_ms": self.train.to_json(),
            "ratio": self.ratio,
            "floor": self.floor,
            "efficiency": self.efficiency,
            "images_per_second": self.images_per_second,
        }


@dataclass(frozen=True)
class BenchResult:
    """Timings of one ``run_bench`` call with the resolved config and where they were measured."""

    config: BenchConfig
    device: str
    torch_version: str
    lossaug_version: str
    git_commit: str | None
    timestamp: str
    seconds: float  # wall-clock time of the whole benchmark, set-up included
    train_step: Spread
    score_forward: Spread
    steps: tuple[CandidateTiming, ...]
    proxy_steps: dict[int, Spread] = dataclasses.field(default_factory=dict)  # M -> step with proxy scoring
    published_ratio: float = PUBLISHED_RATIO
    cheap_steps: dict[str, Spread] = dataclasses.field(default_factory=dict)  # "score_fraction Q" / "weighted"

    def options(self) -> list[dict[str, Any]]:
        """Cost of each cheaper-selection option at every M > 1, as a ratio to the baseline step.

        ``proxy``: measured (scoring by the proxy plus its own training step). ``select_every k``: derived,
        ``(R(M) + k - 1) / k``. ``select_from f``: derived, ``f + (1 - f) R(M)``."""
        rows = []
        for t in self.steps:
            if t.num_candidates == 1:
                continue
            m, ratio = t.num_candidates, t.ratio
            rows.append({"option": "exact", "M": m, "ratio": ratio, "measured": True})
            if m in self.proxy_steps:
                proxy_ratio = self.proxy_steps[m].median / self._baseline_step.median
                rows.append(
                    {"option": f"proxy {self.config.proxy_model}", "M": m, "ratio": proxy_ratio, "measured": True}
                )
            rows += [
                {"option": f"select_every {k}", "M": m, "ratio": (ratio + k - 1) / k, "measured": False}
                for k in self.config.select_every
            ]
            rows += [
                {"option": f"select_from {f}", "M": m, "ratio": f + (1 - f) * ratio, "measured": False}
                for f in self.config.select_from
            ]
            if m == cheap_candidates(self.config):
                rows += self._cheap_rows(m, ratio)
        return rows

    def _cheap_rows(self, m: int, ratio: float) -> list[dict[str, Any]]:
        """The measured cheap modes at M = ``m`` (of ratio R(M) = ``ratio``). Gating's ``expected`` is what it
        should cost if only the scoring shrinks, ``1 + Q (R(M) - 1)``; the weighted step's ``ratio_per_image`` is
        its cost per distinct image (M times its per-step ratio: a step holds B/M images)."""
        base = self._baseline_step.median
        rows = []
        for option, spread in self.cheap_steps.items():
            row: dict[str, Any] = {"option": option, "M": m, "ratio": spread.median / base, "measured": True}
            if option.startswith("score_fraction"):
                row["expected"] = 1 + float(option.split()[1]) * (ratio - 1)
            else:
                row["ratio_per_image"] = m * row["ratio"]
            rows.append(row)
        return rows

    @property
    def c(self) -> float:
        """Scoring forward over B images per training step over B images (medians)."""
        return self.score_forward.median / self.train_step.median

    def timing(self, num_candidates: int) -> CandidateTiming | None:
        return next((t for t in self.steps if t.num_candidates == num_candidates), None)

    @property
    def _baseline_step(self) -> Spread:
        """The step with one candidate, which every ratio is relative to (``BenchConfig`` requires M = 1)."""
        baseline = self.timing(1)
        assert baseline is not None, "candidate_counts include 1"
        return baseline.step

    @property
    def comparison(self) -> str:
        """One sentence placing the measured R(4) against the published 1.8x."""
        m, published = PUBLISHED_CANDIDATES, self.published_ratio
        timing = self.timing(m)
        if timing is None:
            return f"R({m}) not measured (candidates {self.config.candidate_counts}); published R({m}) = {published}x"
        relative = timing.ratio / published - 1
        where = f"{abs(relative):.0%} {'above' if relative > 0 else 'below'}" if abs(relative) >= 0.005 else "equal"
        return (
            f"R({m})={timing.ratio:.2f}x vs published {published}x ({where}); "
            f"the scoring floor 1+{m}c is {timing.floor:.2f}x on {self.device}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "benchmark": "lossaug.bench",
            "config": {
                **dataclasses.asdict(self.config),
                "candidate_counts": list(self.config.candidate_counts),
                "candidates": list(self.config.candidate_counts),
            },  # old key, kept for readers
            "device": self.device,
            "torch_version": self.torch_version,
            "lossaug_version": self.lossaug_version,
            "git_commit": self.git_commit,
            "timestamp": self.timestamp,
            "seconds": self.seconds,
            "train_step_ms": self.train_step.to_json(),
            "score_forward_ms": self.score_forward.to_json(),
            "c": self.c,
            "per_candidates": [t.to_json() for t in self.steps],
            "proxy_step_ms": {str(m): spread.to_json() for m, spread in self.proxy_steps.items()},
            "cheap_step_ms": {option: spread.to_json() for option, spread in self.cheap_steps.items()},
            "options": self.options(),
            "published_ratio": self.published_ratio,
            "comparison": self.comparison,
        }
