"""Class imbalance: ``epoch_order`` draws an epoch's data order, a plain permutation or class-balanced sampling
(``--balance``), from the run's data-order generator; ``imbalance_warning`` names the classes far smaller than
the largest.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["SMALL_CLASS_RATIO", "epoch_order", "imbalance_warning"]

SMALL_CLASS_RATIO = 0.1  # a class with fewer than this share of the largest class's examples is warned about


def epoch_order(labels: Tensor, balance: bool, generator: torch.Generator) -> Tensor:
    """An epoch's order of the training set, ``(N,)`` int64 on the CPU for ``labels (N,)``: ``randperm(N)`` (each
    example once), or with ``balance`` N indices drawn with replacement, each with probability
    ``1 / (K * count of its class)`` so every one of the K present classes is equally likely per draw."""
    count = len(labels)
    if not balance:
        return torch.randperm(count, generator=generator)  # exactly the unbalanced runs' order, draw for draw
    labels = labels.cpu()
    per_class = torch.bincount(labels).to(torch.float64)
    weights = 1.0 / per_class[labels]
    return torch.multinomial(weights, count, replacement=True, generator=generator)


def imbalance_warning(labels: Tensor, classes: tuple[str, ...]) -> str | None:
    """A warning naming every class of ``classes`` with fewer than ``SMALL_CLASS_RATIO`` of the largest class's
    examples in ``labels (N,)``, with the counts and the remedy; None when there is none."""
    counts = torch.bincount(labels.cpu(), minlength=len(classes)).tolist()
    largest = max(counts) if counts else 0
    small = [(name, n) for name, n in zip(classes, counts, strict=True) if n < SMALL_CLASS_RATIO * largest]
    if not small:
        return None
    listed = ", ".join(f"{name!r} ({n})" for name, n in small)
    return (
        f"class imbalance: {listed} {'has' if len(small) == 1 else 'have'} fewer than a tenth of the largest class's "
        f"{largest} training examples; consider --balance (class-balanced sampling) and read per-class errors "
        "(lossaug report --per-class)"
    )
