"""Image classification data sets, loaded whole into memory as uint8 tensors.

Sources: CIFAR-10/100 in the official python format (archive, extracted folder, or downloaded), any image folder
`root/{train,test}/<class>/<image>` or an archive of one, and a mini CIFAR-10 bundled with the package so tests and
examples run offline. Every loader returns an `ImageDataset` (`data_types`) with `(N,C,H,W)` uint8 images and `(N,)`
int64 labels. CIFAR is read by `cifar`; `MultiView` (M candidates per image in DataLoader workers) lives in
`multiview`. All are importable from here.

The library writes to disk only under a `cache_dir` it is given: downloads, extracted archives and decoded arrays
(so a second load skips JPEG decoding). See docs/DATA.md.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.resources
import io
import tarfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image

from lossaug import _archive
from lossaug._archive import download, safe_extract
from lossaug.cifar import CIFAR_SOURCES, load_cifar
from lossaug.data_types import ImageDataset, Log, Split, has_suffix, scan_class_folders, silent
from lossaug.errors import InputError
from lossaug.memory import check_fits, dataset_bytes
from lossaug.multiview import MultiView, view_seed

__all__ = [
    "CIFAR_SOURCES",
    "DATASETS",
    "IMAGE_SUFFIXES",
    "ImageDataset",
    "MultiView",
    "Split",
    "data_fingerprint",
    "download",
    "fingerprint_differences",
    "load_cifar",
    "load_dataset",
    "load_image_folder",
    "load_mini_cifar10",
    "safe_extract",
    "view_seed",
]

DATASETS = ("cifar10", "cifar100", "folder", "mini", "fsdd", "audio-folder")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "F")
_CACHE_VERSION = 1  # bump when the decoded layout changes, so old cache files are never read
_MINI_ASSET = "mini_cifar10.tar.xz"


def load_dataset(
    name: str,
    path: str | Path | None = None,
    *,
    cache_dir: Path | None = None,
    image_size: int | None = None,
    download: bool = True,
    verify: bool = True,
    log: Log | None = None,
    audio: dict | None = None,
) -> ImageDataset:
    """Load one of DATASETS. `path`: CIFAR archive/folder/download folder, or the image folder/archive.

    `cache_dir` holds downloads (CIFAR, when `path` is None), extracted archives and decoded arrays; nothing is
    written without it. `image_size` resizes folder images to a square; CIFAR and mini are always 32x32.
    `verify`: check the official md5 of a CIFAR archive, whether downloaded, cached or given (see `load_cifar`).
    """
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; choose from {list(DATASETS)}")
    cache_dir = None if cache_dir is None else Path(cache_dir)
    if name in ("fsdd", "audio-folder"):  # waveforms: `audio` holds sample_rate, clip_seconds (and test_speaker)
        from lossaug.audio_data import load_audio_folder, load_fsdd

        if path is None:
            raise InputError(f"dataset {name!r} needs --data: an archive or folder of WAV clips")
        options = {k: v for k, v in (audio or {}).items() if v is not None}
        if name == "audio-folder":
            if "test_speaker" in options:
                raise InputError("test_speaker applies to dataset 'fsdd' only")
            return load_audio_folder(path, cache_dir=cache_dir, log=log, **options)
        return load_fsdd(path, cache_dir=cache_dir, log=log, **options)
    if name == "folder":
        if path is None:
            raise InputError(
                "dataset 'folder' needs a path: a folder with train/<class>/<image> and test/<class>/<image>, "
                "or an archive of one"
            )
        return load_image_folder(Path(path), image_size=image_size, cache_dir=cache_dir, log=log)
    if image_size not in (None, 32):
        raise InputError(f"image_size={image_size} applies to 'folder' data only; {name} images are 32x32")
    if name == "mini":
        if path is not None:
            raise InputError(f"dataset 'mini' is bundled with lossaug and takes no path; got {path}")
        return load_mini_cifar10()
    return load_cifar(
        name, None if path is None else Path(path), cache_dir=cache_dir, download=download, verify=verify, log=log
    )


# ---------------------------------------------------------------------------------------------------------------
# Image folders: root/{train,test}/<class>/<image>


class _Image(NamedTuple):
    where: str  # shown in errors: a file path, or archive:member
    source: Path | bytes


# split name ("train"/"test") -> class name -> images in file-name order
_Tree = dict[str, dict[str, list[_Image]]]


def _scan_folder(root: Path) -> _Tree:
    return scan_class_folders(root, IMAGE_SUFFIXES, _Image, noun="image")


def _check_classes(tree: _Tree, where: str) -> tuple[str, ...]:
    train, test = set(tree["train"]), set(tree["test"])
    if train != test:
        raise InputError(
            f"{where}: test classes differ from train classes; only in train: {sorted(train - test)}, "
            f"only in test: {sorted(test - train)}"
        )
    return tuple(sorted(train))


def _decode_one(image: _Image, image_size: int | None) -> np.ndarray:
    """(H,W) for grayscale images, (H,W,3) otherwise."""
    try:
        source = io.BytesIO(image.source) if isinstance(image.source, bytes) else image.source
        with Image.open(source) as im:
            if im.mode not in ("L", "RGB"):
                im = im.convert("L" if im.mode in _GRAY_MODES else "RGB")
            if image_size is not None and im.size != (image_size, image_size):
                im = im.resize((image_size, image_size), Image.BILINEAR)
            return np.asarray(im)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(f"cannot decode image {image.where}: {e}") from e


def _decode_images(images: Sequence[_Image], image_size: int | None) -> np.ndarray:
    """All images as one (N,C,H,W) uint8 array: C=1 if every image is grayscale, else C=3."""
    # A plain loop: PIL decodes a 32x32 JPEG in ~50 us here, and a 2-thread pool was slower (0.9 s vs 0.5 s
    # per 10k CIFAR JPEGs on 2 cores), so parallelism is not worth its complexity.
    arrays: list[np.ndarray] = []
    for image in images:
        array = _decode_one(image, image_size)
        if arrays and array.shape[:2] != arrays[0].shape[:2]:
            (h0, w0), (h, w) = arrays[0].shape[:2], array.shape[:2]
            raise InputError(
                f"images differ in size: {images[0].where} is {w0}x{h0} but {image.where} is {w}x{h}; "
                "pass image_size (--image-size) to resize every image to one square size"
            )
        arrays.append(array)
    height, width = arrays[0].shape[:2]
    channels = 3 if any(a.ndim == 3 for a in arrays) else 1
    out = np.empty((len(arrays), height, width, channels), dtype=np.uint8)
    for i, array in enumerate(arrays):
        out[i] = array if array.ndim == 3 else array[..., None]  # gray -> RGB repeats the one channel
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def _decode_tree(name: str, tree: _Tree, image_size: int | None, where: str, log: Log) -> ImageDataset:
    classes = _check_classes(tree, where)
    images, labels = [], []
    for split in ("train", "test"):
        split_images = [image for c in classes for image in tree[split][c]]
        images.append(split_images)
        labels.append(np.repeat(np.arange(len(classes)), [len(tree[split][c]) for c in classes]))
    count = len(images[0]) + len(images[1])
    if image_size is not None:
        check_fits({"decoded images": dataset_bytes(count, 1, image_size)}, torch.device("cpu"),
                   "lower --image-size", what=f"decoding {count} images at {image_size} px")  # fmt: skip
    log(f"decoding {count} images from {where}...")
    # One decode call over both splits, so the size check and the gray-or-RGB decision cover all images.
    decoded = _decode_images(images[0] + images[1], image_size)
    num_train = len(images[0])
    return ImageDataset(
        name=name,
        classes=classes,
        train=Split(torch.from_numpy(decoded[:num_train]), torch.from_numpy(labels[0])),
        test=Split(torch.from_numpy(decoded[num_train:]), torch.from_numpy(labels[1])),
    )


def _folder_hash(root: Path, tree: _Tree) -> str:
    """sha256 over every image's path relative to root and its bytes, in load order."""
    h = hashlib.sha256()
    for split in ("train", "test"):
        for cls in sorted(tree[split]):
            for image in tree[split][cls]:
                assert isinstance(image.source, Path)
                data = image.source.read_bytes()
                h.update(f"{image.source.relative_to(root).as_posix()}\0{len(data)}\0".encode())
                h.update(data)
    return h.hexdigest()


