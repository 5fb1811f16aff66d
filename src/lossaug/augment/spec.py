"""The augmentation spec, one language for images and audio: ``AUGMENTATIONS`` (image op name -> op from its one
option), ``lossaug.audio.AUDIO_AUGMENTATIONS`` (the waveform ops) and ``parse_augment``, which reads either."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from lossaug.augment.basic import Cutout, HorizontalFlip, RandomCrop
from lossaug.augment.core import Augment, Compose, MixingAugment
from lossaug.augment.mix import CutMix, Mixup
from lossaug.augment.trivial import TrivialAugment
from lossaug.errors import InputError

if TYPE_CHECKING:
    from lossaug.audio.augment import AudioAugment

AUGMENTATIONS: dict[str, Callable[..., Augment | MixingAugment]] = {
    "flip": lambda p=0.5: HorizontalFlip(float(p)),
    "crop": lambda padding=4: RandomCrop(int(padding)),
    "cutout": lambda size=16: Cutout(int(size)),
    "mixup": lambda alpha=0.2: Mixup(float(alpha)),
    "cutmix": lambda alpha=1.0: CutMix(float(alpha)),
    "trivial": lambda: TrivialAugment(),
}


def _audio_ops() -> dict:
    from lossaug.audio.augment import AUDIO_AUGMENTATIONS  # lossaug.audio imports this package: imported late

    return AUDIO_AUGMENTATIONS


def spec_kind(spec: str, sample_rate: int | None) -> str:
    """``"image"`` or ``"audio"``: audio when the spec names a waveform-only op or ``sample_rate`` is given. An
    unknown op, or image-only and audio-only ops in one spec, is an ``InputError`` listing both kinds' ops."""
    audio_ops = _audio_ops()
    names = [item.strip().partition(":")[0] for item in spec.split(",") if item.strip() not in ("", "none")]
    choices = f"image ops: {sorted(AUGMENTATIONS)}; audio ops: {sorted(audio_ops)}"
    unknown = [name for name in names if name not in AUGMENTATIONS and name not in audio_ops]
    if unknown:
        raise InputError(f"unknown augmentation {unknown[0]!r} in {spec!r}; {choices}")
    image_only = [name for name in names if name not in audio_ops]
    audio_only = [name for name in names if name not in AUGMENTATIONS]
    if image_only and (audio_only or sample_rate is not None):
        why = f"audio ops {audio_only}" if audio_only else f"sample_rate={sample_rate} (audio)"
        raise InputError(f"{spec!r} mixes image ops {image_only} with {why}; {choices}")
    return "audio" if audio_only or sample_rate is not None else "image"


def parse_augment(spec: str, *, sample_rate: int | None = None) -> Compose | AudioAugment:
    """The augmentation of a spec, images or audio: a ``Compose`` of image ops such as ``"flip,crop"`` or
    ``"flip:0.5,crop:4,cutout:8"``, or, when the spec names a waveform op (``"shift,gain,noise"``) or
    ``sample_rate`` (Hz) is given, ``lossaug.audio.parse_audio_augment``'s ops at that rate wrapped to take
    ``(B,T)`` as well as ``(B,C,T)`` waveforms (``AudioAugment``).

    Image ops' values after a colon: flip probability, crop padding (pixels), cutout side (pixels), mixup and
    cutmix alpha (lam ~ Beta(alpha, alpha)); ``trivial`` takes none. An empty spec (or ``"none"``) is the identity.
    """
    if spec_kind(spec, sample_rate) == "audio":
        from lossaug.audio.augment import AudioAugment, parse_audio_augment

        rate = {} if sample_rate is None else {"sample_rate": sample_rate}
        return AudioAugment(parse_audio_augment(spec, **rate))
    return _parse_image_augment(spec)


def _parse_image_augment(spec: str) -> Compose:
    """``Compose`` of the image ops of ``spec`` (``parse_augment``)."""
    augments: list[Augment | MixingAugment] = []
    for item in (part.strip() for part in spec.split(",")):
        if item in ("", "none"):
            continue
        name, _, arg = item.partition(":")
        if name not in AUGMENTATIONS:
            raise InputError(f"unknown augmentation {name!r} in {spec!r}; choose from {sorted(AUGMENTATIONS)}")
        try:
            augments.append(AUGMENTATIONS[name](arg) if arg else AUGMENTATIONS[name]())
        except (ValueError, TypeError) as error:
            raise InputError(f"bad value {arg!r} for augmentation {name!r} in {spec!r}: {error}") from None
    return Compose(tuple(augments))
