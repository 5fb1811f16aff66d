"""What every image loader returns: an ``ImageDataset`` of a train and a test ``Split`` held in memory as uint8
tensors, checked on construction. The loaders live in ``data`` (image folders, the bundled mini CIFAR-10) and
``cifar``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lossaug.errors import InputError

__all__ = [
    "TEST_SPLIT_NAMES",
    "ImageDataset",
    "Log",
    "Split",
    "check_splits",
    "has_suffix",
    "scan_class_folders",
    "select_classes",
]

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


def check_splits(name: str, num_classes: int, train: Any, test: Any, noun: str) -> None:
    """Labels of both splits inside ``[0, num_classes)``, and one example shape (``split.images.shape[1:]``) in both;
    else an ``InputError`` naming the data set and what differs (``noun``: what an example is called)."""
    for split_name, split in (("train", train), ("test", test)):
        if len(split.labels) and not 0 <= int(split.labels.min()) <= int(split.labels.max()) < num_classes:
            raise InputError(
                f"{name} {split_name} labels span [{int(split.labels.min())}, {int(split.labels.max())}], "
                f"outside [0, {num_classes})"
            )
    if train.images.shape[1:] != test.images.shape[1:]:
        raise InputError(
            f"{name}: train {noun} are {tuple(train.images.shape[1:])} but test {noun} are "
            f"{tuple(test.images.shape[1:])}"
        )


@dataclass(frozen=True)
class ImageDataset:
    """A train and a test split over the same classes; label i means classes[i]."""

    name: str
    classes: tuple[str, ...]
    train: Split
    test: Split

    def __post_init__(self) -> None:
        check_splits(self.name, len(self.classes), self.train, self.test, "images")

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def silent(_message: str) -> None:
    """A ``Log`` that drops every message."""


def select_classes(dataset: Any, names: Sequence[str]) -> Any:
    """``dataset`` (an ``ImageDataset`` or ``audio_data.AudioDataset``) restricted to the classes ``names``: both
    splits keep only their examples, relabelled ``0..k-1`` in the data set's own class order (so the labels do not
    depend on the order ``names`` are given in). An unknown name is an ``InputError`` listing the classes."""
    unknown = [name for name in names if name not in dataset.classes]
    if unknown:
        raise InputError(f"classes {unknown} not in {dataset.name}; its classes: {', '.join(dataset.classes)}")
    keep = [i for i, name in enumerate(dataset.classes) if name in names]
    new_label = torch.full((len(dataset.classes),), -1, dtype=torch.int64)
    new_label[keep] = torch.arange(len(keep))

    def restrict(split: Any) -> Any:
        rows = (new_label[split.labels] >= 0).nonzero().squeeze(1)
        fields = {f.name: getattr(split, f.name) for f in dataclasses.fields(split)}
        tensor_field = next(name for name in fields if name != "labels")  # images or waveforms
        fields[tensor_field] = fields[tensor_field][rows].contiguous()
        fields["labels"] = new_label[split.labels[rows]]
        return type(split)(**fields)

    classes = tuple(dataset.classes[i] for i in keep)
    return dataclasses.replace(dataset, classes=classes, train=restrict(dataset.train), test=restrict(dataset.test))


TEST_SPLIT_NAMES = ("test", "val")  # the first that exists is the test split


def has_suffix(name: str, suffixes: tuple[str, ...]) -> bool:
    """Whether a file ``name`` is a data file: not hidden, ending in one of ``suffixes`` (any case)."""
    return not name.startswith(".") and name.lower().endswith(suffixes)


def scan_class_folders(
    root: Path, suffixes: tuple[str, ...], make: Callable[[str, Path], Any], noun: str = "image"
) -> dict[str, dict[str, list[Any]]]:
    """``{"train": {class: [make(where, path), ...]}, "test": {...}}`` of ``root/train/<class>/<file>`` and
    ``root/test/<class>/<file>`` (or ``val/``), files in name order, those ending in ``suffixes`` (any case) only;
    hidden entries skipped. A layout error is an ``InputError`` (a missing split a ``FileNotFoundError``) naming the
    folder and the layout expected (``noun``: what a file is called in the message)."""
    layout = f"expected {root}/train/<class>/<{noun}> and {root}/test/<class>/<{noun}> (or val/)"
    if not (root / "train").is_dir():
        raise FileNotFoundError(f"no train folder in {root}; {layout}")
    test_dir = next((root / n for n in TEST_SPLIT_NAMES if (root / n).is_dir()), None)
    if test_dir is None:
        raise FileNotFoundError(f"no test (or val) folder in {root}; {layout}")

    def scan(split_dir: Path) -> dict[str, list[Any]]:
        classes: dict[str, list[Any]] = {}
        for entry in sorted(os.scandir(split_dir), key=lambda e: e.name):
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                files = sorted(e.name for e in os.scandir(entry.path) if e.is_file() and has_suffix(e.name, suffixes))
                if not files:
                    raise InputError(f"class folder {entry.path} has no {noun}s ({', '.join(suffixes)})")
                classes[entry.name] = [make(str(Path(entry.path, f)), Path(entry.path, f)) for f in files]
            elif has_suffix(entry.name, suffixes):
                raise InputError(f"{noun} {entry.path} is not in a class folder; expected {split_dir}/<class>/<{noun}>")
        if not classes:
            raise InputError(f"split folder {split_dir} has no class folders; expected {split_dir}/<class>/<{noun}>")
        return classes

    return {"train": scan(root / "train"), "test": scan(test_dir)}
