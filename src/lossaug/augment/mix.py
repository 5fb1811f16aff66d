"""Label-mixing augmentations: Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019), batched, with soft targets.

Each image is mixed with a partner from the same batch (a permutation drawn from the generator) at a weight
``lam ~ Beta(alpha, alpha)`` drawn per image; its soft target ``targets (N,K)`` is mixed at the same weight. CutMix
pastes a box of the partner whose area is ``1 - lam`` of the image, clipped at the borders as in the authors' code,
and corrects ``lam`` to the area actually pasted. Integer images (uint8 pictures, int16 clips) are mixed in float32
and rounded back to their dtype. torch's Beta and Gamma samplers take no generator, so ``beta_params`` samples
Gamma variates itself (Marsaglia and Tsang 2000), in log space so that small ``alpha`` neither underflows nor
gives 0/0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from lossaug.augment.op import MixingOp, Shape
from lossaug.errors import InputError

# Below this alpha every lam is 0 or 1 to float32 precision (no mixing is left), and below about 1e-306 the
# sampler's U ** (1 / alpha) overflows its log space: lam came out NaN and the run blamed the learning rate.
MIN_ALPHA = 1e-6
GAMMA_PROPOSALS = 4  # Marsaglia-Tsang proposals drawn per variate at once: each is accepted with p > 0.95


def _log_gamma(shape: float, count: int, *, device: torch.device, generator=None) -> Tensor:
    """``(count,)`` float64 logs of Gamma(``shape``, 1) variates (Marsaglia and Tsang 2000; for ``shape < 1``
    a Gamma(shape + 1) variate times ``U ** (1 / shape)``)."""
    boosted = shape + 1.0 if shape < 1 else shape
    d = boosted - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    out = torch.zeros(count, dtype=torch.float64, device=device)
    pending = torch.arange(count, device=device)
    while len(pending):  # a row lacks an accepted proposal with probability < 0.05 ** GAMMA_PROPOSALS
        size = (len(pending), GAMMA_PROPOSALS)
        x = torch.randn(size, dtype=torch.float64, device=device, generator=generator)
        u = torch.rand(size, dtype=torch.float64, device=device, generator=generator)
        v = (1 + c * x) ** 3
        log_v = torch.log(v.clamp_min(1e-300))
        accepted = (v > 0) & (torch.log(u) < 0.5 * x * x + d - d * v + d * log_v)
        first = accepted.int().argmax(dim=1, keepdim=True)
        done = accepted.any(dim=1)
        out[pending[done]] = math.log(d) + log_v.gather(1, first).squeeze(1)[done]
        pending = pending[~done]
    if shape < 1:
        u = torch.rand(count, dtype=torch.float64, device=device, generator=generator)
        out += torch.log(u.clamp_min(torch.finfo(torch.float64).tiny)) / shape
    return out


def check_alpha(alpha: float, name: str) -> None:
    """``alpha`` finite and at least ``MIN_ALPHA``; else an ``InputError`` naming the ``name`` op."""
    if not math.isfinite(alpha) or alpha <= 0:
        raise InputError(f"{name} alpha must be a finite number > 0, got {alpha}")
    if alpha < MIN_ALPHA:
        raise InputError(f"{name} alpha must be at least {MIN_ALPHA:g} (below it every lam is 0 or 1), got {alpha:g}")


def beta_params(batch_size: int, alpha: float, *, device: torch.device, generator=None) -> Tensor:
    """``lam (B,)`` float32, each ~ Beta(``alpha``, ``alpha``): ``X / (X + Y)`` of two Gamma(alpha) variates."""
    check_alpha(alpha, "mixing")
    logs = _log_gamma(alpha, 2 * batch_size, device=device, generator=generator)
    return torch.sigmoid(logs[:batch_size] - logs[batch_size:]).float()


def mix_params(batch_size: int, alpha: float, *, device: torch.device, generator=None) -> tuple[Tensor, Tensor]:
    """``(partner (B,) int64, lam (B,) float32)``: a permutation of the batch (an image may draw itself) and the
    weight of each image's own content, ~ Beta(alpha, alpha)."""
    partner = torch.randperm(batch_size, device=device, generator=generator)
    return partner, beta_params(batch_size, alpha, device=device, generator=generator)


def _mix_targets(targets: Tensor, partner: Tensor, lam: Tensor) -> Tensor:
    weight = lam.view(-1, 1).to(targets.dtype)
    return weight * targets + (1 - weight) * targets[partner]


# ---------------------------------------------------------------- Mixup


