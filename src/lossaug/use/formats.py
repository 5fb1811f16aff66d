"""The file formats ``lossaug export`` writes, one ``FORMATS`` row each: how a run's network is saved as bytes, and
how saved bytes are loaded back (``export`` checks every format's module against the model with that loader).

- ``export`` (the default): ``torch.export``, a ``.pt2`` file for ``torch.export.load(path).module()``.
- ``torchscript``: the network traced (``torch.jit.trace``) inside a scripted wrapper, for ``torch.jit.load(path)``;
  deprecated upstream, kept for C++ and older torch.
- ``onnx``: ``torch.onnx``'s dynamo exporter (the ``onnx`` and ``onnxscript`` packages, ``pip install
  'lossaug[onnx]'``), for ``onnxruntime.InferenceSession(path)``.

The torch.export and ONNX modules take the run's own integer inputs (uint8 images ``(B,C,H,W)``, int16 waveforms
``(B,C,T)``, any batch size, an empty one included); the TorchScript wrapper also takes float waveforms in [-1, 1].
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lossaug.errors import InputError
from lossaug.kinds import kind_named
from lossaug.use.run import InputSpec, TrainedRun

__all__ = ["DEFAULT_FORMAT", "FORMATS", "Format", "images_module", "waveforms_module"]

Module = Callable[[Tensor], Tensor]  # integer inputs (B,...) -> logits (B,K)


class _Images(nn.Module):
    """Checks uint8 images ``(B,C,H,W)`` at the run's size and hands them to the traced network."""

    def __init__(self, net: nn.Module, channels: int, height: int, width: int):
        super().__init__()
        self.net, self.channels, self.height, self.width = net, channels, height, width

    def forward(self, images: Tensor) -> Tensor:
        if images.dtype != torch.uint8:
            raise ValueError("images must be uint8 in [0, 255]")
        if (
            images.dim() != 4
            or images.shape[1] != self.channels
            or images.shape[2] != self.height
            or (images.shape[3] != self.width)
        ):
            raise ValueError(f"images must be (B,{self.channels},{self.height},{self.width})")
        return self.net(images.float())


class _Waveforms(nn.Module):
    """Checks waveforms ``(B,C,T)`` at the run's clip length, int16 or float in [-1, 1] (NaN and values beyond
    refused), and hands them to the traced network on the int16 scale; an empty batch gives ``(0,K)`` logits."""

    def __init__(self, net: nn.Module, channels: int, clip_samples: int, num_classes: int):
        super().__init__()
        self.net, self.channels, self.clip_samples, self.num_classes = net, channels, clip_samples, num_classes

    def forward(self, waveforms: Tensor) -> Tensor:
        if waveforms.dim() != 3 or waveforms.shape[1] != self.channels or waveforms.shape[2] != self.clip_samples:
            raise ValueError(f"waveforms must be (B,{self.channels},{self.clip_samples}) at the run's rate")
        if waveforms.dtype != torch.int16 and not waveforms.is_floating_point():
            raise ValueError("waveforms must be int16, or float in [-1, 1]")
        if waveforms.is_floating_point() and waveforms.numel() > 0 and not bool(waveforms.abs().max() <= 1.0):
            # NaN fails too; a float waveform on the int16 scale would be scaled by 32768 twice
            raise ValueError("float waveforms must be in [-1, 1] (pass int16 for samples on the int16 scale)")
        if waveforms.shape[0] == 0:  # the network's FFT takes no empty batch
            return torch.zeros((0, self.num_classes))
        if waveforms.dtype == torch.int16:
            return self.net(waveforms.float())
        return self.net(waveforms.float() * 32768.0)  # [-1, 1] to the int16 scale of the run's clips


def images_module(net: nn.Module, spec: InputSpec, num_classes: int) -> nn.Module:
    """``net`` inside the module that checks uint8 images at the run's size (``IMAGE.script_wrapper``)."""
    return _Images(net, spec.channels, int(spec.height or 0), int(spec.width or 0))


def waveforms_module(net: nn.Module, spec: InputSpec, num_classes: int) -> nn.Module:
    """``net`` inside the module that checks waveforms at the run's clip length (``AUDIO.script_wrapper``)."""
    return _Waveforms(net, spec.channels, int(spec.clip_samples or 0), num_classes)


class _Integers(nn.Module):
    """The network on the run's integer inputs (uint8 images, int16 waveforms) as floats; ``pad``: one zero example
    appended and its logits dropped, because the audio front end's FFT takes no empty batch and a branch on the
    batch size cannot be exported with a batch of any size."""

    def __init__(self, net: nn.Module, pad: bool):
        super().__init__()
        self.net, self.pad = net, pad

    def forward(self, inputs: Tensor) -> Tensor:
        if not self.pad:
            return self.net(inputs.float())
        padded = torch.cat([inputs, inputs.new_zeros((1, *inputs.shape[1:]))])
        return self.net(padded.float())[:-1]


