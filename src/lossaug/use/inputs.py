"""A user's files as a run's inputs, preprocessed exactly as the run's test data were: the same decoding
(``data.folders`` for images, ``data.wav`` for audio), the same size, rate, channel and clip policy.

Images: decoded as image folders decode them (palettes, alpha and 16-bit gray handled alike), resized to the run's
``--image-size`` if it had one; gray images become RGB for an RGB run (the channel repeated, as a mixed folder
does) and color images gray for a gray run (PIL's ``L``); an image of another size than the run's is resized to it
(PIL bilinear, as ``--image-size`` resizes). Audio: mixed to mono, resampled to the run's rate (band-limited),
centred in the run's clip length, zero-padded or cropped equally at both ends, scaled by 32768 to int16.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from lossaug.data import decode_audio, decode_image, fit_clip, resample
from lossaug.errors import InputError
from lossaug.kinds import KINDS, kind_named
from lossaug.use.run import InputSpec

__all__ = [
    "Unreadable",
    "describe_missing",
    "find_files",
    "read_clip",
    "read_image",
    "read_input",
    "read_inputs",
    "suffixes_for",
]


# The work one file may ask for: a header's rate is only a number (a WAV claiming 1 Hz would be resampled 16000-fold
# at 16 kHz: a 40 KB file asked for 2.1 GB), so the resampled length is checked before anything is allocated.
MIN_RATE = 100  # Hz; telephone audio is 8000
MAX_RESAMPLED = 1 << 25  # samples (128 MiB of float32; 35 min at 16 kHz)


@dataclass(frozen=True)
class Unreadable:
    """A file that could not be read as the run's input, and why (one line)."""

    path: str
    reason: str


def suffixes_for(spec: InputSpec) -> tuple[str, ...]:
    """The file endings a folder is searched for: image or audio files, as the run's data."""
    return kind_named(spec.kind).suffixes


def find_files(paths: Sequence[str | Path], spec: InputSpec) -> list[Path]:
    """``paths`` with each folder replaced by the image or audio files under it (recursively, sorted, hidden files
    skipped); files named directly are kept whatever their ending (a wrong one is then unreadable)."""
    suffixes = suffixes_for(spec)
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if _is_wanted(p, suffixes))
        else:
            found.append(path)
    return found