@dataclass(frozen=True)
class Mixup(MixingOp):
    """Mixup of a batch ``(B,...)`` (pictures or clips) and its soft targets ``(B,K)``: each example with a partner
    of the batch at ``lam ~ Beta(alpha, alpha)``. ``mixup:ALPHA`` in a spec (default 0.2, the value the Mixup
    authors used on ImageNet)."""

    alpha: float = 0.2
    name: ClassVar[str] = "mixup"

    def check(self) -> None:
        check_alpha(self.alpha, self.name)

    def check_batch(self, batch: Tensor, generator: torch.Generator | None) -> None:
        if generator is not None and generator.device.type != batch.device.type:  # any (B,...): images or clips
            raise InputError(f"generator is on {generator.device} but images are on {batch.device}")

    def params(self, shape: Shape, device: torch.device, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """``mix_params``: ``(partner, lam)``, each ``(B,)``."""
        return mix_params(shape[0], self.alpha, device=device, generator=generator)

    def mix(self, batch: Tensor, targets: Tensor, params: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """``lam * x + (1 - lam) * x[partner]`` for the batch and its targets alike; integer batches are rounded
        back to their dtype."""
        partner, lam = params
        weight = lam.view(-1, *([1] * (batch.dim() - 1)))
        mixed = weight * batch.float() + (1 - weight) * batch[partner].float()
        if not batch.is_floating_point():
            mixed = mixed.round()
        return mixed.to(batch.dtype), _mix_targets(targets, partner, lam)


def apply_mixup(images: Tensor, targets: Tensor, partner: Tensor, lam: Tensor) -> tuple[Tensor, Tensor]:
    """``lam * x + (1 - lam) * x[partner]`` for ``images (B,...)`` and ``targets (B,K)`` alike; integer images
    are rounded back to their dtype."""
    return Mixup().mix(images, targets, (partner, lam))


def mixup(images: Tensor, targets: Tensor | None, alpha: float = 0.2, *, generator=None) -> tuple[Tensor, Tensor]:
    """Mixup of ``images (B,...)`` (pictures or clips) and soft ``targets (B,K)``: each with a partner of the
    batch at ``lam ~ Beta(alpha, alpha)``."""
    return Mixup(alpha)(images, generator, targets)


# ---------------------------------------------------------------- CutMix


def cutmix_boxes(lam: Tensor, center_y: Tensor, center_x: Tensor, height: int, width: int) -> tuple[Tensor, ...]:
    """``(y0, y1, x0, x1)``, each ``(B,)`` int64: the pasted box, rows ``[y0, y1)`` and columns ``[x0, x1)``. Its
    sides are ``int(side * sqrt(1 - lam))`` around the centre, clipped at the borders (the CutMix authors'
    ``rand_bbox``)."""
    ratio = torch.sqrt(1.0 - lam.double())
    half_h = (height * ratio).floor().long() // 2
    half_w = (width * ratio).floor().long() // 2
    y0, y1 = (center_y - half_h).clamp(0, height), (center_y + half_h).clamp(0, height)
    x0, x1 = (center_x - half_w).clamp(0, width), (center_x + half_w).clamp(0, width)
    return y0, y1, x0, x1


@dataclass(frozen=True)
class CutMix(MixingOp):
    """CutMix of ``images (B,C,H,W)`` and soft targets ``(B,K)``: a box of a partner of the batch pasted in,
    ``lam ~ Beta(alpha, alpha)`` corrected to the pasted area. ``cutmix:ALPHA`` in a spec (default 1.0, the CutMix
    authors' value: lam uniform)."""

    alpha: float = 1.0
    name: ClassVar[str] = "cutmix"

    def check(self) -> None:
        check_alpha(self.alpha, self.name)

    def params(self, shape: Shape, device: torch.device, generator: torch.Generator | None) -> tuple[Tensor, ...]:
        """``(partner, lam, center_y, center_x)``, each ``(B,)``: ``mix_params``, then the box's centre uniform
        over the image's pixels."""
        batch_size, _, height, width = shape
        partner, lam = mix_params(batch_size, self.alpha, device=device, generator=generator)
        center_y = torch.randint(0, height, (batch_size,), device=device, generator=generator)
        center_x = torch.randint(0, width, (batch_size,), device=device, generator=generator)
        return partner, lam, center_y, center_x

    def mix(self, images: Tensor, targets: Tensor, params: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        """Paste each image's box (``cutmix_boxes``) from its partner; the targets are mixed at the corrected
        weight ``1 - box area / image area``."""
        partner, lam, center_y, center_x = params
        _, _, height, width = images.shape
        y0, y1, x0, x1 = (edge.view(-1, 1, 1) for edge in cutmix_boxes(lam, center_y, center_x, height, width))
        ys = torch.arange(height, device=images.device).view(1, height, 1)
        xs = torch.arange(width, device=images.device).view(1, 1, width)
        inside = (ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)
        pasted = torch.where(inside.unsqueeze(1), images[partner], images)
        corrected = 1.0 - ((y1 - y0) * (x1 - x0)).view(-1).float() / (height * width)
        return pasted, _mix_targets(targets, partner, corrected)


def cutmix_params(
    batch_size: int, alpha: float, height: int, width: int, *, device: torch.device, generator=None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(partner, lam, center_y, center_x)``, each ``(B,)``: ``mix_params``, then the box's centre uniform over
    the image's pixels."""
    partner, lam, center_y, center_x = CutMix(alpha).params((batch_size, 0, height, width), device, generator)
    return partner, lam, center_y, center_x


def apply_cutmix(
    images: Tensor, targets: Tensor, partner: Tensor, lam: Tensor, center_y: Tensor, center_x: Tensor
) -> tuple[Tensor, Tensor]:
    """Paste each image's box (``cutmix_boxes``) from its partner into ``images (B,C,H,W)``; ``targets (B,K)`` are
    mixed at the corrected weight ``1 - box area / image area``."""
    return CutMix().mix(images, targets, (partner, lam, center_y, center_x))


def cutmix(images: Tensor, targets: Tensor | None, alpha: float = 1.0, *, generator=None) -> tuple[Tensor, Tensor]:
    """CutMix of ``images (B,C,H,W)`` and soft ``targets (B,K)``: a box of a partner of the batch pasted in,
    ``lam ~ Beta(alpha, alpha)`` corrected to the pasted area."""
    return CutMix(alpha)(images, generator, targets)
