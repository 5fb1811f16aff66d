"""Mini CIFAR-10, bundled with the package (see experiments/make_mini_cifar10.py and docs/DATA.md for the subset
rule), so tests and examples run offline: decoded in memory, nothing written.
"""

from __future__ import annotations

import functools
import importlib.resources

from lossaug.data.archives import archive_members
from lossaug.data.folders import IMAGE_SUFFIXES, _decode_tree
from lossaug.data.trees import has_suffix, tree_from_members
from lossaug.data.types import File, ImageDataset, LoadRequest, Split, silent
from lossaug.errors import InputError

__all__ = ["from_request", "load_mini_cifar10"]

_MINI_ASSET = "mini_cifar10.tar.xz"


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
    members = archive_members(asset.read_bytes(), where)
    tree = tree_from_members(((n, data) for n, data in members if has_suffix(n.name, IMAGE_SUFFIXES)), File, where)
    return _decode_tree("mini", tree, None, where, silent)


def from_request(request: LoadRequest) -> ImageDataset:
    """``load_mini_cifar10`` as ``load_dataset("mini")`` asks for it: no path, 32x32."""
    request.check_image_size(32)
    if request.path is not None:
        raise InputError(f"dataset 'mini' is bundled with lossaug and takes no path; got {request.path}")
    return load_mini_cifar10()
