"""The cost ratios of a comparison: for each step kind that sizes an arm (``proposed``, ``gated``, ``weighted``...),
one of its epochs in baseline epochs, declared or measured once per setting by one ``lossaug bench`` at the start
and kept in ``cost_ratio.json``, so that a resumed comparison sizes its arms the same way and how busy the machine
was during one seed cannot size them. The file keeps the proposed step's R under the setting's name (``"A"``), as
it always has, and any other kind's under ``"A:gated"``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypedDict

from lossaug.compare.arms import PROPOSED_STEP, WEIGHTED_STEP, arm_named, sweep_candidates
from lossaug.compare.config import MAX_RATIO, CompareConfig, declared_ratios
from lossaug.compare.plan import planned_arms
from lossaug.errors import InputError
from lossaug.progress import Reporter
from lossaug.run.config import TrainConfig
from lossaug.run.metadata import write_json
from lossaug.run.runfiles import NUMBER, check_fields, read_json

__all__ = [
    "COST_RATIO_FILE",
    "measure_cost_ratios",
    "needed_kinds",
    "ratio_values",
    "resolve_costs",
]

COST_RATIO_FILE = "cost_ratio.json"  # the R used, kept so that a resumed comparison sizes its arm the same way


def _log(reporter: Reporter | None, line: str) -> None:
    if reporter is not None:
        reporter.log(line)


class _InputSize(TypedDict, total=False):
    """``BenchConfig`` fields of the input size (the clip and its rate, the image side, or none of them)."""

    clip_samples: int
    sample_rate: int
    image_size: int


class _CheapModes(TypedDict, total=False):
    """``BenchConfig`` fields of the cheap modes to time (none: a bench that cannot time them)."""

    score_fractions: tuple[float, ...]
    weighted: bool


def _bench_input_size(base: TrainConfig) -> _InputSize:
    """The input size bench times: for an audio model, the runs' clips (length and rate, read from the data unless
    --clip-seconds and --sample-rate both fix them: the runs take the data's own); the image side when
    --image-size is set."""
    from lossaug.kinds import kind_of_model

    if not kind_of_model(base.model).has_rate:
        return {"image_size": base.image_size} if base.image_size else {}
    if base.sample_rate is not None and base.clip_seconds is not None:
        return {"clip_samples": round(base.clip_seconds * base.sample_rate), "sample_rate": base.sample_rate}
    from lossaug.data import load_for

    data = load_for(base)
    if data.sample_rate is None:
        raise InputError(f"model {base.model!r} is an audio model but data set {base.dataset!r} holds images")
    return {"clip_samples": int(data.train.inputs.shape[-1]), "sample_rate": data.sample_rate}


def _bench_config(config: CompareConfig, setting: str, kinds: Sequence[str]):
    """The bench of ``setting`` (or of the comparison's own augmentation spec, e.g. ``flip,crop,mixup:0.2``) on the
    comparison's model, width, batch and device, M = 1 and M (and an M sweep's Ms), timing the cheap modes ``kinds``
    ask for (gating at each of their Q, the weighted step)."""
    from lossaug.bench import BenchConfig

    base = config.base
    unlike: dict[str, object] = {"proxy_model": base.proxy_model}
    unlike.update({"select_every": base.select_every} if base.select_every != 1 else {})
    unlike.update({"select_from": base.select_from} if base.select_from else {})
    unlike = {k: v for k, v in unlike.items() if v is not None}
    if unlike:
        raise InputError(
            f"bench times exact selection at every step of a named setting, not {unlike}; declare "
            "the cost ratio (--cost-ratio R)"
        )
    sweep = {m for kind in kinds if (m := sweep_candidates(kind)) is not None}
    counts = {1, base.num_candidates, *sweep}
    cheap: _CheapModes = {}
    if {f.name for f in dataclasses.fields(BenchConfig)} >= {"score_fractions", "weighted"}:
        fractions = [dict(arm_named(kind).options)["score_fraction"] for kind in kinds if kind.startswith("gated")]
        cheap = {"score_fractions": tuple(sorted(set(fractions))), "weighted": WEIGHTED_STEP in kinds}
    elif set(kinds) - {PROPOSED_STEP}:
        raise InputError(
            f"this lossaug bench cannot time {sorted(set(kinds) - {PROPOSED_STEP})}; declare their cost "
            "ratios (protocol: cost_ratio = {proposed = ..., gated = ..., weighted = ...})"
        )
    return BenchConfig(
        model=base.model,
        width=base.width,
        batch_size=base.batch_size,
        augment=base.augment,
        candidate_counts=tuple(sorted(counts)),
        setting=setting,
        device=base.device,
        score_chunk=base.score_chunk,
        **_bench_input_size(base),
        **cheap,
    )


def _measured(result, kind: str, num_candidates: int) -> float:
    """R of ``kind`` from a bench result: the M-candidate step's ratio for proposed (and an M sweep's
    ``proposed-mM`` at its M); the measured row of gating at its Q; the weighted step's ratio per distinct image (its
    step takes B/M images)."""
    if kind == PROPOSED_STEP:
        return result.timing(num_candidates).ratio
    if (sweep := sweep_candidates(kind)) is not None:
        return result.timing(sweep).ratio
    weighted = kind == WEIGHTED_STEP
    option = "weighted" if weighted else f"score_fraction {dict(arm_named(kind).options)['score_fraction']:g}"
    rows = [row for row in result.options() if row["option"] == option and row["measured"]]
    if not rows:
        raise InputError(f"lossaug bench did not time {option!r}; declare the cost ratio of {kind!r}")
    return rows[0]["ratio_per_image"] if weighted else rows[0]["ratio"]


def measure_cost_ratios(
    config: CompareConfig, setting: str, kinds: Sequence[str], log: Callable[[str], None] | None = None
) -> dict[str, dict]:
    """R of each step kind of ``kinds`` for ``setting``, from one ``lossaug bench`` run (interleaved, default
    repeats): per kind ``{"value", "source": "bench", "bench"}`` (the bench's whole JSON)."""
    from lossaug.bench import run_bench

    measured: dict[str, dict] = {}
    sweep = [kind for kind in kinds if sweep_candidates(kind) is not None]
    for group in ([kind for kind in kinds if kind not in sweep], sweep):  # an M sweep's bench times its own Ms
        if group:
            result = run_bench(_bench_config(config, setting, group), log=log)
            bench = result.to_json()
            for kind in group:
                value = _measured(result, kind, config.base.num_candidates)
                measured[kind] = {"value": value, "source": "bench", "bench": bench}
    return {kind: measured[kind] for kind in kinds}


def needed_kinds(config: CompareConfig) -> list[str]:
    """The step kinds whose R the comparison needs, proposed first: those an arm's epochs wait on and, with
    budgets (the frontier places every arm at its compute), every arm's."""
    arms = planned_arms(config)
    base = config.base
    kinds = {k for arm in arms if arm.epochs(base.epochs, config.branch_at, {}) is None for k in arm.kinds()}
    if config.budgets:
        kinds |= {k for arm in arms for k in arm.kinds()}
    return sorted(kinds, key=lambda kind: (kind != PROPOSED_STEP, kind))


def _file_key(setting: str, kind: str) -> str:
    return setting if kind == PROPOSED_STEP else f"{setting}:{kind}"


def resolve_costs(config: CompareConfig, reporter: Reporter | None = None) -> dict[str, dict[str, dict]]:
    """Per setting and step kind ``{"value": R, "source": "declared" | "bench", ...}``: the declared R, else the
    one measured by an earlier call into the same ``out`` (``cost_ratio.json``), else one bench run now for the
    kinds still missing. Empty when no arm needs one."""
    kinds = needed_kinds(config)
    if not kinds:
        return {}
    path = Path(config.out) / COST_RATIO_FILE
    saved = _read_saved(path) if path.exists() else {}
    costs: dict[str, dict[str, dict]] = {}
    declared = declared_ratios(config)
    for setting in config.settings:
        costs[setting], missing = {}, []
        for kind in kinds:
            key = _file_key(setting, kind)
            if kind in declared:
                costs[setting][kind] = {"value": declared[kind], "source": "declared"}
            elif saved.get(key, {}).get("source") == "bench":
                costs[setting][kind] = saved[key]
                _log(reporter, f"cost ratio of {kind}, setting {setting}: {saved[key]['value']:.3f} (bench, {path})")
            else:
                missing.append(kind)
        if missing:
            _log(
                reporter,
                f"== measuring the cost ratio R of {', '.join(missing)}, setting {setting}, with lossaug bench",
            )
            costs[setting].update(measure_cost_ratios(config, setting, missing, log=reporter.log if reporter else None))
            for kind in missing:
                _log(reporter, f"cost ratio of {kind}, setting {setting}: {costs[setting][kind]['value']:.3f} (bench)")
    flat = {_file_key(setting, kind): cost for setting, kinds in costs.items() for kind, cost in kinds.items()}
    if flat != {k: v for k, v in saved.items() if k in flat}:
        write_json({**saved, **flat}, path)  # atomic: a kill never leaves it cut short
    return costs


def _read_saved(path: Path) -> dict[str, dict]:
    """``cost_ratio.json``, checked: each entry an object with a finite ``value`` > 0 and a ``source``."""
    saved = read_json(path)
    for key, entry in saved.items():
        where = f"{path} entry {key!r}"
        if not isinstance(entry, dict):
            raise InputError(f"{where} is a {type(entry).__name__}, not an object")
        check_fields(entry, {"value": NUMBER, "source": (str,)}, where)
        if not 0 < entry["value"] <= MAX_RATIO:  # NaN and inf fail too
            raise InputError(f"{where} has value {entry['value']!r}, not a cost ratio in (0, {MAX_RATIO:g}]")
    return saved


def ratio_values(costs: Mapping[str, Mapping[str, dict]]) -> dict[str, dict[str, float]]:
    """Per setting the cost ratio of each step kind, from ``resolve_costs``' answer."""
    return {setting: {kind: cost["value"] for kind, cost in kinds.items()} for setting, kinds in costs.items()}
