"""Audio classification data sets, loaded whole into memory as int16 waveforms.

Sources: the Free Spoken Digit Dataset (FSDD; its archive or extracted folder) and any audio folder
``root/{train,test}/<class>/<clip>`` or an archive of one. Every loader returns an ``AudioDataset`` whose splits hold
``(N,1,T)`` int16 waveforms at one sample rate: clips are mixed to mono, resampled with ``lossaug.data.wav.resample``
(band-limited) and centred in a fixed length, zero-padded or cropped equally at both ends.

PCM WAV (8-bit unsigned, 16/24/32-bit signed) is read with the standard library's ``wave``; other files (FLAC, OGG,
AIFF, float or extensible WAV) need the optional ``soundfile`` package. torchaudio is not used: its wheels do not
load beside this torch build (checked with torchaudio 2.11.1 and torch 2.13.0+cpu: its library needs a CUDA torch).
Archives are read in memory, member by member, so nothing is extracted. With a ``cache_dir``, decoded arrays are
cached there under a hash of the content and the options, written atomically.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from lossaug.data import archives
from lossaug.data.types import TEST_SPLIT_NAMES, Log, check_splits, has_suffix, scan_class_folders, silent
from lossaug.data.wav import Clip, clips_to_arrays, decode_audio
from lossaug.errors import InputError

__all__ = [
    "AUDIO_SUFFIXES",
    "FSDD_CLASSES",
    "AudioDataset",
    "AudioSplit",
    "decode_audio",
    "load_audio_folder",
    "load_fsdd",
]

WAV_SUFFIXES = (".wav", ".wave")
AUDIO_SUFFIXES = (*WAV_SUFFIXES, ".flac", ".ogg", ".oga", ".aif", ".aiff")  # all but WAV need soundfile
FSDD_CLASSES = tuple(str(digit) for digit in range(10))
FSDD_TEST_INDICES = range(5)  # the data set's own split: recordings 0-4 of each digit and speaker are the test set
_FSDD_NAME = re.compile(r"(\d)_([A-Za-z]+)_(\d+)\.wav")
_SPLITS = ("train", "test")
_CACHE_VERSION = 1  # bump when the decoded layout changes, so old cache files are never read


@dataclass(frozen=True)
class AudioSplit:
    """waveforms (N,C,T) int16 on the CPU, contiguous; labels (N,) int64 class indices.

    ``images`` is the same tensor, under the name the image training loop reads."""

    waveforms: Tensor
    labels: Tensor

    def __post_init__(self) -> None:
        if self.waveforms.dtype != torch.int16 or self.waveforms.ndim != 3:
            shape = tuple(self.waveforms.shape)
            raise InputError(f"waveforms must be (N,C,T) int16, got {shape} {self.waveforms.dtype}")
        if self.labels.dtype != torch.int64 or self.labels.ndim != 1:
            raise InputError(f"labels must be (N,) int64, got {tuple(self.labels.shape)} {self.labels.dtype}")
        if len(self.waveforms) != len(self.labels):
            raise InputError(f"{len(self.waveforms)} waveforms but {len(self.labels)} labels")

    @property
    def images(self) -> Tensor:
        return self.waveforms


@dataclass(frozen=True)
class AudioDataset:
    """A train and a test split over the same classes at one sample rate (Hz); label i means classes[i]."""

    name: str
    classes: tuple[str, ...]
    train: AudioSplit
    test: AudioSplit
    sample_rate: int

    def __post_init__(self) -> None:
        check_splits(self.name, len(self.classes), self.train, self.test, "clips")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def clip_seconds(self) -> float:
        return self.train.waveforms.shape[-1] / self.sample_rate


def _check_options(sample_rate: int | None, clip_seconds: float | None) -> None:
    if sample_rate is not None and (
        isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate < 1
    ):
        raise InputError(f"sample_rate must be a positive int (Hz) or None, got {sample_rate!r}")
    if clip_seconds is not None and not (isinstance(clip_seconds, (int, float)) and 0 < clip_seconds < math.inf):
        raise InputError(f"clip_seconds must be a positive number or None, got {clip_seconds!r}")


# split name ("train"/"test") -> class name -> clips in load order
_Tree = dict[str, dict[str, list[Clip]]]


def _decode_tree(
    name: str,
    classes: tuple[str, ...],
    tree: _Tree,
    sample_rate: int | None,
    clip_seconds: float | None,
    where: str,
    log: Log,
) -> AudioDataset:
    clips, labels = {}, {}
    for split in _SPLITS:
        clips[split] = [clip for c in classes for clip in tree[split].get(c, [])]
        counts = [len(tree[split].get(c, [])) for c in classes]
        labels[split] = torch.from_numpy(np.repeat(np.arange(len(classes), dtype=np.int64), counts))
    num_train = len(clips["train"])
    if num_train == 0:
        raise InputError(f"{where}: no training clips")
    log(f"decoding {num_train + len(clips['test'])} clips from {where}...")
    # One pass over both splits, so the sample-rate check covers every clip.
    waveforms, rate = clips_to_arrays(clips["train"] + clips["test"], num_train, sample_rate, clip_seconds, log)
    waveforms = torch.from_numpy(waveforms)
    return AudioDataset(
        name=name,
        classes=classes,
        train=AudioSplit(waveforms[:num_train].contiguous(), labels["train"]),
        test=AudioSplit(waveforms[num_train:].contiguous(), labels["test"]),
        sample_rate=rate,
    )


# ---------------------------------------------------------------------------------------------------------------
# The decoded-array cache


def _cache_file(cache_dir: Path, stem: str, content_hash: str, options: tuple) -> Path:
    key = hashlib.sha256(f"lossaug-audio-v{_CACHE_VERSION}\0{content_hash}\0{options!r}".encode())
    return cache_dir / f"{stem}-audio-{key.hexdigest()[:24]}.npz"


def _read_cache(path: Path, name: str, log: Log) -> AudioDataset | None:
    def build(z) -> AudioDataset:
        return AudioDataset(
            name=name,
            classes=tuple(str(c) for c in z["classes"]),
            train=AudioSplit(torch.from_numpy(z["train_waveforms"]), torch.from_numpy(z["train_labels"])),
            test=AudioSplit(torch.from_numpy(z["test_waveforms"]), torch.from_numpy(z["test_labels"])),
            sample_rate=int(z["sample_rate"]),
        )

    return archives.read_npz_cache(path, build, log)


def _write_cache(path: Path, dataset: AudioDataset, log: Log) -> None:
    arrays = {"classes": np.array(dataset.classes), "sample_rate": np.array(dataset.sample_rate)}
    for split_name, split in (("train", dataset.train), ("test", dataset.test)):
        arrays |= {f"{split_name}_waveforms": split.waveforms.numpy(), f"{split_name}_labels": split.labels.numpy()}
    archives.write_npz_cache(path, arrays, "clips", log)


def _clips_hash(clips: list[Clip], root: Path) -> str:
    """sha256 over every file's path relative to ``root`` and its bytes, in load order."""
    h = hashlib.sha256()
    for clip in clips:
        assert isinstance(clip.source, Path)
        data = clip.source.read_bytes()
        h.update(f"{clip.source.relative_to(root).as_posix()}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def _cached(
    cache_dir: Path | None,
    stem: str,
    content_hash: Callable[[], str],
    options: tuple,
    load: Callable[[], AudioDataset],
    log: Log,
) -> AudioDataset:
    """``load()``, or its cached result under ``cache_dir`` (written after a load, never half-written)."""
    if cache_dir is None:
        return load()
    cache_file = _cache_file(Path(cache_dir), stem, content_hash(), options)
    dataset = _read_cache(cache_file, stem, log)
    if dataset is None:
        dataset = load()
        _write_cache(cache_file, dataset, log)
    return dataset


