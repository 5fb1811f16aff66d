"""A trained run, ready to use: its model on the CPU in eval mode, its class names and what its network takes
(``InputSpec``), read from the run directory's newest valid checkpoint without loading the training data (runs
made before the checkpoint recorded classes and inputs load their data once to learn them).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lossaug.data import Kind, load_for
from lossaug.errors import InputError
from lossaug.kinds import kind_named
from lossaug.models import build_classifier, check_state_fits
from lossaug.run.checkpoint import RunCheckpoint
from lossaug.run.config import TrainConfig
from lossaug.run.validation import kept_checkpoint
from lossaug.show import find_data, read_checkpoint, run_sample_rate
from lossaug.use.checks import check_config_fields, check_inputs, check_trusted, check_weights, warn_if_training

__all__ = ["InputSpec", "TrainedRun", "load_trained"]


@dataclass(frozen=True)
class InputSpec:
    """What a run's network takes: images ``(B,channels,height,width)`` uint8, or waveforms
    ``(B,channels,clip_samples)`` int16 at ``sample_rate`` Hz."""

    kind: Kind
    channels: int
    height: int | None = None
    width: int | None = None
    sample_rate: int | None = None
    clip_samples: int | None = None
    image_size: int | None = None  # the run's --image-size: files are resized to it as its data were

    @property
    def shape(self) -> tuple[int, ...]:
        """One example's shape: ``(C,H,W)`` or ``(C,T)``."""
        return kind_named(self.kind).example_shape(self)

    def describe(self) -> str:
        """``3x32x32 uint8 images`` or ``1x8000 int16 clips at 16000 Hz (0.5 s)``."""
        return kind_named(self.kind).describe(self)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class TrainedRun:
    """A run's trained ``model`` (``models.Normalized``: takes the raw uint8 images or int16 waveforms the data
    give, CPU, eval mode), its ``classes`` (logit i means ``classes[i]``) and ``inputs``; ``provenance`` is what
    the run recorded about itself (config.json and final.json, when present)."""

    config: TrainConfig
    model: nn.Module
    classes: tuple[str, ...]
    inputs: InputSpec
    run_dir: Path
    checkpoint: Path
    global_step: int
    provenance: dict[str, Any]
    position: dict[str, Any] = dataclasses.field(default_factory=dict)  # the checkpoint's: epoch, step, test error

    @property
    def kind(self) -> Kind:
        return self.inputs.kind


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():  # a FIFO or a device would block or never end
        return {}
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _from_data(config: TrainConfig, run_dir: Path) -> tuple[tuple[str, ...], dict[str, Any]]:
    """Classes and input spec of an older run, whose checkpoint lacks them: from its data, loaded once."""
    data = load_for(dataclasses.replace(config, data=find_data(config, run_dir)))
    spec = kind_named(data.kind).input_spec(tuple(data.train.inputs.shape[1:]), data.sample_rate)
    return data.classes, spec


def load_trained(run_dir: str | Path, *, trust_code: str | None = None) -> TrainedRun:
    """The trained model of ``run_dir`` (a run directory, or one of its checkpoint files), ready to predict.

    A model that is the user's own code (``--model PACKAGE.MODULE:FACTORY``) is imported only when ``trust_code``
    names its module. Raises ``FileNotFoundError`` for a missing path and ``InputError`` for a folder that holds
    no lossaug run, for recorded config or inputs lossaug does not write, and for weights that are not finite
    floats; warns when a training process still holds the run. A run that kept its best-validation checkpoint
    (``--keep best``) gives that one."""
    path, saved = read_checkpoint(kept_checkpoint(Path(run_dir)))  # best.pt when --keep best kept one
    folder = path.parent
    warn_if_training(folder)
    if not isinstance(saved.config, dict) or not isinstance(saved.model, dict):
        raise InputError(f"checkpoint {path}: its config or model is not a mapping; is it a lossaug checkpoint?")
    config = TrainConfig.from_dict(saved.config)
    check_config_fields(config, path)
    check_trusted(config.model, trust_code, path)
    if saved.classes and saved.inputs:
        classes, spec = tuple(map(str, saved.classes)), check_inputs(saved.inputs, path)
    else:
        classes, spec = _from_data(config, folder)
    if len(classes) != saved.num_classes:
        raise InputError(f"checkpoint {path} has {saved.num_classes} classes but its data {len(classes)}")
    model = _model(saved, config, len(classes), spec["channels"], path)
    inputs = InputSpec(**spec, image_size=config.image_size if kind_named(spec["kind"]).resized else None)
    provenance = {"config.json": _read_json(folder / "config.json"), "final.json": _read_json(folder / "final.json")}
    position: dict[str, Any] = saved.position if isinstance(saved.position, dict) else {}
    return TrainedRun(config, model.eval(), classes, inputs, folder, path, int(saved.global_step), provenance, position)


def _model(saved: RunCheckpoint, config: TrainConfig, num_classes: int, channels: int, path: Path) -> nn.Module:
    """The network of checkpoint ``saved`` (read from ``path``) on the CPU, its weights checked and loaded."""
    state = saved.model
    neutral = ([0.0] * channels, [1.0] * channels)  # the checkpoint's mean and std replace these
    cpu, rate = torch.device("cpu"), run_sample_rate(saved)
    model = build_classifier(
        config.model, num_classes, channels, config.width, neutral, device=cpu, init_seed=0, sample_rate=rate
    )
    check_state_fits(model, state, f"checkpoint {path}", config.model)
    check_weights(model, state, path)
    model.load_state_dict(state)
    return model
