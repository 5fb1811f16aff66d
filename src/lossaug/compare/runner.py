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
import statistics
from collections.abc import Callable
from pathlib import Path

from lossaug.checkpoint import has_checkpoint
from lossaug.compare_config import (
    ARMS,
    ENDPOINTS,
    PROTOCOL_KEYS,
    CompareConfig,
    arm_config,
    config_from_protocol,
    declared_cost,
    equal_compute_epochs,
    run_dir,
    trunk_config,
    trunk_dir,
    validate_compare,
)
from lossaug.compare_summary import (
    check_commits,
    endpoint,
    forest_rows,
    mean_interval,
    summarize,
    summary_markdown,
    write_forest,
)
from lossaug.config import RENAMED, TrainConfig
from lossaug.errors import InputError
from lossaug.metadata import git_commit
from lossaug.progress import Reporter
from lossaug.train import train

# The configuration (compare_config) and the summary (compare_summary) are importable from here too.
__all__ = [
    "ARMS",
    "COST_RATIO_FILE",
    "ENDPOINTS",
    "PROTOCOL_KEYS",
    "CompareConfig",
    "arm_config",
    "check_commits",
    "config_from_protocol",
    "declared_cost",
    "endpoint",
    "equal_compute_epochs",
    "forest_rows",
    "mean_interval",
    "measure_cost_ratio",
    "read_result",
    "resolve_cost_ratios",
    "run_compare",
    "run_dir",
    "summarize",
    "summary_markdown",
    "trunk_config",
    "trunk_dir",
    "validate_compare",
    "write_forest",
]

COST_RATIO_FILE = "cost_ratio.json"  # the R used, kept so that a resumed comparison sizes its arm the same way


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


def _bench_input_size(base: TrainConfig) -> dict[str, int]:
    """The input size bench times: the clip length in samples for an audio model (which needs --clip-seconds:
    the data's default length is known only once they are read), the image side when --image-size is set."""
    from lossaug.models import AUDIO_MODELS
    from lossaug.pipeline import AUDIO_RATE

    if base.model in AUDIO_MODELS:
        if base.clip_seconds is None:
            raise InputError("bench needs the clip length of an audio comparison: pass --clip-seconds, or declare "
                             "the cost ratio (--cost-ratio R)")  # fmt: skip
        return {"clip_samples": round(base.clip_seconds * (base.sample_rate or AUDIO_RATE))}
    return {"image_size": base.image_size} if base.image_size else {}


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
                        candidate_counts=tuple(sorted({1, base.num_candidates})), setting=setting, device=base.device,
                        score_chunk=base.score_chunk, **_bench_input_size(base))  # fmt: skip
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
