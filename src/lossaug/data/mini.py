"""Mini CIFAR-10, bundled with the package (see experiments/make_mini_cifar10.py and docs/DATA.md for the subset
rule), so tests and examples run offline: decoded in memory, nothing written.
"""

from __future__ import annotations

import functools
import importlib.resources
import io
import tarfile
from pathlib import PurePosixPath

from lossaug.data.folders import IMAGE_SUFFIXES, _decode_tree, _Image, _Tree
from lossaug.data.types import ImageDataset, Split, has_suffix, silent

__all__ = ["load_mini_cifar10"]

_MINI_ASSET = "mini_cifar10.tar.xz"


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
