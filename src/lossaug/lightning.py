"""Lightning integration: ``Trainer(callbacks=[LossAwareSelection(la)])`` trains on loss-aware selected inputs.

After Lightning has moved a training batch to the device, the callback makes M candidates of the batch's inputs,
scores them with the LightningModule (its ``forward``, without gradient, model state untouched), and replaces the
inputs in the batch with the chosen candidates before ``training_step`` sees them. Validation, test and predict
batches are left alone.

Lightning (2.x, the ``lightning`` package) is optional: ``import lossaug`` never imports it; importing this module
without it raises an ImportError saying what to install.
"""

from __future__ import annotations

from typing import Any

import torch

try:
    import lightning.pytorch as pl
except ImportError as error:
    raise ImportError(
        "lossaug.lightning needs Lightning 2.x (the 'lightning' package): pip install lightning"
    ) from error

from lossaug.errors import InputError
from lossaug.seeds import stream_seed
from lossaug.selection import LossAwareAugment, Selection, probs_entropy
from lossaug.selection.modes import SAMPLE

__all__ = ["LossAwareSelection"]


class LossAwareSelection(pl.Callback):
    """Replace ``batch[input_key]`` of every training batch with loss-aware selected candidates.

    ``augment`` is a ``LossAwareAugment`` (or a spec such as ``"flip,crop"`` for one with its defaults, M=4). The
    batch must be a list or dict (``default_collate`` gives a list for ``(input, target)`` items) holding the
    inputs ``(B,...)`` at ``input_key`` and the targets ``(B,...)`` at ``target_key``.

    Randomness: the draws for a batch come from a generator on the batch's device seeded with a hash of
    ``(seed, global_rank, current_epoch, batch_idx)``, so ranks draw differently, a run is reproducible, and a
    resumed run draws what the uninterrupted one would have (no state to checkpoint). Each step logs the mean
    selection entropy in nats (``selection_entropy``; ``log(M)`` is uniform) through ``pl_module.log``.
    ``steps`` counts selections made and ``last_selection`` holds the most recent ``Selection``.

    With a label-mixing augmentation (``LossAwareAugment("flip,crop,mixup:0.2", num_classes=K)``) the batch's
    targets are replaced too, by the chosen candidates' soft targets ``(B,K)``: ``training_step`` must then use a
    loss that takes class probabilities, as ``F.cross_entropy`` does.
    """

    def __init__(
        self, augment: LossAwareAugment | str, *, seed: int = 0, input_key: Any = 0, target_key: Any = 1
    ) -> None:
        super().__init__()
        if isinstance(augment, str):
            augment = LossAwareAugment(augment)
        if not isinstance(augment, LossAwareAugment):
            raise InputError(f"augment must be a LossAwareAugment or a spec string, got {type(augment).__name__}")
        if augment.score_fraction != 1.0 or augment.mode != SAMPLE:
            # Gating needs each image's last training loss by dataset index, and the weighted mode replaces the
            # training loss: both belong to the training step, which a callback that only swaps inputs cannot see.
            raise InputError(
                "LossAwareSelection supports the sampling mode with score_fraction=1 only; stale-loss gating and "
                "the weighted mode need the training step (use lossaug train, or call LossAwareAugment in your own "
                "training_step)"
            )
        self.augment = augment
        self.seed = seed
        self.input_key = input_key
        self.target_key = target_key
        self.steps = 0
        self.last_selection: Selection | None = None
        self._generator: torch.Generator | None = None

    def _seeded_generator(self, device: torch.device, rank: int, epoch: int, batch_idx: int) -> torch.Generator:
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
        return self._generator.manual_seed(stream_seed(self.seed, f"lightning:rank{rank}:epoch{epoch}:{batch_idx}"))

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if isinstance(batch, tuple) or not hasattr(batch, "__setitem__"):
            raise InputError(
                f"LossAwareSelection replaces the inputs inside the batch, so the batch must be a list or dict; got "
                f"a {type(batch).__name__} (return a list from your collate_fn)"
            )
        try:
            images, targets = batch[self.input_key], batch[self.target_key]
        except (KeyError, IndexError):
            raise InputError(f"batch has no input_key {self.input_key!r} or target_key {self.target_key!r}") from None
        generator = self._seeded_generator(images.device, trainer.global_rank, trainer.current_epoch, batch_idx)
        selection = self.augment(pl_module, images, targets, generator=generator)
        batch[self.input_key] = selection.inputs
        if selection.targets is not None:  # mixup/cutmix: the chosen candidates' soft targets (B,K)
            batch[self.target_key] = selection.targets
        self.steps += 1
        self.last_selection = selection
        pl_module.log(
            "selection_entropy",
            probs_entropy(selection.probs).mean(),
            on_step=True,
            on_epoch=True,
            batch_size=len(targets),
        )
