"""The Free Spoken Digit Dataset (FSDD): ``recordings/{digit}_{speaker}_{index}.wav``, from its archive (read in
memory) or its extracted folder, with the data set's own split or one speaker held out. Clips are decoded by
``wav`` (see ``wav.clips_to_arrays`` for the sample rate and clip length) and cached by ``cache``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NamedTuple

from lossaug.data.archives import archive_members, file_digest
from lossaug.data.cache import cached, files_hash
from lossaug.data.trees import Tree
from lossaug.data.types import AUDIO_KIND, AudioDataset, File, LoadRequest, Log, silent
from lossaug.data.wav import check_audio_options, decode_clips
from lossaug.errors import InputError

__all__ = ["FSDD_CLASSES", "FSDD_TEST_INDICES", "from_request", "load_fsdd"]

FSDD_CLASSES = tuple(str(digit) for digit in range(10))
FSDD_TEST_INDICES = range(5)  # the data set's own split: recordings 0-4 of each digit and speaker are the test set
_FSDD_NAME = re.compile(r"(\d)_([A-Za-z]+)_(\d+)\.wav")


class _Recording(NamedTuple):
    digit: int
    speaker: str
    number: int  # the recording's index (the file name's last field)
    clip: File


def _parse_recording(file_name: str, clip: File) -> _Recording:
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
            _parse_recording(name.name, File(f"{path}:{name}", data))
            for name, data in archive_members(path)
            if name.parent.name == "recordings" and name.suffix.lower() == ".wav" and not name.name.startswith(".")
        ]
        if not recordings:
            raise InputError(f"archive {path} has no FSDD recordings (recordings/{{digit}}_{{speaker}}_{{index}}.wav)")
    else:
        folder = _fsdd_folder(path)
        files = sorted(e.name for e in os.scandir(folder) if e.is_file() and e.name.lower().endswith(".wav"))
        recordings = [_parse_recording(f, File(str(folder / f), folder / f)) for f in files if not f.startswith(".")]
    return sorted(recordings, key=lambda r: (r.digit, r.speaker, r.number))


def _fsdd_tree(recordings: list[_Recording], test_speaker: str | None) -> Tree:
    speakers = sorted({r.speaker for r in recordings})
    if test_speaker is not None and test_speaker not in speakers:
        raise InputError(f"test_speaker {test_speaker!r} is not an FSDD speaker here; choose from {speakers}")
    tree: Tree = {"train": {}, "test": {}}
    for r in recordings:
        is_test = r.speaker == test_speaker if test_speaker is not None else r.number in FSDD_TEST_INDICES
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
    check_audio_options(sample_rate, clip_seconds)
    if not path.exists():
        raise FileNotFoundError(f"FSDD data not found: {path}")
    name = "fsdd" if test_speaker is None else f"fsdd-test-{test_speaker}"

    def load() -> AudioDataset:
        say(f"reading FSDD from {path}")
        tree = _fsdd_tree(_fsdd_recordings(path), test_speaker)
        dataset = decode_clips(name, FSDD_CLASSES, tree, sample_rate, clip_seconds, str(path), say)
        split = "official split" if test_speaker is None else f"speaker {test_speaker} held out"
        say(f"FSDD ({split}): {len(dataset.train.labels)} train / {len(dataset.test.labels)} test clips")
        return dataset

    def content_hash() -> str:
        if path.is_file():
            return file_digest(path, "sha256")
        # A folder's recordings are files (bytes come from archives only, hashed whole above).
        paths = [r.clip.source for r in _fsdd_recordings(path) if isinstance(r.clip.source, Path)]
        return files_hash(paths, _fsdd_folder(path))

    return cached(AUDIO_KIND, cache_dir, name, content_hash, (test_speaker, sample_rate, clip_seconds), load, say)


def from_request(request: LoadRequest) -> AudioDataset:
    """``load_fsdd`` as ``load_dataset("fsdd", ...)`` asks for it."""
    options = request.audio_options()
    return load_fsdd(request.audio_path(), cache_dir=request.cache_dir, log=request.log, **options)
