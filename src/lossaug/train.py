"""The training application: ``train(TrainConfig) -> RunResult``.

The whole training set lives on the device as uint8 ``(N,C,H,W)``; every step indexes a batch from a seeded
permutation, makes M candidates with the batched augmentations, lets the model pick one per image
(``select_candidates``) and trains on the picks. Normalisation happens inside the model (``models.Normalized``), so
candidates stay uint8 until the forward pass. The baseline is the same loop with one candidate.

Randomness comes from one seed split into named streams (``init``, ``order``, ``augment``, ``select``), so
changing M or the temperature does not reshuffle the data order. When ``out`` is set, the run directory gets
``config.json``, ``metrics.jsonl`` (one line per epoch), ``final.json``, ``checkpoint.pt`` and ``curves.png``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import platform
import signal
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import lossaug
from lossaug import data as data_module
from lossaug.augment import Augment, Compose, Cutout, parse_augment
from lossaug.checkpoint import CheckpointError, newest_valid_checkpoint, save_checkpoint
from lossaug.models import MODELS, build_classifier
from lossaug.progress import Reporter
from lossaug.seeds import stream_seed
from lossaug.selection import BN_MODES, SCORES, Selection, make_candidates, probs_entropy, select_candidates

METHODS = ("baseline", "proposed", "maxup")
SETTINGS = ("A", "B")
DEVICES = ("auto", "cpu", "cuda")
PLACEMENTS = ("auto", "device", "host")
NONFINITE = ("raise", "skip")
# Changing these on resume would change tensor shapes or the data itself: an error. Other changes only warn.
RESUME_FIXED = ("dataset", "model", "width", "image_size", "train_size", "batch_size", "proxy_model", "proxy_width")
# Cutout side per dataset for setting B, as in DeVries & Taylor (2017): 16 px on CIFAR-10, 8 px on CIFAR-100.
CUTOUT_SIZES = {"cifar10": 16, "mini": 16, "cifar100": 8}


def _opt(default: Any, help: str, **metadata: Any) -> Any:
    return field(default=default, metadata={"help": help, **metadata})


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run. Defaults are the ``seed`` preset (the published protocol) on mini data."""

    # data
    dataset: str = _opt(
        "mini", "cifar10, cifar100, folder (root/train/<class>/*) or mini (bundled)", choices=data_module.DATASETS
    )
    data: str | None = _opt(None, "archive, extracted folder or download directory (cifar: default cache dir)")
    image_size: int | None = _opt(None, "resize folder images to SIZE x SIZE pixels (needed for mixed sizes)")
    train_size: int | None = _opt(
        None, "train on a fixed class-balanced subset of this many images (same for every seed)"
    )
    cache_dir: str | None = _opt(
        None, "downloads and decoded-array cache; None: no cache (the CLI uses ~/.cache/lossaug)"
    )
    # model
    model: str = _opt("preact_resnet18", "network", choices=tuple(MODELS))
    width: int | None = _opt(None, "first-stage channels (preact_resnet18: 64 as published; cnn: 32)")
    # method
    method: str = _opt(
        "proposed", "baseline: 1 random candidate; proposed: sample by loss; maxup: hardest", choices=METHODS
    )
    setting: str = _opt("A", "A: flip + crop (pad 4); B: A + Cutout (16 px CIFAR-10, 8 px CIFAR-100)", choices=SETTINGS)
    augment: str | None = _opt(None, "custom augmentation spec (e.g. 'flip,crop:2'); overrides --setting")
    candidates: int = _opt(4, "M: candidates per image for proposed/maxup (baseline always uses 1)")
    temperature: float | None = _opt(None, "selection temperature; None: the method's (proposed 1, maxup 0)")
    score: str = _opt("loss", "candidate score: loss (cross-entropy) or error (1 - p(true class))", choices=SCORES)
    bn: str = _opt("eval", "BatchNorm statistics while scoring: eval (running) or batch", choices=BN_MODES)
    uniform_mix: float = _opt(0.0, "blend this fraction of uniform probability into selection")
    score_chunk: int | None = _opt(
        None, "candidates per scoring forward pass (None: all B*M at once on CUDA, batch-size chunks on CPU)"
    )
    # cheaper selection (issue: reach the floor, then go below it)
    select_from: float = _opt(0.0, "fraction of training steps with one random candidate before selection starts")
    select_every: int = _opt(1, "select on one step in N; the others use one random candidate (baseline cost)")
    proxy_model: str | None = _opt(
        None, "score candidates with this small network, trained alongside on the chosen inputs (None: the model)"
    )
    proxy_width: int | None = _opt(None, "proxy network width (None: the proxy model's default)")
    compile_scoring: str = _opt("off", "torch.compile the scoring model: off or on", choices=("off", "on"))
    # optimisation: the 'seed' preset
    epochs: int = _opt(200, "passes over the training set")
    batch_size: int = _opt(128, "images per step (the last partial batch of an epoch is dropped)")
    lr: float = _opt(0.1, "peak SGD learning rate (0.1 at batch 128 as published; scale with the batch)")
    momentum: float = _opt(0.9, "SGD momentum (Nesterov)")
    weight_decay: float = _opt(5e-4, "L2 weight decay")
    warmup_epochs: float = _opt(0.0, "linear LR warm-up before the cosine decay, in epochs")
    seed: int = _opt(0, "seed of every random stream (init, data order, augmentation, selection)")
    # machinery
    device: str = _opt("auto", "auto (cuda if available), cpu or cuda", choices=DEVICES)
    data_placement: str = _opt(
        "auto", "where the uint8 training set lives: device, host (pinned), auto", choices=PLACEMENTS
    )
    eval_every: int = _opt(1, "evaluate the test set every N epochs (and always after the last)")
    checkpoint_every: int = _opt(0, "also checkpoint every N steps (0: only at epoch ends)")
    on_nonfinite: str = _opt(
        "raise",
        "non-finite loss or gradient: raise (stop after saving) or skip (skip the update, count it)",
        choices=NONFINITE,
    )
    out: str | None = _opt(None, "run directory for config, metrics, checkpoint and plots (None: write nothing)")
    tensorboard: str = _opt(
        "off", "also log per-epoch metrics to OUT/tensorboard (needs the tensorboard package)", choices=("off", "on")
    )

    def resolved_temperature(self) -> float:
        if self.method == "baseline":
            return math.inf
        if self.temperature is not None:
            return self.temperature
        return 0.0 if self.method == "maxup" else 1.0

    def num_candidates(self) -> int:
        return 1 if self.method == "baseline" else self.candidates


