"""``lossaug compare``: arms x settings x seeds, run one after another into one directory, then summarised with
the paired differences that answer "does selection help, and does it pay for its time?".

Arms are ``baseline``, ``proposed``, ``maxup`` and ``baseline-equal-time``: the baseline given the proposed arm's
compute in baseline steps, from a cost ratio R (one proposed step costs R baseline steps) that is declared or
measured once by ``lossaug bench`` at the start, so that how busy the machine was during one seed cannot size it.
Every arm gets the same data, model, optimiser and seed; only the method (and, for the equal-compute arm, the epoch
count) differs.

With ``branch_at`` F > 0 each (setting, seed) first trains a trunk, the baseline up to fraction F of its steps, and
every arm continues from the trunk's checkpoint with its own method: nothing differs before F, which removes most
of the seed-to-seed noise from the paired differences. Finished runs (``final.json``; ``trunk.json`` for a trunk)
are read back, not rerun; interrupted ones resume from their checkpoint.

The summary gives per setting the endpoints (proposed - baseline, proposed - baseline-equal-time and, if run,
maxup - baseline): mean paired difference of test error with its 95% t-interval, paired sd, n, a verdict against
the margin δ, the minimal effect detectable with 80% power and the seeds that would resolve ±0.3 points; and per
arm n, mean and sd of test and train error, epochs, declared cost and measured time ratio. Errors are fractions in
``summary.json`` and percentage points in ``summary.md`` and ``forest.png``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lossaug import stats
from lossaug.checkpoint import has_checkpoint
from lossaug.config import RENAMED, SETTINGS, TrainConfig, validate_config
from lossaug.errors import InputError
from lossaug.metadata import git_commit
from lossaug.progress import Reporter
from lossaug.train import train

ARMS = ("baseline", "proposed", "maxup", "baseline-equal-time")
# (treatment, control) pairs reported as endpoints, when both arms ran; the first two are the primary ones.
ENDPOINTS = (("proposed", "baseline"), ("proposed", "baseline-equal-time"), ("maxup", "baseline"))
COST_RATIO_FILE = "cost_ratio.json"  # the R used, kept so that a resumed comparison sizes its arm the same way
PROTOCOL_KEYS = ("out", "arms", "settings", "seeds", "branch_at", "cost_ratio", "margin_points", "allow_mixed_commits")


@dataclass(frozen=True)
class CompareConfig:
    """``base`` holds everything the arms share (its ``method``, ``setting``, ``seed``, ``epochs`` and ``out``
    are set per run); ``out`` is the comparison's directory."""

    base: TrainConfig
    out: str
    arms: tuple[str, ...] = ARMS
    settings: tuple[str, ...] = ("A",)
    seeds: tuple[int, ...] = (0, 1, 2)
    branch_at: float = 0.0  # F in [0, 1): fraction of the baseline's steps every arm shares (0: from the start)
    cost_ratio: float | None = None  # R, a proposed step in baseline steps; None: measured by bench at the start
    margin: float = 0.005  # δ of "equivalent within ±δ", a fraction of test images (0.005 = 0.5 points)
    allow_mixed_commits: bool = False  # summarise runs made by different git commits together


def validate_compare(config: CompareConfig) -> None:
    for arm in config.arms:
        if arm not in ARMS:
            raise InputError(f"unknown arm {arm!r}; choose from {list(ARMS)}")
    for setting in config.settings:
        if setting not in SETTINGS:
            raise InputError(f"unknown setting {setting!r}; choose from {list(SETTINGS)}")
    if not config.seeds or len(set(config.seeds)) != len(config.seeds):
        raise InputError(f"seeds must be distinct and non-empty, got {list(config.seeds)}")
    if "baseline-equal-time" in config.arms and not {"baseline", "proposed"} <= set(config.arms):
        raise InputError("arm 'baseline-equal-time' needs the arms 'baseline' and 'proposed' (it is sized from them)")
    if not 0 <= config.branch_at < 1:
        raise InputError(f"branch_at must be in [0, 1), got {config.branch_at}")
    if config.cost_ratio is not None and not (config.cost_ratio > 0 and math.isfinite(config.cost_ratio)):
        raise InputError(f"cost_ratio must be a finite number > 0, got {config.cost_ratio}")
    if not 0 < config.margin < 1:
        raise InputError(f"margin must be in (0, 1) as a fraction (0.005 = 0.5 points), got {config.margin}")
    if config.branch_at > 0 and not {"stop_at", "branch_from"} <= {f.name for f in dataclasses.fields(TrainConfig)}:
        raise InputError(f"branch_at {config.branch_at} needs a training loop with stop_at and branch_from")
    for name in ("stop_at", "branch_from"):
        if getattr(config.base, name, None) is not None:
            raise InputError(f"compare sets {name} per run (use branch_at), got {name}={getattr(config.base, name)!r}")
    validate_config(config.base)


