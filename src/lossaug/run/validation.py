"""The validation split and what a run chooses on it; the test set is never used to choose.

``split_validation`` holds a share of each class's training examples out (stratified, seeded by the split seed,
as ``data.split`` holds test files out). ``Validation`` measures the validation error after every epoch, picks the
best epoch's checkpoint to keep as ``best.pt`` (``--keep best``) and says when ``--patience`` epochs went by without a
better one (early stopping). Its choices read only the epoch records, so a resumed run chooses as the
uninterrupted one would. ``kept_checkpoint`` is what ``predict``, ``evaluate`` and ``export`` load from a run
directory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import Tensor, nn

from lossaug.data.split import held_out_rows
from lossaug.errors import InputError
from lossaug.run.checkpoint import BEST

if TYPE_CHECKING:  # config imports this module's checks
    from lossaug.run.config import TrainConfig

__all__ = ["BEST", "Measured", "Validation", "ValidationSplit", "kept_checkpoint", "split_validation"]


@dataclass(frozen=True)
class ValidationSplit:
    """Rows of a training set: ``train_rows (N_train,)`` and ``val_rows (N_val,)``, each sorted; ``record`` is what
    config.json keeps of the split (fraction, seed, counts per class)."""

    train_rows: Tensor
    val_rows: Tensor
    record: dict[str, Any]

    def summary(self) -> str:
        """One line: the fraction, the seed and the counts per class, train / validation."""
        train, val = self.record["train_counts"], self.record["val_counts"]
        counts = ", ".join(f"{name} {train[name]}/{val[name]}" for name in train)
        return (
            f"validation: {self.record['val_fraction']:g} of each class's training examples held out (split seed "
            f"{self.record['seed']}); train/validation per class: {counts}"
        )


def split_validation(labels: Tensor, classes: Sequence[str], fraction: float, seed: int) -> ValidationSplit:
    """Hold ``fraction`` of each class's rows of ``labels (N,)`` out for validation: per class, a permutation
    seeded by ``seed`` and the class name (``classes[i]`` names label i) picks ``round(fraction * n)`` rows, at
    least 1 and leaving at least 1. A class with fewer than 2 examples is an ``InputError`` naming it."""
    labels = labels.cpu()
    train_parts, val_parts = [], []
    train_counts, val_counts = {}, {}
    for index, name in enumerate(classes):
        rows = (labels == index).nonzero().flatten()
        if len(rows) < 2:
            raise InputError(
                f"val_fraction: class {name!r} has {len(rows)} training example(s); a validation split needs 2 or more"
            )
        # Salted with "val" so that a folder's test split and this one draw different permutations.
        held = torch.zeros(len(rows), dtype=torch.bool)
        held[held_out_rows(len(rows), fraction, seed, f"val\0{name}")] = True
        train_parts.append(rows[~held])
        val_parts.append(rows[held])
        train_counts[name], val_counts[name] = int((~held).sum()), int(held.sum())
    record = {"val_fraction": float(fraction), "seed": seed, "train_counts": train_counts, "val_counts": val_counts}
    return ValidationSplit(torch.cat(train_parts).sort().values, torch.cat(val_parts).sort().values, record)


def check_validation_options(config: TrainConfig) -> None:
    """--val-fraction in (0, 1); --keep best and --patience need it (and a run directory, for best.pt)."""
    fraction = config.val_fraction
    if fraction is not None and (isinstance(fraction, bool) or not 0 < fraction < 1):
        raise InputError(f"val_fraction must be in (0, 1) or None, got {fraction!r}")
    if config.patience is not None and config.patience < 1:
        raise InputError(f"patience must be >= 1, got {config.patience}")
    for option, given in (("keep best", config.keep == "best"), ("patience", config.patience is not None)):
        if given and fraction is None:
            raise InputError(f"{option} chooses on validation error: give --val-fraction F too (e.g. 0.1)")
    if config.keep == "best" and config.out is None:
        raise InputError("keep best needs out, the run directory to keep best.pt in")
    if config.patience is not None and config.stop_at is not None:
        raise InputError("patience and stop_at exclude each other: a trunk runs to its stop")


class Measured(NamedTuple):
    """One epoch's validation: ``record`` (``val_error``, ``val_loss``; empty without a split) and ``stop``
    (patience ran out with this epoch)."""

    record: dict[str, float]
    stop: bool


@dataclass
class Validation:
    """A run's validation part: ``images``/``labels`` the held-out examples (None: no split), ``patience`` in
    epochs (None: never stop early), ``keep`` "best": keep each better epoch's checkpoint as ``best.pt`` (``keeps``)."""

    images: Tensor | None
    labels: Tensor | None
    device: torch.device
    patience: int | None = None
    keep: str = "last"
    epochs: int | None = None  # the run's planned epochs: patience running out at the last is no early stop
    stopped_early: bool = False  # set by ``measure`` when patience ran out before the last epoch

    @classmethod
    def for_run(cls, config: TrainConfig, images: Tensor | None, labels: Tensor | None, device: torch.device):
        """The validation part of a run of ``config`` over held-out ``images`` and ``labels`` (None: no split)."""
        return cls(images, labels, device, config.patience, config.keep, config.epochs)

    def measure(self, model: nn.Module, metrics: Sequence[dict[str, Any]]) -> Measured:
        """The validation error and loss of ``model`` now; ``stop`` when, counting this epoch, the best validation
        error is ``patience`` or more epochs old (``metrics``: the earlier epochs' records)."""
        if self.images is None or self.labels is None:
            return Measured({}, False)
        from lossaug.run.pipeline import evaluate  # pipeline imports config, which imports this module's checks

        error, loss = evaluate(model, self.images, self.labels, self.device)
        errors = [*(m["val_error"] for m in metrics if "val_error" in m), error]
        waited = len(errors) - 1 - _best_index(errors)
        last = self.epochs is not None and len(errors) >= self.epochs
        self.stopped_early = self.patience is not None and waited >= self.patience and not last
        return Measured({"val_error": error, "val_loss": loss}, self.stopped_early)

    def keeps(self, metrics: Sequence[dict[str, Any]]) -> bool:
        """Whether the checkpoint of the last of ``metrics`` is kept as ``best.pt`` (``CheckpointSaver.save``):
        with ``keep`` "best", when that epoch has the best validation error so far (the first of equals)."""
        if self.keep != "best":
            return False
        errors = [m.get("val_error", math.inf) for m in metrics]
        return _best_index(errors) == len(errors) - 1

    def summary(self, metrics: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """What final.json records: why the run stopped and, with a split, its best validation epoch."""
        stopped_early = self.stopped_early
        summary: dict[str, Any] = {"stop_reason": "patience" if stopped_early else "epochs"}
        errors = [m.get("val_error", math.inf) for m in metrics]
        if self.images is not None and errors:
            best = _best_index(errors)
            summary["best_val"] = {"epoch": metrics[best]["epoch"], "val_error": errors[best]}
            if stopped_early:
                epochs = "epoch" if self.patience == 1 else "epochs"
                summary["stop_detail"] = (
                    f"no better validation error in {self.patience} {epochs} after epoch {metrics[best]['epoch']}"
                )
        return summary


def _best_index(errors: Sequence[float]) -> int:
    """The index of the lowest error, the first of equals (an epoch must improve to count as better)."""
    return min(range(len(errors)), key=lambda i: (errors[i], i))


def kept_checkpoint(path: Path) -> Path:
    """The checkpoint that using a run loads: ``best.pt`` when a run directory has one (``--keep best``), else
    ``path`` itself (a checkpoint file, or a directory whose newest checkpoint is read)."""
    return path / BEST if path.is_dir() and (path / BEST).is_file() else path
