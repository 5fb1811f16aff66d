"""From a ``TrainConfig`` to the method and its optimisation: the augmentation of a setting, the one
``LossAwareAugment`` a run selects through, when a step selects, the learning-rate schedule (with a branch's
stretched tail) and SGD for the model and the proxy. Pure functions of the config and a few facts about the data.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from lossaug.augment import Augment, Compose, Cutout, RandomCrop, parse_augment
from lossaug.methods import method_named
from lossaug.run.config import TrainConfig
from lossaug.run.finetune import sgd_groups
from lossaug.selection import LossAwareAugment

# Setting B's Cutout side on CIFAR, as in DeVries & Taylor (2017): 16 px on CIFAR-10, 8 px on CIFAR-100. These
# data sets keep CIFAR's numbers; any other is scaled to its image side S at CIFAR-10's ratios (crop padding S/8,
# Cutout S/2), so that an 8-px image is not erased whole and a 224-px one is not barely touched.
CUTOUT_SIZES = {"cifar10": 16, "mini": 16, "cifar100": 8}


def setting_spec(config: TrainConfig, image_side: int | None) -> str:
    """The augmentation spec a run uses: ``config.augment`` if set, else its setting at the data's scale (setting
    C's TrivialAugment-style op scales its translations to the image itself)."""
    if config.augment is not None:
        return config.augment
    if config.dataset in CUTOUT_SIZES or image_side is None:
        padding, cutout = 4, CUTOUT_SIZES.get(config.dataset, 16)
    else:
        padding, cutout = max(1, round(image_side / 8)), max(1, round(image_side / 2))
    extra = {"B": f",cutout:{cutout}", "C": ",trivial"}.get(config.setting, "")
    return f"flip,crop:{padding}" + extra


def oversized(augment: Compose, image_side: int) -> list[str]:
    """The ops of ``augment`` that can remove all of an ``image_side``-px image: a crop padding or a Cutout side
    of at least the image's side."""
    found = []
    for op in augment.augments:
        if isinstance(op, RandomCrop) and op.padding >= image_side:
            found.append(f"crop:{op.padding} can shift the {image_side}-px image out of view")
        if isinstance(op, Cutout) and op.size >= image_side:
            found.append(f"cutout:{op.size} can erase the whole {image_side}-px image")
    return found


def build_augment(
    config: TrainConfig,
    fill: tuple[float, ...] | None = None,
    audio_rate: int | None = None,
    image_side: int | None = None,
) -> Augment:
    """The run's augmentation: ``config.augment`` if set, else setting A (flip + crop), B (A + Cutout) or C (A +
    one TrivialAugment-style op) at the scale of ``image_side`` (see ``setting_spec``); for audio clips at
    ``audio_rate`` Hz (None: images), ``audio.AUDIO_SETTINGS`` (A: shift + gain + noise; B: A + time and frequency
    masks, the frequency mask built for that rate, as the model's front end is). An explicit spec that can remove a
    whole image is warned about."""
    if audio_rate is not None:
        from lossaug.augment.audio import AUDIO_SETTINGS, parse_audio_augment

        return parse_audio_augment(config.augment or AUDIO_SETTINGS[config.setting], sample_rate=audio_rate)
    spec = setting_spec(config, image_side)
    augment = parse_augment(spec)
    assert isinstance(augment, Compose), f"image data with the audio spec {spec!r}: validate_config refuses it"
    if config.augment is not None:
        for problem in oversized(augment, image_side) if image_side else ():
            warnings.warn(f"augment {spec!r}: {problem}", stacklevel=2)
        return augment
    # Cutout fills with the per-channel training mean: DeVries & Taylor zero the normalised image, i.e. the mean.
    ops = [Cutout(op.size, fill=fill or 0) if isinstance(op, Cutout) else op for op in augment.augments]
    return Compose(tuple(ops))


def scoring_chunk(config: TrainConfig, device: torch.device) -> int | None:
    """Candidates per scoring pass: ``config.score_chunk``, else all at once on CUDA and a batch's worth on the
    CPU, where passes over more than ~128 images fall out of cache (512 candidates in one pass cost 2-3x more per
    image than 4 passes of 128; cnn width 16, 2 cores)."""
    if config.score_chunk is not None:
        return config.score_chunk
    return config.batch_size if device.type == "cpu" else None


def method_for(
    config: TrainConfig,
    mean: tuple[float, ...],
    device: torch.device,
    audio_rate: int | None = None,
    image_side: int | None = None,
    num_classes: int | None = None,
) -> LossAwareAugment:
    """The run's method: augmentation of its setting at the scale of ``image_side`` (Cutout filled with the
    training ``mean`` on the [0, 1] scale) or for audio clips at ``audio_rate`` Hz (None: images), M, temperature
    and scoring options, bf16 scoring on CUDA; the cheap modes (stale-loss gating, weighted candidates) are options
    of the same object. ``num_classes``: the one-hot targets' K that label-mixing augmentations (mixup, cutmix)
    need."""
    fill = tuple(round(255 * m) for m in mean)
    return LossAwareAugment(
        build_augment(config, fill, audio_rate, image_side),
        num_candidates=config.candidates_per_image(),
        temperature=config.resolved_temperature(),
        score=config.score,
        bn=config.bn,
        uniform_mix=config.uniform_mix,
        chunk_size=scoring_chunk(config, device),
        autocast_dtype=torch.bfloat16 if device.type == "cuda" else None,
        check_targets=False,  # labels were checked once when the data loaded: no host sync per scoring call
        score_fraction=config.score_fraction,
        mode=method_named(config.method).mode,
        num_classes=num_classes,
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
    net: nn.Module, config: TrainConfig, schedule: Schedule, loaded: Iterable[str] = ()
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """SGD (Nesterov momentum) for ``net`` with ``config``'s hyperparameters, stepped per step by ``schedule``;
    the parameters ``loaded`` by ``--init`` (bare-network names) learn at ``lr * backbone_lr_scale``."""
    optimizer = torch.optim.SGD(
        sgd_groups(net, loaded, config.lr, config.backbone_lr_scale),
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
    scales = [config.backbone_lr_scale if group.get("name") == "backbone" else 1.0 for group in optimizer.param_groups]
    scheduler.base_lrs = [config.lr * scale for scale in scales]
    factor = scheduler.lr_lambdas[0](scheduler.last_epoch)
    for group, scale in zip(optimizer.param_groups, scales, strict=True):
        group.update(
            initial_lr=config.lr * scale,
            lr=config.lr * scale * factor,
            lr_scale=scale,
            momentum=config.momentum,
            nesterov=config.momentum > 0,
            weight_decay=config.weight_decay,
        )