def mean_interval(values: Sequence[float]) -> dict:
    """n, mean, sample std and the 95% t-interval half-width of ``values``."""
    summary = stats.paired_difference(values)
    return {"n": summary.n, "mean": summary.mean, "std": summary.sd, "ci95": summary.half_width}


def equal_compute_epochs(base_epochs: int, cost_ratio: float, branch_at: float = 0.0) -> int:
    """Epochs of the baseline that cost what the proposed arm costs in baseline steps: its ``E·F`` epochs before
    the branch count 1 each, its ``E·(1-F)`` after count R each; ``E·F + E·(1-F)·R`` rounded half up."""
    return math.floor(base_epochs * branch_at + base_epochs * (1 - branch_at) * cost_ratio + 0.5)


def declared_cost(config: CompareConfig, arm: str, cost_ratio: float | None) -> float | None:
    """Compute of ``arm`` in baseline runs (the baseline = 1), from the declared or benched R; None if R unknown."""
    if arm == "baseline":
        return 1.0
    if cost_ratio is None:
        return None
    if arm == "baseline-equal-time":
        return equal_compute_epochs(config.base.epochs, cost_ratio, config.branch_at) / config.base.epochs
    return config.branch_at + (1 - config.branch_at) * cost_ratio


def run_dir(config: CompareConfig, setting: str, arm: str, seed: int) -> Path:
    return Path(config.out) / f"setting-{setting}" / arm / f"seed-{seed}"


def trunk_dir(config: CompareConfig, setting: str, seed: int) -> Path:
    return Path(config.out) / f"setting-{setting}" / "trunk" / f"seed-{seed}"


def trunk_config(config: CompareConfig, setting: str, seed: int) -> TrainConfig:
    """The baseline of ``setting`` and ``seed`` trained to fraction ``branch_at`` of its steps."""
    out = str(trunk_dir(config, setting, seed))
    return dataclasses.replace(config.base, method="baseline", setting=setting, seed=seed, stop_at=config.branch_at,
                               out=out)  # fmt: skip


def arm_config(config: CompareConfig, setting: str, arm: str, seed: int, cost_ratio: float | None) -> TrainConfig:
    """The run of ``arm``: its method and epochs, continuing from the trunk when ``branch_at`` > 0."""
    method, epochs = arm, config.base.epochs
    if arm == "baseline-equal-time":
        assert cost_ratio is not None
        method, epochs = "baseline", equal_compute_epochs(config.base.epochs, cost_ratio, config.branch_at)
    branch = {"branch_from": str(trunk_dir(config, setting, seed))} if config.branch_at > 0 else {}
    return dataclasses.replace(config.base, method=method, setting=setting, seed=seed, epochs=epochs,
                               out=str(run_dir(config, setting, arm, seed)), **branch)  # fmt: skip


def _epoch_seconds(directory: Path) -> list[tuple[int, float]]:
    lines = (directory / "metrics.jsonl").read_text().splitlines()
    return [(record["epoch"], record["seconds"]) for record in map(json.loads, filter(str.strip, lines))]


