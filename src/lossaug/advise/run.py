"""The advice, one seed at a time: calibrate (cost ratios by ``bench``, one timed baseline epoch, the budgets that
bracket every arm), then per seed train the trunk and every arm with ``lossaug compare``'s own plan and runner,
read each arm's confidence sequence, and stop when every arm is resolved, the next seed would not fit in the time
given, the seed cap is reached or the user interrupts. Finished seeds are kept: the same command continues."""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lossaug.advise.plan import (
    AdviseConfig,
    bracketing_budgets,
    compare_config,
    seconds_text,
    seed_compute,
    validate_advise,
)
from lossaug.advise.report import advice_json, advice_markdown, python_call, standalone_command, train_command
from lossaug.advise.verdicts import budget_verdicts, family_size, recommend, selection_verdicts
from lossaug.compare.config import validate_compare
from lossaug.compare.costs import COST_RATIO_FILE, ratio_values, resolve_costs
from lossaug.compare.plan import plan
from lossaug.compare.runner import run_compare
from lossaug.errors import InputError
from lossaug.progress import Reporter
from lossaug.run.interrupts import TrainingInterrupted
from lossaug.run.metadata import write_json, write_text
from lossaug.run.rundir import RunLock
from lossaug.run.runfiles import NUMBER, read_json, read_records
from lossaug.run.train import train

__all__ = ["Advice", "Calibration", "run_advise"]

CALIBRATION_FILE = "calibration.json"
REQUEST_FILE = "request.json"  # what was asked; a different request into the same out is refused


@dataclass(frozen=True)
class Calibration:
    """Per setting the cost ratio of each step kind, the budgets that bracket every arm, the seconds of one baseline
    epoch as timed here and of what a run costs besides its epochs (start-up, data, the final evaluation)."""

    ratios: dict[str, dict[str, float]]
    budgets: tuple[float, ...]
    epoch_seconds: float
    run_seconds: float


@dataclass(frozen=True)
class Advice:
    """The advice as written to ``advice.json``; ``interrupted``: the signal that stopped it, if one did."""

    record: dict
    interrupted: TrainingInterrupted | None = None


def _log(reporter: Reporter | None, line: str) -> None:
    if reporter is not None:
        reporter.log(line)


def _request(config: AdviseConfig) -> dict:
    """The advice's identity: everything but the time and the seed cap, which a re-run may change."""
    record = dataclasses.asdict(config)
    record["base"] = {k: v for k, v in record["base"].items() if k not in ("out", "cache_dir")}
    return json.loads(json.dumps({k: v for k, v in record.items() if k not in ("time", "max_seeds")}, default=str))


def _check_request(config: AdviseConfig) -> None:
    path = Path(config.out) / REQUEST_FILE
    if not path.is_file():
        return
    saved, asked = json.loads(path.read_text()), _request(config)
    changed = sorted(k for k in set(saved) | set(asked) if saved.get(k) != asked.get(k))
    changed += sorted(
        f"base.{k}"
        for k in set(saved.get("base", {})) | set(asked["base"])
        if saved.get("base", {}).get(k) != asked["base"].get(k)
    )
    changed = [name for name in changed if name != "base"]
    if changed:
        raise InputError(
            f"{config.out} holds an advice asked with other options ({', '.join(changed)}); use "
            "another --out, or the same options to continue it"
        )


def _time_epoch(config: AdviseConfig, scratch: Path, reporter: Reporter | None) -> tuple[float, float]:
    """Seconds of one baseline epoch (the loop's own timing) and of the rest of a one-epoch run."""
    _log(reporter, "== timing one baseline epoch")
    started = time.perf_counter()
    epoch = dataclasses.replace(config.base, method="baseline", epochs=1, out=str(scratch / "epoch"))
    train(epoch, reporter=None)
    wall = time.perf_counter() - started
    seconds = read_records(scratch / "epoch" / "metrics.jsonl", {"seconds": NUMBER})[-1]["seconds"]
    return seconds, max(wall - seconds, 0.0)


