"""Scores to probabilities and a draw: ``selection_probs`` (``probs (B,M)`` proportional to
``scores ** (1 / temperature)``, uniform fallback for all-zero or non-finite rows), ``probs_entropy`` and
``sample_index`` (inverse CDF, no host sync)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lossaug.errors import InputError


def _probs_and_fallback(
    scores: Tensor, temperature: float, uniform_mix: float, check_negative: bool = True
) -> tuple[Tensor, Tensor]:
    """``probs (B,M)`` and ``fallback (B,)`` bool: rows that were all zero or non-finite and became uniform.
    ``check_negative=False`` skips the (host-syncing) check where scores cannot be negative."""
    if scores.dim() != 2:
        raise InputError(f"scores must be (B,M), got shape {tuple(scores.shape)}")
    if math.isnan(temperature) or temperature < 0:
        raise InputError(f"temperature must be >= 0 (0: argmax, inf: uniform), got {temperature}")
    if not 0.0 <= uniform_mix <= 1.0:
        raise InputError(f"uniform_mix must be in [0, 1], got {uniform_mix}")
    scores = scores.float()
    negative = (scores < 0).any(dim=1) if check_negative else None
    if negative is not None and bool(negative.any()):
        row = int(negative.nonzero()[0, 0])
        raise InputError(f"scores must be >= 0; row {row} has {scores[row].tolist()}")
    num_candidates = scores.shape[1]
    uniform = torch.full_like(scores, 1.0 / max(num_candidates, 1))
    fallback = ~torch.isfinite(scores).all(dim=1) | (scores == 0).all(dim=1)
    if math.isinf(temperature):
        probs = uniform
    elif temperature == 0:
        is_max = scores == scores.max(dim=1, keepdim=True).values
        probs = is_max / is_max.sum(dim=1, keepdim=True)
    else:
        # In log space, so that small temperatures (large powers) neither overflow nor underflow.
        probs = torch.softmax(torch.log(scores) / temperature, dim=1)
    probs = torch.where(fallback.unsqueeze(1), uniform, probs)
    if uniform_mix > 0:
        probs = (1 - uniform_mix) * probs + uniform_mix * uniform
    return probs, fallback


def selection_probs(scores: Tensor, temperature: float = 1.0, uniform_mix: float = 0.0) -> Tensor:
    """``probs (B,M)`` with rows summing to 1, proportional to ``scores ** (1 / temperature)``.

    ``temperature=1`` is the method (probability proportional to loss); ``0`` puts all mass on the largest score
    (MaxUp; tied maxima share it); ``math.inf`` is uniform (the baseline). ``uniform_mix`` blends in
    ``uniform_mix / M`` of uniform. Rows that are all zero or hold NaN/inf become uniform; negative scores are a
    ValueError.
    """
    return _probs_and_fallback(scores, temperature, uniform_mix)[0]


def probs_entropy(probs: Tensor) -> Tensor:
    """``(B,)`` entropy in nats of each row of ``probs (B,M)`` (0 log 0 = 0); ``log M`` is uniform."""
    return -(probs * torch.log(probs.clamp_min(1e-30))).sum(dim=1)


def sample_index(probs: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """``index (B,)`` int64: one draw per row of ``probs (B,M)`` by inverse CDF (no host sync)."""
    cdf = probs.cumsum(dim=1)
    # u scaled by each row's total, so float rounding in the cumsum can never pick a zero-probability tail.
    u = torch.rand(probs.shape[0], 1, device=probs.device, generator=generator) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_max(probs.shape[1] - 1)
