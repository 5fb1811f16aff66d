"""A strong augmentation space: one TrivialAugment-style operation per image (Müller and Hutter 2021), batched.

Each image draws one of the 14 ``TRIVIAL_OPS`` uniformly and a magnitude ``m`` uniform in [0, 1] (and, for the
signed ops, a direction), from an explicit generator: ``trivial_params`` draws, ``apply_trivial`` applies, one
batched call per op over the images that drew it (one host sync per op present). The ops are those of AutoAugment
and RandAugment, at RandAugment's largest magnitudes: rotate up to 30 degrees, shear up to 0.3, translate up to
150/331 of the image's side (RandAugment's 150 px at 331 px: scaled to any image size), brightness, contrast,
colour and sharpness factors ``1 +- 0.9 m``, posterize to ``8 - round(4 m)`` bits, solarize above ``255 (1 - m)``.

Images are uint8 ``(B,C,H,W)``. The colour ops follow PIL's ``ImageEnhance`` and ``ImageOps`` (the reference
implementation of these policies) exactly, its integer grey level and its truncation included; the geometric ops
follow kornia's ``rotate`` (about the centre ``((W-1)/2, (H-1)/2)``), ``shear`` (about the top-left pixel, as PIL's
AutoAugment) and ``translate`` with nearest sampling and a black fill. Differences, measured by the tests: kornia's
``adjust_brightness`` adds instead of scaling and its contrast scales about 0 instead of the mean grey, so PIL is
the oracle of the colour ops; translations are whole pixels; a rotation and kornia's agree on every pixel except
the rare ones whose source lies exactly halfway between two pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from lossaug.augment.core import _check_images
from lossaug.augment.op import Op, Shape
from lossaug.errors import InputError

GEOMETRIC_OPS = ("identity", "rotate", "shear_x", "shear_y", "translate_x", "translate_y")
COLOUR_OPS = ("brightness", "contrast", "color", "sharpness", "posterize", "solarize", "autocontrast", "equalize")
TRIVIAL_OPS = GEOMETRIC_OPS + COLOUR_OPS  # in this order: ``TrivialParams.op`` indexes it
MAX_ROTATE_DEGREES = 30.0
MAX_SHEAR = 0.3
MAX_TRANSLATE = 150 / 331  # of the image's side
MAX_ENHANCE = 0.9  # factors 1 - 0.9 m .. 1 + 0.9 m


class TrivialParams(NamedTuple):
    """Per image: ``op (B,)`` int64 index into ``TRIVIAL_OPS``, ``magnitude (B,)`` float32 in [0, 1) and
    ``sign (B,)`` float32, +1 or -1 (the direction of the signed ops)."""

    op: Tensor
    magnitude: Tensor
    sign: Tensor


def trivial_params(batch_size: int, *, device: torch.device, generator=None) -> TrivialParams:
    """One op uniformly from ``TRIVIAL_OPS``, a uniform magnitude and a random sign per image."""
    return TrivialAugment().params((batch_size,), device, generator)


# ---------------------------------------------------------------- geometry: one nearest-neighbour affine sampler


def apply_affine(images: Tensor, inverse: Tensor) -> Tensor:
    """Sample ``images (B,C,H,W)`` at ``inverse (B,2,3) @ (x, y, 1)`` for each output pixel ``(x, y)`` (pixel
    coordinates), nearest neighbour (ties to even), black outside the image."""
    batch, channels, height, width = images.shape
    axis_y = torch.arange(height, device=images.device, dtype=torch.float32)
    axis_x = torch.arange(width, device=images.device, dtype=torch.float32)
    ys, xs = torch.meshgrid(axis_y, axis_x, indexing="ij")
    grid = torch.stack([xs.flatten(), ys.flatten(), torch.ones_like(xs.flatten())])  # (3, H*W)
    source = torch.round(inverse.float() @ grid)  # (B, 2, H*W)
    src_x, src_y = source[:, 0], source[:, 1]
    valid = (src_x >= 0) & (src_x < width) & (src_y >= 0) & (src_y < height)
    index = (src_y.clamp(0, height - 1) * width + src_x.clamp(0, width - 1)).long()
    sampled = images.flatten(2).gather(2, index.unsqueeze(1).expand(batch, channels, -1))
    return torch.where(valid.unsqueeze(1), sampled, torch.zeros((), dtype=images.dtype, device=images.device)).view(
        images.shape
    )


def _affine(rows: list[list[Tensor]]) -> Tensor:
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)


def apply_rotate(images: Tensor, degrees: Tensor) -> Tensor:
    """Rotate each image counter-clockwise by ``degrees (B,)`` about its centre ``((W-1)/2, (H-1)/2)``."""
    height, width = images.shape[-2:]
    theta = torch.deg2rad(degrees.float())
    cos, sin = torch.cos(theta), torch.sin(theta)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    # source = R^T (output - centre) + centre
    inverse = _affine([[cos, -sin, cx - cos * cx + sin * cy], [sin, cos, cy - sin * cx - cos * cy]])
    return apply_affine(images, inverse)


def apply_shear(images: Tensor, shear: Tensor, axis: str) -> Tensor:
    """Shear along ``axis`` ("x" or "y") by ``shear (B,)`` about the top-left pixel: ``x' = x + shear * y``."""
    zero, one = torch.zeros_like(shear.float()), torch.ones_like(shear.float())
    if axis == "x":
        inverse = _affine([[one, -shear.float(), zero], [zero, one, zero]])
    else:
        inverse = _affine([[one, zero, zero], [-shear.float(), one, zero]])
    return apply_affine(images, inverse)


