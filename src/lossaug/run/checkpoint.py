"""Checkpoint files: atomic saves, safe loads, and finding the newest valid checkpoint of a run directory.

A run keeps two files: ``checkpoint.pt`` (newest) and ``checkpoint.prev.pt`` (the one before). A save writes
``checkpoint.pt.tmp``, flushes and fsyncs it, moves the current newest to ``.prev``, then renames the temporary
file into place, so at every instant at least one complete checkpoint exists. Rotation only ever moves a
checkpoint that loads into ``.prev``: a ``checkpoint.pt`` that does not load (cut short, corrupt, or lacking the
keys a resume needs) is renamed aside to ``checkpoint.pt.corrupt-<time>`` and kept for inspection, so a bad file
never replaces the good backup. Loads use ``torch.load(weights_only=True)``: a checkpoint carrying arbitrary
pickled objects is refused and never runs.

``RunCheckpoint`` is what a checkpoint holds, as typed fields: ``to_dict`` gives the file's keys (the only place
they are written) and ``from_dict`` reads them back, checking the keys a reader needs (``RESUME_KEYS`` to resume,
fewer to view or reuse the weights). ``CheckpointSaver`` is a run's save policy: when a checkpoint is due and which
files it writes (``checkpoint.pt``, its backup, ``best.pt``), behind one ``save`` call.
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lossaug.errors import InputError

NEWEST = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"
BEST = "best.pt"  # the best-validation epoch's checkpoint in a run directory (--keep best)
FORMAT = 1  # bump when the payload layout changes
# What ``train(..., resume=True)`` reads from a checkpoint; one without them cannot be resumed.
RESUME_KEYS = ("model", "optimizer", "scheduler", "random", "position", "global_step", "num_classes", "config")

# Checkpoint files this process wrote or loaded, by (device, inode, size, mtime): whether each loads. A save
# checks the file it rotates against this record instead of loading it again; an unknown file is loaded once.
_known: dict[tuple[int, int, int, int], bool] = {}


class CheckpointError(InputError):
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


def _identity(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _remember(path: Path, loads: bool) -> None:
    identity = _identity(path)
    if identity is not None:
        _known[identity] = loads


def _recalled(path: Path) -> bool | None:
    """Whether ``path`` loaded when this process last wrote or read this very file; None if it has not."""
    identity = _identity(path)
    return None if identity is None else _known.get(identity)


def _loads(path: Path) -> bool:
    """Whether ``path`` is a usable checkpoint; loads it only if this process has not seen this very file."""
    known = _recalled(path)
    if known is not None:
        return known
    try:
        loads = _complete(load_checkpoint(path), path)
    except CheckpointError:
        loads = False
    _remember(path, loads)
    return loads


def _complete(payload: dict[str, Any], path: Path) -> bool:
    try:
        require_keys(payload, RESUME_KEYS, path)
    except CheckpointError:
        return False
    return True


def _set_aside(path: Path) -> Path:
    """Rename an unusable checkpoint to ``<name>.corrupt-<time>`` next to it, kept for inspection."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside, suffix = path.with_name(f"{path.name}.corrupt-{stamp}"), 1
    while aside.exists():
        aside, suffix = path.with_name(f"{path.name}.corrupt-{stamp}-{suffix}"), suffix + 1
    os.replace(path, aside)
    warnings.warn(f"checkpoint {path} does not load; kept as {aside}", stacklevel=3)
    return aside


def save_checkpoint(payload: dict[str, Any], run_dir: Path) -> Path:
    """Write ``payload`` as the run's newest checkpoint; the previous newest becomes ``checkpoint.prev.pt`` if it
    loads, and is renamed aside (``checkpoint.pt.corrupt-<time>``) if not, keeping the older good ``.prev``.

    Any error (a full disk included) leaves the existing checkpoints untouched and names the path.
    """
    newest, previous, tmp = run_dir / NEWEST, run_dir / PREVIOUS, run_dir / (NEWEST + ".tmp")
    try:
        with open(tmp, "wb") as handle:
            _save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        if newest.exists():
            if _loads(newest):
                if _recalled(previous) is False:
                    _set_aside(previous)  # known bad: keep it for inspection rather than overwrite it
                os.replace(newest, previous)
            else:
                _set_aside(newest)
        os.replace(tmp, newest)
        _fsync_dir(run_dir)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise OSError(error.errno, f"could not save checkpoint {newest}: {error.strerror or error}") from error
    except BaseException:  # a bug (e.g. an object torch cannot save) keeps its traceback, but not the partial file
        tmp.unlink(missing_ok=True)
        raise
    _remember(newest, _complete(payload, newest))
    return newest