def _calibrate(config: AdviseConfig, reporter: Reporter | None) -> tuple[Calibration, dict | None]:
    """Measure in a scratch folder, so that a refusal leaves nothing behind: the cost ratios (kept from an earlier
    call into the same out), one timed baseline epoch. Returns the cost-ratio file's content to keep, if any."""
    out, scratch = Path(config.out), Path(tempfile.mkdtemp(prefix="lossaug-advise-"))
    try:
        if (out / COST_RATIO_FILE).is_file():
            shutil.copy(out / COST_RATIO_FILE, scratch / COST_RATIO_FILE)
        probe = compare_config(dataclasses.replace(config, out=str(scratch)), (config.base.seed,), (1.0,))
        probe = dataclasses.replace(probe, allow_out_of_range=True)  # the budgets are chosen from what it measures
        validate_compare(probe)
        ratios = ratio_values(resolve_costs(probe, reporter))
        ratios = {setting: ratios.get(setting, {}) for setting in config.settings}
        saved = out / CALIBRATION_FILE
        if saved.is_file():
            fields = read_json(saved, {"epoch_seconds": NUMBER, "run_seconds": NUMBER})
            timed = fields["epoch_seconds"], fields["run_seconds"]
        else:
            timed = _time_epoch(config, scratch, reporter)
        costs = scratch / COST_RATIO_FILE
        kept = json.loads(costs.read_text()) if costs.is_file() else None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return Calibration(ratios, bracketing_budgets(config, ratios), *timed), kept


def _seed_seconds(config: AdviseConfig, calibration: Calibration) -> float:
    comparison = compare_config(config, (config.base.seed,), calibration.budgets)
    epochs = seed_compute(comparison, calibration.ratios) * config.base.epochs * calibration.epoch_seconds
    runs = len(plan(comparison, calibration.ratios))
    return epochs + runs * calibration.run_seconds


def _check_fits(config: AdviseConfig, calibration: Calibration, used: float) -> None:
    seed = _seed_seconds(config, calibration)
    left = config.time - used
    if seed <= left:
        return
    fit = int(config.base.epochs * left / seed)
    smaller = f"--epochs {fit} would fit" if fit >= 2 else "fewer epochs would not fit either"
    raise InputError(
        f"one seed takes about {seconds_text(seed)} here (trunk, {len(config.arms)} arms and budgets "
        f"x{calibration.budgets[0]:g}-x{calibration.budgets[-1]:g} at {calibration.epoch_seconds:.1f} s "
        f"per baseline epoch, {calibration.run_seconds:.1f} s per run besides) and --time leaves "
        f"{seconds_text(max(left, 0))} after calibrating: give --time {seconds_text(seed + used + 60)} or more "
        f"({smaller}; or a smaller model, or fewer --arms)"
    )


