"""What advise tells the user: the recommendation with the exact ``lossaug train`` command (and the
``LossAwareAugment`` arguments for one's own loop), a row per arm and budget, why it stopped; ``advice.json`` and
``advice.md``."""

from __future__ import annotations

import dataclasses
import math
import shlex
from collections.abc import Mapping, Sequence

from lossaug.advise.plan import AdviseConfig, seconds_text
from lossaug.advise.verdicts import ArmVerdict, Recommendation
from lossaug.cli.options import option_flag
from lossaug.compare.arms import BASELINE_ARM, arm_named
from lossaug.kinds import kind_of_dataset
from lossaug.methods import method_named
from lossaug.run.config import TrainConfig
from lossaug.selection import LossAwareAugment

__all__ = ["advice_json", "advice_markdown", "python_call", "standalone_command", "train_command"]

_NOT_TYPED = ("out", "cache_dir", "seed", "stop_at", "branch_from")  # set per run, or where things live
# LossAwareAugment's own defaults: an argument equal to its default is left out of the call advise prints
_OBJECT_DEFAULTS = {f.name: f.default for f in dataclasses.fields(LossAwareAugment)}


def _flag(f: dataclasses.Field, value: object) -> list[str]:
    if isinstance(value, bool):
        return [option_flag(f.name) if value else "--no-" + f.name.replace("_", "-")]
    text = "inf" if isinstance(value, float) and math.isinf(value) else str(value)
    return [f.metadata.get("option", option_flag(f.name)), text]


def _standalone_epochs(config: AdviseConfig, arm: str, ratios: Mapping[str, float]) -> int:
    """Epochs of a run from scratch that costs what the arm cost in the comparison: E for an arm at its own budget,
    else its compute over its step's cost ratio (a weighted arm given the proposed arm's compute; a budget)."""
    spec = arm_named(arm)
    if spec.budget is None:
        return config.base.epochs
    compute = spec.compute(config.base.epochs, config.branch_at, ratios)
    ratio = 1.0 if not spec.selects else ratios[spec.step]
    assert compute is not None, f"arm {arm}: its cost ratio was not resolved"
    return max(1, math.floor(config.base.epochs * compute / ratio + 0.5))


def _run_config(config: AdviseConfig, arm: str, setting: str, ratios: Mapping[str, float]) -> TrainConfig:
    spec = arm_named(arm)
    epochs = _standalone_epochs(config, arm, ratios)
    return dataclasses.replace(config.base, method=spec.method, setting=setting, epochs=epochs, **dict(spec.options))


def _words(run: TrainConfig, extra: Sequence[str] = ()) -> list[str]:
    """``lossaug train`` with every option of ``run`` that is not a default, then ``extra``."""
    default = TrainConfig()
    words = ["lossaug", "train"]
    for f in dataclasses.fields(TrainConfig):
        value = getattr(run, f.name)
        if f.name not in _NOT_TYPED and value != getattr(default, f.name):
            words += _flag(f, value)
    return [*words, *extra]


def standalone_command(config: AdviseConfig, arm: str, setting: str, ratios: Mapping[str, float]) -> str:
    """``lossaug train ...`` for ``arm`` as one run from scratch at the compute it had in the comparison (its
    selection from the first epoch: not the recipe measured, which branched from a baseline trunk)."""
    return shlex.join(_words(_run_config(config, arm, setting, ratios)))


def train_command(config: AdviseConfig, arm: str, setting: str, ratios: Mapping[str, float]) -> str:
    """The recipe the advice measured for ``arm``, as ``lossaug train`` commands: the baseline trained to fraction
    ``branch_at`` of its steps (``--stop-at``), then the arm continued from that checkpoint (``--branch-from``) for
    the epochs it had in the comparison; one plain run for the baseline itself or without a branch point."""
    spec = arm_named(arm)
    if config.branch_at <= 0 or (spec.budget is None and not spec.selects):
        return standalone_command(config, arm, setting, ratios)
    epochs = spec.epochs(config.base.epochs, config.branch_at, ratios)
    assert epochs is not None, f"arm {arm}: its cost ratio was not resolved"
    trunk, branch = "runs/advised-trunk", f"runs/advised-{arm}"
    trunk_run = dataclasses.replace(config.base, method="baseline", setting=setting)
    arm_run = dataclasses.replace(trunk_run, method=spec.method, epochs=epochs, **dict(spec.options))
    first = _words(trunk_run, ["--stop-at", f"{config.branch_at:g}", "--out", trunk])
    second = _words(arm_run, ["--branch-from", trunk, "--out", branch])
    return f"{shlex.join(first)} && {shlex.join(second)}"