def apply_translate(images: Tensor, pixels: Tensor, axis: str) -> Tensor:
    """Shift each image by ``pixels (B,)`` (whole pixels, rounded) along ``axis`` ("x" right, "y" down)."""
    shift = torch.round(pixels.float())
    zero, one = torch.zeros_like(shift), torch.ones_like(shift)
    offsets = [-shift, zero] if axis == "x" else [zero, -shift]
    return apply_affine(images, _affine([[one, zero, offsets[0]], [zero, one, offsets[1]]]))


# ---------------------------------------------------------------- colour: PIL's ImageEnhance and ImageOps


def grayscale(images: Tensor) -> Tensor:
    """``(B,1,H,W)`` uint8 grey level: PIL's ``convert("L")`` of RGB, ``(19595 R + 38470 G + 7471 B + 2**15) >>
    16``; the one channel of a grey image, the rounded channel mean of any other."""
    if images.shape[1] == 1:
        return images
    if images.shape[1] != 3:
        return images.float().mean(dim=1, keepdim=True).round().to(images.dtype)
    weights = torch.tensor([19595, 38470, 7471], device=images.device, dtype=torch.int64).view(1, 3, 1, 1)
    return (((images.long() * weights).sum(dim=1, keepdim=True) + 32768) >> 16).to(images.dtype)


def _blend(degenerate: Tensor, images: Tensor, factor: Tensor) -> Tensor:
    """PIL's ``Image.blend(degenerate, images, factor)``: ``degenerate + factor * (images - degenerate)`` in
    float32, clipped to [0, 255] and truncated."""
    factor = factor.float().view(-1, 1, 1, 1)
    mixed = degenerate.float() + factor * (images.float() - degenerate.float())
    return mixed.clamp(0, 255).to(torch.uint8)


def apply_brightness(images: Tensor, factor: Tensor) -> Tensor:
    """``ImageEnhance.Brightness``: blend with black by ``factor (B,)``."""
    return _blend(torch.zeros_like(images), images, factor)


def apply_contrast(images: Tensor, factor: Tensor) -> Tensor:
    """``ImageEnhance.Contrast``: blend with the image's mean grey level, rounded, by ``factor (B,)``."""
    mean = grayscale(images).double().mean(dim=(1, 2, 3))
    degenerate = torch.floor(mean + 0.5).view(-1, 1, 1, 1).expand_as(images)
    return _blend(degenerate, images, factor)


def apply_color(images: Tensor, factor: Tensor) -> Tensor:
    """``ImageEnhance.Color``: blend with the image's grey version by ``factor (B,)``."""
    return _blend(grayscale(images).expand_as(images), images, factor)


def apply_sharpness(images: Tensor, factor: Tensor) -> Tensor:
    """``ImageEnhance.Sharpness``: blend with PIL's ``SMOOTH`` filter (3x3, centre 5, others 1, over 13; border
    pixels kept) by ``factor (B,)``."""
    batch, channels, height, width = images.shape
    kernel = torch.ones(3, 3, device=images.device)
    kernel[1, 1] = 5.0
    kernel = (kernel / 13.0).expand(channels, 1, 3, 3)
    smooth = F.conv2d(images.float(), kernel, groups=channels)
    degenerate = images.float().clone()
    degenerate[:, :, 1:-1, 1:-1] = (smooth + 0.5).floor().clamp(0, 255)
    return _blend(degenerate, images, factor)


def apply_posterize(images: Tensor, bits: Tensor) -> Tensor:
    """``ImageOps.posterize``: keep the top ``bits (B,)`` bits (1..8) of every value."""
    mask = (255 - (2 ** (8 - bits.long()) - 1)).view(-1, 1, 1, 1)
    return (images.long() & mask).to(images.dtype)


def apply_solarize(images: Tensor, threshold: Tensor) -> Tensor:
    """``ImageOps.solarize``: invert the values at or above ``threshold (B,)``."""
    return torch.where(images.float() >= threshold.float().view(-1, 1, 1, 1), 255 - images, images)


