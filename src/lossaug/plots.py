"""Plots drawn from per-epoch metric records only (the dicts written to ``metrics.jsonl``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def plot_curves(runs: Mapping[str, Sequence[dict]], path: Path, title: str = "") -> Path:
    """Write a PNG with test error against epoch and against wall-clock seconds, and training loss against epoch,
    one line per run in ``runs`` (label -> per-epoch records)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for label, records in runs.items():
        epochs = [r["epoch"] for r in records]
        clock = [r["elapsed_seconds"] for r in records]
        errors = [100 * r["test_error"] if not math.isnan(r["test_error"]) else math.nan for r in records]
        axes[0].plot(epochs, errors, marker=".", label=label)
        axes[1].plot(clock, errors, marker=".", label=label)
        axes[2].plot(epochs, [r["train_loss"] for r in records], marker=".", label=label)
    for ax, xlabel, ylabel in zip(
        axes,
        ("epoch", "training wall-clock (s)", "epoch"),
        ("test error (%)", "test error (%)", "training loss (chosen inputs)"),
        strict=True,
    ):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