PRESETS: dict[str, dict[str, Any]] = {
    # The published slides do not state the schedule; we use the standard CIFAR ResNet recipe with cosine decay.
    "seed": dict(model="preact_resnet18", epochs=200, batch_size=128, lr=0.1, momentum=0.9, weight_decay=5e-4),
}


def validate_config(config: TrainConfig) -> None:
    """Raise ValueError naming the first bad field of ``config``."""
    for f in dataclasses.fields(config):
        choices = f.metadata.get("choices")
        value = getattr(config, f.name)
        if choices and value not in choices:
            raise ValueError(f"unknown {f.name} {value!r}; choose from {list(choices)}")
    positive = {
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "candidates": config.candidates,
        "eval_every": config.eval_every,
    }
    if config.tensorboard == "on":
        if config.out is None:
            raise ValueError("tensorboard 'on' needs out, the run directory to log into")
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise ValueError("tensorboard 'on' needs the tensorboard package: pip install tensorboard") from None
    if config.checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be >= 0, got {config.checkpoint_every}")
    if not 0 <= config.select_from < 1:
        raise ValueError(f"select_from must be in [0, 1), got {config.select_from}")
    if config.proxy_model is not None and config.proxy_model not in MODELS:
        raise ValueError(f"unknown proxy_model {config.proxy_model!r}; choose from {sorted(MODELS)}")
    positive["select_every"] = config.select_every
    for name in ("width", "image_size", "train_size", "score_chunk", "proxy_width"):
        if getattr(config, name) is not None:
            positive[name] = getattr(config, name)
    for name, value in positive.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if config.temperature is not None and not config.temperature >= 0:
        raise ValueError(f"temperature must be >= 0, got {config.temperature}")
    if not 0 <= config.uniform_mix <= 1:
        raise ValueError(f"uniform_mix must be in [0, 1], got {config.uniform_mix}")
    if not config.lr > 0 or config.weight_decay < 0 or not 0 <= config.momentum < 1 or config.warmup_epochs < 0:
        raise ValueError(
            f"need lr > 0, weight_decay >= 0, 0 <= momentum < 1, warmup_epochs >= 0; got lr={config.lr}, "
            f"weight_decay={config.weight_decay}, momentum={config.momentum}, warmup_epochs={config.warmup_epochs}"
        )
    if config.augment is not None:
        parse_augment(config.augment)


@dataclass(frozen=True)
class RunResult:
    """What a run produced. Errors are fractions in [0, 1]; ``metrics`` holds one dict per epoch."""

    config: TrainConfig
    test_error: float
    test_loss: float
    train_error: float
    train_loss: float
    seconds: float
    images_per_second: float
    metrics: tuple[dict, ...]
    device: str
    out_dir: Path | None
    model: nn.Module = field(repr=False)


# ---------------------------------------------------------------- small pure helpers


