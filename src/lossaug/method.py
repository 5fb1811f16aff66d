"""From a ``TrainConfig`` to the method and its optimisation: the augmentation of a setting, the one
``LossAwareAugment`` a run selects through, when a step selects, the learning-rate schedule (with a branch's
stretched tail) and SGD for the model and the proxy. Pure functions of the config and a few facts about the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from lossaug.augment import Augment, Compose, Cutout, parse_augment
from lossaug.config import TrainConfig
from lossaug.selection import LossAwareAugment

# Cutout side per dataset for setting B, as in DeVries & Taylor (2017): 16 px on CIFAR-10, 8 px on CIFAR-100.
CUTOUT_SIZES = {"cifar10": 16, "mini": 16, "cifar100": 8}


def build_augment(config: TrainConfig, fill: tuple[float, ...] | None = None, audio: bool = False) -> Augment:
    """The run's augmentation: ``config.augment`` if set, else setting A (flip + crop) or B (A + Cutout); for
    audio, ``audio.AUDIO_SETTINGS`` (A: shift + gain + noise; B: A + time and frequency masks)."""
    if audio:
        from lossaug.audio import AUDIO_SETTINGS, parse_audio_augment

        return parse_audio_augment(config.augment or AUDIO_SETTINGS[config.setting])
    if config.augment is not None:
        return parse_augment(config.augment)
    setting_a = parse_augment("flip,crop:4")
    if config.setting == "A":
        return setting_a
    size = CUTOUT_SIZES.get(config.dataset, 16)
    # Cutout fills with the per-channel training mean: DeVries & Taylor zero the normalised image, i.e. the mean.
    return Compose((*setting_a.augments, Cutout(size, fill=fill or 0)))


def scoring_chunk(config: TrainConfig, device: torch.device) -> int | None:
    """Candidates per scoring pass: ``config.score_chunk``, else all at once on CUDA and a batch's worth on the
    CPU, where passes over more than ~128 images fall out of cache (512 candidates in one pass cost 2-3x more per
    image than 4 passes of 128; cnn width 16, 2 cores)."""
    if config.score_chunk is not None:
        return config.score_chunk
    return config.batch_size if device.type == "cpu" else None


def method_for(
    config: TrainConfig, mean: tuple[float, ...], device: torch.device, audio: bool = False
) -> LossAwareAugment:
    """The run's method: augmentation of its setting (Cutout filled with the training ``mean`` on the [0, 1]
    scale), M, temperature and scoring options, bf16 scoring on CUDA."""
    fill = tuple(round(255 * m) for m in mean)
    return LossAwareAugment(
        build_augment(config, fill, audio),
        num_candidates=config.candidates_per_image(),
        temperature=config.resolved_temperature(),
        score=config.score,
        bn=config.bn,
        uniform_mix=config.uniform_mix,
        chunk_size=scoring_chunk(config, device),
        autocast_dtype=torch.bfloat16 if device.type == "cuda" else None,
        check_targets=False,  # labels were checked once when the data loaded: no host sync per scoring call
    )


def selects_at(config: TrainConfig, global_step: int, total_steps: int) -> bool:
    """Whether step ``global_step`` (0-based) scores candidates: after ``select_from`` of training, one step in
    ``select_every``; the other steps train on one random candidate."""
    return (
        config.candidates_per_image() > 1
        and global_step >= math.ceil(config.select_from * total_steps)
        and global_step % config.select_every == 0
    )


def cosine_lr(step: int, total_steps: int, warmup_steps: int) -> float:
    """LR multiplier: linear warm-up to 1, then cosine decay to 0 at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


@dataclass(frozen=True)
class Schedule:
    """The LR multiplier per step: warm-up and cosine decay over ``trunk_steps``; a branch that trains longer
    (``total_steps > trunk_steps``) keeps it up to ``branch_step`` and then decays by a cosine from the value
    there to 0 at its own ``total_steps``. Without a branch, ``trunk_steps == total_steps``."""

    total_steps: int
    warmup_steps: int
    trunk_steps: int
    branch_step: int = 0

    def __call__(self, step: int) -> float:
        if self.total_steps == self.trunk_steps or step < self.branch_step:
            return cosine_lr(step, self.trunk_steps, self.warmup_steps)
        start = cosine_lr(self.branch_step, self.trunk_steps, self.warmup_steps)
        progress = (step - self.branch_step) / max(self.total_steps - self.branch_step, 1)
        return start * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def build_sgd(
    net: nn.Module, config: TrainConfig, schedule: Schedule
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """SGD (Nesterov momentum) for ``net`` with ``config``'s hyperparameters, stepped per step by ``schedule``."""
    optimizer = torch.optim.SGD(
        net.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.momentum > 0,
        weight_decay=config.weight_decay,
    )
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def reapply_hyperparameters(optimizer: torch.optim.Optimizer, scheduler, config: TrainConfig) -> None:
    """After loading optimizer and schedule state, make ``config``'s lr, momentum and weight decay take effect:
    a resumed run may change them (e.g. a lower lr after a non-finite loss). Unchanged values give the same
    floats the schedule computed, so exact resume is kept."""
    scheduler.base_lrs = [config.lr for _ in optimizer.param_groups]
    factor = scheduler.lr_lambdas[0](scheduler.last_epoch)
    for group in optimizer.param_groups:
        group.update(
            initial_lr=config.lr,
            lr=config.lr * factor,
            momentum=config.momentum,
            nesterov=config.momentum > 0,
            weight_decay=config.weight_decay,
        )
