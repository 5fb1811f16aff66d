"""The data sets ``load_dataset`` knows by name, each loaded whole into memory. See docs/DATA.md."""

from __future__ import annotations

from pathlib import Path

from lossaug.data.cifar import load_cifar
from lossaug.data.folders import load_image_folder
from lossaug.data.mini import load_mini_cifar10
from lossaug.data.types import ImageDataset, Log
from lossaug.errors import InputError

__all__ = ["DATASETS", "load_dataset"]

DATASETS = ("cifar10", "cifar100", "folder", "mini", "fsdd", "audio-folder")


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
        from lossaug.data.audio_folders import load_audio_folder, load_fsdd

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