def _start_out(config: AdviseConfig, calibration: Calibration, costs: dict | None) -> None:
    """Create ``out`` with what was asked and measured; nothing is written before the request is known to fit."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    if costs is not None and not (out / COST_RATIO_FILE).is_file():
        write_json(costs, out / COST_RATIO_FILE)
    if not (out / REQUEST_FILE).is_file():
        write_json(_request(config), out / REQUEST_FILE)
    record = {
        "epoch_seconds": calibration.epoch_seconds,
        "run_seconds": calibration.run_seconds,
        "budgets": list(calibration.budgets),
        "ratios": calibration.ratios,
    }
    if not (out / CALIBRATION_FILE).is_file():
        write_json(record, out / CALIBRATION_FILE)


def _finished_runs(config: AdviseConfig, calibration: Calibration, seeds: tuple[int, ...]) -> list[bool]:
    """Per planned run of the newest of ``seeds``, whether it is finished on disk."""
    comparison = compare_config(config, seeds, calibration.budgets)
    return [spec.finished for spec in plan(comparison, calibration.ratios) if spec.seed == seeds[-1]]


def _seed_finished(config: AdviseConfig, calibration: Calibration, seeds: tuple[int, ...]) -> bool:
    """Whether every run of the newest of ``seeds`` is finished (the seed is read back, not trained)."""
    return all(_finished_runs(config, calibration, seeds))


def _seed_started(config: AdviseConfig, calibration: Calibration, seeds: tuple[int, ...]) -> bool:
    """Whether any run of the newest of ``seeds`` is finished (an earlier call trained part of it)."""
    return any(_finished_runs(config, calibration, seeds))


def _verdicts(config: AdviseConfig, calibration: Calibration, summary: dict | None) -> tuple[list, list]:
    if summary is None:
        return [], []
    family = family_size(config.arms, config.settings, calibration.budgets)
    each = 1 - (1 - config.confidence) / family
    return (
        selection_verdicts(summary, config.arms, config.margin, each),
        budget_verdicts(summary, calibration.budgets, config.margin, each),
    )


def _progress_line(config: AdviseConfig, index: int, seed_seconds: float, used: float) -> str:
    left = config.time - used
    fit = min(int(left // seed_seconds) if seed_seconds > 0 else 0, config.max_seeds - index)
    return (
        f"== advise: seed {index + 1} (seed {config.seeds[index]}), about {seconds_text(seed_seconds)}; "
        f"{seconds_text(used)} used of {seconds_text(config.time)}, at most {fit} more seeds fit "
        f"(ETA of the whole advice at most {seconds_text(fit * seed_seconds)})"
    )


def _arms_line(selection: list) -> str:
    parts = []
    for row in selection:
        bounds = (
            "unbounded"
            if row.verdict == "out of range" or row.low == float("-inf")
            else (f"[{100 * row.low:+.2f}, {100 * row.high:+.2f}]")
        )
        parts.append(f"{row.name} {bounds} {row.verdict}")
    return "   arms vs training longer (pp): " + "; ".join(parts)


def run_advise(
    config: AdviseConfig, reporter: Reporter | None = None, clock: Callable[[], float] = time.perf_counter
) -> Advice:
    """Calibrate, run seeds until the advice is resolved or out of time or seeds, write ``advice.json``,
    ``advice.md`` (and ``compare``'s summary and ``frontier.png``) into ``out``, and return the advice. ``clock``
    measures the time spent (seconds). ``out`` is locked while the advice trains (a second advice there at the
    same time is refused); a request refused before training writes nothing."""
    validate_advise(config)
    started = clock()
    _check_request(config)
    calibration, costs = _calibrate(config, reporter)
    _check_fits(config, calibration, clock() - started)
    with RunLock(Path(config.out)):
        _start_out(config, calibration, costs)
        return _seeds(config, calibration, reporter, clock, started)


def _seeds(
    config: AdviseConfig,
    calibration: Calibration,
    reporter: Reporter | None,
    clock: Callable[[], float],
    started: float,
) -> Advice:
    """One seed at a time (a trunk, every arm, the budgets) until a stop rule holds; then the advice."""
    seed_seconds, summary, stopped = _seed_seconds(config, calibration), None, "max seeds"
    done: tuple[int, ...] = ()
    interrupted: TrainingInterrupted | None = None
    for index in range(config.max_seeds):
        seeds = config.seeds[: index + 1]
        used, whole = clock() - started, not _seed_started(config, calibration, seeds)
        if not _seed_finished(config, calibration, seeds) and used + seed_seconds > config.time:
            stopped = "time"
            break
        _log(reporter, _progress_line(config, index, seed_seconds, used))
        seed_started = clock()
        try:
            summary = run_compare(compare_config(config, seeds, calibration.budgets), reporter)
        except TrainingInterrupted as stop:
            stopped, interrupted = "interrupted", stop
            break
        done = seeds
        if whole:  # the seed trained whole in this call: what the next one will take, whatever the calibration said
            seed_seconds = clock() - seed_started
        selection, _ = _verdicts(config, calibration, summary)
        _log(reporter, _arms_line(selection))
        if selection and all(row.resolved for row in selection):
            stopped = "resolved"
            break
    return _finish(config, calibration, summary, done, stopped, clock() - started, interrupted)


def _finish(
    config: AdviseConfig,
    calibration: Calibration,
    summary: dict | None,
    seeds: tuple[int, ...],
    stopped: str,
    seconds: float,
    interrupted: TrainingInterrupted | None,
) -> Advice:
    selection, budgets = _verdicts(config, calibration, summary)
    recommendation = recommend(selection, budgets)
    ratios = calibration.ratios[recommendation.setting]
    command = train_command(config, recommendation.arm, recommendation.setting, ratios)
    family = family_size(config.arms, config.settings, calibration.budgets)
    facts = {
        "seeds": list(seeds),
        "stopped_because": stopped,
        "seconds": seconds,
        "time": config.time,
        "confidence": config.confidence,
        "family": family,
        "per_arm_confidence": 1 - (1 - config.confidence) / family,
        "margin": config.margin,
        "budgets_run": list(calibration.budgets),
        "cost_ratios": calibration.ratios,
        "epoch_seconds": calibration.epoch_seconds,
    }
    python = python_call(config, recommendation.arm, recommendation.setting)
    standalone = standalone_command(config, recommendation.arm, recommendation.setting, ratios)
    record = advice_json(recommendation, command, standalone, python, selection, budgets, facts)
    out = Path(config.out)
    write_json(record, out / "advice.json")
    write_text(advice_markdown(record), out / "advice.md")
    return Advice(record, interrupted)
