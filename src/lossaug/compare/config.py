"""What a ``lossaug compare`` runs: its ``CompareConfig`` (arms x settings x seeds, branching, cost ratio, margin),
read from arguments or a protocol file's ``[compare]`` table, and the ``TrainConfig`` of each trunk and arm run.

See ``compare`` for the design; ``compare_summary`` turns the finished runs into the paired comparison.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lossaug.config import SETTINGS, TrainConfig, validate_config
from lossaug.errors import InputError

__all__ = [
    "ARMS",
    "ENDPOINTS",
    "PROTOCOL_KEYS",
    "CompareConfig",
    "arm_config",
    "config_from_protocol",
    "declared_cost",
    "equal_compute_epochs",
    "run_dir",
    "trunk_config",
    "trunk_dir",
    "validate_compare",
]

ARMS = ("baseline", "proposed", "maxup", "baseline-equal-time")
# (treatment, control) pairs reported as endpoints, when both arms ran; the first two are the primary ones.
ENDPOINTS = (("proposed", "baseline"), ("proposed", "baseline-equal-time"), ("maxup", "baseline"))
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
