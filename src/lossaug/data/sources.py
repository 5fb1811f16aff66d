"""The registry of data sources: every data set ``load_dataset`` knows, by name, with the kind of its examples
(``IMAGE_KIND``: ``(N,C,H,W)`` uint8 images; ``AUDIO_KIND``: ``(N,C,T)`` int16 waveforms) and its loader, one module
per source (timm's ``readers/reader_factory.py`` pattern). This is the one place that knows whether data is audio:
ask ``data_kind(name)``, and what differs per kind its row (``lossaug.kinds.kind_of_dataset``). See docs/DATA.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lossaug.data import audio_folders, cifar, folders, fsdd, mini
from lossaug.data.types import AUDIO_KIND, IMAGE_KIND, Dataset, FolderOptions, Kind, LoadRequest, Log
from lossaug.errors import InputError

__all__ = ["DATASETS", "SOURCES", "Source", "data_kind", "load_dataset", "source_for"]


@dataclass(frozen=True)
class Source:
    """A data set known by name: the kind of its examples and its loader (which refuses options it cannot
    honour, e.g. a path for the bundled mini set); ``folder``: whether it reads a user's class folders, and so
    takes ``FolderOptions`` (a test split made, bad files skipped)."""

    kind: Kind
    load: Callable[[LoadRequest], Dataset]
    folder: bool = False


SOURCES: dict[str, Source] = {
    "cifar10": Source(IMAGE_KIND, cifar.from_request),
    "cifar100": Source(IMAGE_KIND, cifar.from_request),
    "folder": Source(IMAGE_KIND, folders.from_request, folder=True),
    "mini": Source(IMAGE_KIND, mini.from_request),
    "fsdd": Source(AUDIO_KIND, fsdd.from_request),
    "audio-folder": Source(AUDIO_KIND, audio_folders.from_request, folder=True),
}
DATASETS = tuple(SOURCES)


def source_for(name: str) -> Source:
    """The source registered as ``name``; an unknown name is an ``InputError`` listing the known ones."""
    source = SOURCES.get(name)
    if source is None:
        raise InputError(f"unknown dataset {name!r}; choose from {list(DATASETS)}")
    return source


def data_kind(name: str) -> Kind:
    """Whether data set ``name`` holds images or audio."""
    return source_for(name).kind


def _has_rate(kind: Kind) -> bool:
    """Whether examples of ``kind`` are sampled at a rate (clips), so that the audio options apply to them."""
    from lossaug.kinds import kind_named  # kinds import the loaders' modules (file endings), so not at module level

    return kind_named(kind).has_rate


def load_dataset(
    name: str,
    path: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    image_size: int | None = None,
    download: bool = True,
    verify: bool = True,
    log: Log | None = None,
    audio: dict | None = None,
    sample_rate: int | None = None,
    clip_seconds: float | None = None,
    test_speaker: str | None = None,
    test_fraction: float | None = None,
    split_seed: int = 0,
    skip_bad: bool = False,
) -> Dataset:
    """Load one of DATASETS: an ``ImageDataset``, or an ``AudioDataset`` for the audio sources (``data_kind``).

    `path`: CIFAR archive/folder/download folder, the image or audio folder/archive, or FSDD's archive/folder.
    `cache_dir` holds downloads (CIFAR, when `path` is None), extracted archives and decoded arrays; nothing is
    written without it. `image_size` resizes folder images to a square; CIFAR and mini are always 32x32.
    `verify`: check the official md5 of a CIFAR archive, whether downloaded, cached or given (see `load_cifar`).
    Audio: `sample_rate` (Hz; None: the clips' own), `clip_seconds` (None: the 95th percentile of training clips),
    `test_speaker` (FSDD only); `audio` is the same as a dict (these keywords win). Folders (image and audio):
    `test_fraction` of each class split off for testing when the folder has no train/ and test/ (by `split_seed`),
    `skip_bad` to leave out files that cannot be decoded (else they are an error listing them).
    """
    source = source_for(name)
    folder = FolderOptions(test_fraction, split_seed, skip_bad)
    if folder != FolderOptions() and not source.folder:
        folders = [n for n, s in SOURCES.items() if s.folder]
        raise InputError(f"test_fraction, split_seed and skip_bad apply to folder data ({folders}), not {name!r}")
    given = dict(sample_rate=sample_rate, clip_seconds=clip_seconds, test_speaker=test_speaker)
    audio_options = {**(audio or {}), **{k: v for k, v in given.items() if v is not None}}
    if not _has_rate(source.kind) and any(v is not None for v in audio_options.values()):
        raise InputError(f"sample_rate, clip_seconds and test_speaker apply to audio data, not {name!r}")
    request = LoadRequest(
        name,
        None if path is None else Path(path),
        None if cache_dir is None else Path(cache_dir),
        image_size,
        download,
        verify,
        log,
        audio_options,
        folder,
    )
    return source.load(request)
