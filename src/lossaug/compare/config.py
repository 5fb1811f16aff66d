"""What a ``lossaug compare`` is asked to run: its ``CompareConfig`` (arms x settings x seeds, branching, cost
ratio, margin), read from arguments or a protocol file's ``[compare]`` table, and its validation.

``plan`` turns it into runs, ``runner`` trains them, ``analyses`` and ``report`` summarise them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lossaug.compare.arms import ARMS, BASELINE_ARM, PROPOSED_STEP, arm_named, budget_arm, candidates_arm
from lossaug.errors import InputError
from lossaug.run.config import SETTINGS, TrainConfig, validate_config

__all__ = [
    "MAX_RATIO",
    "PER_RUN",
    "PROTOCOL_KEYS",
    "CompareConfig",
    "all_arms",
    "check_arm_epochs",
    "check_budget_range",
    "config_from_protocol",
    "declared_ratios",
    "validate_compare",
]

# The TrainConfig fields compare sets per run, each with the compare option that sets them: a shared value would be
# overwritten by every run, i.e. dropped, so it is refused naming the option to use instead.
PER_RUN = {
    "method": "--arms baseline,proposed (one run per arm)",
    "setting": "--settings A,B (one run per setting)",
    "seed": "--seeds 0,1,2 (one run per seed)",
    "stop_at": "--branch-at F (the trunk stops there)",
    "branch_from": "--branch-at F (every arm continues from the trunk)",
}
PROTOCOL_KEYS = (
    "out",
    "arms",
    "settings",
    "seeds",
    "branch_at",
    "budgets",
    "cost_ratio",
    "margin_points",
    "allow_mixed_commits",
    "allow_out_of_range",
)


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
    # the baseline at these compute budgets (tail after the branch stretched B times; 1 is the baseline), and
    # with them the frontier's verdicts; empty: no frontier
    budgets: tuple[float, ...] = ()
    # declared R of other step kinds ("gated", "weighted", "gated-0.5", "proposed-m8"; "proposed" is cost_ratio),
    # per distinct image; a kind not declared here is measured by bench at the start
    cost_ratios: Mapping[str, float] = field(default_factory=dict)
    # run even when the budgets cannot bracket a selection arm's compute (its equal-compute verdict "out of range")
    allow_out_of_range: bool = False


def all_arms(config: CompareConfig) -> tuple[str, ...]:
    """``config.arms`` and the baseline arm of each budget not among them (``baseline`` for 1, ``baseline-x1.5``)."""
    budget_arms = [budget_arm(budget) for budget in config.budgets]
    return (*config.arms, *(name for name in dict.fromkeys(budget_arms) if name not in config.arms))


def declared_ratios(config: CompareConfig) -> dict[str, float]:
    """The declared cost ratio of each step kind (a kind not here is measured by bench): the one mapping behind the
    public pair, ``cost_ratio`` the proposed step's and ``cost_ratios`` every other kind's (``validate_compare``
    refuses a ``cost_ratios["proposed"]``)."""
    proposed = {} if config.cost_ratio is None else {PROPOSED_STEP: config.cost_ratio}
    return {**proposed, **config.cost_ratios}


# The largest cost ratio or budget taken: far past any measured R (R(8) is about 4-6), and it bounds every epoch
# count derived from them (a cost ratio of 1e300 overflowed only after training began).
MAX_RATIO = 1000.0


def _check_ratio(name: str, value: float | None) -> None:
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise InputError(f"{name} must be a finite number > 0, got {value}")
    if value is not None and value > MAX_RATIO:
        raise InputError(f"{name} must be at most {MAX_RATIO:g} (baseline steps per step), got {value:g}")


def check_arm_epochs(config: CompareConfig, ratios: Mapping[str, float]) -> None:
    """Raise ``InputError`` when an arm sized from the cost ratios ``ratios`` (step kind -> R; unknown ones are
    skipped) would get no epoch: refused before any arm trains, not when that arm's turn comes."""
    for kind, value in ratios.items():  # a benched one too
        _check_ratio(f"cost ratio of {kind!r}", value)
    shared = config.base.epochs * config.branch_at  # epochs of the trunk, before the branch
    for name in all_arms(config):
        epochs = arm_named(name).epochs(config.base.epochs, config.branch_at, ratios)
        if epochs is not None and config.branch_at > 0 and epochs - shared < 1:
            # seen: epochs 1, branch_at 0.8 on 4 steps an epoch: the trunk took every step, no arm ever selected
            after = f"{epochs - shared:g} epochs after the branch (less than one)"
            raise InputError(
                f"branch_at {config.branch_at:g} with epochs {config.base.epochs} leaves arm {name!r} {after}: "
                "lower branch_at or raise epochs"
            )
        if epochs is not None and epochs < 1:
            used = ", ".join(f"{kind} {value:g}" for kind, value in sorted(ratios.items()))
            raise InputError(
                f"arm {name!r} would get {epochs} epochs at cost_ratio ({used}) with epochs "
                f"{config.base.epochs} and branch_at {config.branch_at:g}; raise epochs or check the "
                "cost ratio"
            )


