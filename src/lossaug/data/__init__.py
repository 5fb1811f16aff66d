"""Data sets loaded whole into memory, and ``MultiView`` for DataLoader workers.

``sources`` is the registry: each data set by name, its kind (image or audio) and its loader, one module per
source: CIFAR-10/100 (``cifar``), image folders or archives of one (``folders``), a mini CIFAR-10 bundled with the
package (``mini``), the Free Spoken Digit Dataset (``fsdd``) and audio folders (``audio_folders``), the last two
decoded by ``wav``. ``load_dataset`` loads any of them; ``load_for(config)`` loads a run's data (``TrainData``).
Shared parts: ``types`` (what loaders return), ``trees`` (class-folder layouts), ``archives`` (downloads, safe
extraction, in-memory members), ``cache`` (decoded arrays, loaded once), ``fingerprint`` (whether a resumed run
sees the same data), ``split`` (a test split of an unsplit folder), ``badfiles`` (undecodable files refused or
skipped), ``balance`` (class-balanced order, the imbalance warning). Every public name is importable from
``lossaug.data``; the library writes to disk only under a ``cache_dir`` it is given.
"""

from lossaug.data.archives import download, safe_extract
from lossaug.data.audio_folders import AUDIO_SUFFIXES, load_audio_folder
from lossaug.data.balance import epoch_order, imbalance_warning
from lossaug.data.cifar import CIFAR_SOURCES, load_cifar
from lossaug.data.fingerprint import data_fingerprint, fingerprint_differences
from lossaug.data.folders import IMAGE_SUFFIXES, decode_image, load_image_folder
from lossaug.data.fsdd import FSDD_CLASSES, load_fsdd
from lossaug.data.load import TrainData, load_for
from lossaug.data.mini import load_mini_cifar10
from lossaug.data.multiview import MultiView, view_seed
from lossaug.data.sources import DATASETS, SOURCES, Source, data_kind, load_dataset, source_for
from lossaug.data.types import AudioDataset, AudioSplit, Dataset, ImageDataset, Kind, Split, select_classes
from lossaug.data.wav import decode_audio, fit_clip, resample

__all__ = [
    "AUDIO_SUFFIXES",
    "CIFAR_SOURCES",
    "DATASETS",
    "FSDD_CLASSES",
    "IMAGE_SUFFIXES",
    "SOURCES",
    "AudioDataset",
    "AudioSplit",
    "Dataset",
    "ImageDataset",
    "Kind",
    "MultiView",
    "Source",
    "Split",
    "TrainData",
    "data_fingerprint",
    "data_kind",
    "decode_audio",
    "decode_image",
    "download",
    "epoch_order",
    "fingerprint_differences",
    "fit_clip",
    "imbalance_warning",
    "load_audio_folder",
    "load_cifar",
    "load_dataset",
    "load_for",
    "load_fsdd",
    "load_image_folder",
    "load_mini_cifar10",
    "resample",
    "safe_extract",
    "select_classes",
    "source_for",
    "view_seed",
]
