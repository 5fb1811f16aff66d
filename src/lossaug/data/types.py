"""What every loader returns, checked on construction: an ``ImageDataset`` (a train and a test ``Split`` of uint8
images) or an ``AudioDataset`` (``AudioSplit``s of int16 waveforms at one sample rate). Both splits offer
``inputs`` and ``labels``, so code that only moves examples around (``select_classes``, training) reads one
interface whatever the kind; ``LoadRequest`` is what ``load_dataset`` hands every source.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar

import torch

from lossaug.errors import InputError

__all__ = [
    "AUDIO_KIND",
    "IMAGE_KIND",
    "AudioDataset",
    "AudioSplit",
    "Dataset",
    "File",
    "FolderOptions",
    "ImageDataset",
    "Kind",
    "LoadRequest",
    "Log",
    "Split",
    "check_splits",
    "select_classes",
]

Log = Callable[[str], None]
Kind = Literal["image", "audio"]  # what a data set's examples are: images (N,C,H,W) uint8 or waveforms (N,C,T) int16
# Each kind's name, the one place it is spelled: sources declare their kind by it, and ``lossaug.kinds`` rows (what
# differs per kind) carry it, so code asks the row (``kinds.kind_named``) instead of comparing names.
IMAGE_KIND: Kind = "image"
AUDIO_KIND: Kind = "audio"


class File(NamedTuple):
    """One data file to load (an image or a clip): where it is, as named in errors, and its path or bytes."""

    where: str  # a file path, or archive:member
    source: Path | bytes


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

    @property
    def inputs(self) -> torch.Tensor:
        """The examples, ``images (N,C,H,W)``: what any split offers under one name."""
        return self.images


def check_splits(name: str, num_classes: int, train: Split | AudioSplit, test: Split | AudioSplit, noun: str) -> None:
    """Labels of both splits inside ``[0, num_classes)``, and one example shape (``split.inputs.shape[1:]``) in both;
    else an ``InputError`` naming the data set and what differs (``noun``: what an example is called)."""
    for split_name, split in (("train", train), ("test", test)):
        if len(split.labels) and not 0 <= int(split.labels.min()) <= int(split.labels.max()) < num_classes:
            raise InputError(
                f"{name} {split_name} labels span [{int(split.labels.min())}, {int(split.labels.max())}], "
                f"outside [0, {num_classes})"
            )
    if train.inputs.shape[1:] != test.inputs.shape[1:]:
        raise InputError(
            f"{name}: train {noun} are {tuple(train.inputs.shape[1:])} but test {noun} are "
            f"{tuple(test.inputs.shape[1:])}"
        )


@dataclass(frozen=True)
class ImageDataset:
    """A train and a test split over the same classes; label i means classes[i]. A folder loader also says which
    files it skipped (``skip_bad``) and how it split an unsplit folder (``split``, ``SplitRecord.as_dict``)."""

    name: str
    classes: tuple[str, ...]
    train: Split
    test: Split
    skipped: tuple[str, ...] = ()  # files that could not be decoded and were left out
    split: dict[str, Any] | None = None  # how the loader split a folder with no train/ and test/

    def __post_init__(self) -> None:
        check_splits(self.name, len(self.classes), self.train, self.test, "images")

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class AudioSplit:
    """waveforms (N,C,T) int16 on the CPU, contiguous; labels (N,) int64 class indices."""

    waveforms: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.waveforms.dtype != torch.int16 or self.waveforms.ndim != 3:
            shape = tuple(self.waveforms.shape)
            raise InputError(f"waveforms must be (N,C,T) int16, got {shape} {self.waveforms.dtype}")
        if self.labels.dtype != torch.int64 or self.labels.ndim != 1:
            raise InputError(f"labels must be (N,) int64, got {tuple(self.labels.shape)} {self.labels.dtype}")
        if len(self.waveforms) != len(self.labels):
            raise InputError(f"{len(self.waveforms)} waveforms but {len(self.labels)} labels")

    @property
    def inputs(self) -> torch.Tensor:
        """The examples, ``waveforms (N,C,T)``: what any split offers under one name."""
        return self.waveforms


@dataclass(frozen=True)
class AudioDataset:
    """A train and a test split over the same classes at one sample rate (Hz); label i means classes[i].
    ``skipped`` and ``split`` as for ``ImageDataset``."""

    name: str
    classes: tuple[str, ...]
    train: AudioSplit
    test: AudioSplit
    sample_rate: int
    skipped: tuple[str, ...] = ()
    split: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        check_splits(self.name, len(self.classes), self.train, self.test, "clips")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def clip_seconds(self) -> float:
        return self.train.waveforms.shape[-1] / self.sample_rate


Dataset = ImageDataset | AudioDataset  # what load_dataset returns
D = TypeVar("D", bound=ImageDataset | AudioDataset)  # either kind, kept: select_classes returns what it is given


@dataclass(frozen=True)
class FolderOptions:
    """Options of the folder sources (image and audio folders): how to split a folder with no ``train/`` and
    ``test/`` (``test_fraction`` of each class, by ``split_seed``), and whether to leave out undecodable files."""

    test_fraction: float | None = None  # None: the folder must be split already
    split_seed: int = 0  # apart from the run's seed, so every training seed tests on the same files
    skip_bad: bool = False  # False: refuse the data, listing every bad file

    def cache_key(self) -> tuple:
        """What a decoded-array cache entry depends on: nothing when every option is at its default."""
        return () if self == FolderOptions() else (self.test_fraction, self.split_seed, self.skip_bad)


@dataclass(frozen=True)
class LoadRequest:
    """What ``load_dataset`` hands a source's loader: the name it was asked for and every option; each source
    reads the options that apply to it and refuses the ones that cannot (``image_size`` for CIFAR, a path for the
    bundled mini set, ``test_speaker`` outside FSDD)."""

    name: str
    path: Path | None = None
    cache_dir: Path | None = None  # downloads, extracted archives and decoded arrays; None: nothing is written
    image_size: int | None = None  # folder images resized to this square; CIFAR and mini are always 32
    download: bool = True
    verify: bool = True  # check the official md5 of a CIFAR archive
    log: Log | None = None
    audio: dict[str, Any] = dataclasses.field(default_factory=dict)  # sample_rate, clip_seconds, test_speaker
    folder: FolderOptions = dataclasses.field(default_factory=lambda: FolderOptions())  # image and audio folders

    def audio_path(self) -> Path:
        """The path an audio source needs: an archive or folder of clips."""
        if self.path is None:
            raise InputError(f"dataset {self.name!r} needs --data: an archive or folder of WAV clips")
        return self.path

    def check_image_size(self, side: int) -> None:
        """Refuse an ``image_size`` for a source whose images are always ``side`` x ``side`` (CIFAR, mini)."""
        if self.image_size not in (None, side):
            raise InputError(
                f"image_size={self.image_size} applies to 'folder' data only; {self.name} images are {side}x{side}"
            )

    def audio_options(self) -> dict[str, Any]:
        """The audio options this request sets (None: the loader's default)."""
        return {key: value for key, value in self.audio.items() if value is not None}


def silent(_message: str) -> None:
    """A ``Log`` that drops every message."""


def select_classes(dataset: D, names: Sequence[str]) -> D:
    """``dataset`` (an ``ImageDataset`` or ``AudioDataset``) restricted to the classes ``names``: both
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
        return type(split)(split.inputs[rows].contiguous(), new_label[split.labels[rows]])

    classes = tuple(dataset.classes[i] for i in keep)
    return dataclasses.replace(dataset, classes=classes, train=restrict(dataset.train), test=restrict(dataset.test))
