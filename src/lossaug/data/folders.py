"""Image folders, ``root/{train,test}/<class>/...`` (or ``root/<class>/...`` split by ``test_fraction``) or an
archive of one, decoded whole into an ``ImageDataset`` of ``(N,C,H,W)`` uint8 images; undecodable files refuse the
load, all listed, or are skipped (``skip_bad``). With a ``cache_dir``, decoded arrays are cached there (so a second
load skips JPEG decoding). See docs/DATA.md.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lossaug.data import archives
from lossaug.data.archives import safe_extract
from lossaug.data.badfiles import decode_tree
from lossaug.data.cache import cached, files_hash
from lossaug.data.split import check_folder_options, resolve_split
from lossaug.data.trees import Tree, check_classes, scan_class_folders, tree_files
from lossaug.data.types import IMAGE_KIND, File, FolderOptions, ImageDataset, LoadRequest, Log, Split, silent
from lossaug.errors import InputError
from lossaug.run.memory import check_fits, dataset_bytes

__all__ = ["IMAGE_SUFFIXES", "decode_image", "from_request", "load_image_folder"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "F")


def _scan_folder(root: Path) -> Tree:
    return scan_class_folders(root, IMAGE_SUFFIXES, File, noun="image")


def _decode_one(image: File, image_size: int | None) -> np.ndarray:
    """(H,W) for grayscale images, (H,W,3) otherwise."""
    try:
        source = io.BytesIO(image.source) if isinstance(image.source, bytes) else image.source
        with Image.open(source) as opened:
            im: Image.Image = opened
            if im.mode not in ("L", "RGB"):
                im = im.convert("L" if im.mode in _GRAY_MODES else "RGB")
            if image_size is not None and im.size != (image_size, image_size):
                im = im.resize((image_size, image_size), Image.Resampling.BILINEAR)
            return np.asarray(im)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(f"cannot decode image {image.where}: {e}") from e


def decode_image(source: str | Path | bytes, image_size: int | None = None, where: str | None = None) -> np.ndarray:
    """One image (a path, as str or Path, or its bytes) decoded as image folders decode theirs: ``(H,W)`` uint8 if
    grayscale, else ``(H,W,3)``; resized to ``image_size`` squared (bilinear) when given. An undecodable file is an
    ``InputError`` naming it (``where``, default the path)."""
    source = Path(source) if isinstance(source, str) else source
    return _decode_one(File(where or (str(source) if isinstance(source, Path) else "<bytes>"), source), image_size)


def _stack_images(arrays: list[np.ndarray], images: Sequence[File]) -> np.ndarray:
    """Decoded ``arrays`` of ``images`` as one (N,C,H,W) uint8 array: C=1 if every image is grayscale, else C=3."""
    # A plain decoding loop: PIL decodes a 32x32 JPEG in ~50 us here, and a 2-thread pool was slower (0.9 s vs
    # 0.5 s per 10k CIFAR JPEGs on 2 cores), so parallelism is not worth its complexity.
    for image, array in zip(images, arrays, strict=True):
        if array.shape[:2] != arrays[0].shape[:2]:
            (h0, w0), (h, w) = arrays[0].shape[:2], array.shape[:2]
            raise InputError(
                f"images differ in size: {images[0].where} is {w0}x{h0} but {image.where} is {w}x{h}; "
                "pass image_size (--image-size) to resize every image to one square size"
            )
    height, width = arrays[0].shape[:2]
    channels = 3 if any(a.ndim == 3 for a in arrays) else 1
    out = np.empty((len(arrays), height, width, channels), dtype=np.uint8)
    for i, array in enumerate(arrays):
        out[i] = array if array.ndim == 3 else array[..., None]  # gray -> RGB repeats the one channel
    # copy(), not ascontiguousarray: for C=1 the latter keeps the transposed strides (HW,1,W,1), which convolutions
    # take as channels-last and round differently from the (HW,HW,W,1) of the same images read from the cache.
    return out.transpose(0, 3, 1, 2).copy()


def _decode_tree(
    name: str, tree: Tree, image_size: int | None, where: str, log: Log, options: FolderOptions | None = None
) -> ImageDataset:
    options = options or FolderOptions()
    tree, split = resolve_split(tree, options.test_fraction, options.split_seed, where)
    classes = check_classes(tree, where)
    count = sum(len(files) for files in tree["train"].values()) + sum(len(files) for files in tree["test"].values())
    if image_size is not None:
        check_fits(
            {"decoded images": dataset_bytes(count, 1, image_size)},
            torch.device("cpu"),
            "lower --image-size",
            what=f"decoding {count} images at {image_size} px",
        )
    log(f"decoding {count} images from {where}...")
    # One decode pass over both splits, so the size check and the gray-or-RGB decision cover all images.
    decode = functools.partial(_decode_one, image_size=image_size)
    arrays, tree, skipped = decode_tree(tree, decode, options.skip_bad, IMAGE_KIND, log)
    images, labels = [], []
    for split_name in ("train", "test"):
        images.append([image for c in classes for image in tree[split_name][c]])
        labels.append(np.repeat(np.arange(len(classes)), [len(tree[split_name][c]) for c in classes]))
    decoded = _stack_images(arrays, images[0] + images[1])
    num_train = len(images[0])
    return ImageDataset(
        name=name,
        classes=classes,
        train=Split(torch.from_numpy(decoded[:num_train]), torch.from_numpy(labels[0])),
        test=Split(torch.from_numpy(decoded[num_train:]), torch.from_numpy(labels[1])),
        skipped=skipped,
        split=None if split is None else split.counted(tree).as_dict(),
    )


def load_image_folder(
    root: str | Path,
    *,
    image_size: int | None = None,
    cache_dir: str | Path | None = None,
    log: Log | None = None,
    test_fraction: float | None = None,
    split_seed: int = 0,
    skip_bad: bool = False,
) -> ImageDataset:
    """Images under `root/train/<class>/` and `root/test/<class>/` (or `val/`), or under `root/<class>/` with
    `test_fraction` of each class split off for testing (`split.split_tree`, by `split_seed`); a class folder's
    subfolders belong to it. Class i = i-th sorted name.

    `root` may be an archive (.tar, .tar.gz, .tgz, .tar.xz, .zip), unpacked into `cache_dir`. Grayscale data stay
    C=1; any color image makes all C=3. `image_size` resizes every image to that square (bilinear). Undecodable
    images are an `InputError` listing them, or with `skip_bad` left out (named in the result's `skipped`). With a
    `cache_dir`, decoded arrays are cached there under a hash of the content and the options.
    """
    root = Path(root)
    say = log or silent
    check_folder_options(test_fraction, split_seed)
    options = FolderOptions(test_fraction, split_seed, bool(skip_bad))
    key = image_size if options == FolderOptions() else (image_size, options.cache_key())
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1):
        raise InputError(f"image_size must be a positive int or None, got {image_size!r}")
    if not root.exists():
        raise FileNotFoundError(f"image folder not found: {root}")
    cache_dir = None if cache_dir is None else Path(cache_dir)
    if root.is_file():
        if not archives.is_archive_name(root):
            raise InputError(f"{root} is a file but not an archive ({', '.join(archives.ARCHIVE_SUFFIXES)})")
        if cache_dir is None:
            raise InputError(f"loading the archive {root} needs a cache_dir to unpack it into")
        stem, digest = archives.archive_stem(root), archives.file_digest(root, "sha256")

        def load() -> ImageDataset:
            say(f"unpacking {root} into {cache_dir}")
            folder = _unwrapped(safe_extract(root, cache_dir / f"{stem}-{digest[:16]}"))
            return _decode_tree(stem, _scan_folder(folder), image_size, str(root), say, options)

        return cached(IMAGE_KIND, cache_dir, stem, lambda: digest, key, load, say)
    tree = _scan_folder(root)
    return cached(
        IMAGE_KIND,
        cache_dir,
        root.name,
        lambda: files_hash((image.source for image in tree_files(tree)), root),
        key,
        lambda: _decode_tree(root.name, tree, image_size, str(root), say, options),
        say,
    )


def _unwrapped(extracted: Path) -> Path:
    """The extracted folder, or the one folder the archive wrapped everything in (``archives.wrapping_folder``)."""
    top = archives.wrapping_folder({e.name: e.is_dir() for e in extracted.iterdir()})
    return extracted if top is None else extracted / top


def from_request(request: LoadRequest) -> ImageDataset:
    """``load_image_folder`` as ``load_dataset("folder", ...)`` asks for it."""
    if request.path is None:
        raise InputError(
            "dataset 'folder' needs a path: a folder with train/<class>/<image> and test/<class>/<image>, "
            "or an archive of one"
        )
    folder = request.folder
    return load_image_folder(
        request.path,
        image_size=request.image_size,
        cache_dir=request.cache_dir,
        log=request.log,
        test_fraction=folder.test_fraction,
        split_seed=folder.split_seed,
        skip_bad=folder.skip_bad,
    )