def read_result(directory: Path, trunk: Path | None = None) -> dict:
    """A finished run's results and provenance. ``seconds`` is the median epoch time x epochs: on a shared
    machine a few epochs can stall for tens of seconds (seen here: 34 s against 0.47 s), and the sum would charge
    that to the method; ``seconds_total`` keeps the plain sum. A run branched from ``trunk`` counts the trunk's
    epochs at the trunk's median and its own later epochs at its own."""
    directory = Path(directory)
    final = json.loads((directory / "final.json").read_text())
    meta = json.loads((directory / "config.json").read_text())
    own = _epoch_seconds(directory)
    phases = [[s for _, s in own]]
    if trunk is not None:
        head = _epoch_seconds(trunk)
        last = max((epoch for epoch, _ in head), default=0)
        phases = [[s for _, s in head], [s for epoch, s in own if epoch > last]]
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
    meta = json.loads((directory / "config.json").read_text())
    return {"dir": str(directory), "git_commit": meta.get("git_commit"), "git_dirty": meta.get("git_dirty")}


def _check_same_config(config: TrainConfig, out: Path) -> None:
    """A run found in ``out`` must have been made with ``config``: otherwise its results would be reported under
    a configuration that did not produce them."""
    # Fields the saved run predates take their defaults; where things live (out, cache, data, trunk) may differ,
    # but a branched run is never taken for one from the start or the other way round.
    saved_config = json.loads((out / "config.json").read_text())["config"]
    saved = {**dataclasses.asdict(TrainConfig()), **{RENAMED.get(k, k): v for k, v in saved_config.items()}}
    ignored = ("out", "cache_dir", "data", "branch_from")
    changed = [f"{k}: {saved[k]!r} -> {v!r}" for k, v in dataclasses.asdict(config).items()
               if k not in ignored and saved[k] != v]  # fmt: skip
    if (saved.get("branch_from") is None) != (getattr(config, "branch_from", None) is None):
        changed.append(f"branch_from: {saved.get('branch_from')!r} -> {getattr(config, 'branch_from', None)!r}")
    if changed:
        raise InputError(f"{out} holds a run with other options ({'; '.join(changed)}); use another --out")


def _log(reporter: Reporter | None, line: str) -> None:
    if reporter is not None:
        reporter.log(line)


def _run_arm(config: TrainConfig, reporter: Reporter | None, trunk: Path | None = None) -> dict:
    out = Path(config.out)
    if (out / "config.json").exists():
        _check_same_config(config, out)
    if (out / "final.json").exists():
        _log(reporter, f"done already: {out}")
        return read_result(out, trunk)
    train(config, reporter=reporter, resume=has_checkpoint(out), overwrite=not has_checkpoint(out))
    return read_result(out, trunk)


def _run_trunk(config: TrainConfig, reporter: Reporter | None) -> dict:
    out = Path(config.out)
    if (out / "config.json").exists():
        _check_same_config(config, out)
    if (out / "trunk.json").exists():
        _log(reporter, f"trunk done already: {out}")
    else:
        train(config, reporter=reporter, resume=has_checkpoint(out), overwrite=not has_checkpoint(out))
    return _provenance(out)


def check_commits(runs: Sequence[Mapping[str, Any]], allow_mixed: bool) -> dict:
    """``{"commits": {commit: number of runs}, "dirty": any run from a dirty tree}`` of runs (dicts with
    ``git_commit``, ``git_dirty`` and ``dir``); raises ValueError when they come from more than one commit, unless
    ``allow_mixed``. A missing commit counts as its own value, "unknown"."""
    commits: dict[str, list[str]] = {}
    for run in runs:
        commits.setdefault(run.get("git_commit") or "unknown", []).append(str(run.get("dir", "?")))
    if len(commits) > 1 and not allow_mixed:
        listed = "; ".join(f"{commit} ({len(dirs)} runs, e.g. {dirs[0]})" for commit, dirs in sorted(commits.items()))
        raise InputError(f"runs come from {len(commits)} git commits: {listed}; rerun them under one commit or "
                         "pass --allow-mixed-commits")  # fmt: skip
    dirty = [run.get("git_dirty") for run in runs]
    return {
        "commits": {commit: len(dirs) for commit, dirs in sorted(commits.items())},
        "dirty": True if any(dirty) else None if any(d is None for d in dirty) else False,
        "mixed_allowed": allow_mixed,
    }


