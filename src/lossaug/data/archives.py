"""Files on disk for `lossaug.data`: verified downloads, archives (extracted safely, or read member by member in
memory), atomic writes, hashing, and the one rule for an archive that wraps everything in one top folder.

Every function here writes only under the path it is given, and every write lands in a temporary name first and
is then renamed into place, so an interrupted run never leaves a file or folder that looks complete but is not.
Extraction is capped in total size and in its ratio to the archive's size (a small archive can expand to fill the
disk), and its temporary folder is removed on an error, Ctrl-C or SIGTERM, or by the next extraction into the same
place once the process that made it is gone (kill -9).
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import shutil
import signal
import socket
import stat
import tarfile
import tempfile
import threading
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.client import IncompleteRead
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from lossaug.errors import InputError

Log = Callable[[str], None]

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".zip")
DOWNLOAD_TIMEOUT_S = 60.0  # per socket operation, not for the whole file
_CHUNK = 1 << 20
# Extraction caps. The largest archives lossaug reads expand little: CIFAR-10 python 163 MB -> 178 MB, the CIFAR-10
# JPEG folder 18.6 MB -> 86 MB counting headers (ratio 4.6); image data barely compresses. 4 GiB leaves room for
# larger image folders; a caller with more passes max_bytes.
MAX_EXTRACT_BYTES = 4 << 30
MAX_EXTRACT_RATIO = 200  # extracted bytes per archive byte
_RATIO_FLOOR = 1 << 20  # tiny archives may always expand to 1 MiB
_MEMBER_OVERHEAD = 512  # counted per member (a tar header), so a flood of empty files counts too
# tarfile's extraction filters (and their error) exist from Python 3.10.12 / 3.11.4 on.
_TarFilterError: type[Exception] = getattr(tarfile, "FilterError", type("_TarFilterError", (Exception,), {}))


def is_archive_name(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def archive_stem(path: Path) -> str:
    """`cifar10-jpeg.tar.xz` -> `cifar10-jpeg`."""
    name = path.name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def wrapping_folder(top_level: dict[str, bool]) -> str | None:
    """The folder an archive wraps everything in, if it has one: its only top-level entry that is not hidden, a
    folder other than ``train`` (``top_level``: each top-level name -> whether it is a folder); else None."""
    names = [name for name in top_level if not name.startswith(".")]
    if len(names) == 1 and top_level[names[0]] and names[0] != "train":
        return names[0]
    return None


def archive_members(source: Path | bytes, where: str | None = None) -> Iterator[tuple[PurePosixPath, bytes]]:
    """``(name, bytes)`` of each regular file in a tar (any compression) or zip archive, a path or its bytes, read
    in memory: nothing is written. The bytes held are capped as an extraction's are (``MAX_EXTRACT_BYTES``,
    ``MAX_EXTRACT_RATIO``), checked before each member is read. An unreadable archive or a member over the cap is
    an ``InputError`` naming ``where`` (default: the path)."""
    where = where or str(source)
    size = len(source) if isinstance(source, bytes) else Path(source).stat().st_size
    budget = _Budget(where, MAX_EXTRACT_BYTES, MAX_EXTRACT_RATIO, size)

    def opened() -> Path | io.BytesIO:  # a fresh file object for each reader (each moves its position)
        return io.BytesIO(source) if isinstance(source, bytes) else source

    try:
        if zipfile.is_zipfile(opened()):
            with zipfile.ZipFile(opened()) as zf:
                for info in zf.infolist():
                    if stat.S_ISLNK(info.external_attr >> 16):  # its bytes are a link's target, not a file
                        raise InputError(
                            f"archive {where}: member {info.filename} is a symbolic link; lossaug reads "
                            "regular files only"
                        )
                    if not info.is_dir():
                        budget.add(info.filename, info.file_size)  # zipfile reads at most file_size bytes
                        yield PurePosixPath(info.filename), zf.read(info)
            return
        with (
            tarfile.open(fileobj=io.BytesIO(source), mode="r:*")
            if isinstance(source, bytes)
            else tarfile.open(source) as tar
        ):
            for member in tar:
                handle = tar.extractfile(member) if member.isfile() else None  # None for anything but a file
                if handle is not None:
                    budget.add(member.name, member.size)
                    yield PurePosixPath(member.name), handle.read()
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
        raise InputError(f"could not read archive {where}: {_first_line(e)}") from e


def _first_line(error: BaseException) -> str:
    """One line saying why an archive did not read: tarfile lists each compression it tried, one per line."""
    lines = str(error).strip().splitlines()
    if not lines or lines[0].endswith(":"):
        return "not a tar or zip archive, or damaged (cut short?)"
    return lines[0]


def file_digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


@contextmanager
def atomic_file(dest: Path) -> Iterator[BinaryIO]:
    """Open a temporary file next to `dest`; on clean exit it replaces `dest`, on error it is removed."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def download(url: str, dest: Path, md5: str, *, log: Log | None = None) -> Path:
    """Fetch `url` to `dest`, checking its length and md5; `dest` appears only once the file is verified."""
    dest = Path(dest)
    say = log or (lambda _msg: None)
    say(f"downloading {url} -> {dest}")
    digest = hashlib.md5()
    received = 0
    with atomic_file(dest) as out:
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                header = response.headers.get("Content-Length")
                total = int(header) if header is not None and header.isdigit() else None
                next_report = 0.1
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    if total and received / total >= next_report:
                        say(f"  {received / total:4.0%} of {total / 1e6:.1f} MB")
                        next_report = math.floor(received / total * 10) / 10 + 0.1
        except IncompleteRead as e:
            # http.client notices a connection cut short of Content-Length on some paths only; the length check
            # below catches the rest.
            raise InputError(
                f"download of {url} to {dest} was cut short: got {received + len(e.partial)} bytes, "
                f"expected {received + len(e.partial) + (e.expected or 0)}"
            ) from e
        except OSError as e:
            raise OSError(f"could not download {url} to {dest}: {e}") from e
        if total is not None and received != total:
            raise InputError(
                f"download of {url} to {dest} was cut short: got {received} bytes, expected {total} "
                f"(md5 expected {md5}, got {digest.hexdigest()})"
            )
        if digest.hexdigest() != md5.lower():
            raise InputError(
                f"md5 mismatch for {dest} (from {url}): expected {md5}, got {digest.hexdigest()}; the file was not kept"
            )
    say(f"downloaded {dest} ({received / 1e6:.1f} MB, md5 ok)")
    return dest