# ---------------------------------------------------------------------------------------------------------------
# Archives, read in memory


def _archive_members(archive: Path) -> Iterator[tuple[PurePosixPath, bytes]]:
    """``(name, bytes)`` of each regular file in a tar (any compression) or zip archive; nothing is written."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    if not info.is_dir():
                        yield PurePosixPath(info.filename), zf.read(info)
            return
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                if member.isfile():
                    yield PurePosixPath(member.name), tar.extractfile(member).read()
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
        raise InputError(f"could not read archive {archive}: {e}") from e


# ---------------------------------------------------------------------------------------------------------------
# FSDD: recordings/{digit}_{speaker}_{index}.wav


class _Recording(NamedTuple):
    digit: int
    speaker: str
    index: int
    clip: Clip


def _parse_recording(file_name: str, clip: Clip) -> _Recording:
    match = _FSDD_NAME.fullmatch(file_name)
    if match is None:
        raise InputError(
            f"unexpected FSDD file name {clip.where}; expected recordings/{{digit}}_{{speaker}}_{{index}}.wav"
        )
    return _Recording(int(match[1]), match[2], int(match[3]), clip)


def _fsdd_folder(path: Path) -> Path:
    """The ``recordings`` folder: ``path`` itself, ``path/recordings`` or ``path/free-spoken-digit-dataset/...``."""
    for folder in (path / "recordings", path / "free-spoken-digit-dataset" / "recordings", path):
        if folder.is_dir() and any(_FSDD_NAME.fullmatch(e.name) for e in os.scandir(folder)):
            return folder
    raise FileNotFoundError(
        f"no FSDD recordings in {path}: expected {path}/recordings/{{digit}}_{{speaker}}_{{index}}.wav, or pass "
        "the fsdd.tar.xz archive"
    )


def _fsdd_recordings(path: Path) -> list[_Recording]:
    if path.is_file():
        recordings = [
            _parse_recording(name.name, Clip(f"{path}:{name}", data))
            for name, data in _archive_members(path)
            if name.parent.name == "recordings" and name.suffix.lower() == ".wav" and not name.name.startswith(".")
        ]
        if not recordings:
            raise InputError(f"archive {path} has no FSDD recordings (recordings/{{digit}}_{{speaker}}_{{index}}.wav)")
    else:
        folder = _fsdd_folder(path)
        files = sorted(e.name for e in os.scandir(folder) if e.is_file() and e.name.lower().endswith(".wav"))
        recordings = [_parse_recording(f, Clip(str(folder / f), folder / f)) for f in files if not f.startswith(".")]
    return sorted(recordings, key=lambda r: (r.digit, r.speaker, r.index))


def _fsdd_tree(recordings: list[_Recording], test_speaker: str | None) -> _Tree:
    speakers = sorted({r.speaker for r in recordings})
    if test_speaker is not None and test_speaker not in speakers:
        raise InputError(f"test_speaker {test_speaker!r} is not an FSDD speaker here; choose from {speakers}")
    tree: _Tree = {split: {} for split in _SPLITS}
    for r in recordings:
        is_test = r.speaker == test_speaker if test_speaker is not None else r.index in FSDD_TEST_INDICES
        tree["test" if is_test else "train"].setdefault(str(r.digit), []).append(r.clip)
    return tree


def load_fsdd(
    path: str | Path,
    *,
    test_speaker: str | None = None,
    sample_rate: int | None = None,
    clip_seconds: float | None = None,
    cache_dir: Path | None = None,
    log: Log | None = None,
) -> AudioDataset:
    """The Free Spoken Digit Dataset from ``fsdd.tar.xz`` or its extracted folder; classes "0" to "9".

    Official split (recordings 0-4 of each digit and speaker are the test set: 2,700 train, 300 test), or with
    ``test_speaker`` every recording of that speaker is the test set and the others' the training set. See the
    module docstring for ``sample_rate`` (default: the data's own, 8 kHz), ``clip_seconds`` (default: the 95th
    percentile of training clip lengths) and ``cache_dir``.
    """
    path = Path(path)
    say = log or silent
    _check_options(sample_rate, clip_seconds)
    if not path.exists():
        raise FileNotFoundError(f"FSDD data not found: {path}")
    name = "fsdd" if test_speaker is None else f"fsdd-test-{test_speaker}"

    def load() -> AudioDataset:
        say(f"reading FSDD from {path}")
        tree = _fsdd_tree(_fsdd_recordings(path), test_speaker)
        dataset = _decode_tree(name, FSDD_CLASSES, tree, sample_rate, clip_seconds, str(path), say)
        split = "official split" if test_speaker is None else f"speaker {test_speaker} held out"
        say(f"FSDD ({split}): {len(dataset.train.labels)} train / {len(dataset.test.labels)} test clips")
        return dataset

    def content_hash() -> str:
        if path.is_file():
            return archives.file_digest(path, "sha256")
        folder = _fsdd_folder(path)
        return _clips_hash([r.clip for r in _fsdd_recordings(path)], folder)

    return _cached(cache_dir, name, content_hash, (test_speaker, sample_rate, clip_seconds), load, say)


# ---------------------------------------------------------------------------------------------------------------
# Audio folders: root/{train,test}/<class>/<clip>


def _scan_folder(root: Path) -> _Tree:
    return scan_class_folders(root, AUDIO_SUFFIXES, Clip, noun="clip")


def _tree_from_archive(archive: Path) -> _Tree:
    """An audio-folder tree from an archive's members, held in memory; one wrapping top folder is allowed."""
    members = [(name, data) for name, data in _archive_members(archive) if has_suffix(name.name, AUDIO_SUFFIXES)]
    top_level = {name.parts[0] for name, _ in members if len(name.parts) == 3}
    strip = 0 if "train" in top_level else 1
    splits_present = {name.parts[strip] for name, _ in members if len(name.parts) == 3 + strip}
    test_name = next((n for n in TEST_SPLIT_NAMES if n in splits_present), None)
    tree: _Tree = {split: {} for split in _SPLITS}
    for name, data in sorted(members, key=lambda member: member[0]):
        parts = name.parts[strip:]
        if len(parts) == 3 and parts[0] in ("train", test_name):
            split = "train" if parts[0] == "train" else "test"
            tree[split].setdefault(parts[1], []).append(Clip(f"{archive}:{name}", data))
    if not tree["train"] or not tree["test"]:
        raise InputError(
            f"archive {archive} has no train/<class>/<clip> and test/<class>/<clip> (or val/) audio files "
            f"({', '.join(AUDIO_SUFFIXES)})"
        )
    return tree