def _preflight_commits(config: CompareConfig) -> None:
    """Refuse before training when the runs already in ``out``, plus any this commit would train or resume, would
    mix commits: better than finding out after hours of training."""
    runs, pending = [], False
    for setting in config.settings:
        for seed in config.seeds:
            planned = [(run_dir(config, setting, arm, seed), "final.json") for arm in config.arms]
            if config.branch_at > 0:
                planned.append((trunk_dir(config, setting, seed), "trunk.json"))
            for directory, done in planned:
                if (directory / "config.json").exists():
                    runs.append(_provenance(directory))
                pending = pending or not (directory / done).exists()
    if pending:
        runs.append({"dir": "runs this command trains now", "git_commit": git_commit()})
    check_commits(runs, config.allow_mixed_commits)


def measure_cost_ratio(config: CompareConfig, setting: str, log: Callable[[str], None] | None = None) -> dict:
    """R for ``setting`` measured by ``lossaug bench`` (M = 1 and M = base.num_candidates, interleaved, default
    repeats) on the comparison's model, width, batch and device: ``{"value", "source": "bench", "bench"}``."""
    from lossaug.bench import BenchConfig, run_bench

    base = config.base
    unlike = {"augment": base.augment, "proxy_model": base.proxy_model}
    unlike.update({"select_every": base.select_every} if base.select_every != 1 else {})
    unlike.update({"select_from": base.select_from} if base.select_from else {})
    unlike = {k: v for k, v in unlike.items() if v is not None}
    if unlike:
        raise InputError(f"bench times exact selection at every step of a named setting, not {unlike}; declare "
                         "the cost ratio (--cost-ratio R)")  # fmt: skip
    bench = BenchConfig(model=base.model, width=base.width, batch_size=base.batch_size,
                        candidates=tuple(sorted({1, base.num_candidates})), setting=setting, device=base.device,
                        score_chunk=base.score_chunk)  # fmt: skip
    result = run_bench(bench, log=log)
    return {"value": result.timing(base.num_candidates).ratio, "source": "bench", "bench": result.to_json()}


def resolve_cost_ratios(config: CompareConfig, reporter: Reporter | None = None) -> dict[str, dict]:
    """Per setting ``{"value": R, "source": "declared" | "bench", ...}``: the declared R, else the one measured
    by an earlier call into the same ``out`` (``cost_ratio.json``), else a bench run now. Empty without the
    equal-compute arm, which is the only one R sizes."""
    if "baseline-equal-time" not in config.arms:
        return {}
    path = Path(config.out) / COST_RATIO_FILE
    saved = json.loads(path.read_text()) if path.exists() else {}
    costs = {}
    for setting in config.settings:
        if config.cost_ratio is not None:
            costs[setting] = {"value": config.cost_ratio, "source": "declared"}
        elif saved.get(setting, {}).get("source") == "bench":
            costs[setting] = saved[setting]
            _log(reporter, f"cost ratio of setting {setting}: {costs[setting]['value']:.3f} (bench, {path})")
        else:
            _log(reporter, f"== measuring the cost ratio R of setting {setting} with lossaug bench")
            costs[setting] = measure_cost_ratio(config, setting, log=reporter.log if reporter else None)
            _log(reporter, f"cost ratio of setting {setting}: {costs[setting]['value']:.3f} (bench)")
    if costs != {k: v for k, v in saved.items() if k in costs}:
        path.write_text(json.dumps({**saved, **costs}, indent=2) + "\n")
    return costs


