"""CIFAR-10 and CIFAR-100 in the official python format: from the archive, the extracted folder, or downloaded.

The batch files are pickles; they are read by a restricted unpickler that accepts only the few globals the official
files (and numpy re-dumps of them) name, and builds every array over bytes the pickle itself carries, so a hostile
file can neither run code nor allocate at will.
"""

from __future__ import annotations

import codecs
import io
import math
import pickle
import tarfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np
import torch

from lossaug.data import archives
from lossaug.data.types import ImageDataset, LoadRequest, Log, Split, silent
from lossaug.errors import InputError

__all__ = ["CIFAR_SOURCES", "from_request", "load_cifar"]

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

_MAX_CIFAR_FILE = 256 << 20  # the largest official batch file, CIFAR-100's train, is 155 MB


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
_NEW_BYTE_ORDER: dict[str, Literal["<", ">", "="]] = {"<": "<", ">": ">", "|": "=", "=": "="}  # "|": not applicable


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
        return np.dtype(self.name).newbyteorder(_NEW_BYTE_ORDER[self.order])


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
                    handle = tar.extractfile(member)
                    assert handle is not None  # a regular file (checked above) always has its contents
                    found[name] = handle.read()
    except (tarfile.TarError, EOFError, OSError, zipfile.BadZipFile) as e:
        raise InputError(f"cannot read CIFAR archive {source}: {e}") from e
    absent = [f"{folder}/{n}" for n in names if n not in found]
    if absent:
        raise InputError(f"CIFAR archive {source} lacks {', '.join(absent)}")
    return found


def _check_md5(archive: Path, name: str) -> None:
    _, md5, filename = CIFAR_SOURCES[name]
    digest = archives.file_digest(archive, "md5")
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
    return archives.download(url, root / filename, md5, log=log), True


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
    say = log or silent
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


def from_request(request: LoadRequest) -> ImageDataset:
    """``load_cifar`` as ``load_dataset("cifar10" or "cifar100", ...)`` asks for it: 32x32 only."""
    request.check_image_size(32)
    return load_cifar(
        request.name,
        request.path,
        cache_dir=request.cache_dir,
        download=request.download,
        verify=request.verify,
        log=request.log,
    )
