"""``AUDIO``: int16 waveforms ``(N,C,T)`` at one sample rate."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from lossaug.audio.augment import AUDIO_SETTINGS, parse_audio_spec
from lossaug.audio.model import DEFAULT_SAMPLE_RATE
from lossaug.data.audio_folders import AUDIO_SUFFIXES
from lossaug.errors import InputError
from lossaug.kinds.base import DataKind, Stats

if TYPE_CHECKING:
    from torch import Tensor

    from lossaug.config import TrainConfig
    from lossaug.use.run import InputSpec

__all__ = ["AUDIO"]


def _input_spec(shape: tuple[int, ...], sample_rate: int | None) -> dict[str, Any]:
    return {"kind": "audio", "channels": shape[0], "sample_rate": sample_rate, "clip_samples": shape[1]}


def _example_shape(spec: InputSpec) -> tuple[int, ...]:
    return (spec.channels, int(spec.clip_samples or 0))


def _describe(spec: InputSpec) -> str:
    seconds = (spec.clip_samples or 0) / (spec.sample_rate or 1)
    return f"{spec.channels}x{spec.clip_samples} int16 clips at {spec.sample_rate} Hz ({seconds:g} s)"


def _is_file(head: bytes) -> bool:
    """A WAV file by its first bytes."""
    return head.startswith(b"RIFF") and head[8:12] == b"WAVE"


def _check_augment(spec: str, dataset: str) -> None:
    from lossaug.audio import parse_audio_augment

    parse_audio_augment(spec)


def _check_setting(setting: str) -> None:
    if setting == "C":
        raise InputError("setting C (TrivialAugment-style ops) is for images; audio has settings A and B")


def _default_augment(config: TrainConfig, image_side: int | None) -> str:
    return config.augment or AUDIO_SETTINGS[config.setting]


def _input_stats(inputs: Tensor) -> Stats:
    return (0.0,), (32768 / 255,)  # Normalized hands the model int16 samples scaled to [-1, 1]


AUDIO = DataKind(
    name="audio",
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
