"""What defines a training run: ``TrainConfig`` (one frozen dataclass; the CLI makes an option of every field),
its validation, named presets, and ``RunResult``, what a run returns.

Imports nothing else of lossaug's training code, so every other module can import it.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from lossaug.data.sources import DATASETS, data_kind, source_for
from lossaug.data.split import check_folder_options
from lossaug.errors import InputError
from lossaug.kinds import check_model_fits_data, kind_of_dataset
from lossaug.methods import METHOD_REGISTRY, method_named
from lossaug.models import MODELS, RECIPES, check_model_name
from lossaug.models.user import FACTORY_FORM
from lossaug.run.validation import check_validation_options
from lossaug.selection import BN_MODES, SCORES, check_score_fraction

METHODS = tuple(METHOD_REGISTRY)  # the --method choices, one registry row each (methods.py)
SETTINGS = ("A", "B", "C")
DEVICES = ("auto", "cpu", "cuda")
PLACEMENTS = ("auto", "device", "host")
NONFINITE = ("raise", "skip")
# Changing these on resume would change tensor shapes or the data itself: an error. Other changes only warn.
RESUME_FIXED = (
    "dataset",
    "model",
    "width",
    "image_size",
    "train_size",
    "classes",
    "batch_size",
    "proxy_model",
    "proxy_width",
)
# What a branch may change from its trunk (the method and how long it trains); everything else must match.
BRANCH_FREE = (
    "method",
    "num_candidates",
    "temperature",
    "score",
    "bn",
    "uniform_mix",
    "score_chunk",
    "score_fraction",
    "select_from",
    "select_every",
    "compile_scoring",
    "epochs",
    "out",
    "stop_at",
    "branch_from",
    "eval_every",
    "checkpoint_every",
    "on_nonfinite",
    "max_nonfinite",
    "tensorboard",
    "cache_dir",
    "data",
    "data_placement",
)
# Counts beyond these are typing mistakes, not runs: refused at validation, before anything overflows once training
# began (an ETA past the year 9999 for --epochs 1e20, a layer of 1e20 channels).
COUNT_LIMITS = {"epochs": 1_000_000, "width": 65_536, "proxy_width": 65_536}
MAX_COUNT = 10**9  # every other count: batch size, candidates, steps, sizes
# Renamed fields: a saved config (checkpoint, config.json, TOML file) may still use the old name.
RENAMED = {"candidates": "num_candidates"}


_TEST_FRACTION_HELP = (
    "folder data with no train/ and test/: split off this fraction of each class's files for testing (stratified, "
    "seeded by --split-seed; recorded)"
)
_SKIP_BAD_HELP = (
    "folder data: train without files that cannot be decoded (listed in the log and OUT/skipped_files.txt); "
    "default: refuse, listing them"
)
_BALANCE_HELP = (
    "class-balanced sampling: each epoch draws its examples with replacement, every class equally likely (off: "
    "each example once per epoch)"
)

_VAL_FRACTION_HELP = (
    "hold this fraction of each class's training examples out for validation (stratified, seeded by --split-seed; "
    "recorded): validation error per epoch, for --keep best and --patience"
)
_KEEP_HELP = (
    "best: also keep the best-validation epoch's checkpoint as OUT/best.pt, which predict, evaluate and export "
    "then use (needs --val-fraction)"
)


def _opt(default: Any, help: str, **metadata: Any) -> Any:
    return field(default=default, metadata={"help": help, **metadata})


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run. Defaults are the ``seed`` preset (the published protocol) on mini data."""

    # data
    dataset: str = _opt(
        "mini",
        "images: cifar10, cifar100, folder (root/train/<class>/*, or an archive of it) or mini (bundled); audio: fsdd "
        "(Free Spoken Digits) or audio-folder (root/train/<class>/*.wav, or an archive of it)",
        choices=DATASETS,
    )
    data: str | None = _opt(None, "archive, extracted folder or download directory (cifar: default cache dir)")
    image_size: int | None = _opt(None, "resize folder images to SIZE x SIZE pixels (needed for mixed sizes)")
    train_size: int | None = _opt(
        None, "train on a fixed class-balanced subset of this many images (same for every seed)"
    )
    cache_dir: str | None = _opt(
        None, "downloads and decoded-array cache; None: no cache (the CLI uses ~/.cache/lossaug)"
    )
    sample_rate: int | None = _opt(None, "audio: resample clips to this rate in Hz (None: the data's own)")
    clip_seconds: float | None = _opt(None, "audio: pad/crop clips to this length (None: 95th percentile of train)")
    test_speaker: str | None = _opt(None, "fsdd: hold this speaker out as the test set (None: the official split)")
    classes: str | None = _opt(
        None, "keep only these classes (comma-separated names, e.g. 'cat,dog'), labelled in the data set's order"
    )
    test_fraction: float | None = _opt(None, _TEST_FRACTION_HELP)
    split_seed: int = _opt(
        0, "seed of the --test-fraction and --val-fraction splits (apart from --seed: one split for every seed)"
    )
    skip_bad: bool = _opt(False, _SKIP_BAD_HELP)
    balance: bool = _opt(False, _BALANCE_HELP)
    verify: bool = _opt(
        True,
        "skip the md5 check of CIFAR archives (downloaded, cached or given) against the official sums, e.g. for a "
        "repacked archive; recorded in config.json. Other data have no official sums",
    )
    allow_data_change: bool = _opt(False, "resume even if the data differ from the checkpoint's (fingerprint)")
    val_fraction: float | None = _opt(None, _VAL_FRACTION_HELP)
    # model
    model: str = _opt(
        "preact_resnet18",
        f"network: {', '.join(MODELS)}, or your own as {FACTORY_FORM} (a callable taking num_classes= and, if it "
        "accepts them, in_channels=, width= and sample_rate=, returning an nn.Module); the command line's default "
        "for audio data is audio_cnn",
        option_metavar="NAME|" + FACTORY_FORM,
    )
    width: int | None = _opt(None, "first-stage channels (preact_resnet18: 64 as published; cnn: 32)")
    init: str | None = _opt(
        None,
        "start the model from this lossaug checkpoint, run directory or state_dict file; tensors whose shape "
        "differs (e.g. the classifier head) keep their fresh initialisation and are listed",
    )
    init_strict: bool = _opt(False, "with --init: any tensor that does not match by name and shape is an error")
    backbone_lr_scale: float = _opt(1.0, "with --init: multiply the learning rate of the loaded tensors (e.g. 0.1)")
    # method
    method: str = _opt(
        "proposed",
        "baseline: 1 random candidate; proposed: sample by loss; maxup: hardest; weighted: train on all M "
        "candidates of batch-size/M images, each weighted by its share of the loss (no scoring pass)",
        choices=METHODS,
    )
    setting: str = _opt(
        "A",
        "A: flip + crop (pad 4); B: A + Cutout (16 px CIFAR-10, 8 px CIFAR-100); C: A + one TrivialAugment-style op "
        "per candidate (images only)",
        choices=SETTINGS,
    )
    augment: str | None = _opt(None, "custom augmentation spec (e.g. 'flip,crop:2'); overrides --setting")
    num_candidates: int = _opt(
        4, "M: candidates per image for proposed/maxup (baseline always uses 1)", option="--candidates"
    )
    temperature: float | None = _opt(None, "selection temperature; None: the method's (proposed 1, maxup 0)")
    score: str = _opt("loss", "candidate score: loss (cross-entropy) or error (1 - p(true class))", choices=SCORES)
    bn: str = _opt("eval", "BatchNorm statistics while scoring: eval (running) or batch", choices=BN_MODES)
    uniform_mix: float = _opt(0.0, "blend this fraction of uniform probability into selection")
    score_chunk: int | None = _opt(
        None, "candidates per scoring forward pass (None: all B*M at once on CUDA, batch-size chunks on CPU)"
    )
    # cheaper selection
    score_fraction: float = _opt(
        1.0,
        "stale-loss gating: score only this fraction of each batch, the images with the highest last training "
        "loss; the rest take one random candidate (1: score all, the published method)",
    )
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
    label_smoothing: float = _opt(0.0, "label smoothing of the training loss (scores stay plain cross-entropy)")
    seed: int = _opt(0, "seed of every random stream (init, data order, augmentation, selection)")
    # branching: one trunk, several arms continuing from it (lossaug compare --branch-at)
    stop_at: float | None = _opt(
        None, "stop with a checkpoint after this fraction of the training steps (a trunk for --branch-from runs)"
    )
    branch_from: str | None = _opt(
        None,
        "continue a trunk run directory's checkpoint with this run's method and epochs (tail of the "
        "schedule stretched to this run's length)",
    )
    # machinery
    device: str = _opt("auto", "auto (cuda if available), cpu or cuda", choices=DEVICES)
    data_placement: str = _opt(
        "auto", "where the uint8 training set lives: device, host (pinned), auto", choices=PLACEMENTS
    )
    eval_every: int = _opt(1, "evaluate the test set every N epochs (and always after the last)")
    checkpoint_every: int = _opt(0, "also checkpoint every N steps (0: only at epoch ends)")
    on_nonfinite: str = _opt(
        "raise",
        "non-finite loss, gradient or update: raise (stop, keeping the last good state) or skip (undo the step, "
        "count it)",
        choices=NONFINITE,
    )
    max_nonfinite: int = _opt(20, "with skip: stop with an error after this many non-finite steps in a row")
    out: str | None = _opt(
        None,
        "run directory for config, metrics, checkpoint and plots (Python API: None writes nothing)",
        cli_default="runs/<YYYYmmdd-HHMMSS>-<dataset>-<method>",
    )
    tensorboard: str = _opt(
        "off", "also log per-epoch metrics to OUT/tensorboard (needs the tensorboard package)", choices=("off", "on")
    )
    keep: str = _opt("last", _KEEP_HELP, choices=("last", "best"))
    patience: int | None = _opt(None, "stop early after this many epochs without a better validation error")

    def resolved_temperature(self) -> float:
        """The selection temperature: ``temperature``, else the method's (inf for the baseline, always)."""
        return method_named(self.method).resolved_temperature(self.temperature)

    def candidates_per_image(self) -> int:
        """M of a selecting step: 1 for the baseline."""
        return method_named(self.method).candidates(self.num_candidates)

    def images_per_step(self) -> int:
        """Distinct images per step: ``batch_size``, or ``batch_size / M`` in the weighted mode, whose forward
        pass holds all M candidates of each image (``batch_size`` inputs, a baseline step's cost)."""
        return method_named(self.method).images_per_step(self.batch_size, self.num_candidates)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """A config from saved values (a checkpoint's or config.json's): renamed fields are mapped to their new
        names, fields this version does not know are an error naming them."""
        values = {RENAMED.get(k, k): v for k, v in values.items()}
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise InputError(f"options this lossaug does not know: {unknown}")
        return cls(**values)


