"""Image classification data sets, loaded whole into memory as uint8 tensors.

Sources: CIFAR-10/100 in the official python format (archive, extracted folder, or downloaded), any image folder
`root/{train,test}/<class>/<image>` or an archive of one, and a mini CIFAR-10 bundled with the package so tests and
examples run offline. Every loader returns an `ImageDataset` with `(N,C,H,W)` uint8 images and `(N,)` int64 labels.

The library writes to disk only under a `cache_dir` it is given: downloads, extracted archives and decoded arrays
(so a second load skips JPEG decoding). See docs/DATA.md.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import hashlib
import importlib
import importlib.resources
import inspect
import io
import math
import os
import pickle
import random
import tarfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image

from lossaug import _archive
from lossaug._archive import download, safe_extract
from lossaug.errors import InputError
from lossaug.seeds import stream_seed

__all__ = [
    "CIFAR_SOURCES",
    "DATASETS",
    "IMAGE_SUFFIXES",
    "ImageDataset",
    "Split",
    "data_fingerprint",
    "download",
    "fingerprint_differences",
    "load_cifar",
    "load_dataset",
    "load_image_folder",
    "load_mini_cifar10",
    "safe_extract",
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


DATASETS = ("cifar10", "cifar100", "folder", "mini")

# name -> (url, md5, archive file name): the official python-format archives.
CIFAR_SOURCES = {
    "cifar10": (
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
        "cifar-10-python.tar.gz",
    ),
    "cifar100": (
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
        "cifar-100-python.tar.gz",
    ),
}

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
_TEST_SPLIT_NAMES = ("test", "val")  # the first that exists is the test split
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "F")
_CACHE_VERSION = 1  # bump when the decoded layout changes, so old cache files are never read
_MINI_ASSET = "mini_cifar10.tar.xz"
_MAX_CIFAR_FILE = 256 << 20  # the largest official batch file, CIFAR-100's train, is 155 MB


def _silent(_message: str) -> None:
    pass


def load_dataset(
    name: str,
    path: str | Path | None = None,
    *,
    cache_dir: Path | None = None,
    image_size: int | None = None,
    download: bool = True,
    verify: bool = True,
    log: Log | None = None,
) -> ImageDataset:
    """Load one of DATASETS. `path`: CIFAR archive/folder/download folder, or the image folder/archive.

    `cache_dir` holds downloads (CIFAR, when `path` is None), extracted archives and decoded arrays; nothing is
    written without it. `image_size` resizes folder images to a square; CIFAR and mini are always 32x32.
    `verify`: check the official md5 of a CIFAR archive, whether downloaded, cached or given (see `load_cifar`).
    """
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; choose from {list(DATASETS)}")
    cache_dir = None if cache_dir is None else Path(cache_dir)
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
# CIFAR-10 / CIFAR-100, official python format


@dataclass(frozen=True)
class _CifarLayout:
    folder: str  # top-level folder inside the official archive
    train: tuple[str, ...]  # batch files, in order
    test: str
    meta: str
    label_key: str
    names_key: str


_CIFAR_LAYOUTS = {
    "cifar10": _CifarLayout(
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test_batch",
        "batches.meta",
        "labels",
        "label_names",
    ),
    "cifar100": _CifarLayout("cifar-100-python", ("train",), "test", "meta", "fine_labels", "fine_label_names"),
}


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Python 3 writes bytes in protocol-2 pickles as _codecs.encode(text, "latin1"); allow that use and no other
    # codec (some codecs, e.g. zlib, would turn a tiny pickle into a huge allocation).
    if not isinstance(text, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"_codecs.encode of {type(text).__name__} with {encoding!r} is not allowed")
    return text.encode("latin1")


# Arrays are never built by numpy's own unpickling code: ndarray(shape), _reconstruct(ndarray, shape, dtype) and
# bytearray(n) each allocate whatever a few bytes of pickle ask for (a 39-byte pickle, bytearray(4e8), took 400
# MB). The pickle's array and dtype globals stand for the stand-ins below, which only record what the pickle says;
# each array is then made by np.frombuffer over the raw bytes the pickle itself carries, so no array is larger
# than the file, and only plain numeric dtypes are accepted.
_DTYPES = {f"{kind}{size}" for kind in "iu" for size in (1, 2, 4, 8)} | {"f4", "f8", "b1"}
_BYTE_ORDERS = ("<", ">", "|", "=")


class _NdarrayName:
    """What the pickle's ``numpy.ndarray`` becomes: a name _reconstruct accepts, that cannot be called (as
    ``ndarray(shape)``) or modified."""

    __slots__ = ()

    def __call__(self, *args: object) -> None:
        raise pickle.UnpicklingError("numpy.ndarray may not be called in a CIFAR batch")


_NDARRAY = _NdarrayName()


class _PickledDtype:
    """``numpy.dtype(name, align, copy)`` as recorded from a pickle; BUILD sets its byte order."""

    __slots__ = ("name", "order")

    def __init__(self, name: object, align: object = False, copy: object = False) -> None:
        name = name.decode("latin1") if isinstance(name, bytes) else name
        if not isinstance(name, str) or name.lstrip("<>|=") not in _DTYPES:
            raise pickle.UnpicklingError(f"dtype {name!r} is not allowed in a CIFAR batch")
        self.name, self.order = name.lstrip("<>|="), (name[0] if name[0] in _BYTE_ORDERS else "=")

    def __setstate__(self, state: object) -> None:
        # numpy's dtype state: (version, byte order, subarray, names, fields, elsize, alignment, flags).
        if not isinstance(state, tuple) or len(state) < 5 or state[2:5] != (None, None, None):
            raise pickle.UnpicklingError("only plain numeric dtypes are allowed in a CIFAR batch")
        order = state[1].decode("latin1") if isinstance(state[1], bytes) else state[1]
        if order not in _BYTE_ORDERS:
            raise pickle.UnpicklingError(f"dtype byte order {order!r} is not allowed")
        self.order = order

    def resolve(self) -> np.dtype:
        return np.dtype(self.name).newbyteorder("=" if self.order == "|" else self.order)


def _array_from_bytes(raw: object, dtype: object, shape: object, fortran: bool) -> np.ndarray:
    """An array viewing ``raw`` (bytes carried by the pickle): never larger than they are."""
    if isinstance(raw, str):  # a Python 2 byte string, decoded with latin1 by the unpickler
        raw = raw.encode("latin1")
    if not isinstance(raw, (bytes, bytearray)):
        raise pickle.UnpicklingError(f"array data must be bytes, got {type(raw).__name__}")
    if not isinstance(dtype, _PickledDtype):
        raise pickle.UnpicklingError(f"array dtype must be a numpy.dtype, got {type(dtype).__name__}")
    if not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape) or len(shape) > 8:
        raise pickle.UnpicklingError(f"array shape must be a tuple of ints >= 0, got {shape!r}")
    resolved = dtype.resolve()
    if math.prod(shape) * resolved.itemsize != len(raw):
        raise pickle.UnpicklingError(
            f"array of shape {shape} and dtype {resolved} needs {math.prod(shape) * resolved.itemsize} bytes, "
            f"the pickle holds {len(raw)}"
        )
    return np.frombuffer(raw, dtype=resolved).reshape(shape, order="F" if fortran else "C")


class _PickledArray:
    """``_reconstruct(ndarray, ...)`` as recorded from a pickle; BUILD hands it numpy's array state."""

    __slots__ = ("array",)

    def __setstate__(self, state: object) -> None:
        # numpy's array state: (version, shape, dtype, is_fortran, raw data), or without the version.
        if isinstance(state, tuple) and len(state) == 5:
            state = state[1:]
        if not isinstance(state, tuple) or len(state) != 4:
            raise pickle.UnpicklingError("malformed numpy array state in a CIFAR batch")
        shape, dtype, fortran, raw = state
        self.array = _array_from_bytes(raw, dtype, shape, bool(fortran))


