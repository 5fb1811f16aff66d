"""The data side of a run: the device, the uint8 training set on it (or in pinned host memory), batches in a
seeded order, named random streams, and evaluation. Candidates stay uint8 until the model's forward pass
(normalisation is inside the model, ``models.Normalized``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lossaug.data import Kind, TrainData, load_for
from lossaug.errors import InputError
from lossaug.kinds import kind_named
from lossaug.models import check_image_size
from lossaug.run.config import TrainConfig
from lossaug.run.distributed import World, local_gpu
from lossaug.run.step import autocast_for
from lossaug.run.validation import split_validation
from lossaug.seeds import stream_seed

Log = Callable[[str], None]


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' requested but torch.cuda.is_available() is False; use --device cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name != "cuda":
        return torch.device(name)
    # In a process group under torchrun, the local rank's GPU whether or not the caller set the current device.
    gpu = local_gpu() if World.current().distributed else None
    return torch.device("cuda", torch.cuda.current_device() if gpu is None else gpu)


def use_device(device: torch.device) -> None:
    """Make a CUDA ``device`` current and let cuDNN benchmark its convolution kernels (shapes are fixed within a
    run) unless deterministic algorithms are on; nothing on the CPU. ``train`` and ``bench`` both call it, so the
    cost ratio that bench measures comes from the kernels the runs use."""
    if device.type != "cuda":
        return
    torch.cuda.set_device(device)  # collectives and bare .cuda() calls use this GPU
    if not torch.are_deterministic_algorithms_enabled():
        torch.backends.cudnn.benchmark = True


def make_generator(seed: int, name: str, device: torch.device) -> torch.Generator:
    """The generator of the random stream ``name`` under ``seed``, on ``device``."""
    return torch.Generator(device=device).manual_seed(stream_seed(seed, name))


def balanced_subset(labels: Tensor, size: int, num_classes: int) -> Tensor:
    """Indices of ``size`` examples, as even over classes as the data allows, from a fixed shuffle (seed 0):
    the same subset for every run seed, method and setting."""
    if size > len(labels):
        raise InputError(f"train_size {size} exceeds the {len(labels)} training images")
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    shuffled = labels[order]
    rank = torch.zeros_like(shuffled)
    for c in range(num_classes):
        members = shuffled == c
        rank[members] = torch.arange(int(members.sum()))
    keys = rank * num_classes + shuffled  # round-robin over classes
    return order[torch.argsort(keys, stable=True)[:size]].sort().values


def channel_stats(images: Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 ``images (N,C,H,W)`` on any device, on the [0, 1] scale, in chunks (no
    float copy of the whole set). Sums are float64 on the images' device: the same numbers on every device."""
    total = torch.zeros(images.shape[1], dtype=torch.float64, device=images.device)
    squares = torch.zeros_like(total)
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].double().div_(255).transpose(0, 1).flatten(1)
        total += x.sum(dim=1)
        squares += (x * x).sum(dim=1)
    count = images.numel() / images.shape[1]
    mean = total / count
    std = (squares / count - mean**2).clamp_min(1e-6).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


@dataclass(frozen=True)
class PlacedData:
    """The run's ``TrainData`` placed for the loop: the training subset, labels on the device, channel statistics."""

    train_images: Tensor  # (N,C,H,W) uint8, on the device or pinned host memory
    train_labels: Tensor  # (N,) int64, always on the device (small)
    test_images: Tensor
    test_labels: Tensor
    num_classes: int
    mean: tuple[float, ...]  # per channel, [0, 1] scale, of the training images
    std: tuple[float, ...]
    on_device: bool
    kind: Kind  # the source's (kinds.KINDS): images (N,C,H,W) uint8 or waveforms (N,C,T) int16
    classes: tuple[str, ...] = ()  # label i means classes[i]
    sample_rate: int | None = None  # Hz, audio only: what the audio network's front end is built for
    notes: dict[str, Any] = field(default_factory=dict)  # how the data were read (TrainData.notes): split, skipped
    val_images: Tensor | None = None  # the validation examples held out of the training data (--val-fraction)
    val_labels: Tensor | None = None

    @property
    def in_channels(self) -> int:
        return self.train_images.shape[1]

    def input_spec(self) -> dict[str, Any]:
        """What the run's network takes, recorded in its checkpoint and config.json (``lossaug predict`` and
        ``export`` read it): kind and channels, and the image height and width or the audio rate and clip length."""
        return kind_named(self.kind).input_spec(tuple(self.train_images.shape[1:]), self.sample_rate)


