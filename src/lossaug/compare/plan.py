"""The runs of a comparison: per setting and seed the trunk (when ``branch_at`` > 0) and every arm, each a
``RunSpec`` with its directory and ``TrainConfig``. One ``plan`` serves the commit preflight, the runner and any
script that runs a share of the comparison itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lossaug.compare.arms import ARM_REGISTRY, BASELINE_ARM, Arm, arm_named
from lossaug.compare.config import CompareConfig, all_arms
from lossaug.run.config import TrainConfig

__all__ = ["RunSpec", "plan", "planned_arms", "run_dir", "trunk_config", "trunk_dir"]


@dataclass(frozen=True)
class RunSpec:
    """One run of the plan: the trunk of (setting, seed) when ``arm`` is None, else an arm. ``config`` is None
    where the arm's epochs wait on a cost ratio not resolved yet (the preflight plans before the bench)."""

    setting: str
    seed: int
    arm: str | None
    out: Path
    config: TrainConfig | None

    @property
    def done_file(self) -> str:
        """What a finished run leaves in ``out``: a trunk stops at the branch point with ``trunk.json``."""
        return "trunk.json" if self.arm is None else "final.json"

    @property
    def finished(self) -> bool:
        return (self.out / self.done_file).exists()


def _report_order(arm: Arm) -> tuple[int, float]:
    """The registry's order of the arm's family, then within a family by budget, Q or M, read from the arm's fields
    (a generated name such as ``gated-1e-05`` is not parsed back)."""
    options = dict(arm.options)
    if arm.name in ARM_REGISTRY:
        family, number = arm.name, options.get("score_fraction", 1.0 if arm.name == BASELINE_ARM else 0.0)
    elif isinstance(arm.budget, (int, float)):  # baseline-x1.5
        family, number = BASELINE_ARM, arm.budget
    elif "score_fraction" in options:  # gated-0.5
        family, number = "gated", options["score_fraction"]
    else:  # proposed-m8
        family, number = "proposed", options["num_candidates"]
    return list(ARM_REGISTRY).index(family), float(number)


def planned_arms(config: CompareConfig) -> tuple[Arm, ...]:
    """The comparison's arms (``config.arms`` and the budgets' baseline arms) in report order."""
    return tuple(sorted((arm_named(name) for name in all_arms(config)), key=_report_order))


def run_dir(config: CompareConfig, setting: str, arm: str, seed: int) -> Path:
    return Path(config.out) / f"setting-{setting}" / arm / f"seed-{seed}"


def trunk_dir(config: CompareConfig, setting: str, seed: int) -> Path:
    return Path(config.out) / f"setting-{setting}" / "trunk" / f"seed-{seed}"


def trunk_config(config: CompareConfig, setting: str, seed: int) -> TrainConfig:
    """The baseline of ``setting`` and ``seed`` trained to fraction ``branch_at`` of its steps."""
    out = str(trunk_dir(config, setting, seed))
    return dataclasses.replace(
        config.base, method="baseline", setting=setting, seed=seed, stop_at=config.branch_at, out=out
    )


def _arm_run(config: CompareConfig, setting: str, arm: Arm, seed: int, epochs: int) -> TrainConfig:
    branch_from = str(trunk_dir(config, setting, seed)) if config.branch_at > 0 else config.base.branch_from
    return dataclasses.replace(
        config.base,
        method=arm.method,
        **dict(arm.options),
        setting=setting,
        seed=seed,
        epochs=epochs,
        out=str(run_dir(config, setting, arm.name, seed)),
        branch_from=branch_from,
    )


def plan(config: CompareConfig, ratios: Mapping[str, Mapping[str, float]] | None = None) -> list[RunSpec]:
    """Every run of the comparison in the order they are trained: per setting, per seed, the trunk then the arms.
    ``ratios``: per setting the resolved cost ratio of each step kind (``{"A": {"proposed": 1.94}}``)."""
    ratios = ratios or {}
    specs = []
    for setting in config.settings:
        known = ratios.get(setting, {})
        for seed in config.seeds:
            if config.branch_at > 0:
                trunk = trunk_config(config, setting, seed)
                specs.append(RunSpec(setting, seed, None, trunk_dir(config, setting, seed), trunk))
            for arm in planned_arms(config):
                epochs = arm.epochs(config.base.epochs, config.branch_at, known)
                run = None if epochs is None else _arm_run(config, setting, arm, seed, epochs)
                specs.append(RunSpec(setting, seed, arm.name, run_dir(config, setting, arm.name, seed), run))
    return specs
