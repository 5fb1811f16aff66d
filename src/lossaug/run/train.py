"""The training application: ``train(TrainConfig) -> RunResult``.

``train`` is a plain loop over a run's public epoch API (``epochs``): ``open_run`` sets the run up (locking
its directory), each ``run.epoch()`` trains one epoch and says why the run stops, if it does, and ``run.finish()``
returns the result. The step, which reads as the method, is ``Run.steps``; everything else is a named part beside
it: ``config`` (what defines a run), ``method`` (config -> augmentation, method object, schedule, SGD),
``pipeline`` (device, data, batches, evaluation), ``step`` (the guarded update), ``state`` (position, random
streams, epoch statistics), ``parts`` (a run's parts wired, checkpointed and restored), ``distributed``,
``telemetry`` (metrics record and callbacks), ``interrupts`` (signals, stop reasons), ``metadata`` (config.json).

When ``out`` is set the run directory gets ``config.json``, ``metrics.jsonl`` (one line per epoch),
``final.json``, ``checkpoint.pt`` and ``curves.png``.
"""

from __future__ import annotations

from collections.abc import Callable

from lossaug.progress import Reporter
from lossaug.run.config import DEVICES, METHODS, PRESETS, SETTINGS, RunResult, TrainConfig, validate_config
from lossaug.run.epochs import Run, open_run
from lossaug.run.interrupts import NonFiniteError, Stop, TrainingInterrupted, stop_requests
from lossaug.run.metadata import device_name, git_commit
from lossaug.run.method import build_augment, cosine_lr, reapply_hyperparameters, selects_at
from lossaug.run.origin import config_differences
from lossaug.run.pipeline import balanced_subset, channel_stats, evaluate, make_generator, resolve_device
from lossaug.run.step import train_step, training_loss
from lossaug.seeds import stream_seed
from lossaug.selection import Selection

__all__ = [
    "DEVICES",
    "METHODS",
    "PRESETS",
    "SETTINGS",
    "NonFiniteError",
    "Run",
    "RunResult",
    "Stop",
    "TrainConfig",
    "TrainingInterrupted",
    "balanced_subset",
    "build_augment",
    "channel_stats",
    "config_differences",
    "cosine_lr",
    "device_name",
    "evaluate",
    "git_commit",
    "make_generator",
    "open_run",
    "reapply_hyperparameters",
    "resolve_device",
    "selects_at",
    "stream_seed",
    "train",
    "train_step",
    "training_loss",
    "validate_config",
]


def train(
    config: TrainConfig,
    *,
    reporter: Reporter | None = None,
    on_step: Callable[[int, Selection], None] | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> RunResult:
    """Train ``config.model`` with ``config.method`` and return the final errors, timings and per-epoch metrics.

    Writes files only when ``config.out`` is set. ``reporter`` receives progress (see ``progress.py``);
    ``on_step(global_step, selection)`` is called after every step. ``resume=True`` continues from the newest
    valid checkpoint in ``config.out``: on the CPU the result equals the uninterrupted run's bit for bit.
    SIGTERM/SIGINT stop after the current step with a checkpoint and raise ``TrainingInterrupted``.
    The run directory is locked for the run's life; one holding another run is refused unless ``resume`` or
    ``overwrite`` (which removes only the run's own files) is given.
    """
    with open_run(config, reporter=reporter, on_step=on_step, resume=resume, overwrite=overwrite) as run:
        with stop_requests(run.signal):  # a signal stops the run after its current step, with a checkpoint
            for _epoch in range(run.epochs_left):
                stop = run.epoch()
                if stop is Stop.SIGNAL:
                    raise run.interrupted()
                if stop is not Stop.NONE:  # a trunk's end, or early stopping
                    break
        return run.finish()