class _Writes:
    """A file handle that remembers the first ``OSError`` of its writes. torch's zip writer turns a failed write
    (a full disk) into ``RuntimeError: ... unexpected pos``, losing the errno and the reason (seen with torch 2.13
    on a full tmpfs)."""

    def __init__(self, handle: Any):
        self.handle: Any = handle
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.handle.write(data)
        except OSError as error:
            self.error = self.error or error
            raise

    def flush(self) -> None:
        self.handle.flush()


def _save(payload: dict[str, Any], handle: Any) -> None:
    """``torch.save`` of the payload to ``handle``; a failed write raises its own ``OSError``."""
    writes = _Writes(handle)
    try:
        torch.save({**payload, "format": FORMAT}, writes)  # type: ignore[arg-type]  # a file-like writer
    except RuntimeError:
        if writes.error is None:
            raise
        raise writes.error from None


class UnreadableFile(InputError):
    """A file given as weights or a checkpoint that ``torch.load`` cannot read safely; ``reason`` says why."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path} is not a readable torch file: {reason}")
        self.path, self.reason = path, reason


def load_torch_file(path: Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, for every file a user hands lossaug (checkpoints,
    ``--init`` weights). A missing file raises ``FileNotFoundError``; one that is empty, text, cut short, corrupt,
    or that holds pickled objects other than tensors and plain data raises ``UnreadableFile`` saying why."""
    if Path(path).exists() and not Path(path).is_file():  # a FIFO would block for ever, /dev/zero never end
        raise UnreadableFile(Path(path), "not a regular file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    # The unpickler raises whatever the bytes lead it to (EOFError on an empty file, KeyError or UnpicklingError
    # on text, RuntimeError from the zip reader, ...): each means this file is not a torch file.
    except Exception as error:
        raise UnreadableFile(Path(path), _unreadable_reason(Path(path), error)) from None


def _unreadable_reason(path: Path, error: Exception) -> str:
    text = str(error).strip()
    if "Weights only load failed" in text:  # torch's own advice (load with weights_only=False) is wrong here
        return "it holds pickled objects other than tensors and plain data, which are never loaded"
    try:
        if path.stat().st_size == 0:
            return "the file is empty"
    except OSError:
        pass
    first = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load one checkpoint with ``weights_only=True``; raises CheckpointError saying why it is unusable."""
    try:
        payload = load_torch_file(path)
    except UnreadableFile as error:
        raise CheckpointError(f"checkpoint {path} is unreadable or unsafe: {error.reason}") from None
    except OSError as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise CheckpointError(f"checkpoint {path} is unreadable: {error.strerror or error}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a lossaug checkpoint of format {FORMAT}")
    return payload


def require_keys(payload: dict[str, Any], keys: Sequence[str], path: Path) -> dict[str, Any]:
    """``payload`` itself if it has every one of ``keys``; else a CheckpointError naming the missing ones."""
    missing = [key for key in keys if key not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}; it is not a complete lossaug training checkpoint")
    if "global_step" in keys and (
        isinstance(payload["global_step"], bool) or not isinstance(payload["global_step"], int)
    ):
        raise CheckpointError(f"checkpoint {path} has global_step {payload['global_step']!r}, not an int")
    if "config" in keys and not isinstance(payload["config"], dict):
        raise CheckpointError(f"checkpoint {path} has a config of type {type(payload['config']).__name__}")
    return payload


@dataclass
class RunCheckpoint:
    """One run's checkpoint: the model's weights, optimizer and schedule state (and the proxy's, as
    ``{"model", "optimizer", "scheduler"}``), each rank's random streams and epoch sums (``random``, one dict per
    rank), the loop's position (``RunState.state_dict()``), and what using the model needs without its data
    (``classes``, ``inputs``). Fields are in the file's key order. A partial read (``from_dict`` with fewer
    ``needs``, or a checkpoint written before a field existed) leaves absent fields at their defaults."""

    model: dict[str, Tensor]
    optimizer: dict[str, Any] = field(default_factory=dict)
    scheduler: dict[str, Any] = field(default_factory=dict)
    proxy: dict[str, Any] | None = None
    random: list[dict[str, Any]] = field(default_factory=list)
    position: dict[str, Any] = field(default_factory=dict)
    global_step: int = 0
    num_classes: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    schedule: dict[str, Any] | None = None  # the run's Schedule; None before it was recorded
    data_fingerprint: dict[str, Any] | None = None  # None before it was recorded
    init: dict[str, Any] | None = None  # what --init loaded (InitReport.to_json()); None without --init
    stale_losses: Tensor | None = None  # (N,) each training image's last loss; None before it was recorded
    inputs: dict[str, Any] | None = None  # what the network takes (InputSpec.to_json()); None before recorded
    classes: list[str] | None = None  # logit i means classes[i]; None before it was recorded

    def to_dict(self) -> dict[str, Any]:
        """The file's payload: every field under its own name (``save_checkpoint`` adds ``format``)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, payload: dict[str, Any], path: Path, needs: Sequence[str] = RESUME_KEYS) -> RunCheckpoint:
        """The checkpoint in ``payload`` (read from ``path``), which must hold ``model`` and ``needs``; else a
        ``CheckpointError`` as ``require_keys`` says. Values are taken as they are: readers check what they use."""
        require_keys(payload, list(dict.fromkeys(("model", *needs))), path)
        return cls(**{f.name: payload[f.name] for f in fields(cls) if f.name in payload})

    def learner(self) -> dict[str, Any]:
        """The model's ``Learner.state_dict()``: its weights, optimizer and schedule state."""
        return {"model": self.model, "optimizer": self.optimizer, "scheduler": self.scheduler}


