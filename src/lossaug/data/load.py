"""What a run trains and is tested on, as its config names it: ``load_for(config) -> TrainData``. Training
(``pipeline.prepare_data`` places it for the loop), ``lossaug show`` and any later command that reads a run's data
call this one function, so they agree on the source, the options and the classes kept:
config -> load_for -> TrainData -> loop.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lossaug.data.balance import imbalance_warning
from lossaug.data.sources import data_kind, load_dataset
from lossaug.data.split import SplitRecord
from lossaug.data.types import AudioDataset, AudioSplit, Kind, Log, Split, select_classes
from lossaug.errors import InputError

if TYPE_CHECKING:
    from lossaug.run.config import TrainConfig

__all__ = ["TrainData", "load_for"]


@dataclass(frozen=True)
class TrainData:
    """A run's data set on the CPU: its source's ``kind``, the classes kept (label i means ``classes[i]``), both
    splits (``inputs`` and ``labels``; images ``(N,C,H,W)`` uint8 or waveforms ``(N,C,T)`` int16), the sample
    rate in Hz for audio (None for images), and the loader's notes: the files it skipped and the split it made."""

    name: str  # the data set's name in the registry (config.dataset)
    kind: Kind
    classes: tuple[str, ...]
    train: Split | AudioSplit
    test: Split | AudioSplit
    sample_rate: int | None = None
    skipped: tuple[str, ...] = ()  # undecodable files left out (--skip-bad)
    split: dict[str, Any] | None = None  # the --test-fraction split made (``SplitRecord.as_dict``)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def notes(self) -> dict[str, Any]:
        """What a run records of how its data were read: the split made and the files skipped (empty: neither)."""
        notes: dict[str, Any] = {}
        if self.split is not None:
            notes["split"] = self.split
        if self.skipped:
            notes["skipped_files"] = list(self.skipped)
        return notes


def load_for(config: TrainConfig, log: Log | None = None) -> TrainData:
    """Load ``config.dataset`` with the config's data options (path, cache, image size, md5 check, audio rate,
    clip length, held-out speaker) and keep ``config.classes`` (relabelled ``0..k-1``; a log line says which)."""
    from lossaug.run.config import class_names  # config imports the registry (sources), so not at module level

    if config.cache_dir and Path(config.cache_dir).exists() and not Path(config.cache_dir).is_dir():
        raise InputError(f"--cache-dir {config.cache_dir} exists and is not a directory")
    dataset = load_dataset(
        config.dataset,
        config.data,
        cache_dir=Path(config.cache_dir) if config.cache_dir else None,
        image_size=config.image_size,
        log=log,
        verify=config.verify,
        audio=dict(sample_rate=config.sample_rate, clip_seconds=config.clip_seconds, test_speaker=config.test_speaker),
        test_fraction=config.test_fraction,
        split_seed=config.split_seed,
        skip_bad=config.skip_bad,
    )
    if log is not None and dataset.split is not None:
        log(SplitRecord(**dataset.split).summary())
    if log is not None and dataset.skipped:
        log(f"left out {len(dataset.skipped)} files that cannot be decoded (--skip-bad)")
    names = class_names(config)
    if names is not None:
        total = dataset.num_classes
        dataset = select_classes(dataset, names)
        if log is not None:
            log(
                f"classes: {', '.join(dataset.classes)} ({dataset.num_classes} of {total}): "
                f"{len(dataset.train.labels)} train / {len(dataset.test.labels)} test"
            )
    imbalance = imbalance_warning(dataset.train.labels, dataset.classes)
    if imbalance is not None and not config.balance:
        warnings.warn(imbalance, stacklevel=2)
    sample_rate = dataset.sample_rate if isinstance(dataset, AudioDataset) else None
    return TrainData(
        config.dataset,
        data_kind(config.dataset),
        dataset.classes,
        dataset.train,
        dataset.test,
        sample_rate,
        dataset.skipped,
        dataset.split,
    )
