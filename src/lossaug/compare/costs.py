"""The cost ratio R of a comparison (one proposed step in baseline steps): declared, or measured once by
``lossaug bench`` at the start and kept in ``cost_ratio.json`` so that a resumed comparison sizes its arms the same
way and how busy the machine was during one seed cannot size them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from lossaug.compare.config import CompareConfig
from lossaug.compare.plan import planned_arms
from lossaug.config import TrainConfig
from lossaug.errors import InputError
from lossaug.progress import Reporter

__all__ = ["COST_RATIO_FILE", "measure_cost_ratio", "ratio_values", "resolve_cost_ratios"]

COST_RATIO_FILE = "cost_ratio.json"  # the R used, kept so that a resumed comparison sizes its arm the same way


def _log(reporter: Reporter | None, line: str) -> None:
    if reporter is not None:
        reporter.log(line)


def _bench_input_size(base: TrainConfig) -> dict[str, int]:
    """The input size bench times: the clip length in samples for an audio model (which needs --clip-seconds:
    the data's default length is known only once they are read), the image side when --image-size is set."""
    from lossaug.models import model_kind
    from lossaug.pipeline import AUDIO_RATE

    if model_kind(base.model) == "audio":
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
    by an earlier call into the same ``out`` (``cost_ratio.json``), else a bench run now. Empty unless an arm's
    epochs are sized from R (``baseline-equal-time``)."""
    if "proposed" not in {arm.stretch_kind() for arm in planned_arms(config)}:
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


def ratio_values(costs: dict[str, dict]) -> dict[str, dict[str, float]]:
    """Per setting the cost ratio of each step kind, from ``resolve_cost_ratios``' answer (the proposed step's)."""
    return {setting: {"proposed": cost["value"]} for setting, cost in costs.items()}
