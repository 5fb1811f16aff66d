"""Guarding a run directory: a new run never overwrites an old one by accident, and one process owns it at a time.

``claim_run_dir`` refuses to start a fresh run in a directory that already holds one unless the caller resumes
it or asked to start over; ``RunLock`` is an exclusive lock held for the run's life, so two processes never write
the same checkpoint, metrics and config files.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from pathlib import Path
from types import TracebackType

from lossaug.errors import InputError

__all__ = ["LOCK_NAME", "RUN_FILES", "RunDirError", "RunLock", "claim_run_dir", "run_files"]

LOCK_NAME = ".lock"
# What a run writes into its directory; --overwrite removes these and nothing else.
RUN_FILES = ("config.json", "metrics.jsonl", "final.json", "curves.png", "tensorboard")
_CHECKPOINT_GLOB = "checkpoint*.pt*"  # checkpoint.pt, .prev.pt, .pt.tmp, .pt.corrupt-<time>


class RunDirError(InputError):
    """The run directory holds another run, or another live process is using it."""


def run_files(out: Path) -> list[Path]:
    """The files and folders of a run in ``out``, sorted; empty when ``out`` holds no run."""
    out = Path(out)
    found = [out / name for name in RUN_FILES if (out / name).exists()]
    found += out.glob(_CHECKPOINT_GLOB)
    return sorted(found)


def claim_run_dir(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Make ``out`` ready for a run. A directory holding a run (any of ``run_files``: config.json, metrics.jsonl,
    a checkpoint, ...) is refused with a RunDirError unless ``resume`` (the run is continued, nothing is removed)
    or ``overwrite`` (the run's own files are removed; anything else the user keeps there stays). Call it with the
    ``RunLock`` held, so no other process writes while the files are checked or removed."""
    out = Path(out)
    if resume and overwrite:
        raise RunDirError(f"resume and overwrite exclude each other (run directory {out})")
    if out.exists() and not out.is_dir():
        raise RunDirError(f"run directory {out} exists and is not a directory")
    existing = run_files(out) if out.is_dir() else []
    if not existing or resume:
        return
    if not overwrite:
        names = ", ".join(p.name for p in existing)
        raise RunDirError(
            f"{out} already holds a run ({names}); continue it with --resume, or start over with --overwrite "
            "(removes those files)"
        )
    for path in existing:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


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