def dense(t: Tensor) -> Tensor:
    """``t`` with row-major strides, its size-1 dimensions included. ``contiguous()`` keeps any stride of a size-1
    dimension, and a grayscale ``(N,1,H,W)`` set decoded as ``(N,H,W,1)`` has strides ``(HW,1,W,1)``, which
    convolutions take as channels-last: they round differently (3e-8 in the logits of cnn width 8), so the same
    run's test loss differed in the 7th digit between freshly decoded and cached data."""
    if t.stride() == torch.empty(t.shape, device="meta").stride():
        return t
    return t.clone(memory_format=torch.contiguous_format)


def _check_labels(dataset: TrainData, name: str) -> None:
    for split_name, split in (("train", dataset.train), ("test", dataset.test)):
        if len(split.labels) == 0:
            raise InputError(f"the {split_name} split of {name!r} is empty")
        bad = (split.labels < 0) | (split.labels >= dataset.num_classes)
        if bool(bad.any()):
            index = int(bad.nonzero()[0, 0])
            raise InputError(
                f"{split_name} label {int(split.labels[index])} at index {index} is outside [0, {dataset.num_classes})"
            )


def prepare_data(config: TrainConfig, device: torch.device, log: Log | None) -> PlacedData:
    """``load_for(config)``, its training subset taken and placed for the loop."""
    dataset = load_for(config, log)
    _check_labels(dataset, config.dataset)
    train, test = dataset.train, dataset.test
    kind = kind_named(dataset.kind)
    side = kind.image_side(train.inputs)
    if side is not None:
        for name in filter(None, (config.model, config.proxy_model)):
            check_image_size(name, side, f"{config.dataset} images are {tuple(train.inputs.shape[-2:])} px")
    train_images, train_labels = train.inputs, train.labels
    if config.train_size is not None:
        keep = balanced_subset(train_labels, config.train_size, dataset.num_classes)
        train_images, train_labels = train_images[keep], train_labels[keep]
    val = None  # (images, labels, record) held out of the (subset of the) training data, before its statistics
    if config.val_fraction is not None:
        held = split_validation(train_labels, dataset.classes, config.val_fraction, config.split_seed)
        if log is not None:
            log(held.summary())
        val = (train_images[held.val_rows], train_labels[held.val_rows], held.record)
        train_images, train_labels = train_images[held.train_rows], train_labels[held.train_rows]
    if len(train_labels) < config.batch_size:
        raise InputError(f"batch_size {config.batch_size} exceeds the {len(train_labels)} training images")
    mean, std = kind.input_stats(train_images)
    on_device = config.data_placement != "host"
    if device.type == "cuda" and config.data_placement == "auto":
        free, _ = torch.cuda.mem_get_info(device)
        on_device = train_images.numel() + test.inputs.numel() < 0.3 * free  # leave room for activations
    placement = device if on_device else torch.device("cpu")
    pin = not on_device and device.type == "cuda"

    def place(t: Tensor) -> Tensor:
        t = dense(t).to(placement)
        return t.pin_memory() if pin else t

    notes = {**dataset.notes(), **({"validation": val[2]} if val else {})}
    return PlacedData(
        place(train_images),
        train_labels.to(device),
        place(test.inputs),
        test.labels.to(device),
        dataset.num_classes,
        mean,
        std,
        on_device,
        dataset.kind,
        dataset.classes,
        dataset.sample_rate,
        notes,
        val_images=place(val[0]) if val else None,
        val_labels=val[1].to(device) if val else None,
    )