def _check_member_name(name: str, archive: Path) -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or name.startswith(("/", "\\")) or name[1:2] == ":":
        raise InputError(f"refusing archive member {name!r} in {archive}: absolute path")
    if ".." in path.parts:
        raise InputError(f"refusing archive member {name!r} in {archive}: '..' component")


class _Budget:
    """Running total of the bytes an extraction writes (or an in-memory read holds), refused past ``max_bytes`` or
    ``max_ratio`` times the archive's size (``size``: default the file's), naming the member that crossed the cap."""

    def __init__(self, archive: Path | str, max_bytes: int, max_ratio: float, size: int | None = None):
        size = Path(archive).stat().st_size if size is None else size
        by_ratio = max(max_ratio * size, _RATIO_FLOOR)
        self.archive, self.total = archive, 0
        if by_ratio < max_bytes:
            self.cap, self.why = int(by_ratio), f"{max_ratio:g} times the archive's {size} bytes"
        else:
            self.cap, self.why = max_bytes, "max_bytes"

    def add(self, name: str, size: int) -> None:
        self.total += max(size, 0) + _MEMBER_OVERHEAD
        if self.total > self.cap:
            raise InputError(
                f"refusing archive member {name!r} in {self.archive}: extraction would reach {self.total} bytes, "
                f"over the cap of {self.cap} ({self.why})"
            )


