"""What every image loader returns: an ``ImageDataset`` of a train and a test ``Split`` held in memory as uint8
tensors, checked on construction. The loaders live in ``data`` (image folders, the bundled mini CIFAR-10) and
``cifar``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from lossaug.errors import InputError

__all__ = ["ImageDataset", "Log", "Split"]

Log = Callable[[str], None]


@dataclass(frozen=True)
class Split:
    """images (N,C,H,W) uint8 on the CPU, contiguous; labels (N,) int64 class indices."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise InputError(f"images must be (N,C,H,W) uint8, got {tuple(self.images.shape)} {self.images.dtype}")
        if self.labels.dtype != torch.int64 or self.labels.ndim != 1:
            raise InputError(f"labels must be (N,) int64, got {tuple(self.labels.shape)} {self.labels.dtype}")
        if len(self.images) != len(self.labels):
            raise InputError(f"{len(self.images)} images but {len(self.labels)} labels")


@dataclass(frozen=True)
class ImageDataset:
    """A train and a test split over the same classes; label i means classes[i]."""

    name: str
    classes: tuple[str, ...]
    train: Split
    test: Split

    def __post_init__(self) -> None:
        for split_name, split in (("train", self.train), ("test", self.test)):
            if len(split.labels) and not 0 <= int(split.labels.min()) <= int(split.labels.max()) < len(self.classes):
                raise InputError(
                    f"{self.name} {split_name} labels span [{int(split.labels.min())}, "
                    f"{int(split.labels.max())}], outside [0, {len(self.classes)})"
                )
        if self.train.images.shape[1:] != self.test.images.shape[1:]:
            raise InputError(
                f"{self.name}: train images are {tuple(self.train.images.shape[1:])} but test images are "
                f"{tuple(self.test.images.shape[1:])}"
            )

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def silent(_message: str) -> None:
    """A ``Log`` that drops every message."""