def run_compare(config: CompareConfig, reporter: Reporter | None = None) -> dict:
    """Run every (setting, seed, trunk and arm) not yet finished, then write ``summary.json``, ``summary.md`` and
    ``forest.png`` into ``out`` and return the summary."""
    validate_compare(config)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    _preflight_commits(config)
    costs = resolve_cost_ratios(config, reporter)
    results: dict[str, dict[str, dict[int, dict]]] = {}
    trunks: list[dict] = []
    order = [arm for arm in ARMS if arm in config.arms]
    for setting in config.settings:
        results[setting] = {arm: {} for arm in order}
        cost_ratio = costs.get(setting, {}).get("value")
        for seed in config.seeds:
            trunk = None
            if config.branch_at > 0:
                trunk = trunk_dir(config, setting, seed)
                _log(reporter, f"== setting {setting}, seed {seed}, trunk (baseline to {config.branch_at:g})")
                trunks.append(_run_trunk(trunk_config(config, setting, seed), reporter))
            for arm in order:
                run = arm_config(config, setting, arm, seed, cost_ratio)
                _log(reporter, f"== setting {setting}, seed {seed}, arm {arm} ({run.epochs} epochs)")
                results[setting][arm][seed] = _run_arm(run, reporter, trunk)
    summary = summarize(config, results, costs, trunks)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "summary.md").write_text(summary_markdown(summary))
    write_forest(summary, out / "forest.png")
    return summary


def endpoint(treatment: Mapping[int, dict], control: Mapping[int, dict], margin: float) -> dict:
    """Paired test-error difference ``treatment - control`` over the seeds both ran (fractions): n, mean, sd,
    95% half-width, low, high, verdict, minimal detectable effect (80% power) and seeds needed for ±0.3 points."""
    seeds = sorted(set(treatment) & set(control))
    differences = {s: treatment[s]["test_error"] - control[s]["test_error"] for s in seeds}
    summary = stats.paired_difference(list(differences.values()))
    return {
        **summary.to_json(),
        "verdict": stats.verdict(summary.mean, summary.half_width, margin),
        "min_detectable_effect": stats.min_detectable_effect(summary.sd, summary.n),
        "seeds_needed": stats.seeds_needed(summary.sd),
        "better_in": sum(d < 0 for d in differences.values()),
        "per_seed": differences,
    }


def summarize(
    config: CompareConfig,
    results: dict[str, dict[str, dict[int, dict]]],
    costs: Mapping[str, dict] | None = None,
    trunks: Sequence[dict] = (),
) -> dict:
    """Endpoints and per-arm rows of every setting, the design and the provenance of every run (raises
    ValueError for runs of several commits unless ``config.allow_mixed_commits``)."""
    costs = costs or {}
    runs = [run for arms in results.values() for per_seed in arms.values() for run in per_seed.values()]
    provenance = check_commits([*runs, *trunks], config.allow_mixed_commits)
    settings, endpoints = {}, {}
    for setting, arms in results.items():
        baseline = arms.get("baseline", {})
        cost_ratio = costs.get(setting, {}).get("value")
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
                "diff_to_baseline": mean_interval(
                    [per_seed[s]["test_error"] - baseline[s]["test_error"] for s in paired]
                ),
                "time_ratio": mean_interval([per_seed[s]["seconds"] / baseline[s]["seconds"] for s in paired]),
                "declared_cost": declared_cost(config, arm, cost_ratio),
                "per_seed": {
                    s: {k: per_seed[s][k] for k in ("test_error", "train_error", "seconds", "epochs")} for s in seeds
                },  # fmt: skip
            }
        settings[setting] = rows
        endpoints[setting] = {
            f"{treatment} - {control}": {"treatment": treatment, "control": control,
                                         **endpoint(arms[treatment], arms[control], config.margin)}
            for treatment, control in ENDPOINTS if treatment in arms and control in arms
        }  # fmt: skip
    base = dataclasses.asdict(config.base)
    for name in ("method", "setting", "seed", "out", "stop_at", "branch_from"):
        base.pop(name, None)
    devices = sorted({run["device"] for run in runs})
    return {
        "base_config": base,
        "arms": list(config.arms),
        "seeds": list(config.seeds),
        "settings": settings,
        "endpoints": endpoints,
        "design": {
            "branch_at": config.branch_at,
            "margin": config.margin,
            "resolution": stats.RESOLUTION,
            "confidence": stats.CONFIDENCE,
            "power": stats.POWER,
            "units": "errors, differences, margin and resolution are fractions of test images (x100 = points)",
        },
        "cost_ratio": {setting: {k: v for k, v in cost.items() if k != "bench"} for setting, cost in costs.items()},
        "provenance": provenance,
        "device": ", ".join(devices),
    }


