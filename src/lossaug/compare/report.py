"""The summary of a finished ``lossaug compare``: per setting the per-arm rows and what each analysis computes
(``analyses.ANALYSES``: the paired endpoints first), the design, the provenance of every run (one git commit unless
mixed commits are allowed), the forest plot and the Markdown.

Errors are fractions in the summary dict (``summary.json``) and percentage points in Markdown and the plot.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lossaug.compare import stats
from lossaug.compare.analyses import Analysis, Finished, ForestRow, PairedEndpoints, granularity, test_set
from lossaug.compare.arms import BASELINE_ARM, PROPOSED_STEP, arm_named
from lossaug.compare.config import CompareConfig, all_arms
from lossaug.compare.costs import ratio_values
from lossaug.compare.frontier import FRONTIER_ANALYSES
from lossaug.errors import InputError

__all__ = [
    "ANALYSES",
    "arm_rows",
    "check_commits",
    "forest_rows",
    "mean_interval",
    "summarize",
    "summary_costs",
    "summary_markdown",
    "write_forest",
]


# The analyses every summary carries, each under its key, in the order of their sections: the paired endpoints,
# then the frontier's table and verdicts (empty without budgets).
ANALYSES: tuple[Analysis, ...] = (PairedEndpoints(), *FRONTIER_ANALYSES)
# An arm whose error is within this share of chance error (7.5 points at 4 classes, 9 at 10) learned little: its
# verdicts say little about selection (seen: every arm at 68-73% on 4 classes, reported as usual).
NEAR_CHANCE = 0.1


def mean_interval(values: Sequence[float]) -> dict:
    """n, mean, sample std and the 95% t-interval half-width of ``values`` (0 for a sample sd of 0: a row, not a
    verdict; the baseline's own difference to itself is 0 ± 0)."""
    summary = stats.paired_difference(values)
    return {"n": summary.n, "mean": summary.mean, "std": summary.sd, "ci95": stats.half_width(summary.sd, summary.n)}


def check_commits(runs: Sequence[Mapping[str, Any]], allow_mixed: bool) -> dict:
    """``{"commits": {commit: number of runs}, "dirty": any run from a dirty tree}`` of runs (dicts with
    ``git_commit``, ``git_dirty`` and ``dir``); raises ValueError when they come from more than one commit, unless
    ``allow_mixed``. A missing commit counts as its own value, "unknown"."""
    commits: dict[str, list[str]] = {}
    for run in runs:
        commits.setdefault(run.get("git_commit") or "unknown", []).append(str(run.get("dir", "?")))
    if len(commits) > 1 and not allow_mixed:
        listed = "; ".join(f"{commit} ({len(dirs)} runs, e.g. {dirs[0]})" for commit, dirs in sorted(commits.items()))
        raise InputError(
            f"runs come from {len(commits)} git commits: {listed}; rerun them under one commit or "
            "pass --allow-mixed-commits"
        )
    dirty = [run.get("git_dirty") for run in runs]
    return {
        "commits": {commit: len(dirs) for commit, dirs in sorted(commits.items())},
        "dirty": True if any(dirty) else None if any(d is None for d in dirty) else False,
        "mixed_allowed": allow_mixed,
    }


def arm_rows(finished: Finished, setting: str) -> dict:
    """Per arm of ``setting``: seeds, epochs, test and train error, seconds, the paired difference to the baseline
    and time ratio (``mean_interval`` dicts), compute in baseline runs (``declared_cost``) and the per-seed values."""
    config, arms = finished.config, finished.results[setting]
    baseline = arms.get(BASELINE_ARM, {})
    ratios = finished.ratios.get(setting, {})
    rows = {}
    for arm, per_seed in arms.items():
        seeds = sorted(per_seed)
        paired = [s for s in seeds if s in baseline]
        rows[arm] = {
            "seeds": seeds,
            "epochs": [per_seed[s]["epochs"] for s in seeds],
            "test_error": mean_interval([per_seed[s]["test_error"] for s in seeds]),
            "train_error": mean_interval([per_seed[s]["train_error"] for s in seeds]),
            "seconds": mean_interval([per_seed[s]["seconds"] for s in seeds]),
            "diff_to_baseline": mean_interval([per_seed[s]["test_error"] - baseline[s]["test_error"] for s in paired]),
            "time_ratio": mean_interval([per_seed[s]["seconds"] / baseline[s]["seconds"] for s in paired]),
            "declared_cost": arm_named(arm).compute(config.base.epochs, config.branch_at, ratios),
            "per_seed": {
                s: {k: per_seed[s][k] for k in ("test_error", "train_error", "seconds", "epochs")} for s in seeds
            },
        }
    return rows


def summarize(
    config: CompareConfig,
    results: dict[str, dict[str, dict[int, dict]]],
    costs: Mapping[str, Mapping[str, dict]] | None = None,
    trunks: Sequence[dict] = (),
) -> dict:
    """Per-arm rows and every analysis of every setting, the design and the provenance of every run (raises
    ValueError for runs of several commits unless ``config.allow_mixed_commits``). ``costs``: per setting the
    cost ratio of each step kind (``costs.resolve_costs``)."""
    costs = costs or {}
    runs = [run for arms in results.values() for per_seed in arms.values() for run in per_seed.values()]
    provenance = check_commits([*runs, *trunks], config.allow_mixed_commits)
    finished = Finished(config, results, ratio_values(costs))
    rows = {setting: arm_rows(finished, setting) for setting in results}
    base = dataclasses.asdict(config.base)
    for name in ("method", "setting", "seed", "out", "stop_at", "branch_from"):
        base.pop(name, None)
    return {
        "base_config": base,
        "arms": list(all_arms(config)),
        "seeds": list(config.seeds),
        "settings": rows,
        "test_sets": {setting: _tested(test_set(results[setting]), rows[setting]) for setting in results},
        **{
            analysis.key: {setting: analysis.compute(finished, setting) for setting in results} for analysis in ANALYSES
        },
        "design": {
            "branch_at": config.branch_at,
            "margin": config.margin,
            "resolution": stats.RESOLUTION,
            "confidence": stats.CONFIDENCE,
            "power": stats.POWER,
            "units": "errors, differences, margin and resolution are fractions of test images (x100 = points)",
            **({"budgets": list(config.budgets)} if config.budgets else {}),
        },
        "cost_ratio": {s: _public(kinds[PROPOSED_STEP]) for s, kinds in costs.items() if PROPOSED_STEP in kinds},
        **(
            {
                "cost_ratios": {
                    setting: {kind: _public(cost) for kind, cost in kinds.items()} for setting, kinds in costs.items()
                }
            }
            if costs
            else {}
        ),
        "provenance": provenance,
        "device": ", ".join(sorted({run["device"] for run in runs})),
    }


def summary_costs(summary: Mapping[str, Any]) -> dict[str, dict[str, dict]]:
    """Per setting the cost ratio of each step kind a summary records (``summarize``'s ``costs``, without the
    bench output). A summary written before other step kinds had cost ratios holds the proposed step's alone, under
    ``cost_ratio``."""
    return summary.get("cost_ratios") or {s: {PROPOSED_STEP: cost} for s, cost in summary.get("cost_ratio", {}).items()}


def _tested(tested: dict, rows: Mapping[str, dict]) -> dict:
    """``test_set``'s dict with ``chance`` (1 - 1/classes; None unknown) and ``near_chance``, the arms whose mean
    test error is within ``NEAR_CHANCE`` of it."""
    classes = tested.get("classes")
    chance = 1 - 1 / classes if classes else None
    limit = math.inf if chance is None else chance * (1 - NEAR_CHANCE)
    near = [arm for arm, row in rows.items() if row["test_error"]["mean"] >= limit]
    return {**tested, "chance": chance, "near_chance": near}


def _public(cost: Mapping[str, Any]) -> dict:
    return {k: v for k, v in cost.items() if k != "bench"}  # the bench's whole output stays in cost_ratio.json


def forest_rows(summary: dict) -> list[ForestRow]:
    """``(label, mean, half-width)`` in percentage points: every analysis' rows (the endpoints' first)."""
    return [row for analysis in ANALYSES for row in analysis.forest_rows(summary)]


def write_forest(summary: dict, path: Path) -> Path | None:
    """The summary's forest rows as a forest plot (``plots.plot_forest``); None when there is no row, or when
    matplotlib is missing (a warning: the numbers matter more than the plot, as for ``curves.png``)."""
    rows = forest_rows(summary)
    if not rows:
        return None
    design = summary["design"]
    title = f"lossaug compare: branch at {design['branch_at']:g}" if design["branch_at"] else "lossaug compare"
    try:
        from lossaug.plots import plot_forest

        return plot_forest(rows, path, margin=100 * design["margin"], title=title)
    except ImportError as error:
        warnings.warn(f"{Path(path).name} not written: {error}", stacklevel=2)
        return None


def _pct(stats_row: dict, key: str = "std") -> str:
    if stats_row["n"] == 0 or math.isnan(stats_row["mean"]):
        return "-"
    spread = stats_row[key]
    mean = 100 * stats_row["mean"]
    return f"{mean:.2f} ± {100 * spread:.2f}" if not math.isnan(spread) else f"{mean:.2f}"


def _design_lines(summary: dict) -> list[str]:
    design, provenance = summary["design"], summary.get("provenance", {})
    branch = design.get("branch_at", 0.0)
    lines = [
        "Design: "
        + (
            f"every arm continues from the baseline's checkpoint at {branch:.0%} of its steps (trunk shared, "
            "branches differ only after it)."
            if branch
            else "every arm trained from the start (shared seed, initialisation and data order)."
        ),
    ]
    for setting, kinds in summary_costs(summary).items():
        for kind, cost in kinds.items():
            lines.append(_cost_line(summary.get("arms", ()), setting, kind, cost))
    commits = ", ".join(f"{commit[:12]} ({n} runs)" for commit, n in provenance.get("commits", {}).items())
    dirty = {True: "yes", False: "no", None: "not recorded for every run"}[provenance.get("dirty")]
    lines.append(f"Commits: {commits or '-'}; uncommitted changes in the tree: {dirty}.")
    return lines


def _cost_line(arms: Sequence[str], setting: str, kind: str, cost: Mapping[str, Any]) -> str:
    """What R of ``kind`` is and where it came from, with the notes of the arms it sizes."""
    how = "declared" if cost["source"] == "declared" else "measured once by lossaug bench at the start"
    sized = [arm_named(arm) for arm in arms]
    notes = "".join(
        f" {arm.note}"
        for arm in sized
        if arm.note and kind == (arm.budget if isinstance(arm.budget, str) else arm.step)
    )
    what = "R (one proposed step in baseline steps)" if kind == PROPOSED_STEP else f"R of {kind} (per image)"
    return f"Cost ratio {what}, setting {setting}: {cost['value']:.3f}, {how}{';' + notes if notes else '.'}"


def _arm_table(rows: Mapping[str, dict]) -> list[str]:
    lines = [
        "",
        "| arm | n | epochs | test error % | train error % | Δ test error vs baseline (pp) "
        "| declared cost | time ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm, row in rows.items():
        epochs = sorted(set(row["epochs"]))
        delta_text = "-" if arm == BASELINE_ARM else _pct(row["diff_to_baseline"], "ci95")
        ratio = row["time_ratio"]
        ratio_text = f"{ratio['mean']:.2f}" if ratio["n"] else "-"
        cost = row.get("declared_cost")
        cost_text = "-" if cost is None else f"{cost:.2f}"
        lines.append(
            f"| {arm} | {row['test_error']['n']} | {', '.join(map(str, epochs))} | {_pct(row['test_error'])} "
            f"| {_pct(row['train_error'])} | {delta_text} | {cost_text} | {ratio_text} |"
        )
    return lines


def _test_set_lines(tested: Mapping[str, Any]) -> list[str]:
    """The test set's granularity, where the runs record it (summaries of older runs read as they did), and a
    warning for arms near chance."""
    lines = ["", f"Test set: {granularity(tested['examples'])}."] if tested.get("examples") else []
    if tested.get("near_chance"):
        chance = f"{100 * tested['chance']:.2f}% error at {tested['classes']} classes"
        arms = ", ".join(tested["near_chance"])
        lines += ["", f"**Warning: near chance** ({chance}): {arms} learned little; their verdicts say little."]
    return lines


def summary_markdown(summary: dict) -> str:
    """The summary as Markdown: the design and each analysis' legend, then per setting each analysis' section
    (the endpoints table first) and the per-arm table."""
    base = summary["base_config"]
    design = summary.get("design", {"branch_at": 0.0, "margin": 0.005, "resolution": stats.RESOLUTION})
    summary = {**summary, "design": design}
    data = " ".join(str(part) for part in (base["dataset"], base["data"]) if part)
    subset = f" (train_size {base['train_size']})" if base["train_size"] else ""
    lines = [
        "# lossaug compare",
        "",
        f"Model {base['model']} (width {base['width']}), data {data}{subset}, {base['epochs']} epochs, "
        f"batch {base['batch_size']}, lr {base['lr']}, M = {base.get('num_candidates', base.get('candidates'))}; "
        f"device: {summary['device']}.",
        "",
        *_design_lines(summary),
    ]
    for legend in (analysis.legend(summary) for analysis in ANALYSES):
        lines += ["", *legend] if legend else []
    lines += [
        "",
        "Arms: errors in %, mean ± sample std over seeds; Δ to the baseline ± the 95% half-width. Declared cost: "
        "compute in baseline runs from R. Time ratio: measured training wall-clock ÷ the baseline's, same seed, "
        "each taken as median epoch time × epochs (robust to stalls on a shared machine).",
    ]
    for setting, rows in summary["settings"].items():
        lines += ["", f"## Setting {setting}"]
        for analysis in ANALYSES:
            lines += analysis.markdown(summary, setting)
        lines += _arm_table(rows)
        lines += _test_set_lines(summary.get("test_sets", {}).get(setting, {}))
    return "\n".join(lines) + "\n"
