"""The augmentation spec, one language for every kind of data: ``parse_augment`` reads a spec such as
``"flip,crop:4"`` against the one table of ops (``augment.table.OPS``, imported late: it imports the ops of every
kind, some of which import this package), whose rows say which kinds of data (``lossaug.kinds``) each op fits.
The kind decides which rows a spec may use; ``spec_kind`` tells the kind from the names and the sample rate."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lossaug.augment.core import Augment, Compose, MixingAugment
from lossaug.errors import InputError

if TYPE_CHECKING:
    from lossaug.augment.audio import AudioAugment


@dataclass(frozen=True)
class OpRow:
    """One op a spec may name: ``build(values, sample_rate, n_mels)`` makes it from the option after its colon
    (``values`` is ``()`` without one: the op's defaults), and ``kinds`` are the data kinds it fits."""

    build: Callable[..., Augment | MixingAugment]
    kinds: tuple[str, ...]


def _table() -> dict[str, OpRow]:
    from lossaug.augment.table import OPS  # imports augment.audio, which imports this module: imported late

    return OPS


class KindOps(Mapping[str, OpRow]):
    """The rows of the one table that fit data kind ``kind`` (name -> ``OpRow``), read from it when used."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def _rows(self) -> dict[str, OpRow]:
        return {name: row for name, row in _table().items() if self.kind in row.kinds}

    def __getitem__(self, name: str) -> OpRow:
        return self._rows()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows())

    def __len__(self) -> int:
        return len(self._rows())


AUGMENTATIONS = KindOps("image")  # the image ops: name -> OpRow


def _names(spec: str) -> list[str]:
    return [item.strip().partition(":")[0] for item in spec.split(",") if item.strip() not in ("", "none")]


def spec_kind(spec: str, sample_rate: int | None) -> str:
    """The kind of data ``spec`` is for: the kind that takes a sample rate (audio) when the spec names an op only
    it fits or ``sample_rate`` is given, else the other (images). An unknown op, or ops of both kinds only in one
    spec, is an ``InputError`` listing every kind's ops."""
    from lossaug.kinds import KINDS  # lossaug.kinds imports augment.audio, which imports this module

    table, names = _table(), _names(spec)
    plain = next(kind.name for kind in KINDS.values() if not kind.has_rate)
    rated = next(kind.name for kind in KINDS.values() if kind.has_rate)
    choices = "; ".join(f"{kind} ops: {sorted(KindOps(kind))}" for kind in KINDS)
    unknown = [name for name in names if name not in table]
    if unknown:
        raise InputError(f"unknown augmentation {unknown[0]!r} in {spec!r}; {choices}")
    plain_only = [name for name in names if rated not in table[name].kinds]
    rated_only = [name for name in names if plain not in table[name].kinds]
    if plain_only and (rated_only or sample_rate is not None):
        why = f"{rated} ops {rated_only}" if rated_only else f"sample_rate={sample_rate} ({rated})"
        raise InputError(f"{spec!r} mixes {plain} ops {plain_only} with {why}; {choices}")
    return rated if rated_only or sample_rate is not None else plain


def parse_augment(spec: str, *, sample_rate: int | None = None) -> Compose | AudioAugment:
    """The augmentation of a spec, images or audio: a ``Compose`` of image ops such as ``"flip,crop"`` or
    ``"flip:0.5,crop:4,cutout:8"``, or, when the spec names a waveform op (``"shift,gain,noise"``) or
    ``sample_rate`` (Hz) is given, ``lossaug.audio.parse_audio_augment``'s ops at that rate wrapped to take
    ``(B,T)`` as well as ``(B,C,T)`` waveforms (``AudioAugment``): the kind's ``parse_augment``.

    Image ops' values after a colon: flip probability, crop padding (pixels), cutout side (pixels), mixup and
    cutmix alpha (lam ~ Beta(alpha, alpha)); ``trivial`` takes none. An empty spec (or ``"none"``) is the identity.
    """
    from lossaug.kinds import kind_named  # lossaug.kinds imports augment.audio, which imports this module

    return kind_named(spec_kind(spec, sample_rate)).parse_augment(spec, sample_rate)


def parse_ops(
    spec: str, kind: str, *, label: str = "augmentation", sample_rate: int | None = None, n_mels: int | None = None
) -> Compose:
    """``Compose`` of the ops of ``spec`` in order, each a row of the one table that fits data ``kind``; ``label``
    names an op in messages. ``sample_rate`` (Hz) and ``n_mels`` are the front end's, for the ops built for it."""
    table = _table()
    augments: list[Augment | MixingAugment] = []
    for item in (part.strip() for part in spec.split(",")):
        if item in ("", "none"):
            continue
        name, _, arg = item.partition(":")
        if name not in table or kind not in table[name].kinds:
            raise InputError(f"unknown {label} {name!r} in {spec!r}; choose from {sorted(KindOps(kind))}")
        try:
            augments.append(table[name].build((arg,) if arg else (), sample_rate, n_mels))
        except (ValueError, TypeError) as error:
            raise InputError(f"bad value {arg!r} for {label} {name!r} in {spec!r}: {error}") from None
    return Compose(tuple(augments))