def _reconstruct(subtype: object, shape: object, typecode: object) -> _PickledArray:
    # numpy pickles call _reconstruct(ndarray, (0,), b"b") and BUILD the real content; shape and typecode are
    # ignored, so they cannot allocate anything.
    if subtype is not _NDARRAY:
        raise pickle.UnpicklingError("_reconstruct may only make a numpy.ndarray in a CIFAR batch")
    return _PickledArray()


def _frombuffer(buffer: object, dtype: object, shape: object, order: object) -> np.ndarray:
    # What numpy's pickles of protocol 5 call instead of _reconstruct.
    return _array_from_bytes(buffer, dtype, shape, order == "F")


class _Global(tuple):
    """A pickle global that calls its function but has no attribute a pickle's BUILD opcode could set (a plain
    function or class would let the pickle rewrite it for every later load)."""

    __slots__ = ()

    def __call__(self, *args: object) -> object:
        return self[0](*args)


# Every global the official CIFAR pickles (Python 2, numpy arrays) or a numpy re-dump of them (protocol 2 to 5,
# numpy 1 or 2) names; plain lists and dicts need none. Anything else, e.g. os.system, builtins.eval or
# builtins.bytearray, is refused, so a malicious batch file can neither run code nor allocate at will.
_PICKLE_GLOBALS: dict[tuple[str, str], object] = {
    **{(m, "_reconstruct"): _Global((_reconstruct,)) for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(m, "_frombuffer"): _Global((_frombuffer,)) for m in ("numpy.core.numeric", "numpy._core.numeric")},
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _Global((_PickledDtype,)),
    ("_codecs", "encode"): _Global((_latin1_encode,)),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        try:
            return _PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch") from None


def _arrays(obj: object) -> object:
    """``obj`` with each recorded array replaced by the array (the batch dict and lists in it, one level)."""
    if isinstance(obj, _PickledArray):
        if not hasattr(obj, "array"):
            raise pickle.UnpicklingError("a numpy array in a CIFAR batch has no data")
        return obj.array
    if isinstance(obj, dict):
        return {k: _arrays(v) if isinstance(v, (_PickledArray, list)) else v for k, v in obj.items()}
    if isinstance(obj, list) and any(isinstance(v, _PickledArray) for v in obj):
        return [_arrays(v) if isinstance(v, _PickledArray) else v for v in obj]
    return obj


def _unpickle_batch(blob: bytes, where: str) -> dict[str, object]:
    """Read one CIFAR batch or meta file; keys come back as str whether written by Python 2 or 3."""
    try:
        # latin1: the official files are Python 2 pickles whose byte strings are raw pixel data.
        obj = _arrays(_RestrictedUnpickler(io.BytesIO(blob), encoding="latin1").load())
    except Exception as e:  # a hostile or corrupt pickle can raise nearly anything
        raise InputError(f"cannot read CIFAR batch {where}: {type(e).__name__}: {e}") from e
    if not isinstance(obj, dict):
        raise InputError(f"CIFAR batch {where} holds a {type(obj).__name__}, expected a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _as_text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _cifar_split(batches: Sequence[tuple[str, dict[str, object]]], label_key: str, num_classes: int) -> Split:
    images, labels = [], []
    for where, batch in batches:
        data, batch_labels = batch.get("data"), batch.get(label_key)
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            shape = getattr(data, "shape", None)
            raise InputError(f"CIFAR batch {where}: 'data' must be an (N,3072) uint8 array, got {shape}")
        batch_labels = np.asarray(batch_labels, dtype=np.int64) if batch_labels is not None else None
        if batch_labels is None or batch_labels.shape != (len(data),):
            raise InputError(f"CIFAR batch {where}: '{label_key}' must hold {len(data)} labels")
        if len(batch_labels) and not 0 <= batch_labels.min() <= batch_labels.max() < num_classes:
            raise InputError(f"CIFAR batch {where}: labels outside [0, {num_classes})")
        # Each row is the R plane, then G, then B, each 32x32 row-major: exactly (3,32,32) in C order.
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(batch_labels)
    return Split(torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels)))