PRESETS: dict[str, dict[str, Any]] = {
    # The published protocol (equal to the defaults). The slides do not state the schedule; we use the standard
    # CIFAR ResNet recipe with cosine decay.
    "seed": dict(model="preact_resnet18", epochs=200, batch_size=128, lr=0.1, momentum=0.9, weight_decay=5e-4),
    # The CPU protocol of experiments/ (1,000 images; PreActResNet-18 at width 8 fits them in 100 epochs).
    "cpu": dict(model="preact_resnet18", width=8, epochs=100, batch_size=64, lr=0.05, train_size=1000),
    # The demo's small CNN on the bundled data; `lossaug demo` sizes the epochs to its time budget (25 is the cap).
    "demo": dict(dataset="mini", model="cnn", width=16, epochs=25, batch_size=128, lr=0.2),
    # The fast network and its short full-data GPU recipe (models.RECIPES; the GPU protocol's [train] table).
    "fast": dict(model="fast_resnet", **RECIPES["fast_resnet"]),
}


def _finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value}")


def class_names(config: TrainConfig) -> tuple[str, ...] | None:
    """``config.classes`` as a tuple of names (None: every class)."""
    if config.classes is None:
        return None
    return tuple(name.strip() for name in config.classes.split(","))


def _check_counts(counts: dict[str, Any]) -> None:
    """Every count an integer no larger than its ``COUNT_LIMITS`` (default ``MAX_COUNT``)."""
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise InputError(f"{name} must be an integer, got {value!r}")
        limit = COUNT_LIMITS.get(name, MAX_COUNT)
        if int(value) > limit:
            raise InputError(f"{name} must be at most {limit}, got {value}")


