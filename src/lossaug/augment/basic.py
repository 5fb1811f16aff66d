"""Flip, pad-and-crop and Cutout: batched over ``images (B,C,H,W)`` (uint8 or float), one set of parameters per
image from an explicit ``generator``, each split into ``*_params`` (draw) and ``apply_*`` (use), with small frozen
classes that hold an op's hyperparameters and make it an ``Augment``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lossaug.augment.core import Fill, _check_images, _fill_value
from lossaug.errors import InputError

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