class PinnedBatches:
    """Batches of a pinned host tensor, gathered into two alternating pinned staging buffers and copied to the
    GPU without blocking the host; a buffer is refilled only once its previous copy has finished."""

    def __init__(self, images: Tensor, batch_size: int, device: torch.device):
        self.images, self.device, self.slot = images, device, 0
        self.staging = [torch.empty((batch_size, *images.shape[1:]), dtype=images.dtype).pin_memory() for _ in range(2)]
        self.copied: list[torch.cuda.Event | None] = [None, None]

    def __call__(self, index: Tensor) -> Tensor:
        """``images[index]`` on the device; ``index (B,)`` on the CPU."""
        slot, self.slot = self.slot, 1 - self.slot
        previous = self.copied[slot]
        if previous is not None:
            previous.synchronize()
        buffer = self.staging[slot][: len(index)]
        torch.index_select(self.images, 0, index, out=buffer)
        batch = buffer.to(self.device, non_blocking=True)
        copied = torch.cuda.Event()
        copied.record()
        self.copied[slot] = copied
        return batch


def epoch_batches(
    data: PlacedData, permutation: Tensor, first_step: int, batch_size: int, world: World, device: torch.device
):
    """``(images (b,...), labels (b,), indices (b,))`` on the device for steps ``first_step..`` of the epoch
    ordered by ``permutation (N,)`` (CPU); ``b`` is this rank's share of ``batch_size``, ``indices`` its rows of the
    training set; the last partial batch is dropped."""
    order = permutation.to(device)
    fetch: Callable[[Tensor], Tensor]
    if not data.on_device and device.type == "cuda":
        fetch, host_order = PinnedBatches(data.train_images, batch_size // world.size, device), permutation
    else:
        fetch, host_order = data.train_images.__getitem__, order
    for step in range(first_step, len(permutation) // batch_size):
        batch = slice(step * batch_size, (step + 1) * batch_size)
        rows = world.share(order[batch])
        yield fetch(world.share(host_order[batch])).to(device), data.train_labels[rows], rows


def evaluate(model: nn.Module, images: Tensor, labels: Tensor, device: torch.device, batch_size: int = 1024):
    """``(error, mean loss)`` of ``model`` over ``images (N,C,H,W)`` in eval mode; restores the training flag.
    Under ``torch.distributed`` each rank evaluates its share and the sums are reduced."""
    world = World.current()
    total = len(labels)
    images, labels = world.share(images), world.share(labels)
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
    wrong, loss_sum = world.all_sum(sums).tolist()
    return wrong / total, loss_sum / total


def confusion_matrix(
    model: nn.Module, inputs: Tensor, labels: Tensor, num_classes: int, device: torch.device, batch_size: int = 1024
) -> Tensor:
    """``counts (K,K)`` int64 on the CPU: row = true class, column = predicted class, of ``model`` over ``inputs``
    (images or waveforms) in eval mode; restores the training flag. Under ``torch.distributed`` each rank counts
    its share and the counts are summed (every rank must call it)."""
    world = World.current()
    inputs, labels = world.share(inputs), world.share(labels)
    was_training = model.training
    model.eval()
    counts = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
    with torch.inference_mode(), autocast_for(device):
        for start in range(0, len(labels), batch_size):
            x = inputs[start : start + batch_size].to(device, non_blocking=True)
            y = labels[start : start + batch_size].to(device, non_blocking=True)
            predicted = model(x).float().argmax(dim=1)
            counts += torch.bincount(y * num_classes + predicted, minlength=num_classes * num_classes)
    model.train(was_training)
    return world.all_sum(counts).view(num_classes, num_classes).cpu()


def per_class_errors(counts: Tensor, classes: tuple[str, ...]) -> dict[str, float | None]:
    """Each class's test error from a confusion matrix ``counts (K,K)`` (rows true): the share of its examples
    predicted as another class; None for a class without test examples."""
    totals = counts.sum(dim=1)
    right = counts.diagonal()
    return {name: (1 - int(right[i]) / int(totals[i])) if int(totals[i]) else None for i, name in enumerate(classes)}