def _extract_tar(archive: Path, into: Path, budget: _Budget) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                _check_member_name(member.name, archive)
                budget.add(member.name, member.size if member.isfile() else 0)
                if not (member.isfile() or member.isdir()):
                    kind = (
                        "symlink"
                        if member.issym()
                        else "hardlink"
                        if member.islnk()
                        else "device file or fifo"
                        if member.isdev()
                        else "special member"
                    )
                    raise InputError(f"refusing archive member {member.name!r} in {archive}: {kind}")
                if hasattr(tarfile, "data_filter"):
                    tar.extract(member, into, filter="data")
                else:  # Python < 3.10.12 has no extraction filters; the checks above are then the only guard
                    tar.extract(member, into)
    except _TarFilterError as e:
        raise InputError(f"refusing archive member in {archive}: {e}") from e
    except (tarfile.TarError, EOFError, OSError) as e:
        raise InputError(f"could not read archive {archive}: {e}") from e


def _extract_zip(archive: Path, into: Path, budget: _Budget) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for info in members:
                _check_member_name(info.filename, archive)
                # zipfile writes at most file_size bytes per member (it stops reading there), so this is exact.
                budget.add(info.filename, info.file_size)
                # The high 16 bits are Unix st_mode when the writer recorded one; zero file-type bits mean a
                # plain file or folder (Python's zipfile.writestr stores permissions only).
                file_type = stat.S_IFMT(info.external_attr >> 16)
                if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
                    raise InputError(f"refusing archive member {info.filename!r} in {archive}: not a plain file")
            for info in members:
                zf.extract(info, into)
    except (zipfile.BadZipFile, OSError) as e:
        raise InputError(f"could not read archive {archive}: {e}") from e


_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except OSError:
        return True  # cannot tell: keep its folder
    return True


def _remove_stale_partials(dest: Path) -> None:
    """Remove ``dest``'s temporary folders left by dead processes of this host (kill -9, power loss)."""
    prefix = f".{dest.name}."
    try:
        entries = list(os.scandir(dest.parent))
    except OSError:
        return
    for entry in entries:
        if not (entry.name.startswith(prefix) and entry.name.endswith(".partial")):
            continue
        # .<dest>.<host>.<pid>.<random>.partial; other names (older lossaug, other tools) are left alone.
        parts = entry.name[len(prefix) : -len(".partial")].split(".")
        if len(parts) == 3 and parts[0] == _HOST and parts[1].isdigit() and not _pid_alive(int(parts[1])):
            shutil.rmtree(entry.path, ignore_errors=True)


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into SystemExit(143) while extracting, so the temporary folder is removed on the way out (the
    default action kills the process on the spot). A handler the caller installed (e.g. the training loop's) is
    left alone, as is everything outside the main thread; the previous handler is restored on exit."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def safe_extract(
    archive: Path, dest: Path, *, max_bytes: int = MAX_EXTRACT_BYTES, max_ratio: float = MAX_EXTRACT_RATIO
) -> Path:
    """Unpack a .tar(.gz/.xz/.bz2) or .zip `archive` into the folder `dest` and return `dest`.

    Members with absolute paths, `..` components, links or device files are refused with a ValueError naming the
    member, as is the member that takes the extracted total (file sizes plus 512 bytes per member) past
    `max_bytes` or past `max_ratio` times the archive's size (at least 1 MiB). Extraction goes to a temporary
    sibling folder `.<dest>.<host>.<pid>.<random>.partial` that is renamed to `dest` only when complete, so an
    existing `dest` is a finished extraction and is returned as is. The temporary folder is removed on any error,
    Ctrl-C and SIGTERM (which then ends the process with status 143, unless the caller handles SIGTERM itself);
    one left by a process that no longer runs (kill -9) is removed by the next call for the same `dest`.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise FileNotFoundError(f"archive not found: {archive}")
    if dest.parent.is_dir():
        _remove_stale_partials(dest)
    if dest.is_dir():
        return dest
    budget = _Budget(archive, max_bytes, max_ratio)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _sigterm_raises():
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.{_HOST}.{os.getpid()}.", suffix=".partial"))
        try:
            if zipfile.is_zipfile(archive):
                _extract_zip(archive, tmp, budget)
            else:
                _extract_tar(archive, tmp, budget)
            try:
                os.rename(tmp, dest)
            except OSError:
                if not dest.is_dir():  # anything but "another process finished the same extraction first"
                    raise
                shutil.rmtree(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest
