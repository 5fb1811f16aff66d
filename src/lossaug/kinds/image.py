"""``IMAGE``: uint8 images ``(N,C,H,W)``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from lossaug.data.folders import IMAGE_SUFFIXES
from lossaug.data.types import IMAGE_KIND
from lossaug.errors import InputError
from lossaug.kinds.base import DataKind, Stats

if TYPE_CHECKING:
    from pathlib import Path

    from torch import Tensor, nn

    from lossaug.augment.core import Compose
    from lossaug.run.config import TrainConfig
    from lossaug.use.run import InputSpec

__all__ = ["IMAGE"]


def _input_spec(shape: tuple[int, ...], sample_rate: int | None) -> dict[str, Any]:
    return {"kind": IMAGE_KIND, "channels": shape[0], "height": shape[1], "width": shape[2]}


def _example_shape(spec: InputSpec) -> tuple[int, ...]:
    return (spec.channels, int(spec.height or 0), int(spec.width or 0))


def _describe(spec: InputSpec) -> str:
    return f"{spec.channels}x{spec.height}x{spec.width} uint8 images"


_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM")


def _is_file(head: bytes) -> bool:
    """PNG, JPEG, GIF, BMP or WebP by its first bytes."""
    return head.startswith(_MAGIC) or (head.startswith(b"RIFF") and head[8:12] == b"WEBP")


def _check_augment(spec: str, dataset: str) -> None:
    from lossaug.augment import parse_augment, spec_kind

    if spec_kind(spec, None) != "image":
        raise InputError(f"augment {spec!r} names audio ops; {dataset!r} holds images")
    parse_augment(spec)


def _parse_augment(spec: str, sample_rate: int | None) -> Compose:
    from lossaug.augment.spec import parse_ops

    return parse_ops(spec, "image")


def _default_augment(config: TrainConfig, image_side: int | None) -> str:
    from lossaug.run.method import setting_spec

    return setting_spec(config, image_side)


def _input_stats(inputs: Tensor) -> Stats:
    from lossaug.run.pipeline import channel_stats

    return channel_stats(inputs)


def _image_side(inputs: Tensor) -> int:
    return min(inputs.shape[-2:])


def _read_input(source: Path | bytes, where: str, spec: InputSpec) -> Tensor:
    from lossaug.use.inputs import read_image  # use imports the kinds, so not at module level

    return read_image(source, where, spec)


def _export_takes(spec: InputSpec, takes_float: bool) -> str:
    from lossaug.use.export_inputs import image_takes

    return image_takes(spec, takes_float)


def _export_preprocessing(spec: InputSpec) -> dict[str, Any]:
    from lossaug.use.export_inputs import image_preprocessing

    return image_preprocessing(spec)


def _script_wrapper(net: nn.Module, spec: InputSpec, num_classes: int) -> nn.Module:
    from lossaug.use.formats import images_module

    return images_module(net, spec, num_classes)


IMAGE = DataKind(
    name=IMAGE_KIND,
    noun="images",
    models=("preact_resnet18", "cnn", "fast_resnet"),
    takes="images",
    input_spec=_input_spec,
    input_keys=("kind", "channels", "height", "width"),
    example_shape=_example_shape,
    describe=_describe,
    suffixes=IMAGE_SUFFIXES,
    is_file=_is_file,
    one_file="an image",
    files="images",
    empty_batch_ok=True,
    read_input=_read_input,
    script_wrapper=_script_wrapper,
    export_takes=_export_takes,
    export_preprocessing=_export_preprocessing,
    dtype=torch.uint8,
    value_range=(0, 255),
    example_range=(0, 256),
    check_augment=_check_augment,
    parse_augment=_parse_augment,
    default_augment=_default_augment,
    input_stats=_input_stats,
    image_side=_image_side,
    resized=True,
)