def _check_classes(tree: _Tree, where: str) -> tuple[str, ...]:
    train, test = set(tree["train"]), set(tree["test"])
    if train != test:
        raise InputError(
            f"{where}: test classes differ from train classes; only in train: {sorted(train - test)}, "
            f"only in test: {sorted(test - train)}"
        )
    return tuple(sorted(train))


def load_audio_folder(
    root: str | Path,
    *,
    sample_rate: int | None = None,
    clip_seconds: float | None = None,
    cache_dir: Path | None = None,
    log: Log | None = None,
) -> AudioDataset:
    """Clips under ``root/train/<class>/`` and ``root/test/<class>/`` (or ``val/``); class i = i-th sorted name.

    ``root`` may be an archive (.tar, .tar.gz, .tgz, .tar.xz, .zip), read in memory. See the module docstring for
    ``sample_rate``, ``clip_seconds`` and ``cache_dir``.
    """
    root = Path(root)
    say = log or silent
    _check_options(sample_rate, clip_seconds)
    if not root.exists():
        raise FileNotFoundError(f"audio folder not found: {root}")
    if root.is_file() and not archives.is_archive_name(root):
        raise InputError(f"{root} is a file but not an archive ({', '.join(archives.ARCHIVE_SUFFIXES)})")
    name = archives.archive_stem(root) if root.is_file() else root.name
    tree = None if root.is_file() else _scan_folder(root)

    def load() -> AudioDataset:
        full_tree = _tree_from_archive(root) if tree is None else tree
        classes = _check_classes(full_tree, str(root))
        return _decode_tree(name, classes, full_tree, sample_rate, clip_seconds, str(root), say)

    def content_hash() -> str:
        if tree is None:
            return archives.file_digest(root, "sha256")
        return _clips_hash([clip for split in _SPLITS for c in sorted(tree[split]) for clip in tree[split][c]], root)

    return _cached(cache_dir, name, content_hash, (sample_rate, clip_seconds), load, say)
