"""Data sets loaded whole into memory, and ``MultiView`` for DataLoader workers.

Images: CIFAR-10/100 (``cifar``), image folders or archives of one (``folders``), a mini CIFAR-10 bundled with the
package (``mini``). Audio: the Free Spoken Digit Dataset and audio folders (``audio_folders``), read by ``wav``.
``load_dataset`` (``sources``) loads any of them by name; ``archives`` holds downloads, safe extraction and the
decoded-array cache files; ``fingerprint`` tells whether a resumed run sees the same data. Every public name is
importable from ``lossaug.data``; the library writes to disk only under a ``cache_dir`` it is given.
"""

from lossaug.data.archives import download, safe_extract
from lossaug.data.audio_folders import (
    AUDIO_SUFFIXES,
    FSDD_CLASSES,
    AudioDataset,
    AudioSplit,
    load_audio_folder,
    load_fsdd,
)
from lossaug.data.cifar import CIFAR_SOURCES, load_cifar
from lossaug.data.fingerprint import data_fingerprint, fingerprint_differences
from lossaug.data.folders import IMAGE_SUFFIXES, load_image_folder
from lossaug.data.mini import load_mini_cifar10
from lossaug.data.multiview import MultiView, view_seed
from lossaug.data.sources import DATASETS, load_dataset
from lossaug.data.types import ImageDataset, Split, select_classes
from lossaug.data.wav import decode_audio, resample

__all__ = [
    "AUDIO_SUFFIXES",
    "CIFAR_SOURCES",
    "DATASETS",
    "FSDD_CLASSES",
    "IMAGE_SUFFIXES",
    "AudioDataset",
    "AudioSplit",
    "ImageDataset",
    "MultiView",
    "Split",
    "data_fingerprint",
    "decode_audio",
    "download",
    "fingerprint_differences",
    "load_audio_folder",
    "load_cifar",
    "load_dataset",
    "load_fsdd",
    "load_image_folder",
    "load_mini_cifar10",
    "resample",
    "safe_extract",
    "select_classes",
    "view_seed",
]