def _cache_file(cache_dir: Path, stem: str, content_hash: str, image_size: int | None) -> Path:
    key = hashlib.sha256(f"lossaug-decoded-v{_CACHE_VERSION}\0{content_hash}\0{image_size}".encode())
    return cache_dir / f"{stem}-decoded-{key.hexdigest()[:24]}.npz"


def _read_cache(path: Path, name: str, log: Log) -> ImageDataset | None:
    def build(z) -> ImageDataset:
        return ImageDataset(
            name=name,
            classes=tuple(str(c) for c in z["classes"]),
            train=Split(torch.from_numpy(z["train_images"]), torch.from_numpy(z["train_labels"])),
            test=Split(torch.from_numpy(z["test_images"]), torch.from_numpy(z["test_labels"])),
        )

    return _archive.read_npz_cache(path, build, log)


def _write_cache(path: Path, dataset: ImageDataset, log: Log) -> None:
    arrays = {"classes": np.array(dataset.classes)}
    for split_name, split in (("train", dataset.train), ("test", dataset.test)):
        arrays |= {f"{split_name}_images": split.images.numpy(), f"{split_name}_labels": split.labels.numpy()}
    _archive.write_npz_cache(path, arrays, "images", log)


def _archive_root(extracted: Path) -> Path:
    """The extracted folder, or its only top-level folder when the archive wraps everything in one."""
    entries = [e for e in extracted.iterdir() if not e.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir() and not (extracted / "train").is_dir():
        return entries[0]
    return extracted


def load_image_folder(
    root: Path, *, image_size: int | None = None, cache_dir: Path | None = None, log: Log | None = None
) -> ImageDataset:
    """Images under `root/train/<class>/` and `root/test/<class>/` (or `val/`); class i = i-th sorted name.

    `root` may be an archive (.tar, .tar.gz, .tgz, .tar.xz, .zip), unpacked into `cache_dir`. Grayscale data stay
    C=1; any color image makes all C=3. `image_size` resizes every image to that square (bilinear). With a
    `cache_dir`, decoded arrays are cached there under a hash of the content and `image_size`.
    """
    root = Path(root)
    say = log or silent
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1):
        raise InputError(f"image_size must be a positive int or None, got {image_size!r}")
    if not root.exists():
        raise FileNotFoundError(f"image folder not found: {root}")
    cache_dir = None if cache_dir is None else Path(cache_dir)
    if root.is_file():
        if not _archive.is_archive_name(root):
            raise InputError(f"{root} is a file but not an archive ({', '.join(_archive.ARCHIVE_SUFFIXES)})")
        if cache_dir is None:
            raise InputError(f"loading the archive {root} needs a cache_dir to unpack it into")
        stem = _archive.archive_stem(root)
        digest = _archive.file_digest(root, "sha256")
        cache_file = _cache_file(cache_dir, stem, digest, image_size)
        cached = _read_cache(cache_file, stem, say)
        if cached is not None:
            return cached
        say(f"unpacking {root} into {cache_dir}")
        folder = _archive_root(safe_extract(root, cache_dir / f"{stem}-{digest[:16]}"))
        dataset = _decode_tree(stem, _scan_folder(folder), image_size, str(root), say)
    else:
        tree = _scan_folder(root)
        if cache_dir is None:
            return _decode_tree(root.name, tree, image_size, str(root), say)
        cache_file = _cache_file(cache_dir, root.name, _folder_hash(root, tree), image_size)
        cached = _read_cache(cache_file, root.name, say)
        if cached is not None:
            return cached
        dataset = _decode_tree(root.name, tree, image_size, str(root), say)
    _write_cache(cache_file, dataset, say)
    return dataset