def forest_rows(summary: dict) -> list[tuple[str, float, float]]:
    """``(label, mean, half-width)`` in percentage points for every (setting, endpoint) of a summary."""
    return [
        (f"{setting}: {name}", 100 * e["mean"], 100 * e["half_width"])
        for setting, named in summary["endpoints"].items()
        for name, e in named.items()
    ]


def write_forest(summary: dict, path: Path) -> Path | None:
    """The summary's endpoints as a forest plot (``plots.plot_forest``); None when there is no endpoint."""
    from lossaug.plots import plot_forest

    rows = forest_rows(summary)
    if not rows:
        return None
    design = summary["design"]
    title = f"lossaug compare: branch at {design['branch_at']:g}" if design["branch_at"] else "lossaug compare"
    return plot_forest(rows, path, margin=100 * design["margin"], title=title)


# ---------------------------------------------------------------- protocol files


def config_from_protocol(table: Mapping[str, Any], base: TrainConfig) -> CompareConfig:
    """A ``CompareConfig`` from the ``[compare]`` table of a protocol file (``base`` from its ``[train]``
    table). Keys: ``out`` (required), ``arms``, ``settings``, ``seeds`` (lists), ``branch_at``, ``cost_ratio``
    (a number or "bench"), ``margin_points`` (δ in percentage points) and ``allow_mixed_commits``."""
    unknown = sorted(set(table) - set(PROTOCOL_KEYS))
    if unknown:
        raise InputError(f"unknown key(s) {unknown} in the protocol's [compare] table; valid: {list(PROTOCOL_KEYS)}")
    if not isinstance(table.get("out"), str):
        raise InputError(f"the protocol's [compare] table needs out, a directory; got {table.get('out')!r}")
    values: dict[str, Any] = {"base": base, "out": table["out"]}
    for key, kind in (("arms", str), ("settings", str), ("seeds", int)):
        if key in table:
            items = table[key]
            if not isinstance(items, list) or not all(isinstance(i, kind) and not isinstance(i, bool) for i in items):
                raise InputError(f"protocol key {key} must be a list of {kind.__name__}, got {items!r}")
            values[key] = tuple(items)
    if "branch_at" in table:
        values["branch_at"] = _number(table["branch_at"], "branch_at")
    cost = table.get("cost_ratio", "bench")
    values["cost_ratio"] = None if cost == "bench" else _number(cost, "cost_ratio (a number or 'bench')")
    if "margin_points" in table:
        values["margin"] = _number(table["margin_points"], "margin_points") / 100
    if "allow_mixed_commits" in table:
        allow = table["allow_mixed_commits"]
        if not isinstance(allow, bool):
            raise InputError(f"protocol key allow_mixed_commits must be true or false, got {allow!r}")
        values["allow_mixed_commits"] = allow
    return CompareConfig(**values)


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"protocol key {key} must be a number, got {value!r}")
    return float(value)


# ---------------------------------------------------------------- Markdown


def _pct(stats_row: dict, key: str = "std") -> str:
    if stats_row["n"] == 0 or math.isnan(stats_row["mean"]):
        return "-"
    spread = stats_row[key]
    mean = 100 * stats_row["mean"]
    return f"{mean:.2f} ± {100 * spread:.2f}" if not math.isnan(spread) else f"{mean:.2f}"