def _check_transfer(config: TrainConfig) -> None:
    """The options of the small-domain path: --init and its companions, --classes."""
    _finite("backbone_lr_scale", config.backbone_lr_scale)
    if config.backbone_lr_scale < 0:
        raise InputError(f"backbone_lr_scale must be >= 0, got {config.backbone_lr_scale}")
    if config.init is None and (config.init_strict or config.backbone_lr_scale != 1.0):
        raise InputError("init_strict and backbone_lr_scale apply to loaded weights: give --init PATH too")
    names = class_names(config)
    if names is not None:
        if "" in names:
            raise InputError(f"classes: empty name in {config.classes!r}")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise InputError(f"classes: {repeated} named more than once in {config.classes!r}")
        if len(names) < 2:
            raise InputError(f"classes needs at least 2 class names, got {config.classes!r}")


def _check_folder_options(config: TrainConfig) -> None:
    """--test-fraction, --split-seed and --skip-bad: in range, and for folder data only."""
    check_folder_options(config.test_fraction, config.split_seed)
    split_seed = config.split_seed and config.val_fraction is None  # the validation split uses it on any data
    folder_options = config.test_fraction is not None or config.skip_bad or split_seed
    if folder_options and not source_for(config.dataset).folder:
        where = f"folder and audio-folder data, not {config.dataset!r}"
        raise InputError(f"test_fraction, split_seed and skip_bad apply to {where}")


