"""Plots drawn from per-epoch metric records only (the dicts written to ``metrics.jsonl``).

A plot written beside a run's numbers (``plot_curves``, ``plot_forest``) is skipped with a warning where matplotlib
is missing, as on a bare GPU machine: the numbers matter more. ``plot_report``, whose only product is the plot, and
``_pyplot``'s other callers raise ``MatplotlibMissing``, one line in the CLI.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lossaug.errors import InputError
from lossaug.run.runfiles import NONE, NUMBER, read_records


class MatplotlibMissing(InputError, ImportError):
    """matplotlib cannot be imported. An ``ImportError`` (callers that tolerate it catch that) and an
    ``InputError`` (the CLI prints one line)."""


FIGURE_FORMATS = (".png", ".pdf", ".svg")  # what matplotlib's Agg, PDF and SVG backends always write
ENTROPY_AXIS = (0.0, 1.05)  # report's relative-entropy panel: its range [0, 1] and room for a line at 1
# What lossaug report reads from every metrics.jsonl record (chosen_score_ratio is None where nothing was scored).
REPORT_FIELDS = {
    "test_error": NUMBER,
    "elapsed_seconds": NUMBER,
    "entropy": NUMBER,
    "uniform_entropy": NUMBER,
    "chosen_score_ratio": (*NUMBER, NONE),
}


def figure_path(out: Path, default_name: str) -> Path:
    """Where a figure asked for as ``--out out`` goes: ``out`` itself, or ``out/default_name`` when ``out`` is an
    existing folder. A format matplotlib may not write (``x.txt``) is an ``InputError`` before any work."""
    out = Path(out)
    if out.is_dir():
        out = out / default_name
    if out.suffix.lower() not in FIGURE_FORMATS:
        raise InputError(
            f"--out {out}: unsupported figure format {out.suffix or '(none)'!r}; give a "
            f"{', '.join(FIGURE_FORMATS)} file or an existing folder"
        )
    return out


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; never needs a display
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise MatplotlibMissing(f"plots need matplotlib, which cannot be imported here: {error}") from None
    return plt


def _pyplot_or_skip(path: Path):
    """pyplot, or None (with a warning naming ``path``) where matplotlib is missing."""
    try:
        return _pyplot()
    except MatplotlibMissing as error:
        warnings.warn(f"{Path(path).name} not written: {error}", stacklevel=3)
        return None


def _save(plt, fig, path: Path, title: str) -> Path:
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100, bbox_inches="tight")  # long labels are kept, not clipped
    except OSError as error:  # a write's error (a full disk) carries no file name: give it one
        raise OSError(error.errno, f"could not write {path}: {error.strerror or error}") from error
    finally:
        plt.close(fig)
    return path


def plot_curves(runs: Mapping[str, Sequence[dict]], path: Path, title: str = "") -> Path | None:
    """Write a PNG with test error against epoch and against wall-clock seconds, and training loss against epoch,
    one line per run in ``runs`` (label -> per-epoch records); a run with a validation split also gets its
    validation error against epoch, dashed. None, with a warning, without matplotlib."""
    plt = _pyplot_or_skip(path)
    if plt is None:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for label, records in runs.items():
        epochs = [r["epoch"] for r in records]
        clock = [r["elapsed_seconds"] for r in records]
        errors = [100 * r["test_error"] if not math.isnan(r["test_error"]) else math.nan for r in records]
        (line,) = axes[0].plot(epochs, errors, marker=".", label=label)
        if any("val_error" in r for r in records):  # --val-fraction: dashed, in the run's colour
            val = [100 * r.get("val_error", math.nan) for r in records]
            axes[0].plot(epochs, val, linestyle="--", marker=".", color=line.get_color(), label=f"{label} validation")
        axes[1].plot(clock, errors, marker=".", label=label)
        axes[2].plot(epochs, [r["train_loss"] for r in records], marker=".", label=label)
    for ax, xlabel, ylabel in zip(
        axes,
        ("epoch", "training wall-clock (s)", "epoch"),
        ("test error (%) (validation dashed)", "test error (%)", "training loss (chosen inputs)"),
        strict=True,
    ):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(plt, fig, Path(path), title)


def plot_report(runs: Mapping[str, Sequence[dict]], path: Path, title: str = "") -> Path:
    """Write a 2x2 PNG: test error against epoch and against training wall-clock, and the selection telemetry
    (entropy of the selection probabilities relative to uniform, chosen score ÷ mean score) against epoch."""
    plt = _pyplot()
    gated = any(r.get("stale_loss_scored") is not None for records in runs.values() for r in records)
    fig, axes = plt.subplots(3 if gated else 2, 2, figsize=(12, 12 if gated else 8))
    for label, records in runs.items():
        epochs = [r["epoch"] for r in records]
        evaluated = [r for r in records if not math.isnan(r["test_error"])]
        (line,) = axes[0, 0].plot(
            [r["epoch"] for r in evaluated], [100 * r["test_error"] for r in evaluated], marker=".", label=label
        )
        axes[0, 1].plot(
            [r["elapsed_seconds"] for r in evaluated],
            [100 * r["test_error"] for r in evaluated],
            marker=".",
            color=line.get_color(),
            label=label,
        )
        relative = [r["entropy"] / r["uniform_entropy"] if r["uniform_entropy"] > 0 else math.nan for r in records]
        axes[1, 0].plot(epochs, relative, color=line.get_color(), label=label)
        ratio = [r["chosen_score_ratio"] if r["chosen_score_ratio"] is not None else math.nan for r in records]
        axes[1, 1].plot(epochs, ratio, color=line.get_color(), label=label)
        if gated:
            _plot_gating(axes[2], epochs, records, line.get_color(), label)
    labels: tuple[tuple[Any, str, str], ...] = (
        (axes[0, 0], "epoch", "test error (%)"),
        (axes[0, 1], "training wall-clock (s)", "test error (%)"),
        (axes[1, 0], "epoch", "entropy of selection probs ÷ log M\n(1 = uniform; axis fixed to [0, 1])"),
        (axes[1, 1], "epoch", "chosen score ÷ mean candidate score"),
    )
    if gated:
        labels += (
            (axes[2, 0], "epoch", "fraction of images scored (selected)"),
            (axes[2, 1], "epoch", "mean last training loss: scored (solid), not (dashed)"),
        )
    for ax, xlabel, ylabel in labels:
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    # Entropy ÷ log M lies in [0, 1]: a fixed axis keeps a flat 0.999 from being autoscaled into noise.
    axes[1, 0].set_ylim(*ENTROPY_AXIS)
    axes[0, 0].legend(fontsize="small")
    return _save(plt, fig, Path(path), title)


def _plot_gating(axes, epochs: list[int], records: Sequence[dict], color: str, label: str) -> None:
    """Stale-loss gating's telemetry: the fraction of images scored, and the stale losses that decided it."""

    def values(key: str) -> list[float]:
        return [math.nan if r.get(key) is None else r[key] for r in records]

    axes[0].plot(epochs, values("selected_fraction"), color=color, label=label)
    axes[1].plot(epochs, values("stale_loss_scored"), color=color, label=label)
    axes[1].plot(epochs, values("stale_loss_unscored"), color=color, linestyle="--")