def _is_wanted(path: Path, suffixes: tuple[str, ...]) -> bool:
    """Whether a folder's ``path`` is a file to read: not hidden, and with one of ``suffixes``."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in suffixes


def _image(source: Path | bytes, where: str, spec: InputSpec) -> Tensor:
    """``(C,H,W)`` uint8 of one image, as the run's test data were decoded."""
    array = decode_image(source, spec.image_size, where)
    if array.ndim == 3 and spec.channels == 1:  # a color image for a gray run
        array = np.asarray(Image.fromarray(array).convert("L"))
    if array.shape[:2] != (spec.height, spec.width):
        mode = "L" if array.ndim == 2 else "RGB"
        resized = Image.fromarray(array, mode).resize(
            (int(spec.width or 0), int(spec.height or 0)), Image.Resampling.BILINEAR
        )
        array = np.asarray(resized)
    if array.ndim == 2:
        array = np.repeat(array[..., None], spec.channels, axis=2)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def read_image(source: Path | bytes, where: str, spec: InputSpec) -> Tensor:
    """``(C,H,W)`` uint8 of one image (``IMAGE.read_input``); a file PIL cannot decode raises ``InputError``."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", Image.DecompressionBombWarning)
            image = _image(source, where, spec)
        for warning in caught:  # PIL's own names no file: say which, and pass on any other warning as it was
            message = (
                f"{where}: {warning.message}" if warning.category is Image.DecompressionBombWarning else warning.message
            )
            warnings.warn(message, warning.category, stacklevel=4)  # read_input's caller (here, the row, read_input)
        return image
    except InputError:  # decode_image's own, naming the file
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise InputError(f"cannot decode image {where}: {error}") from error


def read_clip(source: Path | bytes, where: str, spec: InputSpec) -> Tensor:
    """``(C,T)`` int16 of one clip (``AUDIO.read_input``), as the run's test clips were made."""
    samples, rate = decode_audio(source, where)
    assert spec.sample_rate is not None and spec.clip_samples is not None
    if rate < MIN_RATE:
        raise InputError(f"cannot read {where}: its header says {rate} Hz, not an audio rate (at least {MIN_RATE} Hz)")
    resampled = -(-len(samples) * spec.sample_rate // rate)
    if resampled > MAX_RESAMPLED:  # checked before resampling allocates it
        raise InputError(
            f"cannot read {where}: {len(samples)} samples at {rate} Hz make {resampled} at the run's "
            f"{spec.sample_rate} Hz, more than {MAX_RESAMPLED}; cut the file to the part to predict"
        )
    if rate != spec.sample_rate:
        samples = resample(torch.from_numpy(samples), rate, spec.sample_rate).numpy()
    clip = torch.from_numpy(fit_clip(samples, spec.clip_samples)).view(1, -1)
    return clip.expand(spec.channels, -1).contiguous()


def _other_kind(source: Path | bytes, spec: InputSpec) -> str:
    """The other kind's ``one_file`` (``"an image"``, ...) when ``source`` is plainly the kind of file the run does
    not take (by its first bytes or its ending), else ``""``: its own decoder then says what is wrong."""
    if isinstance(source, Path):
        with source.open("rb") as handle:
            head = handle.read(12)
        suffix = source.suffix.lower()
    else:
        head, suffix = source[:12], ""
    own = kind_named(spec.kind)
    for other in KINDS.values():
        if other is not own and (other.is_file(head) or (suffix in other.suffixes and not own.is_file(head))):
            return other.one_file
    return ""


def describe_missing(paths: Sequence[str | Path], spec: InputSpec) -> str:
    """Why ``paths`` gave no files to predict: the run's kind, and what the folders hold instead, if anything."""
    where = ", ".join(map(str, paths))
    others = [kind for kind in KINDS.values() if kind.name != spec.kind]
    found = [p.suffix.lower() for given in paths if Path(given).is_dir() for p in Path(given).rglob("*")]
    held = [kind.files for kind in others if any(suffix in kind.suffixes for suffix in found)]
    instead = f" and {where} hold{'s' * (len(paths) == 1)} {' and '.join(held)}" if held else ""
    return f"no files to predict in {where}: the run takes {kind_named(spec.kind).takes}{instead}"


def read_input(source: Path | bytes, spec: InputSpec, where: str | None = None) -> Tensor:
    """One file (a path or its bytes) as the run's input: ``(C,H,W)`` uint8 or ``(C,T)`` int16. An unreadable
    file raises ``InputError`` naming it (``where``: its name in messages, default the path)."""
    if isinstance(source, str):
        source = Path(source)
    name = where or (str(source) if isinstance(source, Path) else "<bytes>")
    if isinstance(source, Path) and not source.is_file():
        raise InputError(f"cannot read {name}: " + ("no such file" if not source.exists() else "not a file"))
    other = _other_kind(source, spec)
    if other:
        raise InputError(f"cannot read {name}: the run takes {kind_named(spec.kind).takes}, and this is {other}")
    return kind_named(spec.kind).read_input(source, name, spec)


def read_inputs(
    files: Iterable[tuple[str, Path | bytes]], spec: InputSpec
) -> tuple[list[str], Tensor, list[Unreadable]]:
    """``(names, inputs (N,...), unreadable)`` of ``(name, path or bytes)`` pairs: every readable file stacked in
    order, the others listed with the reason."""
    names, tensors, failed = [], [], []
    for name, source in files:
        try:
            tensors.append(read_input(source, spec, name))
        except InputError as error:
            failed.append(Unreadable(name, str(error)))
            continue
        names.append(name)
    dtype = kind_named(spec.kind).dtype
    stacked = torch.stack(tensors) if tensors else torch.empty((0, *spec.shape), dtype=dtype)
    return names, stacked, failed