def make_generator(seed: int, name: str, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(stream_seed(seed, name))


def balanced_subset(labels: Tensor, size: int, num_classes: int) -> Tensor:
    """Indices of ``size`` examples, as even over classes as the data allows, from a fixed shuffle (seed 0):
    the same subset for every run seed, method and setting."""
    if size > len(labels):
        raise ValueError(f"train_size {size} exceeds the {len(labels)} training images")
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    shuffled = labels[order]
    rank = torch.zeros_like(shuffled)
    for c in range(num_classes):
        members = shuffled == c
        rank[members] = torch.arange(int(members.sum()))
    keys = rank * num_classes + shuffled  # round-robin over classes
    return order[torch.argsort(keys, stable=True)[:size]].sort().values


def build_augment(config: TrainConfig, fill: tuple[float, ...] | None = None) -> Augment:
    """The run's augmentation: ``config.augment`` if set, else setting A (flip + crop) or B (A + Cutout)."""
    if config.augment is not None:
        return parse_augment(config.augment)
    setting_a = parse_augment("flip,crop:4")
    if config.setting == "A":
        return setting_a
    size = CUTOUT_SIZES.get(config.dataset, 16)
    # Cutout fills with the per-channel training mean: DeVries & Taylor zero the normalised image, i.e. the mean.
    return Compose((*setting_a.augments, Cutout(size, fill=fill or 0)))


def channel_stats(images: Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 ``images (N,C,H,W)`` on the [0, 1] scale, in chunks (no float copy of
    the whole set)."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].double().div_(255).transpose(0, 1).flatten(1)
        total += x.sum(dim=1)
        squares += (x * x).sum(dim=1)
    count = images.numel() / images.shape[1]
    mean = total / count
    std = (squares / count - mean**2).clamp_min(1e-6).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def cosine_lr(step: int, total_steps: int, warmup_steps: int) -> float:
    """LR multiplier: linear warm-up to 1, then cosine decay to 0 at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def training_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy of ``logits (B,K)`` for ``labels (B,)``, computed in float32."""
    return F.cross_entropy(logits.float(), labels)


def train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, inputs: Tensor, labels: Tensor, device: torch.device
) -> tuple[Tensor, Tensor, bool]:
    """Forward ``inputs (B,...)``, backward, and one optimizer update if the loss and every gradient are finite.

    Returns ``(loss, logits (B,K), finite)``. When not finite, no update is made and the buffers the forward pass
    changed (BatchNorm running statistics) are put back, so the model is exactly as before the step. Under
    ``torch.distributed`` the ranks agree: one rank's non-finite loss stops the update everywhere. Costs one host
    sync (the finiteness check).
    """
    buffers = [b for b in model.buffers()]
    saved = [b.clone() for b in buffers]
    with autocast_for(device):
        logits = model(inputs)
        loss = training_loss(logits, labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    bad = (~torch.stack([loss.detach().float(), *torch._foreach_norm(grads)]).isfinite()).any().float().view(1)
    _, world = distributed()
    if world > 1:
        torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)
    finite = not bool(bad)
    if finite:
        optimizer.step()
    else:
        for buffer, value in zip(buffers, saved, strict=True):
            buffer.copy_(value)
    return loss, logits, finite


def selects_at(config: TrainConfig, global_step: int, total_steps: int) -> bool:
    """Whether step ``global_step`` (0-based) scores candidates: after ``select_from`` of training, one step in
    ``select_every``; the other steps train on one random candidate."""
    return (
        config.num_candidates() > 1
        and global_step >= math.ceil(config.select_from * total_steps)
        and global_step % config.select_every == 0
    )


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch.cuda.is_available() is False; use --device cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    # The current CUDA device: under torchrun the launcher's code sets it to the local rank.
    return torch.device("cuda", torch.cuda.current_device()) if name == "cuda" else torch.device(name)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({_cpu_model()}, {torch.get_num_threads()} threads)"


def _cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo on Linux (platform.processor() is empty there)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def write_json(payload: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------- the run


@dataclass(frozen=True)
class _Data:
    train_images: Tensor  # (N,C,H,W) uint8, on the device or pinned host memory
    train_labels: Tensor  # (N,) int64, always on the device (small)
    test_images: Tensor
    test_labels: Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    on_device: bool


def _prepare_data(config: TrainConfig, device: torch.device, reporter: Reporter | None) -> _Data:
    log = reporter.log if reporter is not None else None
    dataset = data_module.load_dataset(
        config.dataset,
        config.data,
        cache_dir=Path(config.cache_dir) if config.cache_dir else None,
        image_size=config.image_size,
        log=log,
    )
    train, test = dataset.train, dataset.test
    for split_name, split in (("train", train), ("test", test)):
        if len(split.labels) == 0:
            raise ValueError(f"the {split_name} split of {config.dataset!r} is empty")
        bad = (split.labels < 0) | (split.labels >= dataset.num_classes)
        if bool(bad.any()):
            index = int(bad.nonzero()[0, 0])
            raise ValueError(
                f"{split_name} label {int(split.labels[index])} at index {index} is outside [0, {dataset.num_classes})"
            )
    train_images, train_labels = train.images, train.labels
    if config.train_size is not None:
        keep = balanced_subset(train_labels, config.train_size, dataset.num_classes)
        train_images, train_labels = train_images[keep], train_labels[keep]
    if len(train_labels) < config.batch_size:
        raise ValueError(f"batch_size {config.batch_size} exceeds the {len(train_labels)} training images")
    mean, std = channel_stats(train_images)
    on_device = config.data_placement != "host"
    if device.type == "cuda" and config.data_placement == "auto":
        free, _ = torch.cuda.mem_get_info(device)
        on_device = train_images.numel() + test.images.numel() < 0.3 * free  # leave room for activations
    placement = device if on_device else torch.device("cpu")
    to = (lambda t: t.to(placement)) if on_device else (lambda t: t.pin_memory() if device.type == "cuda" else t)
    return _Data(
        to(train_images.contiguous()),
        train_labels.to(device),  # labels are small: always on the device
        to(test.images.contiguous()),
        test.labels.to(device),
        dataset.num_classes,
        mean,
        std,
        on_device,
    )


class _PinnedBatches:
    """Batches of a pinned host tensor, gathered into two alternating pinned staging buffers and copied to the
    GPU without blocking the host; a buffer is refilled only once its previous copy has finished."""

    def __init__(self, images: Tensor, batch_size: int, device: torch.device):
        self.images, self.device, self.slot = images, device, 0
        self.staging = [torch.empty((batch_size, *images.shape[1:]), dtype=images.dtype).pin_memory() for _ in range(2)]
        self.copied: list[torch.cuda.Event | None] = [None, None]

    def __call__(self, index: Tensor) -> Tensor:
        """``images[index]`` on the device; ``index (B,)`` on the CPU."""
        slot, self.slot = self.slot, 1 - self.slot
        if self.copied[slot] is not None:
            self.copied[slot].synchronize()
        buffer = self.staging[slot][: len(index)]
        torch.index_select(self.images, 0, index, out=buffer)
        batch = buffer.to(self.device, non_blocking=True)
        self.copied[slot] = torch.cuda.Event()
        self.copied[slot].record()
        return batch


def evaluate(model: nn.Module, images: Tensor, labels: Tensor, device: torch.device, batch_size: int = 1024):
    """``(error, mean loss)`` of ``model`` over ``images (N,C,H,W)`` in eval mode; restores the training flag.
    Under ``torch.distributed`` each rank evaluates its share and the sums are reduced."""
    rank, world = distributed()
    total = len(labels)
    images, labels = (images[rank::world], labels[rank::world]) if world > 1 else (images, labels)
    was_training = model.training
    model.eval()
    sums = torch.zeros(2, device=device, dtype=torch.float64)  # wrong, loss
    with torch.inference_mode(), autocast_for(device):
        for start in range(0, len(labels), batch_size):
            x = images[start : start + batch_size].to(device, non_blocking=True)
            y = labels[start : start + batch_size].to(device, non_blocking=True)
            logits = model(x).float()
            sums[0] += (logits.argmax(dim=1) != y).sum()
            sums[1] += F.cross_entropy(logits, y, reduction="sum")
    model.train(was_training)
    wrong, loss_sum = _all_sum(sums, world).tolist()
    return wrong / total, loss_sum / total


def _tensorboard_writer(log_dir: Path, purge_step: int):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


def distributed() -> tuple[int, int]:
    """``(rank, world_size)`` of an initialised ``torch.distributed`` process group, else ``(0, 1)``."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _all_sum(tensor: Tensor, world: int) -> Tensor:
    if world > 1:
        torch.distributed.all_reduce(tensor)
    return tensor


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA; fp32 elsewhere (CPU bf16 is slower than fp32 on most CPUs)."""
    return (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    )


def _build(config: TrainConfig, data: _Data, device: torch.device, in_channels: int, proxy: bool = False) -> nn.Module:
    """The (proxy) network behind normalisation, initialised from the ``init`` (``proxy-init``) stream."""
    name, width = (config.proxy_model, config.proxy_width) if proxy else (config.model, config.width)
    seed = stream_seed(config.seed, "proxy-init" if proxy else "init")
    norm = (data.mean, data.std)
    return build_classifier(name, data.num_classes, in_channels, width, norm, device=device, init_seed=seed)


def run_metadata(config: TrainConfig, device: torch.device) -> dict:
    return {
        "config": dataclasses.asdict(config),
        "method": {"num_candidates": config.num_candidates(), "temperature": config.resolved_temperature()},
        "git_commit": git_commit(),
        "lossaug_version": lossaug.__version__,
        "torch_version": torch.__version__,
        "device": device_name(device),
        "python": platform.python_version(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# ---------------------------------------------------------------- interruption, non-finite values, resume


class TrainingInterrupted(Exception):
    """SIGTERM or SIGINT stopped the run after a finished step; ``checkpoint`` holds it (None without ``out``)."""

    def __init__(self, signum: int, checkpoint: Path | None, global_step: int):
        name = signal.Signals(signum).name
        where = f"checkpoint saved to {checkpoint}" if checkpoint else "no run directory, nothing saved"
        super().__init__(f"{name} received: stopped after step {global_step}; {where}")
        self.signum, self.checkpoint, self.global_step = signum, checkpoint, global_step
        self.exit_code = 128 + signum  # 143 for SIGTERM, 130 for SIGINT, as shells report them


class NonFiniteError(FloatingPointError):
    """A training step produced a non-finite loss or gradient under ``on_nonfinite="raise"``."""


@contextlib.contextmanager
def _stop_requests() -> Iterator[dict]:
    """Turn SIGTERM/SIGINT into a request (``flag["signum"]``) honoured after the current step; a second SIGINT
    interrupts at once. The caller's handlers are restored on exit. Outside the main thread, installs nothing."""
    flag: dict = {"signum": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def request(signum: int, _frame: Any) -> None:
        if flag["signum"] is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag["signum"] = signum

    previous = {sig: signal.signal(sig, request) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def config_differences(saved: dict, config: TrainConfig) -> tuple[list[str], list[str]]:
    """``(fixed, other)``: descriptions of fields that differ between a checkpoint's config and ``config``;
    ``fixed`` ones (``RESUME_FIXED``) make resuming impossible."""
    fixed, other = [], []
    for name, value in dataclasses.asdict(config).items():
        if name == "out" or name not in saved or saved[name] == value:
            continue
        (fixed if name in RESUME_FIXED else other).append(f"{name}: {saved[name]!r} -> {value!r}")
    return fixed, other


@dataclass
class _Position:
    """Where the loop is and what the current epoch has accumulated; all of it goes into checkpoints."""

    epoch: int = 0  # epochs finished
    step: int = 0  # steps finished in the current epoch
    global_step: int = 0
    permutation: Tensor | None = None  # the current epoch's data order, (N,) int64 on the CPU
    stats: Tensor | None = None  # (5,) float64 on the device: sums of loss, wrong, entropy, chosen and mean score
    fallback_rows: int = 0  # this rank's, like ``stats`` and the two counts below
    images: int = 0  # trained on (finite steps)
    selected_images: int = 0  # of which went through selection
    nonfinite_steps: int = 0
    epoch_seconds: float = 0.0
    run_seconds: float = 0.0
    test_error: float = math.nan
    test_loss: float = math.nan
    metrics: list[dict] = field(default_factory=list)


_PER_RANK = ("fallback_rows", "images", "selected_images")  # epoch counters each rank keeps for itself


def _percent(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2%}"


def _agree_on_stop(stop: dict, world: int, device: torch.device) -> bool:
    """Whether to stop now; under ``torch.distributed`` every rank gets the same answer (a signal seen by any)."""
    if world > 1:
        request = torch.tensor([stop["signum"] or 0], device=device)
        torch.distributed.all_reduce(request, op=torch.distributed.ReduceOp.MAX)
        stop["signum"] = int(request) or None
    return stop["signum"] is not None


def _broadcast_buffers(model: nn.Module, world: int) -> None:
    """Give every rank rank 0's buffers (BatchNorm statistics), so that scoring, evaluation and checkpoints see
    one model. DDP only does this at the start of the next training forward."""
    if world > 1:
        for buffer in model.buffers():
            torch.distributed.broadcast(buffer, src=0)


def reapply_hyperparameters(optimizer: torch.optim.Optimizer, scheduler, config: TrainConfig) -> None:
    """After loading optimizer and schedule state, make ``config``'s lr, momentum and weight decay take effect:
    a resumed run may change them (e.g. a lower lr after a non-finite loss). Unchanged values give the same
    floats the schedule computed, so exact resume is kept."""
    scheduler.base_lrs = [config.lr for _ in optimizer.param_groups]
    factor = scheduler.lr_lambdas[0](scheduler.last_epoch)
    for group in optimizer.param_groups:
        group.update(
            initial_lr=config.lr,
            lr=config.lr * factor,
            momentum=config.momentum,
            nesterov=config.momentum > 0,
            weight_decay=config.weight_decay,
        )


def _random_states(generators: dict[str, torch.Generator]) -> dict[str, Tensor]:
    states = {name: g.get_state() for name, g in generators.items()}
    states["torch_cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        states.update({f"torch_cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return states


def _set_random_states(generators: dict[str, torch.Generator], states: dict[str, Tensor]) -> None:
    for name, generator in generators.items():
        generator.set_state(states[name])
    torch.set_rng_state(states["torch_cpu"])
    cuda = [states[k] for k in sorted(states) if k.startswith("torch_cuda")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def train(
    config: TrainConfig,
    *,
    reporter: Reporter | None = None,
    on_step: Callable[[int, Selection], None] | None = None,
    resume: bool = False,
) -> RunResult:
    """Train ``config.model`` with ``config.method`` and return the final errors, timings and per-epoch metrics.

    Writes files only when ``config.out`` is set. ``reporter`` receives progress (see ``progress.py``);
    ``on_step(global_step, selection)`` is called after every step. ``resume=True`` continues from the newest
    valid checkpoint in ``config.out``: on the CPU the result equals the uninterrupted run's bit for bit.
    SIGTERM/SIGINT stop after the current step with a checkpoint and raise ``TrainingInterrupted``.
    """
    validate_config(config)
    device = resolve_device(config.device)
    rank, world = distributed()
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} must be a multiple of the {world} processes")
    if rank > 0:
        reporter = None  # rank 0 reports and writes for everyone
    out_dir = Path(config.out) if config.out else None
    writes = out_dir is not None and rank == 0
    checkpoint = None
    if resume:
        if out_dir is None:
            raise ValueError("resume needs config.out, the run directory holding the checkpoint")
        checkpoint_path, checkpoint = newest_valid_checkpoint(out_dir)
        fixed, other = config_differences(checkpoint["config"], config)
        if fixed:
            raise CheckpointError(f"cannot resume {checkpoint_path} with changed {'; '.join(fixed)}")
        if other:
            warnings.warn(f"resuming {checkpoint_path} with changed {'; '.join(other)}", stacklevel=2)

    data = _prepare_data(config, device, reporter)
    in_channels = data.train_images.shape[1]
    model = _build(config, data, device, in_channels)
    fill = tuple(round(255 * m) for m in data.mean)
    augment = build_augment(config, fill if in_channels == len(fill) else None)
    num_candidates, temperature = config.num_candidates(), config.resolved_temperature()
    score_kwargs = dict(
        score=config.score,
        bn=config.bn,
        # On CPU, passes over more than ~128 images fall out of cache: 512 candidates in one pass cost 2-3x
        # more per image than 4 passes of 128 (cnn width 16, 2 cores).
        chunk_size=config.score_chunk or (config.batch_size if device.type == "cpu" else None),
        autocast_dtype=torch.bfloat16 if device.type == "cuda" else None,
    )
    steps_per_epoch = len(data.train_labels) // config.batch_size
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = round(config.warmup_epochs * steps_per_epoch)

    def sgd(net: nn.Module) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        opt = torch.optim.SGD(
            net.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.momentum > 0,
            weight_decay=config.weight_decay,
        )
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: cosine_lr(step, total_steps, warmup_steps))

    optimizer, scheduler = sgd(model)
    # The proxy (if any) scores the candidates and learns from the same chosen batches with its own optimizer;
    # it never sees the main model's loss. torch.compile wraps whichever network scores.
    proxy = _build(config, data, device, in_channels, proxy=True) if config.proxy_model else None
    proxy_optimizer, proxy_scheduler = sgd(proxy) if proxy is not None else (None, None)
    scorer = proxy if proxy is not None else model
    if config.compile_scoring == "on":
        scorer = torch.compile(scorer)
    # One data order for all ranks (each takes its share of every batch); augmentation and selection draws are
    # distinct per rank, and a single process keeps the plain stream names.
    suffix = f"-rank{rank}" if world > 1 else ""
    generators = {
        "order": make_generator(config.seed, "order", torch.device("cpu")),
        "augment": make_generator(config.seed, "augment" + suffix, device),
        "select": make_generator(config.seed, "select" + suffix, device),
    }
    ddp = torch.nn.parallel.DistributedDataParallel
    trainee = ddp(model) if world > 1 else model
    proxy_trainee = ddp(proxy) if world > 1 and proxy is not None else proxy
    at = _Position()
    if checkpoint is not None:
        if checkpoint["num_classes"] != data.num_classes:
            raise CheckpointError(
                f"cannot resume {checkpoint_path}: it has {checkpoint['num_classes']} classes, the data "
                f"{data.num_classes}"
            )
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        reapply_hyperparameters(optimizer, scheduler, config)
        if proxy is not None:
            proxy.load_state_dict(checkpoint["proxy"]["model"])
            proxy_optimizer.load_state_dict(checkpoint["proxy"]["optimizer"])
            proxy_scheduler.load_state_dict(checkpoint["proxy"]["scheduler"])
            reapply_hyperparameters(proxy_optimizer, proxy_scheduler, config)
        if len(checkpoint["random"]) != world:
            raise CheckpointError(
                f"cannot resume {checkpoint_path}: saved by {len(checkpoint['random'])} processes, resumed by {world}"
            )
        _set_random_states(generators, checkpoint["random"][rank])
        own = checkpoint["random"][rank]
        at = _Position(**{**checkpoint["position"], **{k: own[k] for k in _PER_RANK}})
        if own["epoch_stats"] is not None:
            at.stats = own["epoch_stats"].to(device)

    def save(position: _Position, random_states: dict[str, Tensor]) -> Path | None:
        """Checkpoint ``position`` (every rank calls this: the per-rank random states are gathered)."""
        if out_dir is None:
            return None
        # Each rank's random streams and partial epoch sums differ: all of them are saved.
        stats = position.stats.cpu() if position.stats is not None else None
        random_states = {**random_states, "epoch_stats": stats, **{k: getattr(position, k) for k in _PER_RANK}}
        every_rank = [random_states]
        if world > 1:
            every_rank = [None] * world
            torch.distributed.all_gather_object(every_rank, random_states)
        if rank > 0:
            return out_dir / "checkpoint.pt"
        return save_checkpoint(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "random": every_rank,
                "position": {
                    **dataclasses.asdict(dataclasses.replace(position, stats=None, permutation=None)),
                    "permutation": position.permutation,
                },
                "proxy": None
                if proxy is None
                else {
                    "model": proxy.state_dict(),
                    "optimizer": proxy_optimizer.state_dict(),
                    "scheduler": proxy_scheduler.state_dict(),
                },
                "global_step": position.global_step,
                "num_classes": data.num_classes,
                "config": dataclasses.asdict(config),
            },
            out_dir,
        )

    metadata = {**run_metadata(config, device), "world_size": world}
    # purge_step drops events a crashed run wrote after its checkpoint, as metrics.jsonl is cut back to it.
    board = (
        _tensorboard_writer(out_dir / "tensorboard", purge_step=at.epoch + 1)
        if writes and config.tensorboard == "on"
        else None
    )
    if writes:
        out_dir.mkdir(parents=True, exist_ok=True)
        if checkpoint is not None:
            metadata["resumed_from_step"] = at.global_step
        write_json(metadata, out_dir / "config.json")
        # The metrics of the checkpoint are the truth: a line written after it (before a crash) is dropped.
        (out_dir / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in at.metrics))
    if reporter is not None:
        resumed = f", resuming at epoch {at.epoch + 1} step {at.step}" if checkpoint is not None else ""
        reporter.log(
            f"{config.method} (M={num_candidates}, T={temperature}) {config.model} on {config.dataset}: "
            f"{len(data.train_labels)} train / {len(data.test_labels)} test images, {metadata['device']}{resumed}"
        )

    model.train()
    with _stop_requests() as stop, contextlib.closing(board) if board is not None else contextlib.nullcontext():
        while at.epoch < config.epochs:
            if at.permutation is None:
                at.permutation = torch.randperm(len(data.train_labels), generator=generators["order"])
                at.stats = torch.zeros(5, dtype=torch.float64, device=device)
                at.fallback_rows = at.nonfinite_steps = at.images = at.selected_images = 0
                at.epoch_seconds = 0.0
            order = at.permutation.to(device)
            if not data.on_device and device.type == "cuda":
                fetch = _PinnedBatches(data.train_images, config.batch_size // world, device)
                host_order = at.permutation
            else:
                fetch, host_order = data.train_images.__getitem__, order
            if reporter is not None:
                reporter.start(f"epoch {at.epoch + 1}/{config.epochs}", steps_per_epoch * config.batch_size)
                reporter.advance(at.step * config.batch_size)
            started = time.perf_counter()
            while at.step < steps_per_epoch:
                before = _random_states(generators)
                batch = slice(at.step * config.batch_size, (at.step + 1) * config.batch_size)
                images = fetch(host_order[batch][rank::world]).to(device)
                labels = data.train_labels[order[batch][rank::world]]
                selecting = selects_at(config, at.global_step, total_steps)
                candidates = make_candidates(
                    images, augment, num_candidates if selecting else 1, generator=generators["augment"]
                )
                selection = select_candidates(
                    scorer,
                    candidates,
                    labels,
                    temperature=temperature,
                    uniform_mix=config.uniform_mix,
                    generator=generators["select"],
                    **score_kwargs,
                )
                loss, logits, finite = train_step(trainee, optimizer, selection.inputs, labels, device)
                _broadcast_buffers(model, world)
                if not finite and config.on_nonfinite == "raise":
                    at.epoch_seconds += time.perf_counter() - started
                    # The step's update was not applied: save the state as it was before the step.
                    path = save(at, before)
                    kind = "loss" if not torch.isfinite(loss) else "gradient"
                    raise NonFiniteError(
                        f"non-finite {kind} at step {at.global_step + 1} (epoch {at.epoch + 1}, step {at.step + 1})"
                        + (f"; last good state saved to {path}" if path else "")
                        + "; lower --lr or use --on-nonfinite skip"
                    )
                if not finite:
                    at.nonfinite_steps += 1
                scheduler.step()
                if proxy is not None:
                    train_step(proxy_trainee, proxy_optimizer, selection.inputs, labels, device)
                    _broadcast_buffers(proxy, world)
                    proxy_scheduler.step()
                at.fallback_rows += selection.fallback_rows
                if finite:
                    with torch.no_grad():
                        chosen = selection.scores.gather(1, selection.index.view(-1, 1)).squeeze(1)
                        at.stats += torch.stack(
                            [
                                loss.detach().double() * len(labels),
                                (logits.argmax(dim=1) != labels).sum().double(),
                                probs_entropy(selection.probs).sum().double(),
                                chosen.nansum().double(),
                                selection.scores.mean(dim=1).nansum().double(),
                            ]
                        )
                    at.images += len(labels)
                    at.selected_images += len(labels) if selecting else 0
                at.step += 1
                at.global_step += 1
                if reporter is not None:
                    reporter.advance(config.batch_size)
                if on_step is not None:
                    on_step(at.global_step, selection)
                stopping = _agree_on_stop(stop, world, device)
                periodic = config.checkpoint_every and at.global_step % config.checkpoint_every == 0
                if (stopping or periodic) and at.step < steps_per_epoch:
                    now = time.perf_counter()
                    at.epoch_seconds += now - started
                    started = now
                    path = save(at, _random_states(generators))
                    if stopping:
                        raise TrainingInterrupted(stop["signum"], path, at.global_step)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            at.epoch_seconds += time.perf_counter() - started
            at.run_seconds += at.epoch_seconds
            counters = at.stats.new_tensor([getattr(at, k) for k in _PER_RANK])
            totals = _all_sum(torch.cat([at.stats, counters]), world).tolist()
            loss_sum, wrong, entropy_sum, chosen_sum, mean_sum, fallback_rows, count, selected = totals
            evaluated = at.epoch + 1 == config.epochs or (at.epoch + 1) % config.eval_every == 0
            if evaluated:
                at.test_error, at.test_loss = evaluate(model, data.test_images, data.test_labels, device)
            record = {
                "epoch": at.epoch + 1,
                "train_loss": loss_sum / count if count else math.nan,
                "train_error": wrong / count if count else math.nan,
                "test_error": at.test_error if evaluated else math.nan,  # NaN: not evaluated this epoch
                "test_loss": at.test_loss if evaluated else math.nan,
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": at.epoch_seconds,
                "elapsed_seconds": at.run_seconds,
                "images_per_second": steps_per_epoch * config.batch_size / at.epoch_seconds,
                "selected_fraction": selected / count if count else math.nan,
                # entropy and chosen/mean over the images that went through selection only
                "entropy": entropy_sum / selected if selected else 0.0,
                "uniform_entropy": math.log(num_candidates),
                "chosen_score_ratio": chosen_sum / mean_sum if mean_sum > 0 else None,
                "fallback_rows": int(fallback_rows),
                "nonfinite_steps": at.nonfinite_steps,
            }
            at.metrics.append(record)
            at.epoch, at.step, at.permutation = at.epoch + 1, 0, None
            if reporter is not None:
                reporter.finish(
                    f"epoch {record['epoch']}/{config.epochs} train loss {record['train_loss']:.4f} "
                    f"err {record['train_error']:.2%} | test err {_percent(record['test_error'])} | "
                    f"{at.epoch_seconds:.1f}s "
                    f"{record['images_per_second']:.0f} img/s | entropy {record['entropy']:.3f}"
                )
            if writes:
                with open(out_dir / "metrics.jsonl", "a") as handle:
                    handle.write(json.dumps(record) + "\n")
            if board is not None:
                for key, value in record.items():
                    if key != "epoch" and isinstance(value, (int, float)) and not math.isnan(value):
                        board.add_scalar(key, value, record["epoch"])
                board.flush()
            path = save(at, _random_states(generators))
            if _agree_on_stop(stop, world, device) and at.epoch < config.epochs:
                raise TrainingInterrupted(stop["signum"], path, at.global_step)

    final = at.metrics[-1]
    result = RunResult(
        config=config,
        test_error=final["test_error"],
        test_loss=final["test_loss"],
        train_error=final["train_error"],
        train_loss=final["train_loss"],
        seconds=at.run_seconds,
        images_per_second=sum(m["images_per_second"] * m["seconds"] for m in at.metrics) / at.run_seconds,
        metrics=tuple(at.metrics),
        device=metadata["device"],
        out_dir=out_dir,
        model=model,
    )
    if world > 1:  # DDP keeps replicas identical; check it rather than assume it
        checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().view(1)
        every = [torch.zeros_like(checksum) for _ in range(world)]
        torch.distributed.all_gather(every, checksum)
        metadata["rank_parameter_checksums"] = [float(c) for c in every]
    if writes:
        summary = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
        for name in ("model", "metrics", "config"):
            summary.pop(name)
        extra = {k: metadata[k] for k in ("world_size", "rank_parameter_checksums") if k in metadata}
        write_json({**summary, "epochs": len(at.metrics), "out_dir": str(out_dir), **extra}, out_dir / "final.json")
        from lossaug.plots import plot_curves

        try:
            plot_curves(
                {config.method: at.metrics}, out_dir / "curves.png", title=f"{config.model} on {config.dataset}"
            )
        except ImportError as error:  # e.g. a GPU box without matplotlib: the numbers matter more than the plot
            warnings.warn(f"curves.png not written: {error}", stacklevel=2)
    return result