# ---------------------------------------------------------------------------------------------------------------
# Mini CIFAR-10, bundled (see experiments/make_mini_cifar10.py and docs/DATA.md for the subset rule)


def _tree_from_tar(blob: bytes, where: str) -> _Tree:
    """An image-folder tree from archive bytes, read in memory: nothing touches the disk."""
    tree: _Tree = {"train": {}, "test": {}}
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as tar:
        for member in tar:
            parts = PurePosixPath(member.name).parts
            if member.isfile() and len(parts) == 3 and parts[0] in tree and has_suffix(parts[2], IMAGE_SUFFIXES):
                data = tar.extractfile(member).read()
                tree[parts[0]].setdefault(parts[1], []).append(_Image(f"{where}:{member.name}", data))
    for split in tree.values():
        for images in split.values():
            images.sort(key=lambda image: image.where)
    return tree


def load_mini_cifar10() -> ImageDataset:
    """The bundled subset of CIFAR-10 (JPEG, quality 75): 500 train and 100 test images per class, 32x32 RGB.

    Decoded from the package in memory (~0.5 s) once per process, with no network and no cache; each call
    returns its own copy of the tensors (~18 MB, a few ms).
    """
    cached = _decoded_mini_cifar10()
    copy = [Split(split.images.clone(), split.labels.clone()) for split in (cached.train, cached.test)]
    return ImageDataset(cached.name, cached.classes, copy[0], copy[1])