def _read_cifar_files(source: Path, folder: str, names: Sequence[str]) -> dict[str, bytes]:
    """The named batch files, from an extracted folder or from the official archive (read in memory)."""
    if source.is_dir():
        missing = [source / n for n in names if not (source / n).is_file()]
        if missing:
            raise FileNotFoundError(f"CIFAR folder {source} lacks {', '.join(str(m) for m in missing)}")
        return {n: (source / n).read_bytes() for n in names}
    wanted = {PurePosixPath(folder, n): n for n in names}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(source, "r:*") as tar:
            for member in tar:
                name = wanted.get(PurePosixPath(member.name))
                if name is not None and member.isfile():
                    if member.size > _MAX_CIFAR_FILE:  # read in memory: a compressed archive could claim any size
                        raise InputError(
                            f"CIFAR archive {source}: member {member.name} is {member.size} bytes, over the "
                            f"{_MAX_CIFAR_FILE} a CIFAR batch can be"
                        )
                    found[name] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, zipfile.BadZipFile) as e:
        raise InputError(f"cannot read CIFAR archive {source}: {e}") from e
    missing = [f"{folder}/{n}" for n in names if n not in found]
    if missing:
        raise InputError(f"CIFAR archive {source} lacks {', '.join(missing)}")
    return found