def _check_cheap_modes(config: TrainConfig) -> None:
    """--score-fraction and --method weighted, and what they do not combine with."""
    check_score_fraction(config.score_fraction)
    row = method_named(config.method)
    if config.score_fraction != 1.0 and not row.gates:
        gating = " and ".join(name for name, other in METHOD_REGISTRY.items() if other.gates)
        raise InputError(f"score_fraction applies to the {gating} methods, not {config.method!r}")
    if not row.trains_all:
        return
    if config.batch_size % config.num_candidates:
        raise InputError(
            f"method weighted trains on batch_size / M images per step: batch_size {config.batch_size} must be a "
            f"multiple of candidates {config.num_candidates}"
        )
    if config.proxy_model is not None or config.select_every != 1 or config.select_from != 0:
        raise InputError(
            "method weighted scores every candidate in the training pass: --proxy-model, "
            "--select-every and --select-from do not apply"
        )
    # No scoring pass: each candidate's weight is its training-mode loss from the training forward pass.
    unused = {
        "--score": (config.score, "loss", "its weights are the candidates' losses"),
        "--bn": (config.bn, "eval", "its weights come from the training pass, BatchNorm in training mode"),
        "--score-chunk": (config.score_chunk, None, "the training pass holds every candidate"),
    }
    for option, (value, default, why) in unused.items():
        if value != default:
            raise InputError(f"method weighted has no scoring pass ({why}): {option} {value} does not apply")