def example_inputs(run: TrainedRun, dtype: torch.dtype | None = None) -> Tensor:
    """Two random examples of the run's input: its uint8 or int16 values, as ``dtype`` (default: the run's)."""
    generator = torch.Generator().manual_seed(0)
    kind = kind_named(run.kind)
    values = torch.randint(*kind.example_range, (2, *run.inputs.shape), generator=generator)
    return values.to(dtype or kind.dtype)


def _cannot(run: TrainedRun, what: str, error: BaseException) -> InputError:
    """Exporting a user's network failed: which network, to what, and why, in one line."""
    reason = (str(error).strip().splitlines() or [""])[0]
    return InputError(
        f"cannot export {run.config.model} from {run.run_dir} to {what}: {type(error).__name__}: {reason}"
    )


def _torchscript(run: TrainedRun, model: nn.Module) -> bytes:
    """The run's network traced, inside the scripted wrapper that checks inputs."""
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 marks TorchScript deprecated
            traced = torch.jit.trace(model, example_inputs(run, torch.float32), check_trace=False)
            wrapper = kind_named(run.kind).script_wrapper(traced, run.inputs, len(run.classes))
            buffer = io.BytesIO()
            torch.jit.save(torch.jit.script(wrapper), buffer)
    except Exception as error:  # tracing or scripting a user's network
        raise _cannot(run, "TorchScript", error) from error
    return buffer.getvalue()


def _load_torchscript(data: bytes) -> Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(io.BytesIO(data))


def _batch_of_any_size() -> dict[str, dict[int, torch.export.Dim]]:
    return {"inputs": {0: torch.export.Dim("batch", min=0)}}


def _torch_export(run: TrainedRun, model: nn.Module) -> bytes:
    """The run's network through ``torch.export``, a batch of any size."""
    wrapper = _Integers(model, pad=not kind_named(run.kind).empty_batch_ok)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its notes on specialised shapes and guards are for torch developers
            program = torch.export.export(wrapper, (example_inputs(run),), dynamic_shapes=_batch_of_any_size())
            buffer = io.BytesIO()
            torch.export.save(program, buffer)
    except Exception as error:  # a forward torch.export cannot capture (one that branches on values, say)
        raise _cannot(run, "torch.export", error) from error
    return buffer.getvalue()


def _load_torch_export(data: bytes) -> Module:
    return torch.export.load(io.BytesIO(data)).module()


@contextlib.contextmanager
def _quiet(logger_name: str):
    """The logger's warnings held back (the ONNX exporter logs a line per torchvision op it skips)."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _onnx(run: TrainedRun, model: nn.Module) -> bytes:
    """The run's network through ``torch.onnx.export(dynamo=True)``: one input ``inputs``, one output ``logits``."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise InputError(f"--format onnx needs the {error.name} package: pip install 'lossaug[onnx]'") from None
    wrapper = _Integers(model, pad=not kind_named(run.kind).empty_batch_ok)
    buffer = io.BytesIO()
    try:
        # its progress lines go to stdout, where lossaug's own output is
        with (
            torch.no_grad(),
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            _quiet("torch.onnx"),
        ):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                (example_inputs(run),),
                buffer,  # type: ignore[arg-type]  # a file object is taken too: the bytes stay in memory
                dynamo=True,
                input_names=["inputs"],
                output_names=["logits"],
                dynamic_shapes=_batch_of_any_size(),
            )
    except Exception as error:
        raise _cannot(run, "ONNX", error) from error
    return buffer.getvalue()


def _load_onnx(data: bytes) -> Module:
    try:
        import onnxruntime
    except ImportError:
        raise InputError("--format onnx checks its module with onnxruntime: pip install 'lossaug[onnx]'") from None
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    return lambda inputs: torch.from_numpy(session.run(["logits"], {"inputs": inputs.numpy()})[0])


@dataclass(frozen=True)
class Format:
    """One export format: ``write(run, model)`` the file's bytes (an ``InputError`` saying why it cannot),
    ``load(bytes)`` the module back, as a function of integer inputs; ``tag`` is model.json's ``format`` and
    ``loads_with`` says how a user loads the file."""

    tag: str
    write: Callable[[TrainedRun, nn.Module], bytes]
    load: Callable[[bytes], Module]
    loads_with: str
    takes_float: bool  # also float waveforms in [-1, 1]


FORMATS = {
    "export": Format("lossaug-export/1", _torch_export, _load_torch_export, "torch.export.load(FILE).module()", False),
    "torchscript": Format("lossaug-torchscript/1", _torchscript, _load_torchscript, "torch.jit.load(FILE)", True),
    "onnx": Format("lossaug-onnx/1", _onnx, _load_onnx, "onnxruntime.InferenceSession(FILE)", False),
}
DEFAULT_FORMAT = "export"  # falls back to torchscript, with a notice, for a network torch.export cannot capture
