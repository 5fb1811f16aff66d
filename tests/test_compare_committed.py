"""Every committed comparison under docs/results/, recomputed from its committed runs by today's code: the same
arm rows and endpoints as its summary.json, and for the current format the same summary.md."""

import dataclasses
import json
import math
from pathlib import Path

import pytest

from lossaug.compare import (
    CompareConfig,
    read_result,
    run_dir,
    summarize,
    summary_costs,
    summary_markdown,
    trunk_dir,
)
from lossaug.run.config import RENAMED, TrainConfig

ROOT = Path(__file__).resolve().parents[1]
SUMMARIES = sorted(
    path
    for path in (ROOT / "docs" / "results").rglob("summary.json")
    if "settings" in json.loads(path.read_text())  # lossaug demo's summary is another kind
)
# Summaries written before the summary had endpoints, a design and exact t quantiles (a t table then): their
# 95% half-widths differ in the fifth significant digit, everything else must match.
OLD_FORMAT = {
    "cpu-protocol",
    "cheap-options/proxy-cnn-4",
    "cheap-options/select-every-3",
    "cheap-options/select-from-0.5",
}


def _name(path: Path) -> str:
    return path.parent.relative_to(ROOT / "docs" / "results").as_posix()


def _recompute(saved: dict, out: Path) -> dict:
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    options = {RENAMED.get(k, k): v for k, v in saved["base_config"].items()}
    base = TrainConfig(**{k: v for k, v in options.items() if k in fields})
    design = saved.get("design", {})
    mixed = saved.get("provenance", {}).get("mixed_allowed", True)
    budgets = tuple(design.get("budgets", ()))
    arms = tuple(arm for arm in saved["arms"] if not (budgets and arm.startswith("baseline-x")))  # from budgets
    config = CompareConfig(
        base=base,
        out=str(out),
        arms=arms,
        settings=tuple(saved["settings"]),
        seeds=tuple(saved["seeds"]),
        branch_at=design.get("branch_at", 0.0),
        margin=design.get("margin", 0.005),
        allow_mixed_commits=mixed,
        budgets=budgets,
    )
    results = {
        setting: {
            arm: {
                seed: read_result(
                    run_dir(config, setting, arm, seed),
                    trunk_dir(config, setting, seed) if config.branch_at > 0 else None,
                )
                for seed in config.seeds
            }
            for arm in rows
        }
        for setting, rows in saved["settings"].items()
    }
    trunks = [
        _provenance(trunk_dir(config, setting, seed))
        for setting in results
        for seed in config.seeds
        if config.branch_at > 0
    ]
    # Every step kind's cost ratio where the summary has them (frontier arms), else the proposed step's alone.
    summary = summarize(config, results, summary_costs(saved), trunks)
    return json.loads(json.dumps(summary))  # keys and NaN as in the file


def _provenance(directory: Path) -> dict:
    meta = json.loads((directory / "config.json").read_text())
    return {"dir": str(directory), "git_commit": meta.get("git_commit"), "git_dirty": meta.get("git_dirty")}


def _same(saved, new, path: str, rel: float) -> list[str]:
    """Where ``new`` differs from ``saved`` (only the keys ``saved`` has); floats within ``rel`` if given."""
    if isinstance(saved, dict):
        if not isinstance(new, dict):
            return [f"{path}: a table -> {new!r}"]
        return [d for k in saved for d in _same(saved[k], new.get(k, "missing"), f"{path}/{k}", rel)]
    if isinstance(saved, float) and isinstance(new, float):
        if math.isnan(saved) and math.isnan(new) or math.isclose(saved, new, rel_tol=rel, abs_tol=0):
            return []
    elif saved == new:
        return []
    return [f"{path}: {saved!r} -> {new!r}"]


def test_every_committed_comparison_is_found():
    names = {_name(path) for path in SUMMARIES}
    assert {"power/cpu-branch-A", "power/cpu-branch-B", "power/cpu-start-A", "transfer/compare-A", "fsdd"} <= names
    assert names >= OLD_FORMAT


@pytest.mark.parametrize("path", SUMMARIES, ids=_name)
def test_committed_summary_is_recomputed_from_its_runs(path):
    saved = json.loads(path.read_text())
    new = _recompute(saved, path.parent)
    if _name(path) in OLD_FORMAT:
        assert not _same(_without_ci95(saved["settings"]), _without_ci95(new["settings"]), "settings", rel=0)
        assert not _same(saved["settings"], new["settings"], "settings", rel=1e-3)
        return
    assert not _same(saved["settings"], new["settings"], "settings", rel=0)
    assert not _same(saved["endpoints"], new["endpoints"], "endpoints", rel=0)
    assert set(new["settings"]) == set(saved["settings"]) and set(new["endpoints"]) == set(saved["endpoints"])
    for key in ("arms", "seeds", "design", "cost_ratio", "provenance", "device"):
        assert new[key] == saved[key], key
    assert summary_markdown(new) == (path.parent / "summary.md").read_text()


def _without_ci95(value):
    if isinstance(value, dict):
        return {k: _without_ci95(v) for k, v in value.items() if k != "ci95"}
    return value