def plot_forest(rows: Sequence[tuple[str, float, float]], path: Path, margin: float, title: str = "") -> Path | None:
    """Write a forest plot PNG: one row per ``(label, mean, half_width)``, the mean paired difference in test error
    (percentage points, negative = better) with its 95% interval, a solid line at 0 and dashed lines at ±``margin``
    (points). A NaN half-width (one seed) draws the mean alone. None, with a warning, without matplotlib."""
    plt = _pyplot_or_skip(path)
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.45 * max(1, len(rows))))
    for y, (_, mean, half) in enumerate(reversed(rows)):
        ax.errorbar(mean, y, xerr=None if math.isnan(half) else half, fmt="o", color="black", capsize=4)
    ax.set_yticks(range(len(rows)), [label for label, _, _ in reversed(rows)])
    ax.axvline(0, color="black", linewidth=1)
    for edge in (-margin, margin):
        ax.axvline(edge, color="gray", linestyle="--", linewidth=1)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel(f"paired difference in test error (points; negative = better)\n95% t-interval; dashed: ±{margin:g}")
    ax.grid(axis="x", alpha=0.3)
    return _save(plt, fig, Path(path), title)


def read_run(directory: Path) -> tuple[str, list[dict]]:
    """``(label, per-epoch records)`` of a run directory, from its ``config.json`` and ``metrics.jsonl``.

    Epochs without a test evaluation (per the run's ``eval_every``) get a NaN test error, also for runs written
    before such epochs were recorded as NaN. The label names the compare arm when the run sits in one (e.g.
    ``baseline-equal-time``), else the method (``baseline trunk`` for a trunk), and the epochs the run ran:
    ``(30 ep)``, or ``(15 of 30 ep)`` for a trunk or an interrupted run.
    """
    import json

    directory = Path(directory)
    metrics_path = directory / "metrics.jsonl"
    if not metrics_path.is_file():
        raise FileNotFoundError(f"no metrics.jsonl in run directory {directory}")
    records = read_records(metrics_path, REPORT_FIELDS)
    if not records:
        raise InputError(f"{metrics_path} holds no epoch records: nothing to report")
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"no config.json in run directory {directory}")
    try:
        config = json.loads(config_path.read_text(errors="replace"))["config"]
        every, last = max(1, int(config.get("eval_every", 1))), int(config["epochs"])
        method, setting, seed = str(config["method"]), config["setting"], config["seed"]
    except (json.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as error:
        raise InputError(f"{config_path} is not a lossaug run config: {type(error).__name__}: {error}") from None
    for record in records:
        if record["epoch"] % every and record["epoch"] != last:
            record["test_error"] = record["test_loss"] = math.nan
    arm = directory.parent.name if directory.parent.name.startswith(method) else method
    if (directory / "trunk.json").is_file():  # a trunk stops early on purpose (--branch-at)
        arm = f"{method} trunk"
    ran = max(record["epoch"] for record in records)  # a trunk or an interrupted run stops short of its plan
    epochs = f"{ran} ep" if ran == last else f"{ran} of {last} ep"
    return f"{arm} {setting} seed {seed} ({epochs})", records