def apply_autocontrast(images: Tensor) -> Tensor:
    """``ImageOps.autocontrast``: stretch each channel's range to [0, 255] (constant channels kept)."""
    low = images.amin(dim=(2, 3), keepdim=True).double()
    high = images.amax(dim=(2, 3), keepdim=True).double()
    # A tensor numerator: torch computes ``255.0 / tensor`` as a reciprocal times 255, one ulp off PIL's quotient.
    scale = torch.full_like(high, 255.0) / (high - low).clamp_min(1.0)
    stretched = (images.double() * scale - low * scale).floor().clamp(0, 255).to(images.dtype)
    return torch.where(high > low, stretched, images)


def apply_equalize(images: Tensor) -> Tensor:
    """``ImageOps.equalize``: each channel through PIL's histogram-equalising lookup table."""
    batch, channels, height, width = images.shape
    values = images.reshape(batch * channels, height * width).long()
    histogram = torch.zeros(batch * channels, 256, dtype=torch.long, device=images.device)
    histogram.scatter_add_(1, values, torch.ones_like(values))
    last = histogram.gather(1, values.amax(dim=1, keepdim=True))  # count of the highest value present
    step = (height * width - last) // 255
    below = histogram.cumsum(dim=1) - histogram  # pixels strictly below each value
    lut = ((step // 2 + below) // step.clamp_min(1)).clamp(0, 255)
    lut = torch.where(step > 0, lut, torch.arange(256, device=images.device))
    return lut.gather(1, values).view(images.shape).to(images.dtype)


def _signed(params: TrivialParams, largest: float) -> Tensor:
    return params.magnitude * params.sign * largest


def _apply_op(name: str, images: Tensor, params: TrivialParams) -> Tensor:
    """One op of ``TRIVIAL_OPS`` on ``images (N,C,H,W)`` at ``params`` (each ``(N,)``)."""
    height, width = images.shape[-2:]
    enhance = 1.0 + _signed(params, MAX_ENHANCE)
    ops = {
        "identity": lambda: images.clone(),
        "rotate": lambda: apply_rotate(images, _signed(params, MAX_ROTATE_DEGREES)),
        "shear_x": lambda: apply_shear(images, _signed(params, MAX_SHEAR), "x"),
        "shear_y": lambda: apply_shear(images, _signed(params, MAX_SHEAR), "y"),
        "translate_x": lambda: apply_translate(images, _signed(params, MAX_TRANSLATE * width), "x"),
        "translate_y": lambda: apply_translate(images, _signed(params, MAX_TRANSLATE * height), "y"),
        "brightness": lambda: apply_brightness(images, enhance),
        "contrast": lambda: apply_contrast(images, enhance),
        "color": lambda: apply_color(images, enhance),
        "sharpness": lambda: apply_sharpness(images, enhance),
        "posterize": lambda: apply_posterize(images, 8 - torch.round(4 * params.magnitude)),
        "solarize": lambda: apply_solarize(images, 255.0 * (1.0 - params.magnitude)),
        "autocontrast": lambda: apply_autocontrast(images),
        "equalize": lambda: apply_equalize(images),
    }
    return ops[name]()


@dataclass(frozen=True)
class TrivialAugment(Op):
    """``trivial`` in a spec: one op of ``TRIVIAL_OPS`` per image at a uniform magnitude; uint8 images."""

    def check_batch(self, images: Tensor, generator: torch.Generator | None) -> None:
        _check_images(images, generator)
        if images.dtype != torch.uint8:
            raise InputError(f"trivial augmentation works on uint8 images (0..255), got {images.dtype}")

    def params(self, shape: Shape, device: torch.device, generator: torch.Generator | None) -> TrivialParams:
        """One op uniformly from ``TRIVIAL_OPS``, a uniform magnitude and a random sign per image."""
        batch_size = shape[0]
        op = torch.randint(0, len(TRIVIAL_OPS), (batch_size,), device=device, generator=generator)
        magnitude = torch.rand(batch_size, device=device, generator=generator)
        sign = torch.where(torch.rand(batch_size, device=device, generator=generator) < 0.5, -1.0, 1.0)
        return TrivialParams(op, magnitude, sign)

    def apply(self, images: Tensor, params: TrivialParams) -> Tensor:
        """Each image through its own op: one batched call per op over the images that drew it."""
        out = images.clone()
        for index, name in enumerate(TRIVIAL_OPS[1:], start=1):
            rows = (params.op == index).nonzero().squeeze(1)
            if len(rows):
                picked = TrivialParams(*(p[rows] for p in params))
                out[rows] = _apply_op(name, images[rows], picked)
        return out


def apply_trivial(images: Tensor, params: TrivialParams) -> Tensor:
    """Each image of ``images (B,C,H,W)`` uint8 through its own op of ``params``: one batched call per op over the
    images that drew it."""
    return TrivialAugment().apply(images, params)


def trivial_augment(images: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """One op of ``TRIVIAL_OPS`` per image at a uniform magnitude; ``images (B,C,H,W)`` uint8 in and out."""
    return TrivialAugment()(images, generator)
