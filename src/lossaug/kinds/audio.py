"""``AUDIO``: int16 waveforms ``(N,C,T)`` at one sample rate."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from lossaug.augment.audio import AUDIO_SETTINGS, parse_audio_spec
from lossaug.data.audio_folders import AUDIO_SUFFIXES
from lossaug.data.types import AUDIO_KIND
from lossaug.errors import InputError
from lossaug.kinds.base import DataKind, Stats
from lossaug.models.audio import DEFAULT_SAMPLE_RATE

if TYPE_CHECKING:
    from pathlib import Path

    from torch import Tensor, nn

    from lossaug.run.config import TrainConfig
    from lossaug.use.run import InputSpec

__all__ = ["AUDIO"]


def _input_spec(shape: tuple[int, ...], sample_rate: int | None) -> dict[str, Any]:
    return {"kind": AUDIO_KIND, "channels": shape[0], "sample_rate": sample_rate, "clip_samples": shape[1]}


def _example_shape(spec: InputSpec) -> tuple[int, ...]:
    return (spec.channels, int(spec.clip_samples or 0))


def _describe(spec: InputSpec) -> str:
    seconds = (spec.clip_samples or 0) / (spec.sample_rate or 1)
    return f"{spec.channels}x{spec.clip_samples} int16 clips at {spec.sample_rate} Hz ({seconds:g} s)"


def _is_file(head: bytes) -> bool:
    """A WAV file by its first bytes."""
    return head.startswith(b"RIFF") and head[8:12] == b"WAVE"


def _check_augment(spec: str, dataset: str) -> None:
    from lossaug.augment.audio import parse_audio_augment

    parse_audio_augment(spec)


def _check_setting(setting: str) -> None:
    if setting == "C":
        raise InputError("setting C (TrivialAugment-style ops) is for images; audio has settings A and B")


def _default_augment(config: TrainConfig, image_side: int | None) -> str:
    return config.augment or AUDIO_SETTINGS[config.setting]


def _input_stats(inputs: Tensor) -> Stats:
    return (0.0,), (32768 / 255,)  # Normalized hands the model int16 samples scaled to [-1, 1]


def _read_input(source: Path | bytes, where: str, spec: InputSpec) -> Tensor:
    from lossaug.use.inputs import read_clip  # use imports the kinds, so not at module level

    return read_clip(source, where, spec)


def _export_takes(spec: InputSpec, takes_float: bool) -> str:
    from lossaug.use.export_inputs import audio_takes

    return audio_takes(spec, takes_float)


def _export_preprocessing(spec: InputSpec) -> dict[str, Any]:
    from lossaug.use.export_inputs import audio_preprocessing

    return audio_preprocessing(spec)


def _script_wrapper(net: nn.Module, spec: InputSpec, num_classes: int) -> nn.Module:
    from lossaug.use.formats import waveforms_module

    return waveforms_module(net, spec, num_classes)


AUDIO = DataKind(
    name=AUDIO_KIND,
    noun="clips",
    models=("audio_cnn",),
    takes="audio (WAV files)",
    input_spec=_input_spec,
    input_keys=("kind", "channels", "sample_rate", "clip_samples"),
    example_shape=_example_shape,
    describe=_describe,
    suffixes=AUDIO_SUFFIXES,
    is_file=_is_file,
    one_file="audio",
    files="audio",
    empty_batch_ok=False,  # the front end's FFT takes no empty batch
    read_input=_read_input,
    script_wrapper=_script_wrapper,
    export_takes=_export_takes,
    export_preprocessing=_export_preprocessing,
    dtype=torch.int16,
    value_range=(-32768, 32767),
    example_range=(-3000, 3000),
    check_augment=_check_augment,
    parse_augment=parse_audio_spec,
    check_setting=_check_setting,
    default_augment=_default_augment,
    input_stats=_input_stats,
    default_model="audio_cnn",  # no network named: the one that takes waveforms
    settings=AUDIO_SETTINGS,
    default_sample_rate=DEFAULT_SAMPLE_RATE,  # every audio run before rates were recorded ran at 8000 Hz
)
