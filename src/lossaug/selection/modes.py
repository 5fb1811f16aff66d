"""The cheap selection modes' pure parts: stale-loss gating picks the rows to score (``gate_rows``), the weighted
mode's loss weights every candidate by its share of the loss (``CandidateWeights``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lossaug.errors import InputError
from lossaug.selection.probs import _probs_and_fallback

SAMPLE = "sample"  # sample one candidate per image (the method)
WEIGHTED = "weighted"  # train on all M candidates of each image, weighted by loss
MODES = (SAMPLE, WEIGHTED)


def gate_rows(stale_losses: Tensor, count: int, order: Tensor | None = None) -> Tensor:
    """``rows (count,)`` in ascending order: the ``count`` rows of ``stale_losses (B,)`` with the highest stale
    loss (NaN counts as unseen, like +inf), ties broken by the smaller ``order (B,)`` (the dataset index; None:
    the row). ``count >= B`` gives every row."""
    batch = stale_losses.shape[0]
    if count >= batch:
        return torch.arange(batch, device=stale_losses.device)
    key = torch.arange(batch, device=stale_losses.device) if order is None else order
    by_key = torch.argsort(key, stable=True)
    losses = torch.nan_to_num(stale_losses[by_key].float(), nan=math.inf)
    by_loss = torch.argsort(losses, descending=True, stable=True)  # stable: equal losses stay in key order
    return by_key[by_loss[: max(count, 0)]].sort().values


@dataclass(frozen=True)
class CandidateWeights:
    """The weighted mode's loss: train on all M candidates of each image at once, each candidate's loss weighted
    by ``p (B,M)`` proportional to ``loss ** (1 / temperature)`` (the method's rule, with its uniform fallback
    and ``uniform_mix``), computed from the same forward pass and detached. Its gradient is the expectation of
    the sampled method's gradient for those probabilities, without the sampling noise or a scoring pass."""

    num_candidates: int
    temperature: float = 1.0
    uniform_mix: float = 0.0

    def probs(self, logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(probs (B,M), fallback (B,), scores (B,M))`` of ``logits (B*M,K)`` for ``targets (B*M,)`` (or the
        candidates' soft ``(B*M,K)``), no gradient; scores are the plain cross-entropy of the true class (the
        soft-target cross-entropy), as the sampled method scores."""
        with torch.no_grad():
            scores = F.cross_entropy(logits.detach().float(), targets, reduction="none").view(-1, self.num_candidates)
            probs, fallback = _probs_and_fallback(scores, self.temperature, self.uniform_mix, check_negative=False)
        return probs, fallback, scores

    def loss(self, logits: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> Tensor:
        """``sum_m p_m * loss_m`` per image, averaged over the ``B`` images of ``logits (B*M,K)``."""
        per_input = F.cross_entropy(logits.float(), targets, label_smoothing=label_smoothing, reduction="none")
        probs = self.probs(logits, targets)[0]
        return (probs * per_input.view(-1, self.num_candidates)).sum(dim=1).mean()


def check_score_fraction(value: float) -> None:
    """``score_fraction`` must be a number in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise InputError(f"score_fraction must be in (0, 1] (the fraction of each batch scored), got {value!r}")
