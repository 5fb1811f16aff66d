"""Checkpoint files: atomic saves, safe loads, and finding the newest valid checkpoint of a run directory.

A run keeps two files: ``checkpoint.pt`` (newest) and ``checkpoint.prev.pt`` (the one before). A save writes
``checkpoint.pt.tmp``, flushes and fsyncs it, moves the current newest to ``.prev``, then renames the temporary
file into place, so at every instant at least one complete checkpoint exists. Loads use
``torch.load(weights_only=True)``: a checkpoint carrying arbitrary pickled objects is refused and never runs.
"""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

NEWEST = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"
FORMAT = 1  # bump when the payload layout changes


class CheckpointError(ValueError):
    """No usable checkpoint, or one that cannot be resumed with the given configuration."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some filesystems do not allow opening directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(payload: dict[str, Any], run_dir: Path) -> Path:
    """Write ``payload`` as the run's newest checkpoint; the previous newest becomes ``checkpoint.prev.pt``.

    Any error (a full disk included) leaves the existing checkpoints untouched and names the path.
    """
    newest, tmp = run_dir / NEWEST, run_dir / (NEWEST + ".tmp")
    try:
        with open(tmp, "wb") as handle:
            torch.save({**payload, "format": FORMAT}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        if newest.exists():
            os.replace(newest, run_dir / PREVIOUS)
        os.replace(tmp, newest)
        _fsync_dir(run_dir)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise OSError(error.errno, f"could not save checkpoint {newest}: {error.strerror or error}") from error
    return newest


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load one checkpoint with ``weights_only=True``; raises CheckpointError saying why it is unusable."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError) as error:
        text = str(error).strip()
        if "Weights only load failed" in text:  # torch's own advice (load with weights_only=False) is wrong here
            reason = "it holds pickled objects other than tensors and plain data, which are never loaded"
        else:
            reason = text.splitlines()[0] if text else type(error).__name__
        raise CheckpointError(f"checkpoint {path} is unreadable or unsafe: {reason}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a lossaug checkpoint of format {FORMAT}")
    return payload


def has_checkpoint(run_dir: Path) -> bool:
    return (run_dir / NEWEST).exists() or (run_dir / PREVIOUS).exists()


def newest_valid_checkpoint(run_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The newest checkpoint of ``run_dir`` that loads; unusable ones are skipped with a warning naming them."""
    candidates = [run_dir / name for name in (NEWEST, PREVIOUS) if (run_dir / name).exists()]
    if not candidates:
        raise CheckpointError(f"no checkpoint in {run_dir} (looked for {NEWEST} and {PREVIOUS})")
    loaded = []
    for path in candidates:
        try:
            loaded.append((path, load_checkpoint(path)))
        except CheckpointError as error:
            warnings.warn(f"skipping {error}", stacklevel=2)
    if not loaded:
        raise CheckpointError(f"no valid checkpoint in {run_dir}: {', '.join(str(p) for p in candidates)} unusable")
    # Normally checkpoint.pt is the newer one, but after a crash between the two renames only .prev may exist.
    return max(loaded, key=lambda item: item[1]["global_step"])
