"""``DataKind``: what differs between kinds of data (images, audio clips), one frozen row per kind."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lossaug.data.types import Kind

__all__ = ["DataKind"]


def _no_check(setting: str) -> None:
    """Every setting the config accepts fits this kind."""


@dataclass(frozen=True)
class DataKind:
    """One kind of data: its name (``data.types.Kind``), how messages count its examples, the networks that take
    it, what ``lossaug predict`` reads, and the functions that differ per kind. ``default_model`` None: the
    config's default network."""

    name: Kind
    noun: str  # the examples in messages: "images", "clips"
    models: tuple[str, ...]  # the built-in networks that take it, in the order an error suggests them
    takes: str  # the files ``lossaug predict`` reads, in its messages
    # (shape of one example, sample rate) -> the run's input spec (checkpoint and config.json "inputs")
    input_spec: Callable[[tuple[int, ...], int | None], dict[str, Any]]
    # (augment spec, data set name): raise InputError when the spec does not fit this kind
    check_augment: Callable[[str, str], None]
    check_setting: Callable[[str], None] = _no_check  # raise InputError for a setting this kind has not
    default_model: str | None = None

    @property
    def fits(self) -> str:
        """The networks that take this kind, as an error suggests them: ``"a, b or c"``."""
        head, last = self.models[:-1], self.models[-1]
        return f"{', '.join(head)} or {last}" if head else last