def _check_md5(archive: Path, name: str) -> None:
    _, md5, filename = CIFAR_SOURCES[name]
    digest = _archive.file_digest(archive, "md5")
    if digest != md5.lower():
        raise InputError(
            f"md5 mismatch for {archive}: expected {md5} (the official {filename}), got {digest}; pass verify=False "
            "(--no-verify) to use it anyway"
        )


def _find_cifar_source(
    name: str, path: Path | None, cache_dir: Path | None, download: bool, log: Log
) -> tuple[Path, bool]:
    """``(archive or extracted folder, whether it was just downloaded and so md5-checked already)``."""
    url, md5, filename = CIFAR_SOURCES[name]
    layout = _CIFAR_LAYOUTS[name]
    if path is None:
        if cache_dir is None:
            raise InputError(f"{name}: pass a path (archive or folder) or a cache_dir to download into")
        root = Path(cache_dir)
        root.mkdir(parents=True, exist_ok=True)
    else:
        root = Path(path)
        if not root.exists():
            raise FileNotFoundError(f"{name} data not found: {root}")
        if root.is_file():
            return root, False
    if (root / layout.meta).is_file():  # root is the extracted folder itself
        return root, False
    if (root / layout.folder).is_dir():
        return root / layout.folder, False
    if (root / filename).is_file():
        return root / filename, False
    if not download:
        raise FileNotFoundError(
            f"no {name} data in {root}: expected {root / layout.folder} or {root / filename} "
            "(allow downloading to fetch it)"
        )
    return _archive.download(url, root / filename, md5, log=log), True


def load_cifar(
    name: str,
    path: Path | None,
    *,
    cache_dir: Path | None,
    download: bool = True,
    verify: bool = True,
    log: Log | None = None,
) -> ImageDataset:
    """CIFAR-10 or CIFAR-100 (fine labels): (N,3,32,32) uint8 images, 50,000 train and 10,000 test.

    `path`: the official .tar.gz, the extracted folder, or a folder holding either; missing data is downloaded
    there (or into `cache_dir` when `path` is None) if `download`. With `verify`, an archive's md5 must be the
    official one (downloaded, cached or given alike; about 0.3 s per read); a mismatch is a ValueError naming the
    file and both digests. An extracted folder has no official digest and is read as it is.
    """
    if name not in CIFAR_SOURCES:
        raise InputError(f"unknown CIFAR data set {name!r}; choose from {sorted(CIFAR_SOURCES)}")
    say = log or _silent
    layout = _CIFAR_LAYOUTS[name]
    source, checked = _find_cifar_source(name, path, cache_dir, download, say)
    if verify and not checked and source.is_file():
        _check_md5(source, name)
    say(f"reading {name} from {source}{'' if verify or not source.is_file() else ' (md5 not verified)'}")
    blobs = _read_cifar_files(source, layout.folder, (layout.meta, *layout.train, layout.test))
    batches = {n: _unpickle_batch(blob, f"{source}:{n}") for n, blob in blobs.items()}
    names = batches[layout.meta].get(layout.names_key)
    if not isinstance(names, list) or not names:
        raise InputError(f"CIFAR meta {source}:{layout.meta} has no '{layout.names_key}' list")
    classes = tuple(_as_text(n) for n in names)
    return ImageDataset(
        name=name,
        classes=classes,
        train=_cifar_split([(f"{source}:{n}", batches[n]) for n in layout.train], layout.label_key, len(classes)),
        test=_cifar_split([(f"{source}:{layout.test}", batches[layout.test])], layout.label_key, len(classes)),
    )