@dataclass(frozen=True)
class CheckpointSaver:
    """A run's save policy, as timm's ``CheckpointSaver``: a checkpoint at every epoch end and, with ``every`` > 0,
    every ``every`` steps (``due``); each ``save`` writes ``checkpoint.pt`` atomically, the one before it kept as
    ``checkpoint.prev.pt`` (``save_checkpoint``), and the epoch a run keeps as its best also as ``best.pt``.
    ``run_dir`` None: a run without a directory, which saves nothing."""

    run_dir: Path | None
    every: int = 0  # steps between checkpoints within epochs (--checkpoint-every); 0: at epoch ends only

    def due(self, global_step: int) -> bool:
        """Whether the step that completes ``global_step`` steps ends a period (a checkpoint within an epoch)."""
        return self.every > 0 and global_step % self.every == 0

    def save(self, checkpoint: RunCheckpoint, *, best: bool = False) -> Path:
        """Write ``checkpoint`` as the newest and, with ``best``, copy it to ``best.pt``; the newest's path."""
        assert self.run_dir is not None, "a run without a directory saves nothing"
        newest = save_checkpoint(checkpoint.to_dict(), self.run_dir)
        if best:
            _copy_atomically(newest, self.run_dir / BEST)
        return newest


def _copy_atomically(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` by a temporary file beside it, fsynced, then renamed into place."""
    tmp = target.with_name(target.name + ".tmp")
    try:
        with open(source, "rb") as reading, open(tmp, "wb") as writing:
            shutil.copyfileobj(reading, writing)
            writing.flush()
            os.fsync(writing.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def read_run_checkpoint(run_dir: Path, needs: Sequence[str] = RESUME_KEYS) -> tuple[Path, RunCheckpoint]:
    """``run_dir``'s newest valid checkpoint holding ``needs`` (see ``newest_valid_checkpoint``), typed."""
    path, payload = newest_valid_checkpoint(run_dir, needs)
    return path, RunCheckpoint.from_dict(payload, path, needs)


def has_checkpoint(run_dir: Path) -> bool:
    return (run_dir / NEWEST).exists() or (run_dir / PREVIOUS).exists()


def nonfinite_not_saved(global_step: int, run_dir: Path) -> str:
    """Why a non-finite state at ``global_step`` was not saved, and what ``run_dir`` keeps instead."""
    if has_checkpoint(run_dir):
        kept = f"the last good checkpoint in {run_dir} is kept"
    else:
        kept = f"there is no checkpoint in {run_dir} yet"
    return f"the state at step {global_step} is not finite; not saved ({kept})"


def newest_valid_checkpoint(run_dir: Path, keys: Sequence[str] = RESUME_KEYS) -> tuple[Path, dict[str, Any]]:
    """The newest checkpoint of ``run_dir`` that loads and has ``keys`` (by default all that a resume reads);
    unusable ones are skipped with a warning naming them and why."""
    candidates = [run_dir / name for name in (NEWEST, PREVIOUS) if (run_dir / name).exists()]
    if not candidates:
        raise CheckpointError(f"no checkpoint in {run_dir} (looked for {NEWEST} and {PREVIOUS})")
    loaded = []
    for path in candidates:
        try:
            payload = load_checkpoint(path)
            _remember(path, _complete(payload, path))
            loaded.append((path, require_keys(payload, (*keys, "global_step"), path)))
        except CheckpointError as error:
            _remember(path, False)
            warnings.warn(f"skipping {error}", stacklevel=2)
    if not loaded:
        raise CheckpointError(f"no valid checkpoint in {run_dir}: {', '.join(str(p) for p in candidates)} unusable")
    # Normally checkpoint.pt is the newer one, but after a crash between the two renames only .prev may exist.
    return max(loaded, key=lambda item: item[1]["global_step"])
