"""What a ``lossaug compare`` is asked to run: its ``CompareConfig`` (arms x settings x seeds, branching, cost
ratio, margin), read from arguments or a protocol file's ``[compare]`` table, and its validation.

``plan`` turns it into runs, ``runner`` trains them, ``analyses`` and ``report`` summarise them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lossaug.compare.arms import ARMS, arm_named
from lossaug.config import SETTINGS, TrainConfig, validate_config
from lossaug.errors import InputError

__all__ = ["PROTOCOL_KEYS", "CompareConfig", "config_from_protocol", "validate_compare"]

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
    arms = [arm_named(name) for name in config.arms]
    for setting in config.settings:
        if setting not in SETTINGS:
            raise InputError(f"unknown setting {setting!r}; choose from {list(SETTINGS)}")
    if not config.seeds or len(set(config.seeds)) != len(config.seeds):
        raise InputError(f"seeds must be distinct and non-empty, got {list(config.seeds)}")
    for arm in arms:
        if not set(arm.needs) <= set(config.arms):
            needs = " and ".join(map(repr, arm.needs))
            raise InputError(f"arm {arm.name!r} needs the arms {needs} (it is sized from them)")
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
