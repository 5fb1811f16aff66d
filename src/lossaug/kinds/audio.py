"""``AUDIO``: int16 waveforms ``(N,C,T)`` at one sample rate."""

from __future__ import annotations

from typing import Any

from lossaug.errors import InputError
from lossaug.kinds.base import DataKind

__all__ = ["AUDIO"]


def _input_spec(shape: tuple[int, ...], sample_rate: int | None) -> dict[str, Any]:
    return {"kind": "audio", "channels": shape[0], "sample_rate": sample_rate, "clip_samples": shape[1]}


def _check_augment(spec: str, dataset: str) -> None:
    from lossaug.audio import parse_audio_augment

    parse_audio_augment(spec)


def _check_setting(setting: str) -> None:
    if setting == "C":
        raise InputError("setting C (TrivialAugment-style ops) is for images; audio has settings A and B")


AUDIO = DataKind(
    name="audio",
    noun="clips",
    models=("audio_cnn",),
    takes="audio (WAV files)",
    input_spec=_input_spec,
    check_augment=_check_augment,
    check_setting=_check_setting,
    default_model="audio_cnn",  # no network named: the one that takes waveforms
)