def check_budget_range(config: CompareConfig, ratios: Mapping[str, float]) -> None:
    """Raise ``InputError`` when the baseline budgets cannot bracket a selection arm's compute at the cost ratios
    ``ratios`` (arms whose ratio is unknown are skipped), naming the arms and budgets that would, unless
    ``allow_out_of_range``: before any training, not as an "out of range" verdict at the end."""
    if not config.budgets or config.allow_out_of_range:
        return
    arms = {arm: arm.compute(config.base.epochs, config.branch_at, ratios) for arm in map(arm_named, all_arms(config))}
    curve = [c for arm, c in arms.items() if not arm.selects and c is not None]
    low, high = min(curve), max(curve)
    outside = {arm.name: c for arm, c in arms.items() if arm.selects and c is not None and not low <= c <= high}
    if not outside:
        return
    needed = sorted({*config.budgets, *(_bracketing_budget(config, c) for c in outside.values())})
    named = ", ".join(f"{name} (compute {c:.2f})" for name, c in outside.items())
    used = ", ".join(f"{kind} {value:g}" for kind, value in sorted(ratios.items()))
    given, listed = (",".join(f"{b:g}" for b in budgets) for budgets in (config.budgets, needed))
    raise InputError(
        f"budgets {given} span compute {low:.2f}-{high:.2f} and cannot bracket {named} at cost ratio ({used}): "
        f"--budgets {listed} would (protocol: budgets = [{listed.replace(',', ', ')}]); or pass "
        "--allow-out-of-range (protocol: allow_out_of_range = true) to report them 'out of range'"
    )


def _bracketing_budget(config: CompareConfig, compute: float) -> float:
    """The nearest whole budget whose baseline arm costs at least ``compute`` (or tenth of one, at most it)."""
    epochs, branch = config.base.epochs, config.branch_at

    def cost(budget: float) -> float:
        return arm_named(budget_arm(budget)).compute(epochs, branch, {}) or 0.0

    tail = (compute - branch) / (1 - branch)  # the budget before the epochs' rounding
    if compute > 1:
        budget = float(max(1, math.ceil(tail)))
        while cost(budget) < compute:  # epochs round half up: a budget or so more at most
            budget += 1
        return budget
    budget = math.floor(10 * tail) / 10
    while budget > 0.1 and cost(budget) > compute:
        budget = round(budget - 0.1, 6)
    return max(budget, 0.1)


def _check_per_run(config: CompareConfig) -> None:
    """Refuse a shared value of a field compare sets per run (``PER_RUN``): a default, or a setting or seed that is
    among the comparison's own (a protocol's ``[train]`` may repeat its one setting), is what the runs use anyway."""
    defaults = TrainConfig()
    runs = {"setting": config.settings, "seed": config.seeds}
    for name, instead in PER_RUN.items():
        value = getattr(config.base, name)
        if value != getattr(defaults, name) and value not in runs.get(name, ()):
            raise InputError(f"compare sets {name} per run (use {instead}), got {name}={value!r}")


