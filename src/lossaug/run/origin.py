"""Where a run starts and the schedule it follows: fresh, resumed from its own newest checkpoint, or branched from a
trunk's (``lossaug compare --branch-at``). The checks that make resuming and branching safe live here: options that
would change shapes or data refuse to resume, and a branch may differ from its trunk only in ``BRANCH_FREE`` fields.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

from lossaug.data import fingerprint_differences
from lossaug.errors import InputError
from lossaug.methods import method_named
from lossaug.run.checkpoint import CheckpointError, RunCheckpoint, read_run_checkpoint
from lossaug.run.config import BRANCH_FREE, RESUME_FIXED, TrainConfig
from lossaug.run.method import Schedule

__all__ = ["check_restorable", "config_differences", "run_origin", "run_schedule", "step_ratio"]


def config_differences(saved: dict, config: TrainConfig) -> tuple[list[str], list[str]]:
    """``(fixed, other)``: descriptions of fields that differ between a checkpoint's config and ``config``;
    ``fixed`` ones (``RESUME_FIXED``) make resuming impossible."""
    saved = dataclasses.asdict(TrainConfig.from_dict(saved))
    fixed: list[str] = []
    other: list[str] = []
    for name, value in dataclasses.asdict(config).items():
        if name == "out" or saved[name] == value:
            continue
        (fixed if name in RESUME_FIXED else other).append(f"{name}: {saved[name]!r} -> {value!r}")
    return fixed, other


def run_origin(config: TrainConfig, out_dir: Path | None, resume: bool) -> tuple[str | None, RunCheckpoint | None]:
    """Where the run starts: ``("resume", checkpoint)``, ``("branch", trunk checkpoint)`` or ``(None, None)``."""
    if resume:
        if out_dir is None:
            raise InputError("resume needs config.out, the run directory holding the checkpoint")
        path, checkpoint = read_run_checkpoint(out_dir)
        fixed, other = config_differences(checkpoint.config, config)
        if fixed:
            raise CheckpointError(f"cannot resume {path} with changed {'; '.join(fixed)}")
        _check_images_per_step(path, TrainConfig.from_dict(checkpoint.config), config)
        position = checkpoint.position if isinstance(checkpoint.position, dict) else {}
        done = position.get("epoch", 0) + (1 if position.get("step", 0) else 0)  # epochs finished or begun
        if done > config.epochs:
            # config.json would then record fewer epochs than metrics.jsonl holds, and compare reads it.
            raise CheckpointError(
                f"cannot resume {out_dir} with --epochs {config.epochs}: {done} epochs already run or begun; pass "
                f"--epochs {done} or more"
            )
        if other:
            warnings.warn(f"resuming {path} with changed {'; '.join(other)}", stacklevel=4)
        return "resume", checkpoint
    if config.branch_from is None:
        return None, None
    path, checkpoint = read_run_checkpoint(Path(config.branch_from))
    trunk = dataclasses.asdict(TrainConfig.from_dict(checkpoint.config))
    branch = dataclasses.asdict(config)
    changed = [f"{k}: {trunk[k]!r} -> {v!r}" for k, v in branch.items() if k not in BRANCH_FREE and trunk[k] != v]
    if changed:
        raise CheckpointError(f"cannot branch from {path}: the trunk differs in {'; '.join(changed)}")
    if trunk["stop_at"] is None:
        raise CheckpointError(f"cannot branch from {path}: it is not a trunk (made without stop_at)")
    return "branch", checkpoint


def _method_words(config: TrainConfig) -> str:
    """``--method weighted --candidates 4`` (the candidates only where they set the images per step)."""
    candidates = f" --candidates {config.num_candidates}" if method_named(config.method).trains_all else ""
    return f"--method {config.method}{candidates}"


def _check_images_per_step(path: Path, saved: TrainConfig, config: TrainConfig) -> None:
    """Refuse to resume with another number of images per step (weighted <-> a sampling method, or another M of
    the weighted mode): the checkpoint's step count and position are in its own steps, so the schedule would be
    misplaced (past its end: epochs at lr 0)."""
    before, after = saved.images_per_step(), config.images_per_step()
    if before != after:
        raise CheckpointError(
            f"cannot resume {path} with {_method_words(config)} ({after} images per step): it was trained with "
            f"{_method_words(saved)} ({before} images per step) and counts its schedule in those steps; resume it "
            f"with {_method_words(saved)}, or start a new run"
        )


def check_restorable(
    checkpoint: RunCheckpoint, where: str, config: TrainConfig, num_classes: int, fingerprint: dict, world_size: int
) -> None:
    """Refuse (``CheckpointError``, saying ``where``) a checkpoint this run cannot continue: other classes, other
    data (a warning with ``allow_data_change``), another number of processes."""
    if checkpoint.num_classes != num_classes:
        raise CheckpointError(f"cannot {where}: it has {checkpoint.num_classes} classes, the data {num_classes}")
    changed = fingerprint_differences(checkpoint.data_fingerprint or {}, fingerprint)
    if changed and checkpoint.data_fingerprint is not None:
        if not config.allow_data_change:
            raise CheckpointError(
                f"cannot {where}: the data differ ({'; '.join(changed)}); pass --allow-data-change to continue on "
                "other data"
            )
        warnings.warn(f"{where} on other data: {'; '.join(changed)}", stacklevel=5)
    if len(checkpoint.random) != world_size:
        raise CheckpointError(f"cannot {where}: saved by {len(checkpoint.random)} processes, resumed by {world_size}")


def step_ratio(config: TrainConfig, checkpoint: RunCheckpoint) -> int:
    """A trunk's steps in a branch's: its images per step over the branch's (4 for a weighted branch with M = 4 of
    a baseline trunk, else 1). A branch that would need a fraction of a step is refused."""
    trunk = TrainConfig.from_dict(checkpoint.config).images_per_step()
    ratio, rest = divmod(trunk, config.images_per_step())
    if rest or not ratio:
        raise CheckpointError(
            f"cannot branch from a trunk of {trunk} images per step into a run of {config.images_per_step()}: "
            "the trunk's steps must be a whole number of the branch's"
        )
    return ratio


def run_schedule(
    config: TrainConfig, steps_per_epoch: int, origin: str | None, checkpoint: RunCheckpoint | None
) -> Schedule:
    """The LR schedule over the run's steps; a branch keeps its trunk's up to the branch step."""
    total, warmup = steps_per_epoch * config.epochs, round(config.warmup_epochs * steps_per_epoch)
    if origin == "branch":
        assert checkpoint is not None, "run_origin gives a branch its trunk's checkpoint"
        trunk_epochs = TrainConfig.from_dict(checkpoint.config).epochs
        branch_step = checkpoint.global_step * step_ratio(config, checkpoint)
        return Schedule(total, warmup, steps_per_epoch * trunk_epochs, branch_step)
    saved = (checkpoint.schedule if checkpoint is not None else None) or {}
    if saved.get("branch_step"):  # a branch resumed: the same stretched tail
        return Schedule(total, warmup, saved["trunk_steps"], saved["branch_step"])
    return Schedule(total, warmup, total)
