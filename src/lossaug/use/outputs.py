"""Files the use commands write (``export``'s module and its JSON): new files only, never one that exists, never a
run's own file, each written whole or not at all.

A file is written to a temporary name beside it and then hard-linked to its name, which fails if the name exists
in the meantime (``os.replace`` would replace it); where the file system has no hard links it is renamed after a
last check.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from lossaug.errors import InputError
from lossaug.run.rundir import RUN_FILES

__all__ = ["check_new_files", "write_new_file"]


def _run_file(path: Path) -> bool:
    """Whether ``path`` is a name a run writes in a folder that holds a run (its config.json or a checkpoint)."""
    folder = path.parent
    holds_run = any((folder / name).exists() for name in ("config.json", "checkpoint.pt", "checkpoint.prev.pt"))
    return holds_run and path.name in RUN_FILES


def check_new_files(option: str, given: Path, paths: Sequence[Path]) -> None:
    """Refuse, naming ``option`` and ``given``, unless every one of ``paths`` can be created as a new file: none
    exists (a link, a FIFO or a folder included), none is a run's file, and each one's nearest existing parent is a
    folder."""
    for path in paths:
        if path.exists() or path.is_symlink():
            kind = "a folder" if path.is_dir() else "a file"
            raise InputError(
                f"{option} {given}: {path} exists ({kind}); lossaug never replaces a file: remove it or "
                "choose another name"
            )
        if _run_file(path):
            raise InputError(f"{option} {given}: {path} is a name the run in {path.parent} writes; choose another")
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if parent.exists() and not parent.is_dir():
            raise InputError(f"{option} {given}: {parent} is a file, not a folder")


def write_new_file(option: str, data: bytes, path: Path) -> None:
    """Write ``data`` to the new file ``path`` (its folders made), whole or not at all; an ``InputError`` naming
    ``option`` and the path if it exists by now or cannot be written (a read-only folder, ``/proc``, a full disk)."""
    check_new_files(option, path, [path])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise InputError(f"{option} {path}: cannot write into {path.parent}: {_reason(error)}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private (0600); an exported model is for sharing
        _link_new(tmp, path)
    except FileExistsError:
        raise InputError(f"{option} {path}: {path} appeared meanwhile; lossaug never replaces a file") from None
    except OSError as error:
        raise InputError(f"{option} {path}: cannot write {path}: {_reason(error)}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it: set it back at once
    os.umask(mask)
    return mask


def _link_new(tmp: str, path: Path) -> None:
    try:
        os.link(tmp, path)  # fails with FileExistsError rather than replace
    except FileExistsError:
        raise
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
            raise
        if path.exists() or path.is_symlink():
            raise FileExistsError(errno.EEXIST, "exists", str(path)) from None
        os.replace(tmp, path)  # no hard links here (some FUSE and SMB mounts): checked just before


def _reason(error: OSError) -> str:
    return error.strerror or os.strerror(error.errno or errno.EIO)
