"""Flip, pad-and-crop and Cutout: ops over ``images (B,C,H,W)`` (uint8 or float), one set of parameters per image
from an explicit ``generator``. Each op is one class (``lossaug.augment.op``); the ``*_params``, ``apply_*`` and
functional names are thin calls to it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lossaug.augment.core import Fill, _fill_value
from lossaug.augment.op import Op, Shape
from lossaug.errors import InputError

# ---------------------------------------------------------------- horizontal flip


@dataclass(frozen=True)
class HorizontalFlip(Op):
    """Mirror each image left-right independently with probability ``p``."""

    p: float = 0.5

    def check(self) -> None:
        if not 0 <= self.p <= 1:
            raise InputError(f"flip probability p must be in [0, 1], got {self.p}")

    def params(self, shape: Shape, device: torch.device, generator: torch.Generator | None) -> Tensor:
        """``flip (B,)`` bool: which images to mirror."""
        return torch.rand(shape[0], device=device, generator=generator) < self.p

    def apply(self, images: Tensor, flip: Tensor) -> Tensor:
        return torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)


def flip_params(batch_size: int, p: float, *, device: torch.device, generator=None) -> Tensor:
    """``flip (B,)`` bool: which images to mirror, each with probability ``p``."""
    return HorizontalFlip(p).params((batch_size,), device, generator)


def apply_flip(images: Tensor, flip: Tensor) -> Tensor:
    """Mirror ``images (B,C,H,W)`` left-right where ``flip (B,)`` is true."""
    return HorizontalFlip().apply(images, flip)


def horizontal_flip(images: Tensor, p: float = 0.5, *, generator: torch.Generator | None = None) -> Tensor:
    """Mirror each image left-right independently with probability ``p``; ``(B,C,H,W)`` in and out."""
    return HorizontalFlip(p)(images, generator)


# ---------------------------------------------------------------- pad-and-crop


@dataclass(frozen=True)
class RandomCrop(Op):
    """Pad by ``padding`` pixels (with ``fill``) and cut a random crop of the original size per image (the CIFAR
    standard)."""

    padding: int = 4
    fill: Fill = 0

    def check(self) -> None:
        if self.padding < 0:
            raise InputError(f"crop padding must be >= 0 pixels, got {self.padding}")

    def params(self, shape: Shape, device: torch.device, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """``(top, left)``, each ``(B,)`` int64 in ``[0, 2*padding]``: the crop's corner in the padded image."""
        offsets = torch.randint(0, 2 * self.padding + 1, (2, shape[0]), device=device, generator=generator)
        return offsets[0], offsets[1]

    def apply(self, images: Tensor, corner: tuple[Tensor, Tensor]) -> Tensor:
        batch, channels, height, width = images.shape
        padding, (top, left) = self.padding, corner
        if padding == 0 or batch == 0:
            return images.clone()
        padded = F.pad(images, (padding,) * 4)
        if not (isinstance(self.fill, (int, float)) and self.fill == 0):
            value = _fill_value(self.fill, images)
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


def crop_params(batch_size: int, padding: int, *, device: torch.device, generator=None) -> tuple[Tensor, Tensor]:
    """``(top, left)``, each ``(B,)`` int64 in ``[0, 2*padding]``: the crop's corner in the padded image."""
    return RandomCrop(padding).params((batch_size,), device, generator)


def apply_crop(images: Tensor, top: Tensor, left: Tensor, padding: int, fill: Fill = 0) -> Tensor:
    """Pad ``images (B,C,H,W)`` by ``padding`` on every side with ``fill`` and cut the ``(H,W)`` window whose corner
    in the padded image is ``(top[b], left[b])``."""
    return RandomCrop(padding, fill).apply(images, (top, left))


def random_crop(images: Tensor, padding: int, *, fill: Fill = 0, generator: torch.Generator | None = None) -> Tensor:
    """Pad by ``padding`` pixels and cut a random crop of the original size per image (the CIFAR standard)."""
    return RandomCrop(padding, fill)(images, generator)


# ---------------------------------------------------------------- cutout


@dataclass(frozen=True)
class Cutout(Op):
    """Blank one ``size`` x ``size`` square per image (``size`` >= 1 pixel), centred uniformly over the image:
    rows ``[cy - size//2, cy - size//2 + size)`` (likewise columns), clipped at the borders, as in DeVries & Taylor
    (2017)."""

    size: int = 16
    fill: Fill = 0

    def check(self) -> None:
        if self.size < 1:
            raise InputError(f"cutout size must be >= 1 pixel, got {self.size}")

    def params(self, shape: Shape, device: torch.device, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """``(center_y, center_x)``, each ``(B,)`` int64, uniform over the image's pixels."""
        batch_size, _, height, width = shape
        center_y = torch.randint(0, height, (batch_size,), device=device, generator=generator)
        center_x = torch.randint(0, width, (batch_size,), device=device, generator=generator)
        return center_y, center_x

    def apply(self, images: Tensor, center: tuple[Tensor, Tensor]) -> Tensor:
        _, _, height, width = images.shape
        (center_y, center_x), size = center, self.size
        ys = torch.arange(height, device=images.device).view(1, height, 1)
        xs = torch.arange(width, device=images.device).view(1, 1, width)
        y0 = (center_y - size // 2).view(-1, 1, 1)
        x0 = (center_x - size // 2).view(-1, 1, 1)
        inside = (ys >= y0) & (ys < y0 + size) & (xs >= x0) & (xs < x0 + size)  # (B,H,W)
        return torch.where(inside.unsqueeze(1), _fill_value(self.fill, images), images)


def cutout_params(
    batch_size: int, height: int, width: int, *, device: torch.device, generator=None
) -> tuple[Tensor, Tensor]:
    """``(center_y, center_x)``, each ``(B,)`` int64, uniform over the image's pixels."""
    return Cutout().params((batch_size, 0, height, width), device, generator)


def apply_cutout(images: Tensor, center_y: Tensor, center_x: Tensor, size: int, fill: Fill = 0) -> Tensor:
    """Set a ``size`` x ``size`` square of each image of ``images (B,C,H,W)`` to ``fill`` (``Cutout``)."""
    return Cutout(size, fill).apply(images, (center_y, center_x))


def cutout(images: Tensor, size: int, *, fill: Fill = 0, generator: torch.Generator | None = None) -> Tensor:
    """Blank one ``size`` x ``size`` square per image (``size`` >= 1), centred uniformly over the image, clipped at
    the borders."""
    return Cutout(size, fill)(images, generator)
