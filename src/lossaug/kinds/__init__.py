"""The kinds of data a run trains on, one row each (``KINDS``): what differs between images and audio clips, so
that code asks the row instead of testing the kind's name. Each kind's row and its functions are in its own
module (``image``, ``audio``); a new kind is one more module and one more entry here."""

from __future__ import annotations

from lossaug.data.types import Kind
from lossaug.errors import InputError
from lossaug.kinds.audio import AUDIO
from lossaug.kinds.base import DataKind
from lossaug.kinds.image import IMAGE
from lossaug.models.user import FACTORY_FORM

__all__ = [
    "AUDIO",
    "IMAGE",
    "KINDS",
    "DataKind",
    "check_model_fits_data",
    "kind_named",
    "kind_of_dataset",
    "kind_of_model",
    "model_kind",
]

KINDS = {kind.name: kind for kind in (IMAGE, AUDIO)}


def kind_named(name: str) -> DataKind:
    """The row of kind ``name`` (``data.types.Kind``)."""
    if name not in KINDS:
        raise ValueError(f"unknown data kind {name!r}; choose from {sorted(KINDS)}")
    return KINDS[name]


def kind_of_model(name: str) -> DataKind:
    """The row of the kind network ``name`` takes: a built-in's own; images for a ``PACKAGE.MODULE:FACTORY``
    model (``model_kind`` None), as bench and compare time it."""
    return next((kind for kind in KINDS.values() if name in kind.models), IMAGE)


def kind_of_dataset(dataset: str) -> DataKind:
    """The row of the kind data set ``dataset`` holds (``data.data_kind``)."""
    from lossaug.data.sources import data_kind

    return kind_named(data_kind(dataset))


def model_kind(name: str) -> Kind | None:
    """The kind of data (a ``KINDS`` name) built-in network ``name`` takes, the row whose ``models`` list it; None
    for a ``PACKAGE.MODULE:FACTORY`` model, which may take any (its forward on the data's first samples is the
    check)."""
    return next((kind.name for kind in KINDS.values() if name in kind.models), None)


def check_model_fits_data(name: str, data_kind: Kind, dataset: str, option: str = "model") -> None:
    """Raise ``InputError`` when the built-in network ``name`` takes the other kind of input than the data set
    holds (an image network on audio, or ``audio_cnn`` on images), naming a network that fits."""
    kind = model_kind(name)
    if kind is None or kind == data_kind:
        return
    fits = kind_named(data_kind).fits
    raise InputError(
        f"--{option.replace('_', '-')} {name} is an {kind} network but dataset {dataset!r} holds "
        f"{data_kind}; use --{option.replace('_', '-')} {fits}, or your own {FACTORY_FORM}"
    )
