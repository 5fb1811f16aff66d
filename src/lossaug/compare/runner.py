"""The runner: trains every run of the plan not yet finished (trunks and arms alike, resuming interrupted ones),
reads finished ones back, and writes the summary, its Markdown and the forest plot into the comparison's directory.
"""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path

import torch

from lossaug.compare.config import CompareConfig, check_arm_epochs, check_budget_range, validate_compare
from lossaug.compare.costs import ratio_values, resolve_costs
from lossaug.compare.frontier import write_frontier
from lossaug.compare.plan import RunSpec, plan
from lossaug.compare.progress import PlanClock
from lossaug.compare.report import check_commits, summarize, summary_markdown, write_forest
from lossaug.data import data_fingerprint, fingerprint_differences
from lossaug.errors import InputError
from lossaug.progress import Reporter
from lossaug.run.checkpoint import has_checkpoint
from lossaug.run.config import RENAMED, TrainConfig
from lossaug.run.metadata import git_commit, write_json, write_text
from lossaug.run.pipeline import prepare_data
from lossaug.run.runfiles import COUNT, FRACTION, NONE, SECONDS, check_fields, read_json, read_records
from lossaug.run.train import train

__all__ = ["read_result", "run_compare"]


# What a summary reads from a run's files (runfiles checks each, naming a broken file in one line).
FINAL_FIELDS = {"test_error": FRACTION, "train_error": FRACTION, "seconds": SECONDS, "epochs": COUNT, "device": (str,)}
FINAL_OPTIONAL = {"test_examples": COUNT, "num_classes": COUNT, "per_class_test_error": (dict,)}  # older runs lack them
CONFIG_FIELDS = {"config": (dict,)}
PROVENANCE_FIELDS = {"git_commit": (str, NONE), "git_dirty": (bool, NONE)}  # absent from runs of older versions


def _epoch_seconds(directory: Path) -> list[tuple[int, float]]:
    records = read_records(directory / "metrics.jsonl", {"seconds": SECONDS})
    return [(record["epoch"], record["seconds"]) for record in records]


def _run_config(directory: Path) -> dict:
    """A run's config.json, checked: its ``config`` (with integer ``epochs``) and provenance."""
    meta = read_json(directory / "config.json", CONFIG_FIELDS, PROVENANCE_FIELDS)
    check_fields(meta["config"], {"epochs": COUNT}, f"{directory / 'config.json'} config")
    return meta


def read_result(directory: Path, trunk: Path | None = None) -> dict:
    """A finished run's results and provenance. ``seconds`` is the median epoch time x epochs: on a shared
    machine a few epochs can stall for tens of seconds (seen here: 34 s against 0.47 s), and the sum would charge
    that to the method; ``seconds_total`` keeps the plain sum. A run branched from ``trunk`` counts the trunk's
    epochs at the trunk's median and its own later epochs at its own."""
    directory = Path(directory)
    final = read_json(directory / "final.json", FINAL_FIELDS, FINAL_OPTIONAL)
    meta = _run_config(directory)
    own = _epoch_seconds(directory)
    if not own or own[-1][0] != final["epochs"]:
        last = f"its last epoch record is {own[-1][0]}" if own else "it holds no epoch records"
        raise InputError(
            f"{directory / 'metrics.jsonl'}: {last}, but {directory / 'final.json'} records "
            f"{final['epochs']} epochs: damaged, or cut short?"
        )
    phases = [[s for _, s in own]]
    if trunk is not None:
        head = _epoch_seconds(trunk)
        trunk_last = max((epoch for epoch, _ in head), default=0)
        phases = [[s for _, s in head], [s for epoch, s in own if epoch > trunk_last]]
    return {
        **final,
        "seconds_total": final["seconds"],
        "seconds": sum(statistics.median(phase) * len(phase) for phase in phases if phase),
        "epochs": meta["config"]["epochs"],
        "dir": str(directory),
        "git_commit": meta.get("git_commit"),
        "git_dirty": meta.get("git_dirty"),
    }


def _provenance(directory: Path) -> dict:
    meta = _run_config(directory)
    return {"dir": str(directory), "git_commit": meta.get("git_commit"), "git_dirty": meta.get("git_dirty")}


def _check_same_config(config: TrainConfig, out: Path, fingerprint: dict | None) -> None:
    """A run found in ``out`` must have been made with ``config`` and on the data whose ``data_fingerprint`` is
    ``fingerprint``: otherwise its results would be reported under a configuration (or pooled with runs of data)
    that did not produce them."""
    # Fields the saved run predates take their defaults; where things live (out, cache, trunk) may differ, and the
    # data too where both fingerprints say they are the same; a branched run is never taken for one from the start
    # or the other way round.
    meta = _run_config(out)
    saved = {**dataclasses.asdict(TrainConfig()), **{RENAMED.get(k, k): v for k, v in meta["config"].items()}}
    saved_print = (meta.get("resolved") or {}).get("data_fingerprint")
    ignored = ("out", "cache_dir", "branch_from", *(("data",) if saved_print and fingerprint else ()))
    changed = [
        f"{k}: {saved[k]!r} -> {v!r}"
        for k, v in dataclasses.asdict(config).items()
        if k not in ignored and saved[k] != v
    ]
    if (saved.get("branch_from") is None) != (getattr(config, "branch_from", None) is None):
        changed.append(f"branch_from: {saved.get('branch_from')!r} -> {getattr(config, 'branch_from', None)!r}")
    if saved_print and fingerprint:
        changed += [f"data fingerprint {d}" for d in fingerprint_differences(saved_print, fingerprint)]
    if changed:
        raise InputError(f"{out} holds a run with other options ({'; '.join(changed)}); use another --out")


