"""``DataKind``: what differs between kinds of data (images, audio clips), one frozen row per kind."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from pathlib import Path

    from torch import Tensor, nn

    from lossaug.augment.audio import AudioAugment
    from lossaug.augment.core import Compose
    from lossaug.data.types import Kind
    from lossaug.run.config import TrainConfig
    from lossaug.use.run import InputSpec

Stats = tuple[tuple[float, ...], tuple[float, ...]]  # per-channel mean and std on the [0, 255] scale, over 255

__all__ = ["DataKind", "Stats"]


def _no_check(setting: str) -> None:
    """Every setting the config accepts fits this kind."""


def _no_side(inputs: Tensor) -> None:
    """Not images: no side to scale augmentations or check networks against."""


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
    input_keys: tuple[str, ...]  # the keys of its input spec, "kind" and "channels" first
    # an input spec -> one example's shape, and the spec in words (``lossaug predict``'s messages)
    example_shape: Callable[[InputSpec], tuple[int, ...]]
    describe: Callable[[InputSpec], str]
    dtype: torch.dtype  # of its examples
    value_range: tuple[int, int]  # the smallest and largest value an example holds
    example_range: tuple[int, int]  # ``torch.randint``'s low and high for random examples (export traces them)
    suffixes: tuple[str, ...]  # file name endings of its files, lower case
    is_file: Callable[[bytes], bool]  # whether a file's first 12 bytes say it is one of this kind's
    one_file: str  # one such file in messages ("an image")
    files: str  # such files in messages ("images")
    empty_batch_ok: bool  # whether its networks take a batch of none (exports pad one otherwise)
    # (a file's path or bytes, its name in messages, the run's input spec) -> one example preprocessed as the run's
    # test data were (``use.inputs``); a file it cannot read raises InputError naming it
    read_input: Callable[[Path | bytes, str, InputSpec], Tensor]
    # (traced network, input spec, number of classes) -> the scripted module that checks inputs (``use.formats``)
    script_wrapper: Callable[[nn.Module, InputSpec, int], nn.Module]
    # (input spec, whether the format takes floats) -> an export's input in words; (input spec) -> how a file
    # becomes that input, exactly (model.json's "takes" and "preprocessing", ``use.export_inputs``)
    export_takes: Callable[[InputSpec, bool], str]
    export_preprocessing: Callable[[InputSpec], dict[str, Any]]
    # (augment spec, data set name): raise InputError when the spec does not fit this kind
    check_augment: Callable[[str, str], None]
    # (augment spec, sample rate or None) -> its augmentation (``augment.parse_augment`` of a spec of this kind)
    parse_augment: Callable[[str, int | None], Compose | AudioAugment]
    # (config, image side or None) -> the augmentation spec the run uses: config.augment, else its setting's
    default_augment: Callable[[TrainConfig, int | None], str]
    # training inputs -> the Normalized front end's per-channel mean and std
    input_stats: Callable[[Tensor], Stats]
    image_side: Callable[[Tensor], int | None] = _no_side  # the smaller image side; None: not images
    resized: bool = False  # whether its files are resized to the run's --image-size, as its data were
    check_setting: Callable[[str], None] = _no_check  # raise InputError for a setting this kind has not
    default_model: str | None = None
    default_sample_rate: int | None = None  # Hz, what a run that did not record its rate was built for
    settings: Mapping[str, str] | None = None  # setting -> augmentation spec; None: scaled to the data (images)

    @property
    def has_rate(self) -> bool:
        """Whether its examples are sampled at a rate (clips), which networks and augmentations are built for."""
        return self.default_sample_rate is not None

    @property
    def fits(self) -> str:
        """The networks that take this kind, as an error suggests them: ``"a, b or c"``."""
        head, last = self.models[:-1], self.models[-1]
        return f"{', '.join(head)} or {last}" if head else last