def validate_compare(config: CompareConfig) -> None:
    if Path(config.out).exists() and not Path(config.out).is_dir():
        raise InputError(f"compare out {config.out} exists and is not a directory")
    if not config.arms:
        raise InputError("arms must name at least one arm, got none")
    if not config.settings:
        raise InputError("settings must name at least one setting, got none")
    if len(set(config.budgets)) != len(config.budgets) or not all(b > 0 and math.isfinite(b) for b in config.budgets):
        raise InputError(f"budgets must be distinct finite numbers > 0, got {list(config.budgets)}")
    if any(b > MAX_RATIO for b in config.budgets):
        raise InputError(f"budgets must be at most {MAX_RATIO:g} (baseline runs), got {list(config.budgets)}")
    arms = [arm_named(name) for name in all_arms(config)]
    same = candidates_arm(config.base.num_candidates)
    if same in config.arms:
        raise InputError(
            f"arm {same!r} is the proposed arm (num_candidates is {config.base.num_candidates}): name proposed instead"
        )
    for setting in config.settings:
        if setting not in SETTINGS:
            raise InputError(f"unknown setting {setting!r}; choose from {list(SETTINGS)}")
    if not config.seeds or len(set(config.seeds)) != len(config.seeds):
        raise InputError(f"seeds must be distinct and non-empty, got {list(config.seeds)}")
    for arm in arms:
        if not set(arm.needs) <= set(all_arms(config)):
            needs = " and ".join(map(repr, arm.needs))
            raise InputError(f"arm {arm.name!r} needs the arms {needs} (it is sized from them)")
    if not 0 <= config.branch_at < 1:
        raise InputError(f"branch_at must be in [0, 1), got {config.branch_at}")
    _check_ratio("cost_ratio", config.cost_ratio)
    for kind, value in config.cost_ratios.items():
        if kind == PROPOSED_STEP:
            raise InputError("the proposed step's cost ratio is cost_ratio, not cost_ratios['proposed']")
        if arm_named(kind).step != kind:
            raise InputError(
                f"{kind!r} is not a step kind with a cost ratio of its own (gated, weighted, gated-Q, proposed-mM)"
            )
        _check_ratio(f"cost ratio of {kind!r}", value)
    if config.budgets and BASELINE_ARM not in all_arms(config):
        raise InputError("budgets need the baseline (budget 1), the reference of the frontier's intervals")
    if not 0 < config.margin < 1:
        raise InputError(f"margin must be in (0, 1) as a fraction (0.005 = 0.5 points), got {config.margin}")
    if config.branch_at > 0 and not {"stop_at", "branch_from"} <= {f.name for f in dataclasses.fields(TrainConfig)}:
        raise InputError(f"branch_at {config.branch_at} needs a training loop with stop_at and branch_from")
    _check_per_run(config)
    validate_config(config.base)
    declared = declared_ratios(config)
    check_arm_epochs(config, declared)
    check_budget_range(config, declared)
    for arm in arms:  # an arm's own method and options must suit the shared ones (weighted: batch a multiple of M)
        if arm.method != config.base.method or arm.options:
            validate_config(dataclasses.replace(config.base, method=arm.method, **dict(arm.options)))


def config_from_protocol(table: Mapping[str, Any], base: TrainConfig) -> CompareConfig:
    """A ``CompareConfig`` from the ``[compare]`` table of a protocol file (``base`` from its ``[train]``
    table). Keys: ``out`` (required), ``arms``, ``settings``, ``seeds``, ``budgets`` (lists), ``branch_at``,
    ``cost_ratio`` (a number, "bench", or a table of step kinds, ``{proposed = 2.0, gated = "bench", weighted =
    3.9}``), ``margin_points`` (δ in percentage points), ``allow_mixed_commits`` and ``allow_out_of_range``."""
    unknown = sorted(set(table) - set(PROTOCOL_KEYS))
    if unknown:
        raise InputError(f"unknown key(s) {unknown} in the protocol's [compare] table; valid: {list(PROTOCOL_KEYS)}")
    if not isinstance(table.get("out"), str):
        raise InputError(f"the protocol's [compare] table needs out, a directory; got {table.get('out')!r}")
    values: dict[str, Any] = {"base": base, "out": table["out"]}
    for key, kind in (("arms", (str,)), ("settings", (str,)), ("seeds", (int,)), ("budgets", (int, float))):
        if key in table:
            items = table[key]
            if not isinstance(items, list) or not all(isinstance(i, kind) and not isinstance(i, bool) for i in items):
                raise InputError(f"protocol key {key} must be a list of {kind[-1].__name__}, got {items!r}")
            values[key] = tuple(float(i) if key == "budgets" else i for i in items)
    if "branch_at" in table:
        values["branch_at"] = _number(table["branch_at"], "branch_at")
    values.update(_cost_ratios(table.get("cost_ratio", "bench")))
    if "margin_points" in table:
        values["margin"] = _number(table["margin_points"], "margin_points") / 100
    for key in ("allow_mixed_commits", "allow_out_of_range"):
        if key in table:
            if not isinstance(table[key], bool):
                raise InputError(f"protocol key {key} must be true or false, got {table[key]!r}")
            values[key] = table[key]
    return CompareConfig(**values)


def _cost_ratios(cost: Any) -> dict[str, Any]:
    """``cost_ratio`` and ``cost_ratios`` from the protocol's cost_ratio: a number or "bench" (the proposed step's),
    or a table of step kinds, each a number or "bench"."""
    if not isinstance(cost, Mapping):
        return {"cost_ratio": None if cost == "bench" else _number(cost, "cost_ratio (a number or 'bench')")}
    declared = {
        kind: _number(value, f"cost_ratio.{kind} (a number or 'bench')")
        for kind, value in cost.items()
        if value != "bench"
    }
    return {"cost_ratio": declared.pop(PROPOSED_STEP, None), "cost_ratios": declared}


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"protocol key {key} must be a number, got {value!r}")
    return float(value)
