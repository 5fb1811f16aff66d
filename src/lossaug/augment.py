"""Batched, per-sample-random image augmentations.

Every augmentation is a pure function over a batch ``images (B,C,H,W)`` (uint8 or float) that draws one set of
parameters per image from an explicit ``generator`` on the batch's device, with no Python loop over images. Each op
is split into a ``*_params`` function that draws the parameters and an ``apply_*`` function that uses them, so the
batched op can be checked against a per-image reference. The small classes only hold hyperparameters and make an
op usable as an ``Augment``: any callable ``(images, generator) -> images``.

``parse_augment("flip,crop,cutout")`` builds setting B of the paper; options go after a colon:
``"flip:0.5,crop:4,cutout:16"``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lossaug.errors import InputError

Augment = Callable[[Tensor, "torch.Generator | None"], Tensor]
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
    values = tuple(fill) if isinstance(fill, (tuple, list)) else float(fill)
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


# ---------------------------------------------------------------- horizontal flip


def flip_params(batch_size: int, p: float, *, device: torch.device, generator=None) -> Tensor:
    """``flip (B,)`` bool: which images to mirror, each with probability ``p``."""
    return torch.rand(batch_size, device=device, generator=generator) < p


def apply_flip(images: Tensor, flip: Tensor) -> Tensor:
    """Mirror ``images (B,C,H,W)`` left-right where ``flip (B,)`` is true."""
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)


def horizontal_flip(images: Tensor, p: float = 0.5, *, generator: torch.Generator | None = None) -> Tensor:
    """Mirror each image left-right independently with probability ``p``; ``(B,C,H,W)`` in and out."""
    _check_images(images, generator)
    if not 0.0 <= p <= 1.0:
        raise InputError(f"flip probability p must be in [0, 1], got {p}")
    return apply_flip(images, flip_params(len(images), p, device=images.device, generator=generator))


# ---------------------------------------------------------------- pad-and-crop


def crop_params(batch_size: int, padding: int, *, device: torch.device, generator=None) -> tuple[Tensor, Tensor]:
    """``(top, left)``, each ``(B,)`` int64 in ``[0, 2*padding]``: the crop's corner in the padded image."""
    offsets = torch.randint(0, 2 * padding + 1, (2, batch_size), device=device, generator=generator)
    return offsets[0], offsets[1]


def apply_crop(images: Tensor, top: Tensor, left: Tensor, padding: int, fill: Fill = 0) -> Tensor:
    """Pad ``images (B,C,H,W)`` by ``padding`` on every side with ``fill`` and cut the ``(H,W)`` window whose corner
    in the padded image is ``(top[b], left[b])``."""
    batch, channels, height, width = images.shape
    if padding == 0 or batch == 0:
        return images.clone()
    padded = F.pad(images, (padding,) * 4)
    if not (isinstance(fill, (int, float)) and fill == 0):
        value = _fill_value(fill, images)
        border = torch.ones(1, 1, height, width, dtype=torch.bool, device=images.device)
        border = ~F.pad(border, (padding,) * 4)
        padded = torch.where(border, value, padded)
    # Two gathers (rows, then columns) instead of one 4-D advanced index: the output stays contiguous NCHW and
    # the work is O(B*C*H*W) whatever the padding.
    rows = (top.view(-1, 1) + torch.arange(height, device=images.device)).view(batch, 1, height, 1)
    rows = rows.expand(batch, channels, height, width + 2 * padding)
    padded = padded.gather(2, rows)
    cols = (left.view(-1, 1) + torch.arange(width, device=images.device)).view(batch, 1, 1, width)
    return padded.gather(3, cols.expand(batch, channels, height, width))


def random_crop(images: Tensor, padding: int, *, fill: Fill = 0, generator: torch.Generator | None = None) -> Tensor:
    """Pad by ``padding`` pixels and cut a random crop of the original size per image (the CIFAR standard)."""
    _check_images(images, generator)
    if padding < 0:
        raise InputError(f"crop padding must be >= 0, got {padding}")
    top, left = crop_params(len(images), padding, device=images.device, generator=generator)
    return apply_crop(images, top, left, padding, fill)


# ---------------------------------------------------------------- cutout


def cutout_params(
    batch_size: int, height: int, width: int, *, device: torch.device, generator=None
) -> tuple[Tensor, Tensor]:
    """``(center_y, center_x)``, each ``(B,)`` int64, uniform over the image's pixels."""
    center_y = torch.randint(0, height, (batch_size,), device=device, generator=generator)
    center_x = torch.randint(0, width, (batch_size,), device=device, generator=generator)
    return center_y, center_x