def _plan_fingerprint(config: CompareConfig) -> dict | None:
    """The ``data_fingerprint`` of the comparison's training set, as each of its runs records it in config.json;
    None when ``out`` holds no run yet (nothing to check it against, and no data to load for it)."""
    if not any((spec.out / "config.json").exists() for spec in plan(config)):
        return None
    data = prepare_data(config.base, torch.device("cpu"), None)
    return data_fingerprint(data.train_images, data.train_labels, data.num_classes)


def _log(reporter: Reporter | None, line: str) -> None:
    if reporter is not None:
        reporter.log(line)


def _run(spec: RunSpec, reporter: Reporter | None, fingerprint: dict | None, trunk: Path | None = None) -> dict:
    """Train ``spec`` unless it is finished (resuming from its checkpoint if it has one); its results, or only its
    provenance for a trunk. A run found in its directory must have been made with its config, on the data of
    ``fingerprint``."""
    assert spec.config is not None, f"{spec.out}: planned before its cost ratio was known"
    out = spec.out
    if (out / "config.json").exists():
        _check_same_config(spec.config, out, fingerprint)
    if spec.finished:
        _log(reporter, f"{'trunk ' if spec.arm is None else ''}done already: {out}")
    else:
        train(spec.config, reporter=reporter, resume=has_checkpoint(out), overwrite=not has_checkpoint(out))
    return _provenance(out) if spec.arm is None else read_result(out, trunk)


def _preflight_commits(config: CompareConfig) -> None:
    """Refuse before training when the runs already in ``out``, plus any this commit would train or resume, would
    mix commits: better than finding out after hours of training."""
    specs = plan(config)
    runs = [_provenance(spec.out) for spec in specs if (spec.out / "config.json").exists()]
    if not all(spec.finished for spec in specs):
        runs.append({"dir": "runs this command trains now", "git_commit": git_commit()})
    check_commits(runs, config.allow_mixed_commits)


def _describe(spec: RunSpec, branch_at: float) -> str:
    if spec.arm is None:
        return f"== setting {spec.setting}, seed {spec.seed}, trunk (baseline to {branch_at:g})"
    assert spec.config is not None, f"{spec.out}: planned before its cost ratio was known"
    return f"== setting {spec.setting}, seed {spec.seed}, arm {spec.arm} ({spec.config.epochs} epochs)"


def run_compare(config: CompareConfig, reporter: Reporter | None = None) -> dict:
    """Run every (setting, seed, trunk and arm) of the plan not yet finished, then write ``summary.json``,
    ``summary.md``, ``forest.png`` and, with budgets, ``frontier.png`` into ``out`` and return the summary."""
    validate_compare(config)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    _preflight_commits(config)
    costs = resolve_costs(config, reporter)
    for ratios in ratio_values(costs).values():  # a measured R too small for an arm's epochs: before any training
        check_arm_epochs(config, ratios)
        check_budget_range(config, ratios)
    results: dict[str, dict[str, dict[int, dict]]] = {}
    trunks: list[dict] = []
    specs = plan(config, ratio_values(costs))
    fingerprint = _plan_fingerprint(config)
    for spec in specs:  # runs found of another config or data are refused before any is trained
        if spec.config is not None and (spec.out / "config.json").exists():
            _check_same_config(spec.config, spec.out, fingerprint)
    clock = PlanClock(specs, config.branch_at)
    for index, spec in enumerate(specs):
        arms = results.setdefault(spec.setting, {})
        _log(reporter, f"{_describe(spec, config.branch_at)} {clock.start(index)}")
        if spec.arm is None:
            trunks.append(_run(spec, reporter, fingerprint))
        else:
            assert spec.config is not None, f"{spec.out}: planned before its cost ratio was known"
            trunk = spec.config.branch_from
            arms.setdefault(spec.arm, {})[spec.seed] = _run(
                spec, reporter, fingerprint, None if trunk is None else Path(trunk)
            )
        clock.done(index)
    summary = summarize(config, results, costs, trunks)
    write_json(summary, out / "summary.json")
    write_text(summary_markdown(summary), out / "summary.md")
    write_forest(summary, out / "forest.png")
    write_frontier(summary, out / "frontier.png")
    return summary