def validate_config(config: TrainConfig) -> None:
    """Raise ValueError naming the first bad field of ``config``."""
    for f in dataclasses.fields(config):
        choices = f.metadata.get("choices")
        value = getattr(config, f.name)
        if choices and value not in choices:
            raise InputError(f"unknown {f.name} {value!r}; choose from {list(choices)}")
    _check_transfer(config)
    _check_folder_options(config)
    for name in ("lr", "momentum", "weight_decay", "warmup_epochs", "label_smoothing", "uniform_mix", "select_from"):
        _finite(name, getattr(config, name))
    positive = {
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "num_candidates": config.num_candidates,
        "eval_every": config.eval_every,
        "select_every": config.select_every,
        "max_nonfinite": config.max_nonfinite,
    }
    for name in ("width", "image_size", "train_size", "score_chunk", "proxy_width"):
        if getattr(config, name) is not None:
            positive[name] = getattr(config, name)
    _check_counts({**positive, "checkpoint_every": config.checkpoint_every})
    for name, value in positive.items():
        if value < 1:
            raise InputError(f"{name} must be >= 1, got {value}")
    if config.tensorboard == "on":
        if config.out is None:
            raise InputError("tensorboard 'on' needs out, the run directory to log into")
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise InputError("tensorboard 'on' needs the tensorboard package: pip install tensorboard") from None
    if config.checkpoint_every < 0:
        raise InputError(f"checkpoint_every must be >= 0, got {config.checkpoint_every}")
    if not 0 <= config.select_from < 1:
        raise InputError(f"select_from must be in [0, 1), got {config.select_from}")
    _check_cheap_modes(config)
    check_validation_options(config)
    check_model_name(config.model)
    check_model_fits_data(config.model, data_kind(config.dataset), config.dataset)
    if config.proxy_model is not None:
        check_model_name(config.proxy_model, "proxy_model")
        check_model_fits_data(config.proxy_model, data_kind(config.dataset), config.dataset, "proxy_model")
    if config.temperature is not None and not config.temperature >= 0:
        raise InputError(f"temperature must be >= 0, got {config.temperature}")
    if not 0 <= config.uniform_mix <= 1:
        raise InputError(f"uniform_mix must be in [0, 1], got {config.uniform_mix}")
    if not 0 <= config.label_smoothing < 1:
        raise InputError(f"label_smoothing must be in [0, 1), got {config.label_smoothing}")
    if not config.lr > 0 or config.weight_decay < 0 or not 0 <= config.momentum < 1 or config.warmup_epochs < 0:
        raise InputError(
            f"need lr > 0, weight_decay >= 0, 0 <= momentum < 1, warmup_epochs >= 0; got lr={config.lr}, "
            f"weight_decay={config.weight_decay}, momentum={config.momentum}, warmup_epochs={config.warmup_epochs}"
        )
    if config.warmup_epochs > config.epochs:
        raise InputError(f"warmup_epochs {config.warmup_epochs} exceeds epochs {config.epochs}")
    if config.stop_at is not None and not 0 < config.stop_at < 1:
        raise InputError(f"stop_at must be in (0, 1), got {config.stop_at}")
    if config.stop_at is not None and config.branch_from is not None:
        raise InputError("stop_at and branch_from exclude each other: a trunk cannot itself be a branch")
    if (config.stop_at is not None or config.branch_from is not None) and config.out is None:
        raise InputError("stop_at and branch_from need out, the run directory holding the checkpoints")
    kind = kind_of_dataset(config.dataset)
    if config.augment is None:
        kind.check_setting(config.setting)
    else:
        kind.check_augment(config.augment, config.dataset)


@dataclass(frozen=True)
class RunResult:
    """What a run produced. Errors are fractions in [0, 1]; ``metrics`` holds one dict per epoch. A trunk
    (``stop_at``) returns early: its test error and loss are NaN unless an evaluation fell before the stop."""

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
