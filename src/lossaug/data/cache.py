"""The decoded-array cache: a data set decoded once, then read back from ``cache_dir`` as one uncompressed .npz
(decoded pixels and samples barely compress, and a load stays a plain read), for image folders and audio alike.

A cache file's name hashes a format version, the loader's options and the content (``files_hash``, or an
archive's sha256), so an edited file or a changed option misses the cache and writes a new entry. Files are
written atomically and read without pickles; an unreadable one (empty, cut short, corrupt, a folder) is logged and
decoded again, and a cache that cannot be written (a full or read-only directory) is a warning naming the file:
the run goes on without it.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple, TypeVar, cast

import numpy as np
import torch

from lossaug.data.archives import atomic_file
from lossaug.data.types import (
    AUDIO_KIND,
    IMAGE_KIND,
    AudioDataset,
    AudioSplit,
    Dataset,
    ImageDataset,
    Kind,
    Log,
    Split,
)

__all__ = ["cached", "files_hash"]

D = TypeVar("D", ImageDataset, AudioDataset)
Splits = list[tuple[torch.Tensor, torch.Tensor]]  # (inputs, labels) of the train and the test split
Notes = tuple[tuple[str, ...], dict[str, Any] | None]  # the files skipped and the split made


def _images(name: str, classes: tuple[str, ...], splits: Splits, z: Any, notes: Notes) -> Dataset:
    return ImageDataset(name, classes, Split(*splits[0]), Split(*splits[1]), skipped=notes[0], split=notes[1])


def _clips(name: str, classes: tuple[str, ...], splits: Splits, z: Any, notes: Notes) -> Dataset:
    train, test = (AudioSplit(*split) for split in splits)
    return AudioDataset(name, classes, train, test, sample_rate=int(z["sample_rate"]), skipped=notes[0], split=notes[1])


class _Format(NamedTuple):
    """How one kind's data sets are cached: the tag in the file name and key, the format version, the split
    tensor's array name, the noun in the log, and the data set built from the arrays read (``z``: the open .npz)."""

    tag: str
    version: int
    inputs: str
    noun: str
    build: Callable[[str, tuple[str, ...], Splits, Any, Notes], Dataset]


# Bump a version when its decoded layout changes, so old cache files are never read.
_FORMATS: dict[Kind, _Format] = {
    IMAGE_KIND: _Format("decoded", 1, "images", "images", _images),
    AUDIO_KIND: _Format(AUDIO_KIND, 1, "waveforms", "clips", _clips),  # the tag is the kind's name
}


def files_hash(files: Iterable[Path], root: Path) -> str:
    """sha256 over every file's path relative to ``root`` and its bytes, in the order given (load order)."""
    h = hashlib.sha256()
    for path in files:
        data = path.read_bytes()
        h.update(f"{path.relative_to(root).as_posix()}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def cached(
    kind: Kind,
    cache_dir: Path | None,
    stem: str,
    content_hash: Callable[[], str],
    options: object,
    load: Callable[[], D],
    log: Log,
) -> D:
    """``load()``, or its result cached under ``cache_dir`` (written after a load, never half-written), keyed by
    ``content_hash()`` and ``repr(options)``; without a ``cache_dir``, just ``load()``."""
    if cache_dir is None:
        return load()
    tag, version = _FORMATS[kind].tag, _FORMATS[kind].version
    key = hashlib.sha256(f"lossaug-{tag}-v{version}\0{content_hash()}\0{options!r}".encode())
    path = Path(cache_dir) / f"{stem}-{tag}-{key.hexdigest()[:24]}.npz"
    stored = _read(path, kind, stem, log)
    if stored is not None:
        return cast(D, stored)  # _read builds the kind's own class: what load() returns for this kind
    dataset = load()
    _write(path, kind, dataset, log)
    return dataset


def _read(path: Path, kind: Kind, name: str, log: Log) -> Dataset | None:
    """The data set cached in ``path``; None when there is none, or when it is unreadable (logged: the caller
    decodes again and overwrites it)."""
    if not path.exists():
        return None
    inputs, build = _FORMATS[kind].inputs, _FORMATS[kind].build
    try:
        with np.load(path, allow_pickle=False) as z:
            splits = [
                (torch.from_numpy(z[f"{split}_{inputs}"]), torch.from_numpy(z[f"{split}_labels"]))
                for split in ("train", "test")
            ]
            classes = tuple(str(c) for c in z["classes"])
            # What the loader noted (skipped files, a split made): JSON, absent from files of older versions.
            notes = json.loads(str(z["notes"])) if "notes" in z.files else {}
            dataset = build(name, classes, splits, z, (tuple(notes.get("skipped", ())), notes.get("split")))
    # np.load raises whatever the bytes lead it to: EOFError on an empty file, ValueError, BadZipFile, KeyError,
    # OSError (a folder, no permission), ... Each means this file of lossaug's own cache cannot serve.
    except Exception as e:
        log(f"ignoring unreadable cache file {path} ({type(e).__name__}: {e}); decoding again")
        return None
    log(f"cache hit {path}")
    return dataset


def _write(path: Path, kind: Kind, dataset: Dataset, log: Log) -> None:
    inputs, noun = _FORMATS[kind].inputs, _FORMATS[kind].noun
    arrays: dict[str, Any] = {"classes": np.array(dataset.classes)}
    if isinstance(dataset, AudioDataset):
        arrays["sample_rate"] = np.array(dataset.sample_rate)
    if dataset.skipped or dataset.split is not None:
        arrays["notes"] = np.array(json.dumps({"skipped": list(dataset.skipped), "split": dataset.split}))
    for split_name, split in (("train", dataset.train), ("test", dataset.test)):
        arrays |= {f"{split_name}_{inputs}": split.inputs.numpy(), f"{split_name}_labels": split.labels.numpy()}
    try:
        with atomic_file(path) as f:
            np.savez(f, **arrays)
    except OSError as e:  # a full or read-only cache directory: the data are decoded, the run goes on without
        warnings.warn(
            f"could not write the cache file {path} ({e.strerror or e}); going on without caching the decoded {noun}",
            stacklevel=3,
        )
        return
    log(f"cached decoded {noun} in {path}")
