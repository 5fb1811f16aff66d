"""What ``lossaug bench`` times: ``BenchConfig`` (validated when made), ``resolve_config`` (``--quick``) and the
constants the measurement is set against (the settings' augmentations, the published cost)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from lossaug.errors import InputError
from lossaug.models import DEFAULT_WIDTHS, check_model_name
from lossaug.models.audio import DEFAULT_SAMPLE_RATE
from lossaug.run.config import DEVICES
from lossaug.selection import check_score_fraction

# The augmentation of each setting as ``train`` builds it on CIFAR-10 (Cutout's fill does not change its cost).
SETTINGS = {"A": "flip,crop:4", "B": "flip,crop:4,cutout:16", "C": "flip,crop:4,trivial"}
# The published cost: training took about 1.8x the baseline's time. We set it beside R(4), M = 4 being our default
# number of candidates.
PUBLISHED_RATIO = 1.8
PUBLISHED_CANDIDATES = 4
DEFAULT_CLIP_SAMPLES = DEFAULT_SAMPLE_RATE  # an audio model's bench clip: one second at the default rate
# What ``quick`` changes, field by field, where the config still holds the default. cnn width 16 at batch 128
# takes ~150 ms per training step on one free core of this 2-core machine, so 6 repeats over M in (1,2,4,8)
# take ~10 s; under load from other jobs with 2 threads the same run took ~40 s.
QUICK = {"model": "cnn", "width": 16, "repeats": 5, "warmup": 1}


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark run. Times are per step of ``batch_size`` images."""

    model: str = "preact_resnet18"  # a key of models.MODELS or PACKAGE.MODULE:FACTORY
    width: int | None = None  # first-stage channels; None: the model's default (preact_resnet18 64, cnn 32)
    batch_size: int = 128  # B, the published batch
    candidate_counts: tuple[int, ...] = (1, 2, 4, 8)  # the M to time; must include 1, the baseline of every ratio
    setting: str = "A"  # augmentation: "A" = flip + pad-4 crop, "B" = A + 16 px Cutout, "C" = A + TrivialAugment op
    augment: str | None = None  # an augmentation spec replacing the setting's (e.g. "flip,crop,mixup:0.2")
    image_size: int = 32  # S: images are (B,3,S,S) uint8
    clip_samples: int = DEFAULT_CLIP_SAMPLES  # T for an audio model (model_kind): waveforms (B,1,T) int16
    sample_rate: int = DEFAULT_SAMPLE_RATE  # Hz, audio: the clips' rate, which audio_cnn and freqmask are built for
    num_classes: int = 10
    device: str = "auto"  # auto (cuda if available), cpu or cuda
    repeats: int = 20  # timed repeats of every measurement, interleaved
    warmup: int = 3  # untimed repeats first (allocator, cuDNN autotuning, caches)
    seed: int = 0  # data, model init, augmentation and selection streams
    quick: bool = False  # a CPU run within 60 s on 2 cores: see QUICK and resolve_config
    score_chunk: int | None = None  # candidates per scoring pass; None: batch_size on CPU, all at once on CUDA
    proxy_model: str | None = None  # also time steps scored by this proxy network (trained alongside)
    proxy_width: int | None = None  # the proxy's width; None: its default
    select_every: tuple[int, ...] = (3,)  # derived costs of selecting on one step in k (from the medians)
    select_from: tuple[float, ...] = (0.5,)  # derived costs of selecting after this fraction of training
    score_fractions: tuple[float, ...] = (0.25, 0.5)  # measured: stale-loss gating at M = 4 (else the largest M)
    weighted: bool = True  # measured: the weighted mode's step (B inputs = B/M images x M candidates) at that M

    def __post_init__(self) -> None:
        object.__setattr__(self, "candidate_counts", tuple(self.candidate_counts))
        object.__setattr__(self, "select_every", tuple(self.select_every))
        object.__setattr__(self, "select_from", tuple(self.select_from))
        object.__setattr__(self, "score_fractions", tuple(self.score_fractions))
        for fraction in self.score_fractions:
            check_score_fraction(fraction)
        for name in ("model", "proxy_model"):
            value = getattr(self, name)
            if value is not None:
                check_model_name(value, name)
        if any(k < 1 for k in self.select_every) or any(not 0 <= f < 1 for f in self.select_from):
            raise InputError(
                f"need select_every >= 1 and 0 <= select_from < 1, got {self.select_every}, {self.select_from}"
            )
        if self.setting not in SETTINGS:
            raise InputError(f"unknown setting {self.setting!r}; choose from {sorted(SETTINGS)}")
        if self.augment is not None:
            from lossaug.augment import parse_augment

            parse_augment(self.augment)
        if self.device not in DEVICES:
            raise InputError(f"unknown device {self.device!r}; choose from {list(DEVICES)}")
        sizes = (
            "batch_size",
            "image_size",
            "clip_samples",
            "sample_rate",
            "num_classes",
            "repeats",
            "width",
            "score_chunk",
        )
        for name in (*sizes, "proxy_width"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"{name} must be >= 1, got {value}")
        if self.warmup < 0:
            raise InputError(f"warmup must be >= 0, got {self.warmup}")
        for m in self.candidate_counts:
            if isinstance(m, bool) or not isinstance(m, int) or m < 1:
                raise InputError(f"candidates must be integers >= 1, got {m!r} in {self.candidate_counts}")
        if len(set(self.candidate_counts)) != len(self.candidate_counts):
            raise InputError(f"candidates must be distinct, got {self.candidate_counts}")
        if 1 not in self.candidate_counts:
            raise InputError(
                f"candidates must include 1, the baseline every ratio is relative to; got {self.candidate_counts}"
            )


def resolve_config(config: BenchConfig) -> BenchConfig:
    """``config`` with ``quick`` applied: each ``QUICK`` field still at its default takes the quick value; the
    model and width change only together (a chosen model or width is kept)."""
    if not config.quick:
        return config
    defaults = BenchConfig()
    changes: dict[str, Any] = {
        name: QUICK[name] for name in ("repeats", "warmup") if getattr(config, name) == getattr(defaults, name)
    }
    if config.model == defaults.model and config.width == defaults.width:
        changes.update(model=QUICK["model"], width=QUICK["width"])
    return dataclasses.replace(config, **changes)


def cheap_candidates(config: BenchConfig) -> int | None:
    """The M the cheap modes are timed at: 4 if timed, else the largest M > 1 (None: no M > 1)."""
    above = [m for m in config.candidate_counts if m > 1]
    return PUBLISHED_CANDIDATES if PUBLISHED_CANDIDATES in above else max(above, default=None)


def width_of(config: BenchConfig) -> int | str:
    """The width the timed model is built with (its default when ``config.width`` is None)."""
    return config.width if config.width else DEFAULT_WIDTHS.get(config.model, "default")
