"""Regenerate src/lossaug/assets/mini_cifar10.tar.xz, the mini CIFAR-10 bundled with lossaug.

Usage: python experiments/make_mini_cifar10.py SRC_ARCHIVE OUT

SRC_ARCHIVE is the JPEG CIFAR-10 image-folder archive (train/<class>/NNNN.jpg, test/<class>/NNNN.jpg). The subset
is the first TRAIN_PER_CLASS train and first TEST_PER_CLASS test images of every class in sorted file-name order,
with their original JPEG bytes. The output is byte-for-byte reproducible: members in sorted path order, no folder
entries, mtime 0, uid/gid 0, mode 0644, ustar headers, xz preset 9e. Prints the output's sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import lzma
import os
import tarfile
from pathlib import Path, PurePosixPath

TRAIN_PER_CLASS = 500
TEST_PER_CLASS = 100
MAX_BYTES = 4_000_000  # keep the wheel small; see docs/DATA.md
IMAGE_SUFFIX = ".jpg"


def select(src: Path) -> dict[str, bytes]:
    """path inside the archive -> JPEG bytes, for the subset described in the module docstring."""
    per_split = {"train": TRAIN_PER_CLASS, "test": TEST_PER_CLASS}
    files: dict[str, bytes] = {}
    with tarfile.open(src, "r:*") as tar:
        for member in tar:
            parts = PurePosixPath(member.name).parts
            if member.isfile() and len(parts) == 3 and parts[0] in per_split and parts[2].endswith(IMAGE_SUFFIX):
                files[PurePosixPath(*parts).as_posix()] = tar.extractfile(member).read()
    chosen: dict[str, bytes] = {}
    by_class: dict[tuple[str, str], list[str]] = {}
    for path in sorted(files):
        split, cls, _ = path.split("/")
        by_class.setdefault((split, cls), []).append(path)
    for (split, cls), paths in sorted(by_class.items()):
        if len(paths) < per_split[split]:
            raise SystemExit(f"{src}: {split}/{cls} has {len(paths)} images, need {per_split[split]}")
        chosen.update((p, files[p]) for p in paths[: per_split[split]])
    return chosen


def build(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path in sorted(files):
            info = tarfile.TarInfo(path)
            info.size, info.mtime, info.mode = len(files[path]), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(files[path]))
    return lzma.compress(buffer.getvalue(), format=lzma.FORMAT_XZ, preset=9 | lzma.PRESET_EXTREME)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src_archive", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    files = select(args.src_archive)
    data = build(files)
    if len(data) > MAX_BYTES:
        raise SystemExit(f"{len(data)} bytes is over the {MAX_BYTES}-byte budget; lower the per-class counts")
    tmp = args.out.with_name(args.out.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, args.out)
    print(f"{args.out}: {len(files)} images, {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}")


if __name__ == "__main__":
    main()
