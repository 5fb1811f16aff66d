"""What a finished comparison is asked: each question an ``Analysis`` over the plan's results, computed per setting
into its own key of ``summary.json``, with its Markdown section and the rows it adds to the forest plot. A new
verdict is a new analysis in ``ANALYSES``, not a new case in the runner or the report.

The first is the paired endpoint: for each (treatment, control) pair of arms that both ran, the per-seed differences
in test error with their 95% t-interval, verdict against the margin δ, minimal detectable effect and seeds needed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from lossaug.compare import stats
from lossaug.compare.arms import arm_named
from lossaug.compare.config import CompareConfig

__all__ = ["Analysis", "Finished", "ForestRow", "PairedEndpoints", "endpoint", "points", "test_set"]

Results = Mapping[str, Mapping[str, Mapping[int, dict]]]  # setting -> arm -> seed -> a finished run's results
ForestRow = tuple[str, float, float]  # (label, mean, 95% half-width) in percentage points


@dataclass(frozen=True)
class Finished:
    """What an analysis reads: the comparison, the finished runs' results (``runner.read_result`` dicts) and the
    resolved cost ratio of each step kind per setting (``{"A": {"proposed": 1.94}}``; empty where none was needed)."""

    config: CompareConfig
    results: Results
    ratios: Mapping[str, Mapping[str, float]]


class Analysis(Protocol):
    """One question asked of a finished comparison. ``key``: its entry in ``summary.json``, holding per setting
    what ``compute`` returns (JSON-ready, errors as fractions)."""

    key: str

    def compute(self, finished: Finished, setting: str) -> dict: ...

    def legend(self, summary: dict) -> list[str]:
        """The paragraph that explains its table, in the summary's header."""
        ...

    def markdown(self, summary: dict, setting: str) -> list[str]:
        """Its section of one setting (no lines when it has nothing to say there)."""
        ...

    def forest_rows(self, summary: dict) -> list[ForestRow]: ...


def points(value: float | None, signed: bool = False) -> str:
    """A fraction as percentage points with two decimals ("-" for None or NaN)."""
    if value is None or math.isnan(value):
        return "-"
    return f"{100 * value:+.2f}" if signed else f"{100 * value:.2f}"


def test_set(arms: Mapping[str, Mapping[int, dict]]) -> dict:
    """What the runs of one setting (arm -> seed -> results) were tested on: ``examples`` (its test images, so
    one example = 1 / examples of error) and ``classes`` (chance error 1 - 1/classes), each None where the runs
    do not record it (runs before they did) or disagree."""
    runs = [run for per_seed in arms.values() for run in per_seed.values()]

    def one(values: set) -> int | None:
        return values.pop() if len(values) == 1 and None not in values else None

    classes = {run.get("num_classes", len(run.get("per_class_test_error") or {}) or None) for run in runs}
    return {"examples": one({run.get("test_examples") for run in runs}), "classes": one(classes)}


def endpoint(treatment: Mapping[int, dict], control: Mapping[int, dict], margin: float) -> dict:
    """Paired test-error difference ``treatment - control`` over the seeds both ran (fractions): n, mean, sd,
    95% half-width, low, high, verdict, minimal detectable effect (80% power) and seeds needed for ±0.3 points."""
    seeds = sorted(set(treatment) & set(control))
    differences = {s: treatment[s]["test_error"] - control[s]["test_error"] for s in seeds}
    summary = stats.paired_difference(list(differences.values()))
    # no spread: no interval, so no verdict, MDE or seeds needed either
    no_spread = summary.n > 1 and summary.sd <= stats.NO_SPREAD
    return {
        **summary.to_json(),
        "verdict": stats.verdict(summary.mean, summary.half_width, margin),
        "no_spread": no_spread,
        "min_detectable_effect": math.nan if no_spread else stats.min_detectable_effect(summary.sd, summary.n),
        "seeds_needed": None if no_spread else stats.seeds_needed(summary.sd),
        "better_in": sum(d < 0 for d in differences.values()),
        "per_seed": differences,
    }


class PairedEndpoints:
    """Every (treatment, control) whose arms both ran, the treatment's ``Arm.compared_to`` in report order:
    ``endpoint`` of their test errors, named ``"treatment - control"``."""

    key = "endpoints"

    def compute(self, finished: Finished, setting: str) -> dict:
        arms = finished.results[setting]
        return {
            f"{treatment} - {control}": {
                "treatment": treatment,
                "control": control,
                **endpoint(arms[treatment], arms[control], finished.config.margin),
            }
            for treatment in arms
            for control in arm_named(treatment).compared_to
            if control in arms
        }

    def legend(self, summary: dict) -> list[str]:
        design = summary["design"]
        return [
            "Endpoints: Δ = treatment − control test error of the same seed, in percentage points (negative = "
            "treatment better), mean ± 95% t-interval half-width over seeds; sd is the paired sd. Verdict: better / "
            f"worse when the interval excludes 0, equivalent within ±δ (δ = {100 * design['margin']:g} points) when "
            "it lies inside ±δ, else unresolved. MDE: the true effect detected with 80% power at this sd and n "
            f"(two-sided α = 0.05); seeds needed: for a ±{100 * design['resolution']:g}-point interval at this sd."
        ]

    def markdown(self, summary: dict, setting: str) -> list[str]:
        named = summary.get(self.key, {}).get(setting, {})
        if not named:
            return []
        lines = [
            "",
            "| endpoint | n | Δ test error (pp) | 95% interval (pp) | paired sd (pp) | verdict | better in "
            "| MDE 80% (pp) | seeds for ±0.3 |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for name, e in named.items():
            interval = f"[{points(e['low'], True)}, {points(e['high'], True)}]"
            needed = "-" if e["seeds_needed"] is None else str(e["seeds_needed"])
            verdict = f"{e['verdict']} (no spread)" if e.get("no_spread") else e["verdict"]
            lines.append(
                f"| {name} | {e['n']} | {points(e['mean'], True)} ± {points(e['half_width'])} | {interval} "
                f"| {points(e['sd'])} | {verdict} | {e['better_in']}/{e['n']} "
                f"| {points(e['min_detectable_effect'])} | {needed} |"
            )
        return lines + _no_spread_lines(named, summary.get("test_sets", {}).get(setting, {}))

    def forest_rows(self, summary: dict) -> list[ForestRow]:
        return [
            (f"{setting}: {name}", 100 * e["mean"], 100 * e["half_width"])
            for setting, named in summary.get(self.key, {}).items()
            for name, e in named.items()
        ]


def granularity(examples: int | None) -> str:
    """What one test example weighs: "one example = 1.32 points" (76 test images), or that it is not recorded."""
    if not examples:
        return "test set size not recorded (runs made before it was)"
    return f"{examples} test examples: one example = {100 / examples:.2f} points"


def _no_spread_lines(named: Mapping[str, dict], tested: Mapping[str, int | None]) -> list[str]:
    """Why an endpoint with a sample sd of 0 has no verdict."""
    flat = [f"{name} (n = {e['n']})" for name, e in named.items() if e.get("no_spread")]
    if not flat:
        return []
    why = f"the test set is too coarse to resolve this at this n ({granularity(tested.get('examples'))})"
    return [
        "",
        f"No spread: {', '.join(flat)} gave the same difference on every seed, so there is no interval and "
        f"no verdict: {why}.",
    ]
