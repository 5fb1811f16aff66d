"""``AUDIO``: int16 waveforms ``(N,C,T)`` at one sample rate."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lossaug.errors import InputError
from lossaug.kinds.base import DataKind, Stats

if TYPE_CHECKING:
    from torch import Tensor

    from lossaug.config import TrainConfig

__all__ = ["AUDIO"]


def _input_spec(shape: tuple[int, ...], sample_rate: int | None) -> dict[str, Any]:
    return {"kind": "audio", "channels": shape[0], "sample_rate": sample_rate, "clip_samples": shape[1]}


def _check_augment(spec: str, dataset: str) -> None:
    from lossaug.audio import parse_audio_augment

    parse_audio_augment(spec)


def _check_setting(setting: str) -> None:
    if setting == "C":
        raise InputError("setting C (TrivialAugment-style ops) is for images; audio has settings A and B")


def _default_augment(config: TrainConfig, image_side: int | None) -> str:
    from lossaug.audio import AUDIO_SETTINGS

    return config.augment or AUDIO_SETTINGS[config.setting]


def _input_stats(inputs: Tensor) -> Stats:
    return (0.0,), (32768 / 255,)  # Normalized hands the model int16 samples scaled to [-1, 1]


AUDIO = DataKind(
    name="audio",
    noun="clips",
    models=("audio_cnn",),
    takes="audio (WAV files)",
    input_spec=_input_spec,
    check_augment=_check_augment,
    check_setting=_check_setting,
    default_augment=_default_augment,
    input_stats=_input_stats,
    default_model="audio_cnn",  # no network named: the one that takes waveforms
)
