"""Files on disk for `lossaug.data`: verified downloads, safe archive extraction, atomic writes, hashing.

Every function here writes only under the path it is given, and every write lands in a temporary name first and
is then renamed into place, so an interrupted run never leaves a file or folder that looks complete but is not.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import stat
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.client import IncompleteRead
from pathlib import Path, PurePosixPath
from typing import BinaryIO

Log = Callable[[str], None]

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".zip")
DOWNLOAD_TIMEOUT_S = 60.0  # per socket operation, not for the whole file
_CHUNK = 1 << 20
# tarfile's extraction filters (and their error) exist from Python 3.10.12 / 3.11.4 on.
_TarFilterError = getattr(tarfile, "FilterError", type("_TarFilterError", (Exception,), {}))


def is_archive_name(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def archive_stem(path: Path) -> str:
    """`cifar10-jpeg.tar.xz` -> `cifar10-jpeg`."""
    name = path.name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


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
            raise ValueError(
                f"download of {url} to {dest} was cut short: got {received + len(e.partial)} bytes, "
                f"expected {received + len(e.partial) + (e.expected or 0)}"
            ) from e
        except OSError as e:
            raise OSError(f"could not download {url} to {dest}: {e}") from e
        if total is not None and received != total:
            raise ValueError(
                f"download of {url} to {dest} was cut short: got {received} bytes, expected {total} "
                f"(md5 expected {md5}, got {digest.hexdigest()})"
            )
        if digest.hexdigest() != md5.lower():
            raise ValueError(
                f"md5 mismatch for {dest} (from {url}): expected {md5}, got {digest.hexdigest()}; the file was not kept"
            )
    say(f"downloaded {dest} ({received / 1e6:.1f} MB, md5 ok)")
    return dest


def _check_member_name(name: str, archive: Path) -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or name.startswith(("/", "\\")) or name[1:2] == ":":
        raise ValueError(f"refusing archive member {name!r} in {archive}: absolute path")
    if ".." in path.parts:
        raise ValueError(f"refusing archive member {name!r} in {archive}: '..' component")


def _extract_tar(archive: Path, into: Path) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                _check_member_name(member.name, archive)
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
                    raise ValueError(f"refusing archive member {member.name!r} in {archive}: {kind}")
                if hasattr(tarfile, "data_filter"):
                    tar.extract(member, into, filter="data")
                else:  # Python < 3.10.12 has no extraction filters; the checks above are then the only guard
                    tar.extract(member, into)
    except _TarFilterError as e:
        raise ValueError(f"refusing archive member in {archive}: {e}") from e
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ValueError(f"could not read archive {archive}: {e}") from e


def _extract_zip(archive: Path, into: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for info in members:
                _check_member_name(info.filename, archive)
                # The high 16 bits are Unix st_mode when the writer recorded one; zero file-type bits mean a
                # plain file or folder (Python's zipfile.writestr stores permissions only).
                file_type = stat.S_IFMT(info.external_attr >> 16)
                if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
                    raise ValueError(f"refusing archive member {info.filename!r} in {archive}: not a plain file")
            for info in members:
                zf.extract(info, into)
    except (zipfile.BadZipFile, OSError) as e:
        raise ValueError(f"could not read archive {archive}: {e}") from e


def safe_extract(archive: Path, dest: Path) -> Path:
    """Unpack a .tar(.gz/.xz/.bz2) or .zip `archive` into the folder `dest` and return `dest`.

    Members with absolute paths, `..` components, links or device files are refused with a ValueError naming the
    member. Extraction goes to a temporary sibling folder that is renamed to `dest` only when complete, so an
    existing `dest` is a finished extraction and is returned as is.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise FileNotFoundError(f"archive not found: {archive}")
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial"))
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, tmp)
        else:
            _extract_tar(archive, tmp)
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
