"""``lossaug predict``: a trained run's classes for new files (images or clips), preprocessed as its test data
(``use.inputs``). Unreadable files are listed apart; the others are still predicted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from lossaug.errors import InputError
from lossaug.use.inputs import Unreadable, describe_missing, find_files, read_inputs
from lossaug.use.run import TrainedRun

__all__ = ["Prediction", "PredictResult", "logits_of", "predict"]


@dataclass(frozen=True)
class Prediction:
    """One file's most probable classes, best first: ``top`` pairs ``(class, probability)`` (softmax of the
    logits); ``label`` and ``probability`` are the first pair's."""

    path: str
    top: tuple[tuple[str, float], ...]

    @property
    def label(self) -> str:
        return self.top[0][0]

    @property
    def probability(self) -> float:
        return self.top[0][1]

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "class": self.label,
            "probability": self.probability,
            "top": [{"class": name, "probability": p} for name, p in self.top],
        }


@dataclass(frozen=True)
class PredictResult:
    """The predictions of the readable files in order, and the unreadable files with the reason."""

    predictions: tuple[Prediction, ...]
    failed: tuple[Unreadable, ...]


def logits_of(run: TrainedRun, inputs: Tensor, batch_size: int = 256) -> Tensor:
    """``logits (N,K)`` float32 of ``inputs (N,...)`` (the run's uint8 images or int16 clips) by the run's model
    in eval mode on the CPU, in batches."""
    run.model.eval()
    with torch.inference_mode():
        parts = [run.model(inputs[start : start + batch_size]).float() for start in range(0, len(inputs), batch_size)]
    return torch.cat(parts) if parts else torch.empty((0, len(run.classes)))


def predict(run: TrainedRun, paths: Sequence[str | Path], top: int = 1) -> PredictResult:
    """Predict the class of each file in ``paths`` (folders searched for the run's kind of file) with the ``top``
    most probable classes. An empty list of files is an ``InputError``; unreadable files are returned apart."""
    if top < 1:
        raise InputError(f"top must be >= 1, got {top}")
    files = find_files(paths, run.inputs)
    if not files:
        raise InputError(describe_missing(paths, run.inputs))
    names, inputs, failed = read_inputs(((str(path), path) for path in files), run.inputs)
    probs = logits_of(run, inputs).softmax(dim=1)
    values, indices = probs.topk(min(top, len(run.classes)), dim=1)
    predictions = tuple(
        Prediction(name, tuple((run.classes[int(i)], float(p)) for p, i in zip(row_p, row_i, strict=True)))
        for name, row_p, row_i in zip(names, values, indices, strict=True)
    )
    return PredictResult(predictions, tuple(failed))
