"""What one training step costs with M candidates: ``run_bench(BenchConfig) -> BenchResult``.

A step with M candidates is the baseline step plus augmenting M copies, M scoring forward passes and picking one.
With ``c = score_forward / train_step`` (a no-grad forward over B images against a forward, backward and update
over B images), the step cannot cost less than ``floor(M) = 1 + M*c`` baseline steps (``floor(1) = 1``: the
baseline runs no model to select). The measured ratio is ``R(M) = step(M) / step(1)`` and
``efficiency = floor(M) / R(M)``: 1 when every extra millisecond is a scoring forward, below 1 when augmentation or
selection overhead adds more, above 1 when one large scoring pass beats M passes of B.

Everything is measured in one process on random uint8 images (int16 waveforms ``(B,1,T)`` for an audio model) and
labels, interleaved: each repeat runs every
measurement once, in an order rotated by one per repeat, so that load from other processes and clock drift hit all
of them alike. Medians and spreads are reported. The step is the one ``train.train`` runs: ``Normalized`` model,
the setting's augmentation, scoring chunks, autocast, memory format and cuDNN's kernel benchmark as ``train``
picks them, SGD with Nesterov momentum and the non-finite check before each update.
Not timed: the scheduler and the per-epoch statistics.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

import lossaug
from lossaug.config import DEVICES, TrainConfig
from lossaug.distributed import World
from lossaug.errors import InputError
from lossaug.metadata import device_name, git_commit
from lossaug.method import Schedule, build_sgd, method_for
from lossaug.models import (
    DEFAULT_WIDTHS,
    build_classifier,
    check_classifier_output,
    check_image_size,
    check_model_name,
    model_kind,
)
from lossaug.pipeline import AUDIO_RATE, channel_stats, make_generator, resolve_device, use_device
from lossaug.seeds import stream_seed
from lossaug.selection import LossAwareAugment, Selection, check_score_fraction, score_candidates
from lossaug.state import Learner

# The augmentation of each setting as ``train`` builds it on CIFAR-10 (Cutout's fill does not change its cost).
SETTINGS = {"A": "flip,crop:4", "B": "flip,crop:4,cutout:16"}
# The published cost: training took about 1.8x the baseline's time. We set it beside R(4), M = 4 being our default
# number of candidates.
PUBLISHED_RATIO = 1.8
PUBLISHED_CANDIDATES = 4
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
    setting: str = "A"  # augmentation: "A" = flip + pad-4 crop, "B" = A + 16 px Cutout
    image_size: int = 32  # S: images are (B,3,S,S) uint8
    clip_samples: int = AUDIO_RATE  # T for an audio model (model_kind): waveforms (B,1,T) int16, 1 s by default
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
        if self.device not in DEVICES:
            raise InputError(f"unknown device {self.device!r}; choose from {list(DEVICES)}")
        sizes = ("batch_size", "image_size", "clip_samples", "num_classes", "repeats", "width", "score_chunk")
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
    changes = {name: QUICK[name] for name in ("repeats", "warmup") if getattr(config, name) == getattr(defaults, name)}
    if config.model == defaults.model and config.width == defaults.width:
        changes.update(model=QUICK["model"], width=QUICK["width"])
    return dataclasses.replace(config, **changes)


@dataclass(frozen=True)
class Spread:
    """Repeated timings in ms (``samples`` in run order) and their median, extremes and quartiles."""

    samples: tuple[float, ...]
    median: float
    min: float
    q1: float
    q3: float
    max: float

    @classmethod
    def of(cls, samples: list[float]) -> Spread:
        low, q1, median, q3, high = (float(v) for v in np.percentile(samples, [0, 25, 50, 75, 100]))
        return cls(tuple(samples), median, low, q1, q3, high)

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "iqr": self.iqr}


@dataclass(frozen=True)
class CandidateTiming:
    """The full step with ``num_candidates`` (M) and its parts; ``ratio`` is R(M), ``floor`` is 1 + M*c."""

    num_candidates: int
    step: Spread  # augment + select + train, summed per repeat
    augment: Spread  # make_candidates
    select: Spread  # select_candidates: scoring, probabilities, sampling, gather
    train: Spread  # forward, backward, non-finite check, SGD update
    ratio: float
    floor: float
    efficiency: float
    images_per_second: float

    def to_json(self) -> dict[str, Any]:
        return {
            "candidates": self.num_candidates,
            "step_ms": self.step.to_json(),
            "augment_ms": self.augment.to_json(),
            "select_ms": self.select.to_json(),
            "train_ms": self.train.to_json(),
            "ratio": self.ratio,
            "floor": self.floor,
            "efficiency": self.efficiency,
            "images_per_second": self.images_per_second,
        }


@dataclass(frozen=True)
class BenchResult:
    """Timings of one ``run_bench`` call with the resolved config and where they were measured."""

    config: BenchConfig
    device: str
    torch_version: str
    lossaug_version: str
    git_commit: str | None
    timestamp: str
    seconds: float  # wall-clock time of the whole benchmark, set-up included
    train_step: Spread
    score_forward: Spread
    steps: tuple[CandidateTiming, ...]
    proxy_steps: dict[int, Spread] = dataclasses.field(default_factory=dict)  # M -> step with proxy scoring
    published_ratio: float = PUBLISHED_RATIO
    cheap_steps: dict[str, Spread] = dataclasses.field(default_factory=dict)  # "score_fraction Q" / "weighted"

    def options(self) -> list[dict[str, Any]]:
        """Cost of each cheaper-selection option at every M > 1, as a ratio to the baseline step.

        ``proxy``: measured (scoring by the proxy plus its own training step). ``select_every k``: derived,
        ``(R(M) + k - 1) / k``. ``select_from f``: derived, ``f + (1 - f) R(M)``."""
        rows = []
        for t in self.steps:
            if t.num_candidates == 1:
                continue
            m, ratio = t.num_candidates, t.ratio
            rows.append({"option": "exact", "M": m, "ratio": ratio, "measured": True})
            if m in self.proxy_steps:
                proxy_ratio = self.proxy_steps[m].median / self.timing(1).step.median
                rows.append({"option": f"proxy {self.config.proxy_model}", "M": m, "ratio": proxy_ratio,
                             "measured": True})  # fmt: skip
            rows += [{"option": f"select_every {k}", "M": m, "ratio": (ratio + k - 1) / k, "measured": False}
                     for k in self.config.select_every]  # fmt: skip
            rows += [{"option": f"select_from {f}", "M": m, "ratio": f + (1 - f) * ratio, "measured": False}
                     for f in self.config.select_from]  # fmt: skip
            if m == cheap_candidates(self.config):
                rows += self._cheap_rows(m, ratio)
        return rows

    def _cheap_rows(self, m: int, ratio: float) -> list[dict[str, Any]]:
        """The measured cheap modes at M = ``m`` (of ratio R(M) = ``ratio``). Gating's ``expected`` is what it
        should cost if only the scoring shrinks, ``1 + Q (R(M) - 1)``; the weighted step's ``ratio_per_image`` is
        its cost per distinct image (M times its per-step ratio: a step holds B/M images)."""
        base = self.timing(1).step.median
        rows = []
        for option, spread in self.cheap_steps.items():
            row = {"option": option, "M": m, "ratio": spread.median / base, "measured": True}
            if option.startswith("score_fraction"):
                row["expected"] = 1 + float(option.split()[1]) * (ratio - 1)
            else:
                row["ratio_per_image"] = m * row["ratio"]
            rows.append(row)
        return rows

    @property
    def c(self) -> float:
        """Scoring forward over B images per training step over B images (medians)."""
        return self.score_forward.median / self.train_step.median

    def timing(self, num_candidates: int) -> CandidateTiming | None:
        return next((t for t in self.steps if t.num_candidates == num_candidates), None)

    @property
    def comparison(self) -> str:
        """One sentence placing the measured R(4) against the published 1.8x."""
        m, published = PUBLISHED_CANDIDATES, self.published_ratio
        timing = self.timing(m)
        if timing is None:
            return f"R({m}) not measured (candidates {self.config.candidate_counts}); published R({m}) = {published}x"
        relative = timing.ratio / published - 1
        where = f"{abs(relative):.0%} {'above' if relative > 0 else 'below'}" if abs(relative) >= 0.005 else "equal"
        return (
            f"R({m})={timing.ratio:.2f}x vs published {published}x ({where}); "
            f"the scoring floor 1+{m}c is {timing.floor:.2f}x on {self.device}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "benchmark": "lossaug.bench",
            "config": {
                **dataclasses.asdict(self.config),
                "candidate_counts": list(self.config.candidate_counts),
                "candidates": list(self.config.candidate_counts),
            },  # old key, kept for readers
            "device": self.device,
            "torch_version": self.torch_version,
            "lossaug_version": self.lossaug_version,
            "git_commit": self.git_commit,
            "timestamp": self.timestamp,
            "seconds": self.seconds,
            "train_step_ms": self.train_step.to_json(),
            "score_forward_ms": self.score_forward.to_json(),
            "c": self.c,
            "per_candidates": [t.to_json() for t in self.steps],
            "proxy_step_ms": {str(m): spread.to_json() for m, spread in self.proxy_steps.items()},
            "cheap_step_ms": {option: spread.to_json() for option, spread in self.cheap_steps.items()},
            "options": self.options(),
            "published_ratio": self.published_ratio,
            "comparison": self.comparison,
        }


# ---------------------------------------------------------------- measuring


class _Stopwatch:
    """Marks within one measurement: CUDA events on the current stream (the GPU's own clock, after waiting for
    earlier work so that the first mark is not queued behind it), else ``time.perf_counter``."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.marks: list[Any] = []
        if self.cuda:
            torch.cuda.synchronize(device)

    def mark(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def segments_ms(self) -> list[float]:
        """Milliseconds between consecutive marks."""
        pairs = zip(self.marks[:-1], self.marks[1:], strict=True)
        if self.cuda:
            torch.cuda.synchronize()
            return [start.elapsed_time(end) for start, end in pairs]
        return [1e3 * (end - start) for start, end in pairs]


@dataclass
class _Parts:
    """What the timed step runs, built by the same functions ``train`` uses: the method object
    (``method.method_for``), the network (``models.build_classifier``), its SGD and guarded step (``state.Learner``),
    and the random streams."""

    images: Tensor
    labels: Tensor
    method: LossAwareAugment
    learner: Learner
    proxy: Learner | None
    streams: dict[str, torch.Generator]


def _train_config(config: BenchConfig) -> TrainConfig:
    """The training config whose step is timed (the seed preset's optimiser and scoring options)."""
    return TrainConfig(
        model=config.model, width=config.width, batch_size=config.batch_size, setting=config.setting,
        num_candidates=max(config.candidate_counts), score_chunk=config.score_chunk, seed=config.seed,
        proxy_model=config.proxy_model, proxy_width=config.proxy_width,
    )  # fmt: skip


def _learner(config: BenchConfig, name: str, width, images: Tensor, device, stream: str) -> Learner:
    train_config = _train_config(config)
    net = build_classifier(
        name, config.num_classes, images.shape[1], width,
        channel_stats(images), device=device, init_seed=stream_seed(train_config.seed, stream),
    ).train()  # fmt: skip
    check_classifier_output(net, images[:2].to(device), config.num_classes, name)
    schedule = Schedule(total_steps=1, warmup_steps=0, trunk_steps=1)
    optimizer, scheduler = build_sgd(net, train_config, schedule)
    return Learner(net, net, optimizer, scheduler, World())


def _build_parts(config: BenchConfig, device: torch.device) -> _Parts:
    data_generator = make_generator(config.seed, "bench-data", torch.device("cpu"))
    audio = model_kind(config.model) == "audio"
    if audio:  # white noise at about a quarter of full scale
        shape, low, high, dtype = (config.batch_size, 1, config.clip_samples), -8192, 8192, torch.int16
    else:
        shape, low, high, dtype = (config.batch_size, 3, config.image_size, config.image_size), 0, 256, torch.uint8
        for name in filter(None, (config.model, config.proxy_model)):
            check_image_size(name, config.image_size, f"bench images are {config.image_size} px")
    images = torch.randint(low, high, shape, dtype=dtype, generator=data_generator)
    labels = torch.randint(0, config.num_classes, (config.batch_size,), generator=data_generator)
    train_config = _train_config(config)
    learner = _learner(config, config.model, config.width, images, device, "init")
    proxy = None
    if config.proxy_model is not None:
        proxy = _learner(config, config.proxy_model, config.proxy_width, images, device, "proxy-init")
    method = method_for(train_config, channel_stats(images)[0], device, audio=audio)
    streams = {name: make_generator(config.seed, name, device) for name in ("augment", "augment-extra", "select")}
    return _Parts(images.to(device), labels.to(device), method, learner, proxy, streams)


def _measurements(config: BenchConfig, parts: _Parts, device: torch.device) -> list[tuple[Any, Callable]]:
    """Every timed measurement: the training step alone, the scoring forward alone, the step for each M (marks
    after augmenting, selecting and updating), and with a proxy, the step scored by the proxy."""
    images, labels, method, learner, streams = parts.images, parts.labels, parts.method, parts.learner, parts.streams
    scoring = method.scoring

    plain = method.select(learner.model, images.unsqueeze(1), labels)  # one candidate: the images, unscored

    def train_alone(watch: _Stopwatch) -> None:
        watch.mark()
        learner.step(plain, labels, device, 0.0)
        watch.mark()

    def score_alone(watch: _Stopwatch) -> None:
        watch.mark()
        score_candidates(learner.model, images.unsqueeze(1), labels, score=scoring.score, bn=scoring.bn,
                         chunk_size=scoring.chunk_size, autocast_dtype=scoring.autocast_dtype)  # fmt: skip
        watch.mark()

    def full_step(num_candidates: int, scorer: Learner, proxy: Learner | None):
        def run(watch: _Stopwatch) -> None:  # the loop's step: method.__call__ is candidates + select
            watch.mark()
            candidates = method.candidates(images, num_candidates=num_candidates, generator=streams["augment"],
                                           extra_generator=streams["augment-extra"])  # fmt: skip
            watch.mark()
            selection = method.select(scorer.model, candidates, labels, generator=streams["select"])
            watch.mark()
            learner.step(selection, labels, device, 0.0)
            if proxy is not None:
                proxy.step(selection, labels, device, 0.0)
            watch.mark()

        return run

    measurements: list[tuple[Any, Callable]] = [("train", train_alone), ("score", score_alone)]
    measurements += [(m, full_step(m, learner, None)) for m in config.candidate_counts]
    measurements += _cheap_measurements(config, parts, device)
    if parts.proxy is not None:
        measurements += [
            (("proxy", m), full_step(m, parts.proxy, parts.proxy)) for m in config.candidate_counts if m > 1
        ]
    return measurements


def cheap_candidates(config: BenchConfig) -> int | None:
    """The M the cheap modes are timed at: 4 if timed, else the largest M > 1 (None: no M > 1)."""
    above = [m for m in config.candidate_counts if m > 1]
    return PUBLISHED_CANDIDATES if PUBLISHED_CANDIDATES in above else max(above, default=None)


def _cheap_measurements(config: BenchConfig, parts: _Parts, device: torch.device) -> list[tuple[Any, Callable]]:
    """The loop's step under stale-loss gating at each ``score_fractions`` Q (stale losses drawn at random, so
    the rows scored vary from step to step) and in the weighted mode, at M = ``cheap_candidates``."""
    m = cheap_candidates(config)
    if m is None:
        return []
    images, labels, learner, streams = parts.images, parts.labels, parts.learner, parts.streams
    stale = torch.rand(len(labels), generator=make_generator(config.seed, "bench-stale", torch.device("cpu")))
    stale, order = stale.to(device), torch.arange(len(labels), device=device)

    def step(method: LossAwareAugment, batch: slice) -> Callable[[_Stopwatch], None]:
        def run(watch: _Stopwatch) -> None:
            watch.mark()
            selection: Selection = method(
                learner.model, images[batch], labels[batch], num_candidates=m, generator=streams["augment"],
                extra_generator=streams["augment-extra"], select_generator=streams["select"],
                stale_losses=stale[batch], order=order[batch],
            )  # fmt: skip
            learner.step(selection, labels[batch], device, 0.0)
            watch.mark()

        return run

    everything = slice(None)
    rows: list[tuple[Any, Callable]] = [
        (f"score_fraction {q:g}", step(dataclasses.replace(parts.method, score_fraction=q), everything))
        for q in config.score_fractions
    ]
    if config.weighted:  # B inputs per forward: B/M images with their M candidates
        rows.append(("weighted", step(dataclasses.replace(parts.method, mode="weighted"), slice(len(labels) // m))))
    return rows


def _run_interleaved(config: BenchConfig, measurements, device, log, started: float) -> dict[Any, list[list[float]]]:
    """Each repeat runs every measurement once, in an order rotated by one per repeat."""
    samples: dict[Any, list[list[float]]] = {key: [] for key, _ in measurements}
    total = config.warmup + config.repeats
    for repeat in range(total):
        # Rotated by one each repeat: no measurement always runs first, or always right after the same one.
        shift = repeat % len(measurements)
        for key, measure in measurements[shift:] + measurements[:shift]:
            watch = _Stopwatch(device)
            measure(watch)
            if repeat >= config.warmup:
                samples[key].append(watch.segments_ms())
        if log is not None:
            warming = repeat < config.warmup
            count = f"{repeat + 1}/{config.warmup}" if warming else f"{repeat + 1 - config.warmup}/{config.repeats}"
            log(f"{'warm-up' if warming else 'repeat'} {count} done ({time.perf_counter() - started:.0f} s)")
    return samples


def run_bench(config: BenchConfig, log: Callable[[str], None] | None = None) -> BenchResult:
    """Time the training step, the scoring forward and the full step for every M in ``config.candidate_counts``,
    interleaved; ``log`` receives a line per repeat."""
    started = time.perf_counter()
    config = resolve_config(config)
    device = resolve_device(config.device)
    use_device(device)  # cuDNN as training sets it, so that R is measured with the runs' kernels
    parts = _build_parts(config, device)
    if log is not None:
        log(
            f"bench: {config.model} width {_width(config)}, batch {config.batch_size}, "
            f"M in {config.candidate_counts}, setting {config.setting}, {config.warmup} warm-up + {config.repeats} "
            f"repeats on {device_name(device)}"
        )
    samples = _run_interleaved(config, _measurements(config, parts, device), device, log, started)
    train_spread = Spread.of([s[0] for s in samples["train"]])
    score_forward = Spread.of([s[0] for s in samples["score"]])
    c = score_forward.median / train_spread.median
    step_spreads = {m: Spread.of([sum(s) for s in samples[m]]) for m in config.candidate_counts}
    steps = []
    for m in config.candidate_counts:
        step = step_spreads[m]
        ratio = step.median / step_spreads[1].median
        floor = 1.0 if m == 1 else 1 + m * c
        part_spreads = [Spread.of([s[i] for s in samples[m]]) for i in range(3)]
        steps.append(
            CandidateTiming(m, step, *part_spreads, ratio, floor, floor / ratio, config.batch_size / step.median * 1e3)
        )
    proxy_steps = {key[1]: Spread.of([sum(s) for s in values]) for key, values in samples.items()
                   if isinstance(key, tuple)}  # fmt: skip
    cheap_steps = {key: Spread.of([sum(s) for s in values]) for key, values in samples.items()
                   if isinstance(key, str) and key not in ("train", "score")}  # fmt: skip
    return BenchResult(
        config=config, device=device_name(device), torch_version=torch.__version__,
        lossaug_version=lossaug.__version__, git_commit=git_commit(), timestamp=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        seconds=time.perf_counter() - started, train_step=train_spread, score_forward=score_forward,
        steps=tuple(steps), proxy_steps=proxy_steps, cheap_steps=cheap_steps,
    )  # fmt: skip


# ---------------------------------------------------------------- reporting


def _width(config: BenchConfig) -> int | str:
    return config.width or DEFAULT_WIDTHS.get(config.model, "default")


def _input_size(config: BenchConfig) -> str:
    if model_kind(config.model) == "audio":
        return f"{config.clip_samples} samples"
    return f"{config.image_size}px"


def _setting_spec(config: BenchConfig) -> str:
    if model_kind(config.model) == "audio":
        from lossaug.audio import AUDIO_SETTINGS

        return AUDIO_SETTINGS[config.setting]
    return SETTINGS[config.setting]


def format_bench(result: BenchResult) -> str:
    """A plain-text table of ``result``: medians in ms, the step's range and IQR, ratio, floor, efficiency."""
    config = result.config
    width = _width(config)
    lines = [
        f"lossaug bench: {config.model} width {width}, batch {config.batch_size}, {_input_size(config)}, "
        f"setting {config.setting} ({_setting_spec(config)})",
        f"{result.device}, torch {result.torch_version}, commit {(result.git_commit or 'unknown')[:10]}, "
        f"medians of {config.repeats} interleaved repeats after {config.warmup} warm-up",
        f"train step {result.train_step.median:.1f} ms (IQR {result.train_step.iqr:.1f}), "
        f"score forward {result.score_forward.median:.1f} ms (IQR {result.score_forward.iqr:.1f}), "
        f"c = {result.c:.3f}",
        "",
    ]
    header = ("M", "step ms", "[min, max]", "IQR", "augment", "select", "train", "R(M)", "floor", "effic.", "img/s")
    rows = [header]
    for t in result.steps:
        rows.append(
            (
                str(t.num_candidates),
                f"{t.step.median:.1f}",
                f"[{t.step.min:.1f}, {t.step.max:.1f}]",
                f"{t.step.iqr:.1f}",
                f"{t.augment.median:.1f}",
                f"{t.select.median:.1f}",
                f"{t.train.median:.1f}",
                f"{t.ratio:.2f}",
                f"{t.floor:.2f}",
                f"{t.efficiency:.2f}",
                f"{t.images_per_second:.0f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines += ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines += ["", result.comparison, "", "cheaper selection, step cost relative to the baseline step:"]
    for row in result.options():
        how = "measured" if row["measured"] else "derived"
        extra = f", expected {row['expected']:.2f}x" if "expected" in row else ""
        extra += f", {row['ratio_per_image']:.2f}x per image" if "ratio_per_image" in row else ""
        lines.append(f"  M={row['M']}  {row['option']:<22} {row['ratio']:.2f}x  ({how}{extra})")
    return "\n".join(lines)
