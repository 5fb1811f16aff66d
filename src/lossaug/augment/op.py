"""The one shape of an augmentation op, image or audio (kornia's ``generate_parameters`` / ``apply_transform``).

An op is a frozen dataclass of hyperparameters. The base checks them once, at construction (``check``), and runs
the whole batch once per call: it checks the batch (``check_batch``), draws one set of parameters per example from
the explicit generator (``params``) and applies them all at once (``apply``). An op says only those three things;
its public ``*_params`` / ``apply_*`` / functional names are thin calls to it. Ops that mix labels (``MixingOp``)
also take soft ``targets (N,K)`` and return them mixed.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from lossaug.augment.core import _check_images
from lossaug.errors import InputError

Shape = tuple[int, ...]  # a batch's shape, examples first: (B,C,H,W) images, (B,C,T) waveforms


class _OpBase:
    """What both kinds of op share: hyperparameters checked once, a batch check and the parameter draw."""

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise ``InputError`` naming a hyperparameter out of range (called once, at construction)."""

    def check_batch(self, batch: Tensor, generator: torch.Generator | None) -> None:
        """Raise ``InputError`` for a batch this op cannot take: by default anything but images ``(B,C,H,W)``."""
        _check_images(batch, generator)

    def params(self, shape: Shape, device: torch.device, generator: torch.Generator | None) -> Any:
        """One set of parameters per example of a batch of ``shape``, drawn from ``generator`` on ``device``."""
        raise NotImplementedError


class Op(_OpBase):
    """An op ``(batch, generator) -> batch`` of the same shape and dtype."""

    def apply(self, batch: Tensor, params: Any) -> Tensor:
        """``batch`` with each example changed by its own ``params``."""
        raise NotImplementedError

    def __call__(self, batch: Tensor, generator: torch.Generator | None = None) -> Tensor:
        self.check_batch(batch, generator)
        return self.apply(batch, self.params(tuple(batch.shape), batch.device, generator))


class MixingOp(_OpBase):
    """An op that mixes each example with a partner of its batch, soft ``targets (N,K)`` alike:
    ``(batch, generator, targets=) -> (batch, targets)``."""

    mixes_targets: ClassVar[bool] = True
    name: ClassVar[str]  # the op in messages

    def mix(self, batch: Tensor, targets: Tensor, params: Any) -> tuple[Tensor, Tensor]:
        """``(batch, targets)`` with each example mixed with its partner by its own ``params``."""
        raise NotImplementedError

    def __call__(
        self, batch: Tensor, generator: torch.Generator | None = None, targets: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        self.check_batch(batch, generator)
        targets = self.check_targets(batch, targets)
        return self.mix(batch, targets, self.params(tuple(batch.shape), batch.device, generator))

    def check_targets(self, batch: Tensor, targets: Tensor | None) -> Tensor:
        """``targets``, after checking they are soft targets ``(N,K)`` of the batch's ``N`` examples."""
        if targets is None:
            raise InputError(
                f"{self.name} mixes labels: call it with soft targets (N,K), e.g. through make_candidates(..., "
                "targets=...)"
            )
        if targets.dim() != 2 or not targets.is_floating_point() or len(targets) != len(batch):
            raise InputError(
                f"{self.name} needs soft targets of shape ({len(batch)}, K), floating point; got "
                f"{targets.dtype} {tuple(targets.shape)}"
            )
        return targets
