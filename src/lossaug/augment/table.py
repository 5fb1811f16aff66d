"""The one table of augmentation ops a spec may name (``OPS``), image and audio ops alike: each row builds its op
from the option after its colon and says which kinds of data (``lossaug.kinds``) it fits. Adding an op is one row
here and one class beside its kind's ops. ``spec`` imports this module late: it imports ``augment.audio``, which
imports ``augment.spec``."""

from __future__ import annotations

from lossaug.augment.audio import AdditiveNoise, FreqMask, RandomGain, SpeedPerturb, TimeMask, TimeShift
from lossaug.augment.basic import Cutout, HorizontalFlip, RandomCrop
from lossaug.augment.mix import CutMix, Mixup
from lossaug.augment.spec import OpRow
from lossaug.augment.trivial import TrivialAugment
from lossaug.kinds import AUDIO, IMAGE

IMAGES = (IMAGE.name,)
CLIPS = (AUDIO.name,)


def _floats(values: tuple[str, ...]) -> list[float]:
    return [float(value) for value in values]


def _ints(values: tuple[str, ...]) -> list[int]:
    return [int(value) for value in values]


def _noise(values: tuple[str, ...]) -> AdditiveNoise:
    """``noise:LOW``: the lowest SNR in dB; the highest is 40, or the lowest if above."""
    if not values:
        return AdditiveNoise()
    low = float(values[0])
    return AdditiveNoise(low, max(40.0, low))


def _freqmask(values: tuple[str, ...], sample_rate: int, n_mels: int) -> FreqMask:
    """``freqmask:BANDS`` at the front end's rate and mel channels."""
    bands = {"max_bands": int(values[0])} if values else {}
    return FreqMask(**bands, sample_rate=sample_rate, n_mels=n_mels)


# name -> row; ``build(values, sample_rate, n_mels)``: ``values`` is the option as a 1-tuple, or () for the default.
OPS: dict[str, OpRow] = {
    "flip": OpRow(lambda values, rate, mels: HorizontalFlip(*_floats(values)), IMAGES),
    "crop": OpRow(lambda values, rate, mels: RandomCrop(*_ints(values)), IMAGES),
    "cutout": OpRow(lambda values, rate, mels: Cutout(*_ints(values)), IMAGES),
    "mixup": OpRow(lambda values, rate, mels: Mixup(*_floats(values)), IMAGES + CLIPS),  # clips: soft targets too
    "cutmix": OpRow(lambda values, rate, mels: CutMix(*_floats(values)), IMAGES),
    "trivial": OpRow(lambda values, rate, mels: TrivialAugment(*values), IMAGES),
    "shift": OpRow(lambda values, rate, mels: TimeShift(*_floats(values)), CLIPS),
    "gain": OpRow(lambda values, rate, mels: RandomGain(*_floats(values)), CLIPS),
    "noise": OpRow(lambda values, rate, mels: _noise(values), CLIPS),
    "speed": OpRow(lambda values, rate, mels: SpeedPerturb(*_floats(values)), CLIPS),
    "timemask": OpRow(lambda values, rate, mels: TimeMask(*_floats(values)), CLIPS),
    "freqmask": OpRow(_freqmask, CLIPS),
}
