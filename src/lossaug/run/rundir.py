"""Guarding a run directory: a new run never overwrites an old one by accident, and one process owns it at a time.

``check_run_dir`` refuses to start a fresh run in a directory that already holds one unless the caller resumes
it or asked to start over (``claim_run_dir`` also removes the old run's files); ``RunLock`` is an exclusive lock
held for the run's life, so two processes never write the same checkpoint, metrics and config files.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from lossaug.errors import InputError

__all__ = [
    "LOCK_NAME",
    "RUN_FILES",
    "RunDirError",
    "RunLock",
    "check_run_dir",
    "claim_run_dir",
    "is_run",
    "remove_run_files",
    "run_files",
]

LOCK_NAME = ".lock"
# What a run writes into its directory, by exact name. A folder holds a run only when its config.json is lossaug's
# (every run writes it first, before any other file); --overwrite then removes these names and nothing else.
RUN_FILES = (
    "config.json",
    "metrics.jsonl",
    "final.json",
    "trunk.json",
    "curves.png",
    "checkpoint.pt",
    "checkpoint.prev.pt",
    "skipped_files.txt",
    "best.pt",
)
_LEFTOVERS = re.compile(  # a save or a JSON write cut short; checkpoints set aside by checkpoint._set_aside
    r"^((checkpoint|best)\.pt\.tmp|(config|final|trunk)\.json\.tmp|checkpoint(\.prev)?\.pt\.corrupt-[0-9-]+)$"
)
TENSORBOARD = "tensorboard"  # lossaug's only when the run's recorded config logged there
_MARKER_KEYS = ("lossaug_version", "config")  # what makes a config.json lossaug's (metadata.run_metadata)


class RunDirError(InputError):
    """The run directory holds another run, or another live process is using it."""


def _recorded_config(out: Path) -> dict | None:
    """The config of the run in ``out`` from its config.json when that file is lossaug's; else None."""
    try:
        recorded = json.loads((out / "config.json").read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(recorded, dict) or not all(key in recorded for key in _MARKER_KEYS):
        return None
    return recorded["config"] if isinstance(recorded["config"], dict) else None


def is_run(out: Path) -> bool:
    """Whether ``out`` holds a lossaug run: its config.json is one lossaug wrote."""
    return _recorded_config(Path(out)) is not None


def run_files(out: Path) -> list[Path]:
    """The files and folders lossaug wrote for the run in ``out``, sorted; empty when ``out`` holds no run. Only
    lossaug's own names count (a user's ``checkpoint_pretrained.pth`` is not a checkpoint), and ``tensorboard/``
    only when the run logged there."""
    out = Path(out)
    config = _recorded_config(out)
    if config is None:
        return []
    names = [*RUN_FILES, *([TENSORBOARD] if config.get("tensorboard") == "on" else [])]
    found = [out / name for name in names if (out / name).exists() or (out / name).is_symlink()]
    found += [path for path in out.iterdir() if _LEFTOVERS.match(path.name)]
    return sorted(found)


def _foreign_files(out: Path, tensorboard: bool) -> list[Path]:
    """Entries of ``out`` at the names a run writes that lossaug did not write: a new run would replace them."""
    if not out.is_dir():
        return []
    own = set(run_files(out))
    names = [*RUN_FILES, *([TENSORBOARD] if tensorboard else [])]
    return [out / name for name in names if (out / name).exists() and out / name not in own]


def _inside(path: Path, removed: list[Path], out: Path) -> bool:
    """Whether ``path`` is ``out`` itself or one of ``removed`` (or under one of them)."""
    path = path.resolve()
    return path == out.resolve() or any(path == r.resolve() or path.is_relative_to(r.resolve()) for r in removed)


def check_run_dir(
    out: Path,
    *,
    resume: bool,
    overwrite: bool,
    reads: Mapping[str, str | Path | None] | None = None,
    tensorboard: bool = False,
) -> list[Path]:
    """Check that a run may start in ``out``; returns the files ``overwrite`` is to remove (``remove_run_files``),
    removing nothing itself, so that a run refused later in its set-up (a bad model, an unreadable ``--init``)
    loses nothing.

    A directory holding a run (``run_files``) is refused with a RunDirError unless ``resume`` (the run is
    continued, nothing is removed) or ``overwrite`` (lossaug's files of that run go; anything else the user keeps
    there stays). Files at the names a run writes that lossaug did not write (a user's ``config.json``, or
    ``tensorboard/`` when the run logs there: ``tensorboard``) are refused either way, never replaced. ``reads``
    (option -> path: ``{"--init": ...}``) are what the run will read: one that ``overwrite`` would remove is
    refused. Call it with the ``RunLock`` held, so no other process writes while the files are checked or
    removed."""
    out = Path(out)
    if resume and overwrite:
        raise RunDirError(f"resume and overwrite exclude each other (run directory {out})")
    if out.exists() and not out.is_dir():
        raise RunDirError(f"run directory {out} exists and is not a directory")
    if resume or not out.is_dir():
        return []
    foreign = _foreign_files(out, tensorboard)
    if foreign:
        raise RunDirError(
            f"{', '.join(map(str, foreign))}: not written by lossaug, and a run in {out} would replace it; move it "
            "away or choose another --out"
        )
    existing = run_files(out)
    if existing and not overwrite:
        names = ", ".join(p.name for p in existing)
        raise RunDirError(
            f"{out} already holds a run ({names}); continue it with --resume, or start over with --overwrite "
            "(removes those files)"
        )
    for option, path in (reads or {}).items():
        if existing and path is not None and _inside(Path(path), existing, out):
            raise RunDirError(
                f"{option} {path} is inside the run {out} that --overwrite would remove; copy it "
                "elsewhere first, or choose another --out"
            )
    return existing


def remove_run_files(paths: list[Path]) -> None:
    """Remove the files and folders of ``check_run_dir``'s answer, ``config.json`` last: a removal cut short leaves
    a folder still recognised as the run, so ``--overwrite`` can finish it."""
    for path in sorted(paths, key=lambda p: p.name == "config.json"):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def claim_run_dir(
    out: Path,
    *,
    resume: bool,
    overwrite: bool,
    reads: Mapping[str, str | Path | None] | None = None,
    tensorboard: bool = False,
) -> None:
    """``check_run_dir``, then remove what ``overwrite`` removes: ``out`` is ready for the run."""
    remove_run_files(check_run_dir(out, resume=resume, overwrite=overwrite, reads=reads, tensorboard=tensorboard))


class RunLock:
    """Exclusive lock on a run directory for the run's life: ``with RunLock(out): ...``.

    Takes ``fcntl.flock`` on ``OUT/.lock`` (non-blocking) and writes the holder's PID into it. The kernel drops a
    flock when its holder's file is closed, which includes the process ending in any way (kill -9 too), so a lock
    left by a dead process is never stale: the next run takes it at once, whatever PID the file still shows. A
    second process on the same directory gets a ``RunDirError`` naming the holder's PID. Released on any exit from
    the ``with`` block. flock is advisory and per host: it does not guard a directory on a network file system
    shared by several machines (NFS may or may not forward it).
    """

    def __init__(self, out: Path):
        self.path = Path(out) / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()

    def acquire(self) -> None:
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this RunLock")
        if self.path.parent.exists() and not self.path.parent.is_dir():
            raise RunDirError(f"run directory {self.path.parent} exists and is not a directory")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # O_RDWR without O_TRUNC: the holder's PID stays readable until the lock is ours.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _read_pid(fd)
            os.close(fd)
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OSError(error.errno, f"could not lock {self.path}: {error.strerror}") from error
            who = f"process {holder}" if holder is not None else "another process"
            raise RunDirError(
                f"run directory {self.path.parent} is in use by {who} (lock {self.path}); wait for it to finish or "
                "choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        # The file stays: unlinking it would let a waiting process lock the old inode while a third locks a new one.
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing drops the flock


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
