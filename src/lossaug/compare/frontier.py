"""The frontier of a comparison run with budgets: test error against compute, the baseline at several budgets as a
curve and each selection arm as a point, and the three verdicts asked of each selection arm, paired by seed:

- ``EqualCompute``: the arm against the baseline curve of the same seed interpolated at the arm's compute
  (piecewise linear in log compute between the two bracketing budgets); "out of range" outside the budgets run,
  never extrapolated.
- ``BestReachable``: the arm against the best baseline budget of the same seed: does selection reach an error that
  no budget reached?
- ``BreakEven``: from the curve's local slope above ×1 and the arm's gain over the baseline ×1, the cost ratio at
  which the arm would pay, beside its measured one.

Each is an ``analyses.Analysis``; ``Frontier`` holds the table and ``frontier.png``'s points. All are empty unless
the comparison has budgets (``CompareConfig.budgets``). Compute is in baseline runs (``Arm.compute``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from lossaug.compare import stats
from lossaug.compare.analyses import Finished, ForestRow, endpoint, points
from lossaug.compare.arms import BASELINE_ARM, arm_named

__all__ = [
    "FRONTIER_ANALYSES",
    "BestReachable",
    "BreakEven",
    "EqualCompute",
    "Frontier",
    "break_even_ratio",
    "budget_label",
    "interpolate_log",
    "write_frontier",
]

OUT_OF_RANGE = "out of range"


def interpolate_log(curve: Sequence[tuple[float, float]], compute: float) -> float | None:
    """The value at ``compute`` of the piecewise-linear curve in log compute through ``(compute, value)`` points
    (sorted by compute, computes > 0); None outside [first, last] compute: never extrapolated."""
    if not curve or not curve[0][0] <= compute <= curve[-1][0]:
        return None
    for (low, at_low), (high, at_high) in zip(curve, curve[1:], strict=False):
        if low <= compute <= high:
            if high == low:
                return at_low
            t = (math.log(compute) - math.log(low)) / (math.log(high) - math.log(low))
            return at_low + t * (at_high - at_low)
    return curve[0][1]  # one point: compute equals it


def break_even_ratio(gain: float, slope: float, branch_at: float, tail: float) -> float | None:
    """The cost ratio at which an arm with ``gain`` (its error minus the baseline's at ×1, negative = better) would
    cost what the baseline needs for the same gain along a curve of ``slope`` (error per unit of ln compute,
    negative when compute helps): compute c* = exp(gain / slope), R* = (c* - F) / ``tail`` (its epochs after the
    branch over E). None when the arm gains nothing; inf when the baseline gains nothing from compute."""
    if not gain < 0:
        return None
    if not slope < 0:
        return math.inf
    return (math.exp(gain / slope) - branch_at) / tail


def _computes(finished: Finished, setting: str) -> dict[str, float | None]:
    base, ratios = finished.config.base, finished.ratios.get(setting, {})
    return {
        arm: arm_named(arm).compute(base.epochs, finished.config.branch_at, ratios) for arm in finished.results[setting]
    }


def _curve(finished: Finished, setting: str) -> list[tuple[float, str]]:
    """The baseline arms of ``setting`` as ``(compute, arm)`` sorted by compute (the first of equal computes)."""
    curve: dict[float, str] = {}
    for arm, compute in _computes(finished, setting).items():
        if not arm_named(arm).selects and compute is not None:
            curve.setdefault(compute, arm)
    return sorted(curve.items())


def _active(finished: Finished, setting: str) -> bool:
    return bool(finished.config.budgets) and BASELINE_ARM in finished.results[setting]


def _selection_arms(finished: Finished, setting: str) -> list[str]:
    return [arm for arm in finished.results[setting] if arm_named(arm).selects]


class Frontier:
    """Per setting every arm's compute, epochs, mean test error and paired difference to the baseline ×1
    (``endpoint``): the frontier table and ``frontier.png``'s points."""

    key = "frontier"

    def compute(self, finished: Finished, setting: str) -> dict:
        if not _active(finished, setting):
            return {}
        arms, computes = finished.results[setting], _computes(finished, setting)
        rows = {}
        for arm, per_seed in arms.items():
            errors = [run["test_error"] for run in per_seed.values()]
            rows[arm] = {
                "selects": arm_named(arm).selects,
                "compute": computes[arm],
                "epochs": sorted({run["epochs"] for run in per_seed.values()}),
                "test_error": stats.paired_difference(errors).to_json(),
                "vs_baseline": endpoint(per_seed, arms[BASELINE_ARM], finished.config.margin),
            }
        return rows

    def legend(self, summary: dict) -> list[str]:
        if not any(summary.get(self.key, {}).values()):
            return []
        return [
            "Frontier: compute in baseline runs (the baseline = 1; an epoch after the branch costs the arm's R), "
            "test error in % (mean ± 95% half-width over seeds), Δ = arm − baseline ×1 of the same seed in points "
            "(mean ± 95% half-width); baseline arms are the budgets of the curve."
        ]

    def markdown(self, summary: dict, setting: str) -> list[str]:
        rows = summary.get(self.key, {}).get(setting, {})
        if not rows:
            return []
        lines = [
            "",
            "| frontier | compute | epochs | test error % | Δ vs baseline ×1 (pp) | verdict |",
            "|---|---|---|---|---|---|",
        ]
        order = sorted(rows, key=lambda arm: (rows[arm]["selects"], rows[arm]["compute"] or math.inf))
        for arm in order:
            row, versus = rows[arm], rows[arm]["vs_baseline"]
            compute = "-" if row["compute"] is None else f"{row['compute']:.2f}"
            error = f"{points(row['test_error']['mean'])} ± {points(row['test_error']['half_width'])}"
            delta = "-" if arm == BASELINE_ARM else f"{points(versus['mean'], True)} ± {points(versus['half_width'])}"
            verdict = "-" if arm == BASELINE_ARM else versus["verdict"]
            epochs = ", ".join(map(str, row["epochs"]))
            lines.append(f"| {arm} | {compute} | {epochs} | {error} | {delta} | {verdict} |")
        return lines

    def forest_rows(self, summary: dict) -> list[ForestRow]:
        return []  # the endpoints already hold each arm against the baseline


class EqualCompute:
    """Per selection arm: arm − the baseline curve of the same seed interpolated at the arm's compute."""

    key = "equal_compute"

    def compute(self, finished: Finished, setting: str) -> dict:
        if not _active(finished, setting):
            return {}
        arms, curve = finished.results[setting], _curve(finished, setting)
        computes = _computes(finished, setting)
        return {
            arm: self._one(arms, curve, arm, compute, finished.config.margin)
            for arm in _selection_arms(finished, setting)
            if (compute := computes[arm]) is not None
        }

    @staticmethod
    def _one(
        arms: Mapping[str, Mapping[int, dict]], curve: list[tuple[float, str]], arm: str, compute: float, margin: float
    ) -> dict:
        span = [curve[0][0], curve[-1][0]]
        if not span[0] <= compute <= span[1]:
            return {"compute": compute, "range": span, "verdict": OUT_OF_RANGE}
        seeds = sorted(set(arms[arm]).intersection(*(arms[name] for _, name in curve)))
        interpolated = {
            s: interpolate_log([(c, arms[name][s]["test_error"]) for c, name in curve], compute) for s in seeds
        }
        differences = {s: arms[arm][s]["test_error"] - interpolated[s] for s in seeds}
        summary = stats.paired_difference(list(differences.values()))
        below = [name for c, name in curve if c <= compute][-1]
        above = [name for c, name in curve if c >= compute][0]
        return {
            "compute": compute,
            "range": span,
            "bracket": [below, above],
            **summary.to_json(),
            "verdict": stats.verdict(summary.mean, summary.half_width, margin),
            "per_seed": differences,
        }

    def legend(self, summary: dict) -> list[str]:
        if not any(summary.get(self.key, {}).values()):
            return []
        return [
            "Equal compute: Δ = arm − the baseline curve of the same seed at the arm's compute, interpolated "
            "linearly in log compute between the two bracketing budgets, in points (mean ± 95% half-width); "
            "verdict as for the endpoints; out of range when the arm's compute lies outside the budgets run "
            "(never extrapolated)."
        ]

    def markdown(self, summary: dict, setting: str) -> list[str]:
        rows = summary.get(self.key, {}).get(setting, {})
        if not rows:
            return []
        lines = [
            "",
            "| equal compute | compute | between | n | Δ vs curve (pp) | 95% interval (pp) | verdict |",
            "|---|---|---|---|---|---|---|",
        ]
        for arm, e in rows.items():
            if e["verdict"] == OUT_OF_RANGE:
                span = f"budgets {e['range'][0]:.2f}–{e['range'][1]:.2f}"
                lines.append(f"| {arm} | {e['compute']:.2f} | {span} | - | - | - | {OUT_OF_RANGE} |")
                continue
            interval = f"[{points(e['low'], True)}, {points(e['high'], True)}]"
            delta = f"{points(e['mean'], True)} ± {points(e['half_width'])}"
            between = " – ".join(e["bracket"])
            lines.append(
                f"| {arm} | {e['compute']:.2f} | {between} | {e['n']} | {delta} | {interval} | {e['verdict']} |"
            )
        return lines

    def forest_rows(self, summary: dict) -> list[ForestRow]:
        return [
            (f"{setting}: {arm} - baseline at ×{e['compute']:.2f}", 100 * e["mean"], 100 * e["half_width"])
            for setting, rows in summary.get(self.key, {}).items()
            for arm, e in rows.items()
            if e["verdict"] != OUT_OF_RANGE
        ]


def _lowest(arms: Mapping[str, Mapping[int, dict]], curve: list[str], seed: int) -> str:
    """The budget of ``curve`` whose run of ``seed`` reached the lowest test error (the first of equals)."""
    return min(curve, key=lambda name: arms[name][seed]["test_error"])


class BestReachable:
    """Per selection arm: arm − the lowest error any baseline budget reached on the same seed."""

    key = "best_reachable"

    def compute(self, finished: Finished, setting: str) -> dict:
        if not _active(finished, setting):
            return {}
        arms, curve = finished.results[setting], [name for _, name in _curve(finished, setting)]
        rows = {}
        for arm in _selection_arms(finished, setting):
            seeds = sorted(set(arms[arm]).intersection(*(arms[name] for name in curve)))
            best = {s: _lowest(arms, curve, s) for s in seeds}
            differences = {s: arms[arm][s]["test_error"] - arms[best[s]][s]["test_error"] for s in seeds}
            summary = stats.paired_difference(list(differences.values()))
            rows[arm] = {
                **summary.to_json(),
                "verdict": stats.verdict(summary.mean, summary.half_width, finished.config.margin),
                "below_best_in": sum(d < 0 for d in differences.values()),
                "best_budget": best,
                "per_seed": differences,
            }
        return rows

    def legend(self, summary: dict) -> list[str]:
        if not any(summary.get(self.key, {}).values()):
            return []
        return [
            "Best reachable: Δ = arm − the lowest test error of any baseline budget on the same seed, in points "
            "(mean ± 95% half-width); better means the arm reaches an error no budget run reached (the minimum "
            "over budgets favours the baseline)."
        ]

    def markdown(self, summary: dict, setting: str) -> list[str]:
        rows = summary.get(self.key, {}).get(setting, {})
        if not rows:
            return []
        lines = [
            "",
            "| best reachable | n | Δ vs best budget (pp) | 95% interval (pp) | verdict | below best in |",
            "|---|---|---|---|---|---|",
        ]
        for arm, e in rows.items():
            interval = f"[{points(e['low'], True)}, {points(e['high'], True)}]"
            lines.append(
                f"| {arm} | {e['n']} | {points(e['mean'], True)} ± {points(e['half_width'])} | {interval} "
                f"| {e['verdict']} | {e['below_best_in']}/{e['n']} |"
            )
        return lines

    def forest_rows(self, summary: dict) -> list[ForestRow]:
        return []


class BreakEven:
    """Per selection arm: the cost ratio at which its gain over the baseline ×1 would cost what the baseline needs
    for the same gain, from the curve's slope between ×1 and the next budget (per seed, averaged)."""

    key = "break_even"

    def compute(self, finished: Finished, setting: str) -> dict:
        if not _active(finished, setting):
            return {}
        arms, curve = finished.results[setting], _curve(finished, setting)
        above = [(c, name) for c, name in curve if c > 1]
        if not above:
            return {}
        (step, upper), base, config = above[0], arms[BASELINE_ARM], finished.config
        seeds = sorted(set(base) & set(arms[upper]))
        slope = stats.paired_difference(
            [(arms[upper][s]["test_error"] - base[s]["test_error"]) / math.log(step) for s in seeds]
        ).mean
        rows = {}
        for arm in _selection_arms(finished, setting):
            spec = arm_named(arm)
            epochs = spec.epochs(config.base.epochs, config.branch_at, finished.ratios.get(setting, {}))
            if epochs is None:
                continue
            gain = endpoint(arms[arm], base, config.margin)
            tail = epochs / config.base.epochs - config.branch_at
            ratio = break_even_ratio(gain["mean"], slope, config.branch_at, tail)
            measured = finished.ratios.get(setting, {}).get(spec.step)
            rows[arm] = {
                "gain": gain["mean"],
                "gain_verdict": gain["verdict"],
                "slope": slope,
                "slope_between": [BASELINE_ARM, upper],
                "break_even_ratio": ratio,
                "measured_ratio": measured,
                "status": _status(ratio, measured, gain["verdict"]),
            }
        return rows

    def legend(self, summary: dict) -> list[str]:
        if not any(summary.get(self.key, {}).values()):
            return []
        return [
            "Break-even: the baseline's slope between ×1 and the next budget (points per doubling of compute) and "
            "the arm's gain over the baseline ×1 give the compute c* at which the baseline would gain as much, "
            "and the cost ratio R* = (c* − F) / (epochs after the branch / E) at which the arm would cost that; "
            "the arm pays where its measured R is below R*. Point estimates from the means, said only of a gain whose "
            "95% interval excludes 0 (else unresolved)."
        ]

    def markdown(self, summary: dict, setting: str) -> list[str]:
        rows = summary.get(self.key, {}).get(setting, {})
        if not rows:
            return []
        lines = [
            "",
            "| break-even | gain vs ×1 (pp) | slope (pp per doubling) | R* | measured R | |",
            "|---|---|---|---|---|---|",
        ]
        for arm, e in rows.items():
            ratio = e["break_even_ratio"]
            ratio_text = "-" if ratio is None else "any" if math.isinf(ratio) else f"{ratio:.2f}"
            measured = "-" if e["measured_ratio"] is None else f"{e['measured_ratio']:.2f}"
            lines.append(
                f"| {arm} | {points(e['gain'], True)} | {points(e['slope'] * math.log(2), True)} "
                f"| {ratio_text} | {measured} | {e['status']} |"
            )
        return lines

    def forest_rows(self, summary: dict) -> list[ForestRow]:
        return []


def _status(ratio: float | None, measured: float | None, gain_verdict: str) -> str:
    """Whether the arm pays, said only of a gain over ×1 that its interval resolves (a mean gain of -4.00 ± 7.16
    once read "pays")."""
    if gain_verdict == "unresolved":
        return "unresolved: so is its gain over ×1"
    if gain_verdict.startswith("equivalent"):
        return "no gain: equivalent to ×1 within ±δ"
    if gain_verdict != "better" or ratio is None:
        return "no gain over ×1"
    if math.isinf(ratio):
        return "pays (the baseline gains nothing from compute)"
    if measured is None:
        return "-"
    return "pays" if measured < ratio else "does not pay"


FRONTIER_ANALYSES = (Frontier(), EqualCompute(), BestReachable(), BreakEven())


def budget_label(arm: str, compute: float) -> str:
    """A baseline budget's point: its name and its compute, which differ after a branch ("baseline-x2 (×1.50)"
    at branch_at 0.5: only the tail is stretched)."""
    return f"{arm} (×{compute:.2f})"


def write_frontier(summary: dict, path: Path) -> Path | None:
    """``frontier.png``: per setting test error (%) against compute (log x), the baseline budgets joined as a
    curve, each selection arm a point, each with its paired 95% interval against the baseline ×1. None when there
    is no frontier, or when matplotlib is missing (a warning, as for ``curves.png``)."""
    import warnings

    settings = {setting: rows for setting, rows in summary.get("frontier", {}).items() if rows}
    if not settings:
        return None
    try:
        from lossaug.plots import _pyplot, _save

        plt = _pyplot()
    except ImportError as error:
        warnings.warn(f"{Path(path).name} not written: {error}", stacklevel=2)
        return None
    fig, axes = plt.subplots(1, len(settings), figsize=(6.5 * len(settings), 4.5), squeeze=False)
    for ax, (setting, rows) in zip(axes[0], settings.items(), strict=True):
        _draw_frontier(ax, setting, rows)
    return _save(plt, fig, Path(path), "lossaug compare: frontier")


def _draw_frontier(ax, setting: str, rows: Mapping[str, dict]) -> None:
    placed = {arm: row for arm, row in rows.items() if row["compute"] is not None}

    def bar(arm: str) -> float:
        half = placed[arm]["vs_baseline"]["half_width"]
        return 0.0 if arm == BASELINE_ARM or math.isnan(half) else 100 * half

    budgets: dict[float, str] = {}  # one point per compute (baseline-equal-time may equal a budget)
    for arm, row in placed.items():
        if not row["selects"]:
            budgets.setdefault(row["compute"], arm)
    curve = sorted(budgets.items())
    xs = [c for c, _ in curve]
    ys = [100 * placed[arm]["test_error"]["mean"] for _, arm in curve]
    ax.errorbar(xs, ys, yerr=[bar(arm) for _, arm in curve], fmt="o-", color="black", capsize=3, label="baseline")
    for c, arm in curve:
        ax.annotate(
            budget_label(arm, c),
            (c, 100 * placed[arm]["test_error"]["mean"]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=8,
        )
    for arm, row in placed.items():
        if row["selects"]:
            ax.errorbar(row["compute"], 100 * row["test_error"]["mean"], yerr=bar(arm), fmt="s", capsize=3, label=arm)
    ax.set_xscale("log")
    ax.set_xticks(xs, [f"{c:.2f}" for c in xs])
    ax.minorticks_off()
    ax.set_xlabel("compute (baseline runs, log scale)")
    ax.set_ylabel("test error (%)")
    ax.set_title(f"setting {setting}; bars: paired 95% interval vs baseline ×1", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
