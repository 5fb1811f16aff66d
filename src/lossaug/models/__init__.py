"""Classifiers for the training app: PreActResNet-18 (the published model), a fast ResNet for short full-data
GPU schedules, and a small CNN for CPU demos.

``build_model`` wraps the network in ``Normalized`` so that it takes the raw uint8 images ``(B,C,H,W)`` that the
pipeline keeps on the device: candidates stay uint8 (a quarter of float32's memory) until the forward pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lossaug.errors import InputError
from lossaug.models.audio import DEFAULT_SAMPLE_RATE, AudioCNN
from lossaug.models.user import FACTORY_FORM, build_factory_model, is_factory_name


class PreActBlock(nn.Module):
    """Pre-activation basic block (He et al. 2016): BN-ReLU-conv twice, identity or 1x1 shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut = (
            nn.Conv2d(in_planes, planes, 1, stride, bias=False) if stride != 1 or in_planes != planes else None
        )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    """PreActResNet-18 for 32x32 inputs; ``width`` is the first stage's channels (64 in the paper), the
    stages have width, 2x, 4x, 8x. Global average pooling, so other image sizes work too."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        stages, in_planes = [], width
        for index, planes in enumerate((width, 2 * width, 4 * width, 8 * width)):
            stride = 1 if index == 0 else 2
            stages += [PreActBlock(in_planes, planes, stride), PreActBlock(planes, planes, 1)]
            in_planes = planes
        self.layers = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(in_planes)
        self.linear = nn.Linear(in_planes, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn(self.layers(self.conv1(x))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


class SmallCNN(nn.Module):
    """Four conv-BN-ReLU stages (three with 2x2 max-pooling), global pooling, linear: a fast CPU baseline.
    ``width`` is the first stage's channels; later stages double it up to 4x."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 32):
        super().__init__()
        widths = (width, 2 * width, 4 * width, 4 * width)
        layers: list[nn.Module] = []
        for index, (c_in, c_out) in enumerate(zip((in_channels, *widths[:-1]), widths, strict=True)):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
            if index > 0:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.linear = nn.Linear(widths[-1], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


class ConvBNReLU(nn.Sequential):
    """3x3 conv (no bias: BatchNorm follows), BatchNorm, ReLU; ``pool`` puts a 2x2 max-pool between conv and BN,
    which halves the side before the cheaper per-pixel work."""

    def __init__(self, c_in: int, c_out: int, pool: bool = False):
        layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)]
        if pool:
            layers.append(nn.MaxPool2d(2))
        super().__init__(*layers, nn.BatchNorm2d(c_out), nn.ReLU())