def _points(value: float | None, signed: bool = False) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{100 * value:+.2f}" if signed else f"{100 * value:.2f}"


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
    for setting, cost in summary.get("cost_ratio", {}).items():
        how = "declared" if cost["source"] == "declared" else "measured once by lossaug bench at the start"
        lines.append(f"Cost ratio R (one proposed step in baseline steps), setting {setting}: {cost['value']:.3f}, "
                     f"{how}; baseline-equal-time gets E·F + E·(1−F)·R epochs.")  # fmt: skip
    commits = ", ".join(f"{commit[:12]} ({n} runs)" for commit, n in provenance.get("commits", {}).items())
    dirty = {True: "yes", False: "no", None: "not recorded for every run"}[provenance.get("dirty")]
    lines.append(f"Commits: {commits or '-'}; uncommitted changes in the tree: {dirty}.")
    return lines


def summary_markdown(summary: dict) -> str:
    """The summary as Markdown: the design, then per setting the endpoints table and the per-arm table."""
    base = summary["base_config"]
    design = summary.get("design", {"branch_at": 0.0, "margin": 0.005, "resolution": stats.RESOLUTION})
    data = " ".join(str(part) for part in (base["dataset"], base["data"]) if part)
    subset = f" (train_size {base['train_size']})" if base["train_size"] else ""
    margin = 100 * design["margin"]
    lines = [
        "# lossaug compare",
        "",
        f"Model {base['model']} (width {base['width']}), data {data}{subset}, {base['epochs']} epochs, "
        f"batch {base['batch_size']}, lr {base['lr']}, M = {base.get('num_candidates', base.get('candidates'))}; "
        f"device: {summary['device']}.",
        "",
        *_design_lines({**summary, "design": design}),
        "",
        "Endpoints: Δ = treatment − control test error of the same seed, in percentage points (negative = "
        "treatment better), mean ± 95% t-interval half-width over seeds; sd is the paired sd. Verdict: better / "
        f"worse when the interval excludes 0, equivalent within ±δ (δ = {margin:g} points) when it lies inside "
        "±δ, else unresolved. MDE: the true effect detected with 80% power at this sd and n (two-sided α = 0.05); "
        f"seeds needed: for a ±{100 * design['resolution']:g}-point interval at this sd.",
        "",
        "Arms: errors in %, mean ± sample std over seeds; Δ to the baseline ± the 95% half-width. Declared cost: "
        "compute in baseline runs from R. Time ratio: measured training wall-clock ÷ the baseline's, same seed, "
        "each taken as median epoch time × epochs (robust to stalls on a shared machine).",
    ]
    for setting, rows in summary["settings"].items():
        lines += ["", f"## Setting {setting}"]
        named = summary.get("endpoints", {}).get(setting, {})
        if named:
            header = ("| endpoint | n | Δ test error (pp) | 95% interval (pp) | paired sd (pp) | verdict | better in "
                      "| MDE 80% (pp) | seeds for ±0.3 |")  # fmt: skip
            lines += ["", header, "|---|---|---|---|---|---|---|---|---|"]
            for name, e in named.items():
                interval = f"[{_points(e['low'], True)}, {_points(e['high'], True)}]"
                needed = "-" if e["seeds_needed"] is None else str(e["seeds_needed"])
                lines.append(
                    f"| {name} | {e['n']} | {_points(e['mean'], True)} ± {_points(e['half_width'])} | {interval} "
                    f"| {_points(e['sd'])} | {e['verdict']} | {e['better_in']}/{e['n']} "
                    f"| {_points(e['min_detectable_effect'])} | {needed} |"
                )
        lines += ["", "| arm | n | epochs | test error % | train error % | Δ test error vs baseline (pp) "
                  "| declared cost | time ratio |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for arm, row in rows.items():
            epochs = sorted(set(row["epochs"]))
            delta_text = "-" if arm == "baseline" else _pct(row["diff_to_baseline"], "ci95")
            ratio = row["time_ratio"]
            ratio_text = f"{ratio['mean']:.2f}" if ratio["n"] else "-"
            cost = row.get("declared_cost")
            cost_text = "-" if cost is None else f"{cost:.2f}"
            lines.append(
                f"| {arm} | {row['test_error']['n']} | {', '.join(map(str, epochs))} | {_pct(row['test_error'])} "
                f"| {_pct(row['train_error'])} | {delta_text} | {cost_text} | {ratio_text} |"
            )
    return "\n".join(lines) + "\n"
