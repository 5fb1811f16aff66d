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

import torch
from torch import Tensor

import lossaug
from lossaug.bench.config import BenchConfig, cheap_candidates, resolve_config, width_of
from lossaug.bench.results import BenchResult, CandidateTiming, Spread
from lossaug.kinds import kind_of_model
from lossaug.models import (
    build_classifier,
    check_classifier_output,
    check_image_size,
)
from lossaug.run.config import TrainConfig
from lossaug.run.distributed import World
from lossaug.run.metadata import device_name, git_commit
from lossaug.run.method import Schedule, build_sgd, method_for
from lossaug.run.pipeline import channel_stats, make_generator, resolve_device, use_device
from lossaug.run.state import Learner
from lossaug.seeds import stream_seed
from lossaug.selection import Candidates, LossAwareAugment, Selection, score_candidates
from lossaug.selection.modes import WEIGHTED


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
        model=config.model,
        width=config.width,
        batch_size=config.batch_size,
        setting=config.setting,
        augment=config.augment,
        num_candidates=max(config.candidate_counts),
        score_chunk=config.score_chunk,
        seed=config.seed,
        proxy_model=config.proxy_model,
        proxy_width=config.proxy_width,
    )


def _audio_rate(config: BenchConfig) -> int | None:
    """The clips' rate for an audio model (what its front end and freqmask are built for); None for images."""
    return config.sample_rate if kind_of_model(config.model).has_rate else None


def _learner(config: BenchConfig, name: str, width, images: Tensor, device, stream: str) -> Learner:
    train_config = _train_config(config)
    net = build_classifier(
        name,
        config.num_classes,
        images.shape[1],
        width,
        channel_stats(images),
        device=device,
        init_seed=stream_seed(train_config.seed, stream),
        sample_rate=_audio_rate(config),
    ).train()
    check_classifier_output(net, images[:2].to(device), config.num_classes, name)
    schedule = Schedule(total_steps=1, warmup_steps=0, trunk_steps=1)
    optimizer, scheduler = build_sgd(net, train_config, schedule)
    return Learner(net, net, optimizer, scheduler, World())


def _build_parts(config: BenchConfig, device: torch.device) -> _Parts:
    data_generator = make_generator(config.seed, "bench-data", torch.device("cpu"))
    shape: tuple[int, ...]  # (B,1,T) waveforms or (B,3,S,S) images
    if kind_of_model(config.model).has_rate:  # white noise at about a quarter of full scale
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
    method = method_for(
        train_config, channel_stats(images)[0], device, audio_rate=_audio_rate(config), num_classes=config.num_classes
    )
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
        score_candidates(
            learner.model,
            images.unsqueeze(1),
            labels,
            score=scoring.score,
            bn=scoring.bn,
            chunk_size=scoring.chunk_size,
            autocast_dtype=scoring.autocast_dtype,
        )
        watch.mark()

    def full_step(num_candidates: int, scorer: Learner, proxy: Learner | None):
        def run(watch: _Stopwatch) -> None:  # the loop's step: method.__call__ is candidates + select
            watch.mark()
            made = method.candidates(
                images,
                num_candidates=num_candidates,
                generator=streams["augment"],
                extra_generator=streams["augment-extra"],
                targets=labels if method.mixes_targets else None,
            )
            # Label-mixing augmentations (mixup, cutmix) give each candidate its own soft target: Candidates.
            candidates, targets = made if isinstance(made, Candidates) else (made, labels)
            watch.mark()
            selection = method.select(scorer.model, candidates, targets, generator=streams["select"])
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
                learner.model,
                images[batch],
                labels[batch],
                num_candidates=m,
                generator=streams["augment"],
                extra_generator=streams["augment-extra"],
                select_generator=streams["select"],
                stale_losses=stale[batch],
                order=order[batch],
            )
            learner.step(selection, labels[batch], device, 0.0)
            watch.mark()

        return run

    everything = slice(None)
    rows: list[tuple[Any, Callable]] = [
        (f"score_fraction {q:g}", step(dataclasses.replace(parts.method, score_fraction=q), everything))
        for q in config.score_fractions
    ]
    if config.weighted:  # B inputs per forward: B/M images with their M candidates
        rows.append(("weighted", step(dataclasses.replace(parts.method, mode=WEIGHTED), slice(len(labels) // m))))
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
            f"bench: {config.model} width {width_of(config)}, batch {config.batch_size}, "
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
        augment_part, select_part, train_part = (Spread.of([s[i] for s in samples[m]]) for i in range(3))
        steps.append(
            CandidateTiming(
                m,
                step,
                augment_part,
                select_part,
                train_part,
                ratio,
                floor,
                floor / ratio,
                config.batch_size / step.median * 1e3,
            )
        )
    proxy_steps = {
        key[1]: Spread.of([sum(s) for s in values]) for key, values in samples.items() if isinstance(key, tuple)
    }
    cheap_steps = {
        key: Spread.of([sum(s) for s in values])
        for key, values in samples.items()
        if isinstance(key, str) and key not in ("train", "score")
    }
    return BenchResult(
        config=config,
        device=device_name(device),
        torch_version=torch.__version__,
        lossaug_version=lossaug.__version__,
        git_commit=git_commit(),
        timestamp=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        seconds=time.perf_counter() - started,
        train_step=train_spread,
        score_forward=score_forward,
        steps=tuple(steps),
        proxy_steps=proxy_steps,
        cheap_steps=cheap_steps,
    )