class Residual(nn.Module):
    """``x + f(x)`` with ``f`` two ``ConvBNReLU`` at ``channels``."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(ConvBNReLU(channels, channels), ConvBNReLU(channels, channels))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class FastResNet(nn.Module):
    """A 9-layer ResNet of the kind that trains full CIFAR-10 to about 94% in a few dozen GPU-seconds
    (D. Page, "How to train your ResNet" part 4, 2018; the same stage shape as K. Jordan's airbench, 2024).

    Stem conv-BN-ReLU at ``width``; three stages of conv -> 2x2 max-pool -> BN -> ReLU at 2x, 4x and 8x
    ``width``, the first and last followed by a ``Residual`` block; global max-pooling; a bias-free linear layer
    whose logits are multiplied by a fixed ``output_scale`` (0.125, Page's value; it keeps the initial logits
    small under the recipe's high learning rate). Three max-pools: sides below 8 px do not fit.
    """

    output_scale = 0.125

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 64):
        super().__init__()
        widths = (width, 2 * width, 4 * width, 8 * width)
        self.stem = ConvBNReLU(in_channels, width)
        stages: list[nn.Module] = []
        # Residual blocks after the first and last stage only, as in Page's network.
        for c_in, c_out, residual in zip(widths[:-1], widths[1:], (True, False, True), strict=True):
            stages.append(ConvBNReLU(c_in, c_out, pool=True))
            if residual:
                stages.append(Residual(c_out))
        self.stages = nn.Sequential(*stages)
        self.linear = nn.Linear(widths[-1], num_classes, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        features = F.adaptive_max_pool2d(self.stages(self.stem(x)), 1).flatten(1)
        return self.linear(features) * self.output_scale


class Normalized(nn.Module):
    """``net`` behind per-channel normalisation: takes uint8 images in [0, 255] (or floats on that scale),
    feeds ``(x/255 - mean) / std`` to ``net``, optionally in channels_last memory format."""

    mean: Tensor  # (1,C,1,1) buffers on the 0-255 scale
    std: Tensor

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float], channels_last: bool = False):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * 255)
        self.channels_last = channels_last

    def forward(self, images: Tensor) -> Tensor:
        shape = (1, -1) + (1,) * (images.dim() - 2)  # (B,C,H,W) images or (B,C,T) waveforms
        x = (images.float() - self.mean.view(shape)) / self.std.view(shape)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)


MODELS = {"preact_resnet18": PreActResNet18, "cnn": SmallCNN, "fast_resnet": FastResNet, "audio_cnn": AudioCNN}
DEFAULT_WIDTHS = {"preact_resnet18": 64, "cnn": 32, "fast_resnet": 64, "audio_cnn": 16}
# Smallest square side (px) each network accepts, at any width (tests/test_models.py checks it and that one less
# fails): PreActResNet-18's stride-2 convs round up and never reach zero; the cnn and fast_resnet have three 2x2
# max-pools (8 -> 4 -> 2 -> 1).
MIN_IMAGE_SIZE = {"preact_resnet18": 1, "cnn": 8, "fast_resnet": 8}
# Recommended full-data training recipe per model (keys are TrainConfig fields). fast_resnet: Page's ResNet-9
# schedule ("How to train your ResNet" parts 4-5: batch 512, peak lr 0.4 with the loss averaged over the batch,
# Nesterov momentum 0.9, weight decay 5e-4, linear warm-up over about a fifth of training) shortened from 24 to 10
# epochs with label smoothing 0.2 as in airbench (Jordan 2024) and Page's later posts. 10 epochs is our choice so
# that 10+ seed pairs fit in 8 GPU-minutes; not yet measured on a GPU (expect ~93% rather than 94% at 10 epochs).
RECIPES = {
    "fast_resnet": dict(
        epochs=10, batch_size=512, lr=0.4, momentum=0.9, weight_decay=5e-4, label_smoothing=0.2, warmup_epochs=2.0
    ),
}


def check_model_name(name: str, option: str = "model") -> None:
    """Raise ``InputError`` unless ``name`` is a built-in network or of the form ``PACKAGE.MODULE:FACTORY``
    (imported only when the model is built)."""
    if name not in MODELS and not is_factory_name(name):
        raise InputError(f"unknown {option} {name!r}; choose from {sorted(MODELS)} or give {FACTORY_FORM}")


def build_model(
    name: str, num_classes: int, in_channels: int = 3, width: int | None = None, *, sample_rate: int | None = None
) -> nn.Module:
    """The bare network ``name``: one of ``MODELS`` (``width`` None takes its default) or the ``nn.Module`` a
    ``PACKAGE.MODULE:FACTORY`` returns (see ``models.user``). ``sample_rate`` (Hz, audio data): what ``audio_cnn``
    builds its front end for (None: ``DEFAULT_SAMPLE_RATE``), passed on to a factory that accepts it."""
    check_model_name(name)
    if width is not None and width < 1:
        raise InputError(f"width must be >= 1, got {width}")
    if name not in MODELS:
        return build_factory_model(name, num_classes, in_channels, width, sample_rate=sample_rate)
    if name == "audio_cnn":
        rate = DEFAULT_SAMPLE_RATE if sample_rate is None else sample_rate
        return AudioCNN(num_classes, in_channels, width or DEFAULT_WIDTHS[name], sample_rate=rate)
    return MODELS[name](num_classes, in_channels, width or DEFAULT_WIDTHS[name])


def build_classifier(
    name: str,
    num_classes: int,
    in_channels: int,
    width: int | None,
    norm: tuple[Sequence[float], Sequence[float]],
    *,
    device: torch.device,
    init_seed: int,
    sample_rate: int | None = None,
) -> Normalized:
    """``Normalized`` network ``name`` on ``device`` (channels_last on CUDA), its weights drawn from ``init_seed``.

    ``norm`` is ``(mean, std)`` per channel on the [0, 1] scale; ``sample_rate``: the audio data's (``build_model``).
    Init draws from torch's CPU generator inside ``fork_rng``, so the caller's random state is untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(init_seed)
        net = build_model(name, num_classes, in_channels, width, sample_rate=sample_rate)
    cuda = device.type == "cuda"
    model = Normalized(net, *norm, channels_last=cuda).to(device)
    # Module.to takes memory_format (documented, and what it does at run time); torch's type stubs omit it.
    return model.to(memory_format=torch.channels_last) if cuda else model  # type: ignore[call-overload]


def check_image_size(name: str, side: int, what: str) -> None:
    """Raise ``InputError`` when images of ``side`` px per side are too small for network ``name``
    (``MIN_IMAGE_SIZE``); ``what`` names them in the message (e.g. "mini images are (4, 4) px")."""
    if side < MIN_IMAGE_SIZE.get(name, 1):
        raise InputError(
            f"{what} but {name} needs at least {MIN_IMAGE_SIZE[name]} px per side; pass --image-size "
            f"{MIN_IMAGE_SIZE[name]} or larger"
        )


def check_classifier_output(model: nn.Module, inputs: Tensor, num_classes: int, name: str) -> None:
    """Raise ``InputError`` unless ``model`` has trainable parameters and maps ``inputs`` (a few samples, as the
    data gives them) to floating-point logits ``(B, num_classes)``: a tuple, a dict, flat or spatial outputs,
    integers or a frozen network each get one line saying what the model must return (``name``: the ``--model``).

    One forward in eval mode without gradients; every module's ``training`` flag and the CPU random state are put
    back, so a run is the same with or without the check. An exception raised inside the model's forward is its
    bug and keeps its traceback."""
    must = (
        f"it must return one floating-point tensor of logits (B, num_classes) = ({len(inputs)}, {num_classes}) "
        f"for inputs {tuple(inputs.shape)}"
    )
    if not any(parameter.requires_grad for parameter in model.parameters()):
        raise InputError(f"--model {name} has no trainable parameters; {must}")
    modes = [(module, module.training) for module in model.modules()]
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            output = model.eval()(inputs)
    finally:
        for module, training in modes:
            module.training = training
    if not isinstance(output, Tensor):
        raise InputError(f"--model {name} returned a {type(output).__name__}; {must}")
    if not output.is_floating_point():
        raise InputError(f"--model {name} returned {str(output.dtype).removeprefix('torch.')} logits; {must}")
    if tuple(output.shape) != (len(inputs), num_classes):
        raise InputError(f"--model {name} returned shape {tuple(output.shape)}; {must}")


def check_state_fits(model: nn.Module, state: Mapping[str, Tensor], what: str, name: str) -> None:
    """Raise ``InputError`` (one line starting with ``what``) unless ``state`` has exactly ``model``'s tensors with
    its shapes: the network ``name`` builds now differs from the one saved (a user's factory changed since)."""
    own = model.state_dict()
    changed = [
        f"{k} {tuple(v.shape)} now vs {tuple(state[k].shape)} saved"
        for k, v in own.items()
        if k in state and isinstance(state[k], Tensor) and state[k].shape != v.shape
    ]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if not (changed or missing or unexpected):
        return
    parts = [("shapes differ", changed), ("not saved", missing), ("saved but not in the network", unexpected)]
    detail = "; ".join(f"{label}: {_first(names)}" for label, names in parts if names)
    raise InputError(
        f"{what}: the network --model {name} builds now does not fit the saved weights ({detail}); "
        "was the model's code changed since the run?"
    )


def _first(names: list[str], shown: int = 4) -> str:
    return ", ".join(names[:shown]) + (f", ... ({len(names)} in all)" if len(names) > shown else "")
