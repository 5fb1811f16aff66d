"""Guard rails for small data and slow machines: what a run on a few hundred examples should hear before it starts
(``small_data_warnings``), what a run that is not the experiment it looks like should hear (``run_warnings``: it
scores nothing, or its training data hold one class) and, after its first epoch, how long the rest will take
(``EtaNote``).

The defaults (200 epochs, batch 128) are the published CIFAR protocol; on 360 clips they give 2 steps per epoch and
silently drop 104 clips with the last partial batch. These messages say so and what to change.
"""

from __future__ import annotations

import time
from typing import Any

from torch import Tensor

from lossaug.kinds import kind_named
from lossaug.methods import method_named
from lossaug.progress import Reporter
from lossaug.run.config import TrainConfig
from lossaug.run.telemetry import Callback

__all__ = [
    "DROPPED_FRACTION_WARNING",
    "MIN_STEPS_PER_EPOCH",
    "SLOW_ETA_SECONDS",
    "EtaNote",
    "format_duration",
    "run_warnings",
    "small_data_warnings",
    "suggested_batch_size",
]

DROPPED_FRACTION_WARNING = 0.10  # warn when the dropped last partial batch is more than this share of the data
MIN_STEPS_PER_EPOCH = 10  # fewer steps per epoch: the schedule and BatchNorm statistics get very few updates
SLOW_ETA_SECONDS = 600  # a longer ETA gets the hint to the small-data recipe; a 9 s run does not need it


def small_data_warnings(num_train: int, images_per_step: int, noun: str = "images") -> list[str]:
    """The warnings for ``num_train`` training examples at ``images_per_step`` per step (the last partial batch of
    each epoch is dropped): a dropped share above ``DROPPED_FRACTION_WARNING``, fewer than ``MIN_STEPS_PER_EPOCH``
    steps per epoch. Each says what to change; empty when neither applies."""
    steps = num_train // images_per_step
    dropped = num_train - steps * images_per_step
    suggestion = suggested_batch_size(num_train)
    messages = []
    if dropped > DROPPED_FRACTION_WARNING * num_train:
        better = suggestion != images_per_step and num_train % suggestion < dropped  # never suggest what is given
        messages.append(
            f"each epoch drops its last partial batch: {dropped} of {num_train} training {noun} "
            f"({dropped / num_train:.0%}) go unused in every epoch (different ones each time); choose a --batch-size "
            f"that divides {num_train} more evenly" + (f", e.g. {suggestion}" if better else "")
        )
    if steps < MIN_STEPS_PER_EPOCH:
        plural = "" if steps == 1 else "s"
        few = f"only {steps} step{plural} per epoch ({num_train} training {noun} at {images_per_step} per step)"
        if suggestion < images_per_step:
            messages.append(
                f"{few}: the model gets few updates per epoch; use --batch-size {suggestion} (and scale --lr with "
                f"it, e.g. {0.1 * suggestion / 128:.2g} for the default recipe's 0.1 at 128)"
            )
        else:
            messages.append(f"{few}: too few {noun} for {MIN_STEPS_PER_EPOCH} steps; each epoch is a few noisy updates")
    return messages


def run_warnings(
    config: TrainConfig, train_labels: Tensor, classes: tuple[str, ...], kind: str, world_size: int = 1
) -> list[str]:
    """Every warning a run set up on ``train_labels (N,)`` (of ``classes``; ``kind`` a ``kinds.KINDS`` name) hears
    before it trains: ``small_data_warnings``, a stale-loss gate that scores no image, one training class."""
    noun = kind_named(kind).noun
    messages = small_data_warnings(len(train_labels), config.images_per_step(), noun)
    per_process = config.images_per_step() // world_size  # the gate picks its rows in each process's share
    gated = config.score_fraction < 1 and config.candidates_per_image() > 1 and method_named(config.method).gates
    if gated and round(config.score_fraction * per_process) == 0:
        where = f"{per_process} {noun} per step" + (" per process" if world_size > 1 else "")
        messages.append(
            f"--score-fraction {config.score_fraction} scores no image at {where} (round({config.score_fraction} x "
            f"{per_process}) = 0): this run is the baseline, one random candidate per image; use --score-fraction "
            f"{1 / per_process:.3g} or more to score at least one"
        )
    present = train_labels.unique()
    if len(present) == 1:
        label = int(present[0])
        name = classes[label] if label < len(classes) else str(label)
        messages.append(
            f"the training data hold one class only ({name!r}): every prediction is {name!r}, so the error is 0% by "
            "construction and means nothing; give the data at least two classes"
        )
    return messages


def suggested_batch_size(num_train: int) -> int:
    """A batch size for ``num_train`` examples: the largest power of two up to 128 giving at least
    ``MIN_STEPS_PER_EPOCH`` steps and dropping at most ``DROPPED_FRACTION_WARNING`` of the data, else the largest
    power of two giving ``MIN_STEPS_PER_EPOCH`` steps (at least 8)."""
    for size in (128, 64, 32, 16, 8):
        steps = num_train // size
        if steps >= MIN_STEPS_PER_EPOCH and num_train - steps * size <= DROPPED_FRACTION_WARNING * num_train:
            return size
    size = 8  # smaller batches make BatchNorm's statistics noisy
    while size * 2 * MIN_STEPS_PER_EPOCH <= num_train:
        size *= 2
    return size


def format_duration(seconds: float) -> str:
    """``42 s``, ``7.5 min`` or ``3.2 h``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class EtaNote(Callback):
    """After the first epoch this process trains, one line: the training time the remaining epochs should take at
    that epoch's pace (``record["seconds"]``: the run's own time, evaluation and, in ``lossaug demo``, the other
    arm's turns excluded), and the clock time they should end."""

    def __init__(self, reporter: Reporter, epochs: int):
        self.reporter, self.epochs, self.said = reporter, epochs, False

    def on_epoch(self, record: dict[str, Any]) -> None:
        if self.said:
            return
        self.said = True
        remaining = self.epochs - record["epoch"]
        if remaining <= 0:
            return
        per_epoch = record["seconds"]
        eta = remaining * per_epoch
        end = time.strftime("%H:%M", time.localtime(time.time() + eta))
        plural = "" if remaining == 1 else "s"
        hint = "; too slow? see the README's recipe for small data" if eta > SLOW_ETA_SECONDS else ""
        self.reporter.log(
            f"ETA: about {format_duration(eta)} of training for the remaining {remaining} epoch{plural} at "
            f"{format_duration(per_epoch)} each (done near {end}){hint}"
        )