def python_call(config: AdviseConfig, arm: str, setting: str) -> str | None:
    """The ``LossAwareAugment(...)`` of a selection arm for one's own training loop (None for the baseline)."""
    run = dataclasses.replace(config.base, setting=setting, **dict(arm_named(arm).options))
    spec = arm_named(arm)
    if not spec.selects:
        return None
    augment = kind_of_dataset(run.dataset).default_augment(run, None)
    words = [repr(augment), f"num_candidates={run.num_candidates}"]
    method = method_named(spec.method)
    temperature = method.resolved_temperature(run.temperature)
    if run.temperature is not None or temperature != _OBJECT_DEFAULTS["temperature"]:
        words.append("temperature=math.inf" if math.isinf(temperature) else f"temperature={temperature:g}")
    if run.score_fraction != 1.0:
        words.append(f"score_fraction={run.score_fraction:g}")
    if method.mode != _OBJECT_DEFAULTS["mode"]:
        words.append(f'mode="{method.mode}"')
    return f"LossAwareAugment({', '.join(words)})"


def advice_json(
    recommendation: Recommendation,
    command: str,
    standalone: str,
    python: str | None,
    selection: Sequence[ArmVerdict],
    budgets: Sequence[ArmVerdict],
    facts: Mapping[str, object],
) -> dict:
    """``advice.json``: ``recommendation`` (``arm``, ``command``, ...), ``arms``, ``budgets`` and ``facts`` (seeds,
    stopped_because, seconds, ...)."""
    return {
        "recommendation": {
            "arm": recommendation.arm,
            "command": command,
            "standalone": standalone,
            "setting": recommendation.setting,
            "reason": recommendation.reason,
            "python": python,
        },
        "arms": [row.to_json() for row in selection],
        "budgets": [row.to_json() for row in budgets],
        **facts,
    }


def _points(value: float | None, signed: bool = True) -> str:
    if value is None or not math.isfinite(value):
        return "-inf" if value == -math.inf else "+inf" if value == math.inf else "-"
    return f"{100 * value:+.2f}" if signed else f"{100 * value:.2f}"


def _rows(title: str, rows: Sequence[Mapping]) -> list[str]:
    lines = [
        f"| {title} | compute | n | Δ (pp) | confidence sequence (pp) | verdict | seeds likely to resolve |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        low, high = row["low"], row["high"]
        interval = "unbounded yet" if low is None else f"[{_points(low)}, {_points(high)}]"
        needed = "-" if row["pairs_needed"] is None else f"about {row['pairs_needed']}"
        lines.append(
            f"| {row['name']} | {row['compute']:.2f} | {row['n']} | {_points(row['delta'])} | {interval} "
            f"| {row['verdict']} | {needed} |"
        )
    return lines


def advice_markdown(advice: Mapping) -> str:
    """The advice as one screen of Markdown (``advice.md``, and what the command prints)."""
    rec = advice["recommendation"]
    lines = [
        "# lossaug advise",
        "",
        f"**Advice: {_headline(rec)}** ({rec['reason']}).",
        "",
        "```",
        rec["command"],
        "```",
    ]
    if rec["command"] != rec["standalone"]:
        lines += [
            "",
            "That is the recipe measured: the baseline to its branch point, then the arm from that checkpoint. One "
            f"run from scratch at the same compute (not measured): `{rec['standalone']}`.",
        ]
    if rec["python"]:
        lines += ["", f"In your own training loop: `{rec['python']}`."]
    lines += [
        "",
        f"Seeds: {len(advice['seeds'])} ({', '.join(map(str, advice['seeds'])) or 'none'}); stopped: "
        f"{advice['stopped_because']}; took {seconds_text(advice['seconds'])} of {seconds_text(advice['time'])}.",
    ]
    lines += [
        "",
        "Each arm against the baseline curve of the same seed at the arm's compute (Δ < 0: the arm beats "
        "training longer), in percentage points; budgets against the baseline ×1. Confidence sequences are "
        f"anytime-valid: {100 * advice['confidence']:g}% for the family of {advice['family']} (Bonferroni, "
        f"{100 * advice['per_arm_confidence']:.2f}% each), valid however early the advice stopped. Verdicts: "
        f"better / worse when the sequence excludes 0, equivalent within ±{100 * advice['margin']:g} points, "
        "else unresolved. Compute in baseline runs (the baseline = 1).",
    ]
    lines += ["", *_rows("arm", advice["arms"]), "", *_rows("budget", advice["budgets"])]
    return "\n".join(lines) + "\n"


def _headline(rec: Mapping) -> str:
    if rec["arm"] == BASELINE_ARM:
        return "keep the baseline"
    if rec["arm"].startswith("baseline-"):
        return f"train the baseline {rec['arm'].removeprefix('baseline-')} longer instead"
    return f"use {rec['arm']}" + (f" (setting {rec['setting']})" if rec["setting"] != "A" else "")
