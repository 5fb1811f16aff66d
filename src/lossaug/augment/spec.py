"""The augmentation spec: ``AUGMENTATIONS`` (name -> op from its one option) and ``parse_augment``."""

from __future__ import annotations

from collections.abc import Callable

from lossaug.augment.basic import Cutout, HorizontalFlip, RandomCrop
from lossaug.augment.core import Augment, Compose, MixingAugment
from lossaug.augment.mix import CutMix, Mixup
from lossaug.augment.trivial import TrivialAugment
from lossaug.errors import InputError

AUGMENTATIONS: dict[str, Callable[..., Augment | MixingAugment]] = {
    "flip": lambda p=0.5: HorizontalFlip(float(p)),
    "crop": lambda padding=4: RandomCrop(int(padding)),
    "cutout": lambda size=16: Cutout(int(size)),
    "mixup": lambda alpha=0.2: Mixup(float(alpha)),
    "cutmix": lambda alpha=1.0: CutMix(float(alpha)),
    "trivial": lambda: TrivialAugment(),
}


def parse_augment(spec: str) -> Compose:
    """Build a ``Compose`` from a spec such as ``"flip,crop"`` or ``"flip:0.5,crop:4,cutout:8"``.

    The value after a colon is the op's one hyperparameter: flip probability, crop padding (pixels), cutout
    side (pixels), mixup and cutmix alpha (lam ~ Beta(alpha, alpha)); ``trivial`` takes none. An empty spec (or
    ``"none"``) is the identity.
    """
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
