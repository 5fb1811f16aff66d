"""What every augmentation shares: the ``Augment`` type, the input checks and fills, ``call_augment`` (any
callable, reproducible from a generator) and ``Compose``.

An augmentation either maps images to images, ``(images, generator) -> images``, or also mixes labels (Mixup,
CutMix): such a callable has ``mixes_targets = True`` and is called ``(images, generator, targets=targets)`` with
soft ``targets (N,K)`` (class distributions, rows summing to 1), returning ``(images, targets)``.
``augment_with_targets`` calls either kind with targets; ``Compose`` mixes labels when any of its ops does.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import SupportsFloat, cast, overload

import torch
from torch import Tensor

from lossaug.errors import InputError

Augment = Callable[[Tensor, "torch.Generator | None"], Tensor]
MixingAugment = Callable[..., tuple[Tensor, Tensor]]  # (images, generator, targets=) -> (images, targets)
Fill = float | Sequence[float]


def _check_images(images: Tensor, generator: torch.Generator | None) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise InputError(f"images must be a (B,C,H,W) tensor, got {shape}")
    if generator is not None and generator.device.type != images.device.type:
        raise InputError(
            f"generator is on {generator.device} but images are on {images.device}; "
            "create the generator on the images' device"
        )


def _fill_value(fill: Fill, images: Tensor) -> Tensor | float | int:
    """``fill`` broadcastable to ``images (B,C,H,W)`` in their dtype: a Python number for a scalar, else a cached
    ``(1,C,1,1)`` tensor on the images' device (built once, so the training step does no host-to-device copy)."""
    values = tuple(fill) if isinstance(fill, (tuple, list)) else float(cast(SupportsFloat, fill))  # else a scalar
    if isinstance(values, tuple) and len(values) != images.shape[1]:
        raise InputError(f"fill has {len(values)} values but images have {images.shape[1]} channels")
    if isinstance(values, float):
        return values if images.is_floating_point() else int(min(max(round(values), 0), 255))
    return _fill_tensor(values, images.device, images.dtype)


@functools.lru_cache(maxsize=64)
def _fill_tensor(values: tuple[float, ...], device: torch.device, dtype: torch.dtype) -> Tensor:
    value = torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1)
    if not dtype.is_floating_point:
        value = value.round().clamp(0, 255)
    return value.to(device=device, dtype=dtype)


def _takes_generator(fn: Callable) -> bool:
    """Whether ``fn`` can be called as ``fn(images, generator)``; kornia modules and one-argument callables can't."""
    if isinstance(fn, torch.nn.Module):
        return False
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return False
    return len(positional) >= 2


def call_augment(augment: Augment, images: Tensor, generator: torch.Generator | None) -> Tensor:
    """Apply any augmentation callable to ``images``.

    ``(images, generator)`` callables get the generator. One-argument callables (kornia pipelines, ``nn.Module``
    transforms) draw from torch's global generator; when ``generator`` is given they run inside
    ``torch.random.fork_rng`` seeded from it, so they are reproducible too and the caller's global random state
    is left exactly as it was.
    """
    if _takes_generator(augment):
        return augment(images, generator)
    one_argument = cast(Callable[[Tensor], Tensor], augment)  # _takes_generator said it takes the images alone
    if generator is None:
        return one_argument(images)
    seed = int(torch.randint(0, 2**62, (1,), device=generator.device, generator=generator).item())
    cuda = images.device.type == "cuda"
    # Seed (and afterwards restore) only the CPU generator and the images' own GPU: torch.manual_seed would
    # reseed every GPU, which fork_rng would not put back.
    with torch.random.fork_rng(devices=[images.device] if cuda else []):
        torch.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(images.device):
                torch.cuda.manual_seed(seed)
        return one_argument(images)


def mixes_targets(augment: object) -> bool:
    """Whether ``augment`` mixes labels (Mixup, CutMix, a ``Compose`` holding one): it then needs the targets."""
    return bool(getattr(augment, "mixes_targets", False))


def augment_with_targets(
    augment: Augment | MixingAugment, images: Tensor, targets: Tensor, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """``(images (N,...), targets (N,K))`` after ``augment``: an op that mixes labels changes both, any other op
    the images only."""
    if mixes_targets(augment):
        return cast(MixingAugment, augment)(images, generator, targets=targets)
    return call_augment(cast(Augment, augment), images, generator), targets


@dataclass(frozen=True)
class Compose:
    """Apply augmentations in order; each may be any ``Augment`` callable. When one of them mixes labels, call it
    with ``targets (N,K)`` and get ``(images, targets)`` back."""

    augments: tuple[Augment | MixingAugment, ...]

    @property
    def mixes_targets(self) -> bool:
        return any(mixes_targets(augment) for augment in self.augments)

    @overload
    def __call__(self, images: Tensor, generator: torch.Generator | None = None, targets: None = None) -> Tensor: ...

    @overload
    def __call__(self, images: Tensor, generator: torch.Generator | None, targets: Tensor) -> tuple[Tensor, Tensor]: ...

    @overload
    def __call__(
        self, images: Tensor, generator: torch.Generator | None = None, *, targets: Tensor
    ) -> tuple[Tensor, Tensor]: ...

    def __call__(
        self, images: Tensor, generator: torch.Generator | None = None, targets: Tensor | None = None
    ) -> Tensor | tuple[Tensor, Tensor]:
        if targets is None:
            if self.mixes_targets:
                raise InputError(
                    "this augmentation mixes labels (mixup/cutmix): it needs the targets; use "
                    "make_candidates(..., targets=...) or LossAwareAugment(..., num_classes=K)"
                )
            for augment in self.augments:  # none mixes labels (checked above)
                images = call_augment(cast(Augment, augment), images, generator)
            return images
        for augment in self.augments:
            images, targets = augment_with_targets(augment, images, targets, generator)
        return images, targets
