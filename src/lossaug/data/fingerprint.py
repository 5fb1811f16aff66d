"""Fingerprints of a training set: whether a resumed run trains on the same data as its checkpoint."""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from lossaug.errors import InputError

__all__ = ["data_fingerprint", "fingerprint_differences"]

_FINGERPRINT_SAMPLE = 64  # images hashed, evenly spaced over the set


def data_fingerprint(
    images: torch.Tensor, labels: torch.Tensor, num_classes: int, notes: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A small JSON-able summary of a training set, ``images (N,C,H,W)`` and ``labels (N,)``: count, image shape
    and dtype, number of classes, a sha256 of all labels and one of 64 images evenly spaced over the set.

    Equal data give equal fingerprints on any device; a different data set, subset, order or size almost surely
    differs in one field (the sampled images cover 64 of N, so an edit of other pixels goes unseen). About 3 ms for
    50,000 CIFAR images on the CPU (hashing the labels dominates)."""
    if images.ndim < 3 or labels.ndim != 1 or len(images) != len(labels):
        raise InputError(f"expected images (N,C,H,W) and labels (N,), got {tuple(images.shape)}, {tuple(labels.shape)}")
    count = len(labels)
    sample = min(_FINGERPRINT_SAMPLE, count)
    # Integer spacing (no float rounding): the first and the last image are always in.
    index = [i * (count - 1) // (sample - 1) for i in range(sample)] if sample > 1 else list(range(sample))
    # Stacked slices: advanced indexing of a (50000,3,32,32) uint8 tensor took 20 ms here, this 0.1 ms.
    picked = torch.stack([images[i] for i in index]).cpu() if index else images[:0].cpu()
    split = (notes or {}).get("split")
    return {
        **({"split": split} if split is not None else {}),
        "count": count,
        "shape": list(images.shape[1:]),
        "dtype": str(images.dtype).removeprefix("torch."),
        "num_classes": int(num_classes),
        "labels_sha256": hashlib.sha256(labels.to(torch.int64).cpu().contiguous().numpy().tobytes()).hexdigest(),
        "images_sha256": hashlib.sha256(picked.numpy().tobytes()).hexdigest(),
        "images_sampled": sample,
    }


def fingerprint_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``"field: saved -> current"`` for each field of two ``data_fingerprint`` results that differs."""
    keys = sorted(set(saved) | set(current))
    return [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in keys if saved.get(k) != current.get(k)]