@functools.lru_cache(maxsize=1)
def _decoded_mini_cifar10() -> ImageDataset:
    asset = importlib.resources.files("lossaug").joinpath("assets", _MINI_ASSET)
    where = f"lossaug/assets/{_MINI_ASSET}"
    return _decode_tree("mini", _tree_from_tar(asset.read_bytes(), where), None, where, silent)


# ---------------------------------------------------------------------------------------------------------------
# Fingerprints: whether a resumed run trains on the same data as its checkpoint

_FINGERPRINT_SAMPLE = 64  # images hashed, evenly spaced over the set


def data_fingerprint(images: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, Any]:
    """A small JSON-able summary of a training set, ``images (N,C,H,W)`` and ``labels (N,)``: count, image shape
    and dtype, number of classes, a sha256 of all labels and one of 64 images evenly spaced over the set.

    Equal data give equal fingerprints on any device; a different data set, subset, order or size almost surely
    differs in one field (the sampled images cover 64 of N, so an edit of other pixels goes unseen). About 3 ms for
    50,000 CIFAR images on the CPU (hashing the labels dominates)."""
    if images.ndim < 3 or labels.ndim != 1 or len(images) != len(labels):
        raise InputError(f"expected images (N,C,H,W) and labels (N,), got {tuple(images.shape)}, {tuple(labels.shape)}")
    count = len(labels)
    sample = min(_FINGERPRINT_SAMPLE, count)
    # Integer spacing (no float rounding): the first and the last image are always in.
    index = [i * (count - 1) // (sample - 1) for i in range(sample)] if sample > 1 else list(range(sample))
    # Stacked slices: advanced indexing of a (50000,3,32,32) uint8 tensor took 20 ms here, this 0.1 ms.
    picked = torch.stack([images[i] for i in index]).cpu() if index else images[:0].cpu()
    return {
        "count": count,
        "shape": list(images.shape[1:]),
        "dtype": str(images.dtype).removeprefix("torch."),
        "num_classes": int(num_classes),
        "labels_sha256": hashlib.sha256(labels.to(torch.int64).cpu().contiguous().numpy().tobytes()).hexdigest(),
        "images_sha256": hashlib.sha256(picked.numpy().tobytes()).hexdigest(),
        "images_sampled": sample,
    }


def fingerprint_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``"field: saved -> current"`` for each field of two ``data_fingerprint`` results that differs."""
    keys = sorted(set(saved) | set(current))
    return [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in keys if saved.get(k) != current.get(k)]
