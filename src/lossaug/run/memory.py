"""Refuse, before allocating, a run that cannot fit: an absurd ``--width``, ``--candidates``, ``crop:N``, batch or
``--image-size`` would otherwise end in an allocator's traceback (or the kernel's OOM killer) minutes in.

``step_bytes`` estimates what one training step holds at its peak from shapes alone: the network is built and run
on the ``meta`` device (no memory, no compute) to count its parameters and the activations kept for the backward
pass; the M candidates and the padded crops are counted from their shapes. ``check_fits`` compares the estimate
with the memory the device has available and raises ``InputError`` with the breakdown when it does not fit. The
estimate is a floor (allocator slack, temporaries and the data set itself are not in it), so only runs that surely
fail are refused.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from lossaug.augment import Compose, RandomCrop
from lossaug.errors import InputError
from lossaug.methods import method_named

__all__ = ["available_bytes", "check_fits", "check_run_memory", "dataset_bytes", "step_bytes"]

FLOAT_BYTES = 4


def available_bytes(device: torch.device) -> int | None:
    """Free memory of ``device``: the GPU's free memory, or the host's MemAvailable (None if unknown)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _activation_floats(net: nn.Module, sample_shape: Sequence[int]) -> int | None:
    """Floats per sample in the outputs of every leaf module of ``net`` (a meta-device network) on one input of
    ``sample_shape``: what autograd keeps for the backward pass, roughly. None when the net cannot run on meta."""
    total = 0

    def count(_module, _inputs, output) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel()

    leaves = [m for m in net.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad():
            net(torch.empty((1, *sample_shape), device="meta"))
    except (RuntimeError, NotImplementedError, TypeError, ValueError):
        return None
    finally:
        for hook in hooks:
            hook.remove()
    return total


def step_bytes(
    net: nn.Module, sample_shape: Sequence[int], batch_size: int, num_candidates: int, augment: object
) -> dict[str, int]:
    """Bytes a training step needs, by part: ``net`` (built on the meta device) with SGD momentum, activations of
    a batch, the ``num_candidates`` candidates per sample (uint8 images or int16 clips as stored: one or two bytes;
    counted as 2) and the padded images of each crop of ``augment``."""
    parameters = sum(p.numel() for p in net.parameters())
    parts = {"weights, gradients and momentum": 3 * FLOAT_BYTES * parameters}
    floats = _activation_floats(net, sample_shape)
    if floats is not None:
        parts["activations"] = 2 * FLOAT_BYTES * floats * batch_size  # outputs and their gradients
    sample = 1
    for side in sample_shape:
        sample *= side
    parts["candidates"] = 2 * batch_size * num_candidates * sample
    ops = augment.augments if isinstance(augment, Compose) else (augment,)
    pads = [op.padding for op in ops if isinstance(op, RandomCrop)]
    if pads and len(sample_shape) == 3:
        channels, height, width = sample_shape
        padding = max(pads)
        parts["padded crops"] = batch_size * num_candidates * channels * (height + 2 * padding) * (width + 2 * padding)
    return parts


def dataset_bytes(num_images: int, channels: int, side: int) -> int:
    """Bytes of ``num_images`` uint8 images ``(C,side,side)``."""
    return num_images * channels * side * side


def check_fits(parts: dict[str, int], device: torch.device, advice: str, what: str = "a training step") -> None:
    """Raise ``InputError`` when the parts add up to more than ``device`` has available."""
    needed, free = sum(parts.values()), available_bytes(device)
    if free is None or needed <= free:
        return
    breakdown = ", ".join(f"{name} {_size(size)}" for name, size in parts.items() if size >= 2**20)
    raise InputError(
        f"{what} needs at least {_size(needed)} ({breakdown}) but {device.type} has {_size(free)} available; {advice}"
    )


def _size(count: int) -> str:
    return f"{count / 2**30:.1f} GiB" if count >= 2**30 / 10 else f"{count / 2**20:.0f} MiB"


def check_run_memory(config: Any, data: Any, device: torch.device, world_size: int, augment: object) -> None:
    """Refuse a run (``TrainConfig`` on ``pipeline.PlacedData``) whose step cannot fit in ``device``'s memory."""
    from lossaug.models import build_model

    try:
        with torch.device("meta"):
            net = build_model(
                config.model, data.num_classes, data.in_channels, config.width, sample_rate=data.sample_rate
            )
    except InputError:
        raise
    except Exception:  # a user's factory that cannot build on meta: no estimate, the run goes on
        return
    # The weighted mode's forward holds batch_size inputs, B/M images with their M candidates each: as many
    # candidates and activations as a baseline step of batch_size images.
    candidates = method_named(config.method).memory_candidates(config.num_candidates)
    parts = step_bytes(net, tuple(data.train_images.shape[1:]), config.batch_size // world_size, candidates, augment)
    check_fits(parts, device, "lower --batch-size, --candidates, --width or the crop padding")
