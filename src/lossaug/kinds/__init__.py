"""The kinds of data a run trains on, one row each (``KINDS``): what differs between images and audio clips, so
that code asks the row instead of testing the kind's name. Each kind's row and its functions are in its own
module (``image``, ``audio``); a new kind is one more module and one more entry here."""

from __future__ import annotations

from lossaug.kinds.audio import AUDIO
from lossaug.kinds.base import DataKind
from lossaug.kinds.image import IMAGE

__all__ = ["AUDIO", "IMAGE", "KINDS", "DataKind", "kind_named", "kind_of_dataset", "kind_of_model"]

KINDS = {kind.name: kind for kind in (IMAGE, AUDIO)}


def kind_named(name: str) -> DataKind:
    """The row of kind ``name`` (``data.types.Kind``)."""
    if name not in KINDS:
        raise ValueError(f"unknown data kind {name!r}; choose from {sorted(KINDS)}")
    return KINDS[name]


def kind_of_model(name: str) -> DataKind:
    """The row of the kind network ``name`` takes: a built-in's own; images for a ``PACKAGE.MODULE:FACTORY``
    model (``models.model_kind`` None), as bench and compare time it."""
    return next((kind for kind in KINDS.values() if name in kind.models), IMAGE)


def kind_of_dataset(dataset: str) -> DataKind:
    """The row of the kind data set ``dataset`` holds (``data.data_kind``)."""
    from lossaug.data.sources import data_kind

    return kind_named(data_kind(dataset))