def apply_cutout(images: Tensor, center_y: Tensor, center_x: Tensor, size: int, fill: Fill = 0) -> Tensor:
    """Set a ``size`` x ``size`` square of each image to ``fill``: rows ``[cy - size//2, cy - size//2 + size)``
    (likewise columns), clipped at the borders, as in DeVries & Taylor (2017)."""
    _, _, height, width = images.shape
    ys = torch.arange(height, device=images.device).view(1, height, 1)
    xs = torch.arange(width, device=images.device).view(1, 1, width)
    y0 = (center_y - size // 2).view(-1, 1, 1)
    x0 = (center_x - size // 2).view(-1, 1, 1)
    inside = (ys >= y0) & (ys < y0 + size) & (xs >= x0) & (xs < x0 + size)  # (B,H,W)
    return torch.where(inside.unsqueeze(1), _fill_value(fill, images), images)


def cutout(images: Tensor, size: int, *, fill: Fill = 0, generator: torch.Generator | None = None) -> Tensor:
    """Blank one ``size`` x ``size`` square per image, centred uniformly over the image, clipped at the borders."""
    _check_images(images, generator)
    if size < 0:
        raise InputError(f"cutout size must be >= 0, got {size}")
    center_y, center_x = cutout_params(
        len(images), images.shape[2], images.shape[3], device=images.device, generator=generator
    )
    return apply_cutout(images, center_y, center_x, size, fill)


# ---------------------------------------------------------------- hyperparameter holders and composition


@dataclass(frozen=True)
class HorizontalFlip:
    p: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.p <= 1:
            raise InputError(f"flip probability must be in [0, 1], got {self.p}")

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return horizontal_flip(images, self.p, generator=generator)


@dataclass(frozen=True)
class RandomCrop:
    padding: int = 4
    fill: Fill = 0

    def __post_init__(self) -> None:
        if self.padding < 0:
            raise InputError(f"crop padding must be >= 0 pixels, got {self.padding}")

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return random_crop(images, self.padding, fill=self.fill, generator=generator)


@dataclass(frozen=True)
class Cutout:
    size: int = 16
    fill: Fill = 0

    def __post_init__(self) -> None:
        if self.size < 1:
            raise InputError(f"cutout size must be >= 1 pixel, got {self.size}")

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return cutout(images, self.size, fill=self.fill, generator=generator)


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
    if generator is None:
        return augment(images)
    seed = int(torch.randint(0, 2**62, (1,), device=generator.device, generator=generator).item())
    cuda = images.device.type == "cuda"
    # Seed (and afterwards restore) only the CPU generator and the images' own GPU: torch.manual_seed would
    # reseed every GPU, which fork_rng would not put back.
    with torch.random.fork_rng(devices=[images.device] if cuda else []):
        torch.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(images.device):
                torch.cuda.manual_seed(seed)
        return augment(images)


@dataclass(frozen=True)
class Compose:
    """Apply augmentations in order; each may be any ``Augment`` callable."""

    augments: tuple[Augment, ...]

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        for augment in self.augments:
            images = call_augment(augment, images, generator)
        return images


AUGMENTATIONS: dict[str, Callable[..., Augment]] = {
    "flip": lambda p=0.5: HorizontalFlip(float(p)),
    "crop": lambda padding=4: RandomCrop(int(padding)),
    "cutout": lambda size=16: Cutout(int(size)),
}


def parse_augment(spec: str) -> Compose:
    """Build a ``Compose`` from a spec such as ``"flip,crop"`` or ``"flip:0.5,crop:4,cutout:8"``.

    The value after a colon is the op's one hyperparameter: flip probability, crop padding (pixels), cutout
    side (pixels). An empty spec (or ``"none"``) is the identity.
    """
    augments: list[Augment] = []
    for item in (part.strip() for part in spec.split(",")):
        if item in ("", "none"):
            continue
        name, _, arg = item.partition(":")
        if name not in AUGMENTATIONS:
            raise InputError(f"unknown augmentation {name!r} in {spec!r}; choose from {sorted(AUGMENTATIONS)}")
        try:
            augments.append(AUGMENTATIONS[name](arg) if arg else AUGMENTATIONS[name]())
        except ValueError as error:
            raise InputError(f"bad value {arg!r} for augmentation {name!r} in {spec!r}: {error}") from None
    return Compose(tuple(augments))
