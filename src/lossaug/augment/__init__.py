"""Batched, per-sample-random augmentations.

Every augmentation is one op class (``op``: ``Op``, and ``MixingOp`` for ops that mix labels): a frozen dataclass of
hyperparameters, checked once when it is built, that runs a whole batch ``images (B,C,H,W)`` at once: it draws one
set of parameters per image from an explicit ``generator`` on the batch's device (``params``) and applies them
(``apply``), with no Python loop over images, so the batched op can be checked against a per-image reference. The
``*_params``, ``apply_*`` and functional names (``cutout``, ``mixup``, ...) are thin calls to the op. Any callable
``(images, generator) -> images`` is an ``Augment``; label-mixing ops (``mixes_targets``) also take and return soft
targets.

Where they live: ``op`` (the op shape), ``core`` (``Augment``, ``call_augment``, ``Compose``,
``augment_with_targets``), ``basic`` (flip, crop, Cutout), ``mix`` (Mixup, CutMix), ``trivial`` (the
TrivialAugment-style space of setting C), ``spec`` (``parse_augment``) over ``table`` (the one table of image and
audio ops, keyed by name). ``parse_augment("flip,crop,cutout")`` builds setting B of the paper; options go after a
colon: ``"flip:0.5,crop:4,cutout:16"``, ``"flip,crop,mixup:0.2"``, ``"flip,crop,trivial"``. Every public name is
re-exported here.
"""

from lossaug.augment.basic import (
    Cutout,
    HorizontalFlip,
    RandomCrop,
    apply_crop,
    apply_cutout,
    apply_flip,
    crop_params,
    cutout,
    cutout_params,
    flip_params,
    horizontal_flip,
    random_crop,
)
from lossaug.augment.core import (
    Augment,
    Compose,
    Fill,
    MixingAugment,
    augment_with_targets,
    call_augment,
    mixes_targets,
)
from lossaug.augment.mix import (
    CutMix,
    Mixup,
    apply_cutmix,
    apply_mixup,
    beta_params,
    cutmix,
    cutmix_boxes,
    cutmix_params,
    mix_params,
    mixup,
)
from lossaug.augment.op import MixingOp, Op
from lossaug.augment.spec import AUGMENTATIONS, parse_augment, spec_kind
from lossaug.augment.trivial import (
    TRIVIAL_OPS,
    TrivialAugment,
    TrivialParams,
    apply_affine,
    apply_autocontrast,
    apply_brightness,
    apply_color,
    apply_contrast,
    apply_equalize,
    apply_posterize,
    apply_rotate,
    apply_sharpness,
    apply_shear,
    apply_solarize,
    apply_translate,
    apply_trivial,
    grayscale,
    trivial_augment,
    trivial_params,
)

__all__ = [
    "AUGMENTATIONS",
    "TRIVIAL_OPS",
    "Augment",
    "Compose",
    "CutMix",
    "Cutout",
    "Fill",
    "HorizontalFlip",
    "MixingAugment",
    "MixingOp",
    "Mixup",
    "Op",
    "RandomCrop",
    "TrivialAugment",
    "TrivialParams",
    "apply_affine",
    "apply_autocontrast",
    "apply_brightness",
    "apply_color",
    "apply_contrast",
    "apply_crop",
    "apply_cutmix",
    "apply_cutout",
    "apply_equalize",
    "apply_flip",
    "apply_mixup",
    "apply_posterize",
    "apply_rotate",
    "apply_sharpness",
    "apply_shear",
    "apply_solarize",
    "apply_translate",
    "apply_trivial",
    "augment_with_targets",
    "beta_params",
    "call_augment",
    "crop_params",
    "cutmix",
    "cutmix_boxes",
    "cutmix_params",
    "cutout",
    "cutout_params",
    "flip_params",
    "grayscale",
    "horizontal_flip",
    "mix_params",
    "mixes_targets",
    "mixup",
    "parse_augment",
    "random_crop",
    "spec_kind",
    "trivial_augment",
    "trivial_params",
]