# ---------------------------------------------------------------------------------------------------------------
# Image folders: root/{train,test}/<class>/<image>


class _Image(NamedTuple):
    where: str  # shown in errors: a file path, or archive:member
    source: Path | bytes


# split name ("train"/"test") -> class name -> images in file-name order
_Tree = dict[str, dict[str, list[_Image]]]


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)


def _scan_split(split_dir: Path) -> dict[str, list[_Image]]:
    classes: dict[str, list[_Image]] = {}
    for entry in sorted(os.scandir(split_dir), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            files = sorted(e.name for e in os.scandir(entry.path) if e.is_file() and _is_image_name(e.name))
            if not files:
                raise InputError(f"class folder {entry.path} has no images ({', '.join(IMAGE_SUFFIXES)})")
            classes[entry.name] = [_Image(str(Path(entry.path, f)), Path(entry.path, f)) for f in files]
        elif _is_image_name(entry.name):
            raise InputError(f"image {entry.path} is not in a class folder; expected {split_dir}/<class>/<image>")
    if not classes:
        raise InputError(f"split folder {split_dir} has no class folders; expected {split_dir}/<class>/<image>")
    return classes


def _scan_folder(root: Path) -> _Tree:
    layout = f"expected {root}/train/<class>/<image> and {root}/test/<class>/<image> (or val/)"
    if not (root / "train").is_dir():
        raise FileNotFoundError(f"no train folder in {root}; {layout}")
    test_dir = next((root / n for n in _TEST_SPLIT_NAMES if (root / n).is_dir()), None)
    if test_dir is None:
        raise FileNotFoundError(f"no test (or val) folder in {root}; {layout}")
    return {"train": _scan_split(root / "train"), "test": _scan_split(test_dir)}


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
    log(f"decoding {len(images[0]) + len(images[1])} images from {where}...")
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
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            dataset = ImageDataset(
                name=name,
                classes=tuple(str(c) for c in z["classes"]),
                train=Split(torch.from_numpy(z["train_images"]), torch.from_numpy(z["train_labels"])),
                test=Split(torch.from_numpy(z["test_images"]), torch.from_numpy(z["test_labels"])),
            )
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        log(f"ignoring unreadable cache file {path} ({e}); decoding again")
        return None
    log(f"cache hit {path}")
    return dataset


def _write_cache(path: Path, dataset: ImageDataset, log: Log) -> None:
    with _archive.atomic_file(path) as f:
        # Uncompressed: JPEG-decoded pixels barely compress, and loading stays a plain read.
        np.savez(
            f,
            classes=np.array(dataset.classes),
            train_images=dataset.train.images.numpy(),
            train_labels=dataset.train.labels.numpy(),
            test_images=dataset.test.images.numpy(),
            test_labels=dataset.test.labels.numpy(),
        )
    log(f"cached decoded images in {path}")


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
    say = log or _silent
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
            if member.isfile() and len(parts) == 3 and parts[0] in tree and _is_image_name(parts[2]):
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
    return _decode_tree("mini", _tree_from_tar(asset.read_bytes(), where), None, where, _silent)


# ---------------------------------------------------------------------------------------------------------------
# Fingerprints: whether a resumed run trains on the same data as its checkpoint

_FINGERPRINT_SAMPLE = 64  # images hashed, evenly spaced over the set


def data_fingerprint(images: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, Any]:
    """A small JSON-able summary of a training set, ``images (N,C,H,W)`` and ``labels (N,)``: count, image shape
    and dtype, number of classes, a sha256 of all labels and one of 64 images evenly spaced over the set.

    Equal data give equal fingerprints on any device; a different data set, subset, order or size almost surely
    differs in one field (the sampled images cover 64 of N, so an edit of other pixels goes unseen). About 3 ms for
    50,000 CIFAR images on the CPU (hashing the labels dominates)."""
    if images.ndim != 4 or labels.ndim != 1 or len(images) != len(labels):
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


# ---------------------------------------------------------------------------------------------------------------
# MultiView: M candidates per image from any per-image transform, made in DataLoader workers

__all__ += ["MultiView", "view_seed"]


def view_seed(seed: int, epoch: int, index: int, view: int) -> int:
    """The 63-bit seed of draw ``view`` of item ``index`` in ``epoch`` (a named stream of ``seed``)."""
    return stream_seed(seed, f"MultiView:{epoch}:{index}:{view}")


@contextlib.contextmanager
def _seeded_globals(seed: int) -> Iterator[None]:
    """Seed Python's ``random``, NumPy's global generator and torch's CPU generator from ``seed``; restore all
    three on exit, so the caller's random state is exactly as it was."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            random.seed(seed)
            np.random.seed([seed & 0xFFFFFFFF, seed >> 32])  # NumPy's legacy seed takes 32-bit words
            torch.default_generator.manual_seed(seed)  # the CPU one only: fork_rng restores no CUDA state here
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def _parameters(fn: Callable) -> dict[str, inspect.Parameter] | None:
    try:
        return dict(inspect.signature(fn).parameters)
    except (TypeError, ValueError):  # some builtins and C extensions have no signature
        return None


def _random_keyword(transform: Callable) -> str | None:
    """``"rng"`` or ``"generator"`` when ``transform`` takes that keyword, else None."""
    params = _parameters(transform) or {}
    for name in ("rng", "generator"):
        if name in params and params[name].kind in (params[name].POSITIONAL_OR_KEYWORD, params[name].KEYWORD_ONLY):
            return name
    return None


def _takes_image_keyword(transform: Callable) -> bool:
    """Whether ``transform`` is albumentations-style: called as ``transform(image=array)``, returning a dict."""
    if type(transform).__module__.partition(".")[0] == "albumentations":
        return True
    params = _parameters(transform)
    if params is None or "image" not in params or params["image"].kind != params["image"].KEYWORD_ONLY:
        return False
    return not any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params.values())


def _as_hwc_array(image: Any) -> np.ndarray:
    """A PIL image, ``(C,H,W)`` tensor or numpy array as the ``(H,W,C)`` (or ``(H,W)``) array albumentations
    expects."""
    if isinstance(image, torch.Tensor):
        return image.permute(1, 2, 0).numpy() if image.dim() == 3 else image.numpy()
    return np.asarray(image)


def _as_chw_tensor(view: Any, where: str) -> torch.Tensor:
    """A transform's output as a ``(C,H,W)`` tensor: tensors pass through (``(H,W)`` gains C=1); PIL images and
    ``(H,W,C)`` or ``(H,W)`` numpy arrays become tensors of their dtype (uint8 for 8-bit images)."""
    if isinstance(view, torch.Tensor):
        # as_subclass: torchvision's tv_tensors.Image and friends become plain tensors before stacking.
        tensor = view.as_subclass(torch.Tensor)
    elif isinstance(view, (Image.Image, np.ndarray)):
        array = np.asarray(view)
        if array.ndim not in (2, 3):
            raise InputError(f"{where}: expected an (H,W,C) or (H,W) image, got an array of shape {array.shape}")
        array = array[:, :, None] if array.ndim == 2 else array
        tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
    else:
        raise InputError(
            f"{where}: the transform returned a {type(view).__name__}; expected a tensor, PIL image or numpy array"
        )
    if tensor.dim() == 2:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() != 3:
        raise InputError(f"{where}: expected a (C,H,W) image, got a tensor of shape {tuple(tensor.shape)}")
    return tensor


class MultiView(torch.utils.data.Dataset):
    """``num_candidates`` independent draws of a per-image ``transform`` for each item of ``dataset``:
    ``views (M,C,H,W), target = multiview[i]``, so a DataLoader yields ``candidates (B,M,C,H,W)`` ready for
    ``lossaug.select_candidates``.

    ``dataset[i]`` must be ``(image, target)``; ``image`` goes to ``transform`` unchanged (a PIL image for
    torchvision-style transforms), except for albumentations-style transforms (called ``transform(image=...)``,
    returning a dict), which get an ``(H,W,C)`` numpy array. ``transform`` may return a tensor, a PIL image or an
    ``(H,W,C)`` numpy array; the latter two become ``(C,H,W)`` tensors of their dtype (uint8 for 8-bit images).

    What is guaranteed: draw ``m`` of item ``i`` in epoch ``e`` depends only on ``view_seed(seed, e, i, m)``, a hash
    of the four numbers. The same (seed, epoch, index) gives identical views across runs, DataLoader worker counts,
    which worker loads the item, ranks and loading order; any other (seed, epoch, index, view) gets an unrelated
    seed, so draws do not repeat across workers, ranks or epochs. Two loads of the same index in the same epoch do
    give the same views (a sampler with replacement; ``DistributedSampler`` padding, which repeats up to
    ``world_size - 1`` indices). Inside each draw, Python's ``random``, NumPy's global generator and torch's CPU
    generator are seeded from that seed and restored afterwards, and a transform that takes an ``rng`` keyword gets
    a ``random.Random`` (``generator``: a ``torch.Generator``) seeded likewise. A transform with its own generator
    and a ``set_random_seed(seed)`` method (albumentations 2.x ``Compose``) is re-seeded before each draw (a 32-bit
    seed); a transform whose randomness comes from anywhere else (its own unseeded generator, the time) is not
    covered. The global seeding assumes one thread per process calls ``__getitem__`` (true of DataLoader workers).

    Call ``set_epoch(epoch)`` before iterating the DataLoader each epoch, as with ``DistributedSampler``. The epoch
    lives in shared memory, so persistent workers (``persistent_workers=True``) see it too.
    """

    def __init__(self, dataset: Any, transform: Callable, num_candidates: int, *, seed: int = 0):
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise InputError(f"dataset must be map-style (__getitem__ and __len__), got {type(dataset).__name__}")
        if not callable(transform):
            raise InputError(f"transform must be callable, got {type(transform).__name__}")
        if isinstance(num_candidates, bool) or not isinstance(num_candidates, int) or num_candidates < 1:
            raise InputError(f"num_candidates must be an int >= 1, got {num_candidates!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InputError(f"seed must be an int, got {seed!r}")
        self.dataset = dataset
        self.transform = transform
        self.num_candidates = num_candidates
        self.seed = seed
        # Shared memory: DataLoader workers (forked, spawned, or persistent across epochs) read the epoch that
        # set_epoch wrote in the main process, instead of the copy they were started with.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._keyword = _random_keyword(transform)
        self._image_keyword = _takes_image_keyword(transform)

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's views from now on; call it before iterating the DataLoader each epoch."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise InputError(f"epoch must be an int >= 0, got {epoch!r}")
        self._epoch.fill_(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def _draw(self, image: Any, seed: int) -> Any:
        if hasattr(self.transform, "set_random_seed"):
            self.transform.set_random_seed(seed & 0xFFFFFFFF)
        with _seeded_globals(seed):
            if self._image_keyword:
                return self.transform(image=_as_hwc_array(image))["image"]
            if self._keyword == "rng":
                return self.transform(image, rng=random.Random(seed))
            if self._keyword == "generator":
                return self.transform(image, generator=torch.Generator().manual_seed(seed))
            return self.transform(image)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        """``(views (M,C,H,W), target)`` for item ``index``."""
        index = int(index)
        item = self.dataset[index]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise InputError(f"dataset item {index} must be an (image, target) pair, got {type(item).__name__}")
        image, target = item
        epoch = self.epoch
        views = [
            _as_chw_tensor(self._draw(image, view_seed(self.seed, epoch, index, m)), f"item {index} view {m}")
            for m in range(self.num_candidates)
        ]
        shapes = {tuple(v.shape) for v in views}
        if len(shapes) > 1:
            raise InputError(
                f"item {index}: the transform gave views of different shapes {sorted(shapes)}; "
                "candidates must share one shape (crop or resize to a fixed size)"
            )
        return torch.stack(views), target
