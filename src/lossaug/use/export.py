"""``lossaug export``: a trained run as one TorchScript file that needs torch alone, and a JSON file beside it.

The module takes what a user has: uint8 images ``(B,C,H,W)`` at the run's size, or waveforms ``(B,C,T)`` at the
run's rate and clip length, int16 or float in [-1, 1]; applies the run's normalisation (images) or front end (the
audio network's own log-mel, inside the model) and returns logits ``(B,K)``. The network is traced
(``torch.jit.trace``) once on a batch of two; a scripted wrapper around it checks the input's dtype, shape and
(float waveforms) range and scales float waveforms to the int16 scale the run's data had. The saved module is
checked against the model on held-out inputs (tracing keeps one branch of a forward that branches on values), and
both files are new files (``use.outputs``). ``torch.jit.load(path)`` loads it anywhere.
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lossaug.errors import InputError
from lossaug.use.outputs import check_new_files, write_new_file
from lossaug.use.run import TrainedRun

__all__ = ["EXPORT_FORMAT", "ExportedModel", "export_run", "metadata_path"]

EXPORT_FORMAT = "lossaug-torchscript/1"


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


@dataclass(frozen=True)
class ExportedModel:
    """Where the TorchScript module and its JSON were written, and the JSON's contents."""

    path: Path
    metadata_path: Path
    metadata: dict[str, Any]


def metadata_path(path: str | Path) -> Path:
    """The JSON beside an exported module: ``model.pt`` -> ``model.json``."""
    return Path(path).with_suffix(".json")


def _example(run: TrainedRun) -> Tensor:
    """Two examples of the run's input on the float scale the network sees (uint8 or int16 values)."""
    generator = torch.Generator().manual_seed(0)
    if run.kind == "audio":
        return torch.randint(-3000, 3000, (2, *run.inputs.shape), generator=generator).float()
    return torch.randint(0, 256, (2, *run.inputs.shape), generator=generator).float()


def _test_error(run: TrainedRun) -> tuple[float | None, str]:
    """The test error of the exported weights and where it comes from: the checkpoint's own epoch-end evaluation
    (final.json may describe other weights: a finished run resumed and stopped early, or a previous checkpoint
    exported because the newest does not load); None, with a notice, when the checkpoint has none."""
    position = run.position
    error = position.get("test_error")
    if position.get("step") == 0 and isinstance(error, (int, float)) and not isinstance(error, bool):
        return float(
            error
        ), f"evaluated at the end of epoch {position.get('epoch')}, when {run.checkpoint.name} was saved"
    note = (
        f"unknown: {run.checkpoint.name} was saved at step {run.global_step} (epoch {position.get('epoch', '?')},"
        f" step {position.get('step', '?')} in it), not after a test evaluation of these weights"
    )
    warnings.warn(f"test error of these weights is unknown; model.json says so ({note})", stacklevel=3)
    return None, note


def _metadata(run: TrainedRun) -> dict[str, Any]:
    config_json = run.provenance.get("config.json", {})
    test_error, test_error_note = _test_error(run)
    spec = run.inputs
    if run.kind == "image":
        takes = f"uint8 images (B,{spec.channels},{spec.height},{spec.width})"
    else:
        takes = (
            f"waveforms (B,{spec.channels},{spec.clip_samples}) at {spec.sample_rate} Hz, int16 or float in [-1, 1]; "
            "mono clips centred in the clip length, zero-padded or cropped equally at both ends"
        )
    return {
        "format": EXPORT_FORMAT,
        "classes": list(run.classes),
        "inputs": spec.to_json(),
        "takes": takes,
        "returns": f"logits (B,{len(run.classes)}) float32; softmax for probabilities",
        "provenance": {
            "run_dir": str(run.run_dir.absolute()),
            "checkpoint": str(run.checkpoint.absolute()),
            "global_step": run.global_step,
            "dataset": run.config.dataset,
            "data": run.config.data,
            "model": run.config.model,
            "method": run.config.method,
            "seed": run.config.seed,
            "test_error": test_error,
            "test_error_note": test_error_note,
            "git_commit": config_json.get("git_commit"),
            "lossaug_version": config_json.get("lossaug_version"),
            "trained_with_torch": config_json.get("torch_version"),
            "exported_with_torch": torch.__version__,
        },
    }


def _wrapper(run: TrainedRun, traced: nn.Module) -> nn.Module:
    spec = run.inputs
    if run.kind == "audio":
        return _Waveforms(traced, spec.channels, int(spec.clip_samples or 0), len(run.classes))
    return _Images(traced, spec.channels, int(spec.height or 0), int(spec.width or 0))


def _script(run: TrainedRun) -> bytes:
    """The saved TorchScript module: the run's network traced, inside the scripted wrapper that checks inputs."""
    model = copy.deepcopy(run.model).eval().requires_grad_(False)  # an inference module: logits need no graph
    example = _example(run)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            # torch 2.13 marks TorchScript deprecated in favour of torch.export, whose files need torch's Python
            # side to run; TorchScript is still what loads with torch alone (and from C++), which is the point here.
            warnings.simplefilter("ignore", DeprecationWarning)
            traced = torch.jit.trace(model, example, check_trace=False)
            buffer = io.BytesIO()
            torch.jit.save(torch.jit.script(_wrapper(run, traced)), buffer)
    except Exception as error:  # tracing or scripting a user's network: say which and why, in one line
        raise InputError(f"cannot export {run.config.model} from {run.run_dir} to TorchScript: "
                         f"{type(error).__name__}: {str(error).splitlines()[0]}") from error  # fmt: skip
    _check_same_function(run, model, buffer.getvalue())
    return buffer.getvalue()


def _held_out(run: TrainedRun) -> list[Tensor]:
    """Inputs unlike the tracing example, as a user passes them: the extremes of the input range and random values
    of another seed, in batches of one and three."""
    generator = torch.Generator().manual_seed(1)
    shape = run.inputs.shape
    if run.kind == "audio":
        low, high, dtype = -32768, 32767, torch.int16
    else:
        low, high, dtype = 0, 255, torch.uint8
    return [
        torch.full((1, *shape), low, dtype=dtype),
        torch.full((1, *shape), high, dtype=dtype),
        torch.zeros((1, *shape), dtype=dtype),
        torch.randint(low, high + 1, (3, *shape), generator=generator).to(dtype),
    ]


def _check_same_function(run: TrainedRun, model: nn.Module, module: bytes) -> None:
    """Refuse an export whose logits differ from the model's on held-out inputs: tracing records one path through
    the network, so a forward that branches on input values is exported with the branch of the example."""
    exported = torch.jit.load(io.BytesIO(module))
    with torch.no_grad():
        for inputs in _held_out(run):
            expected, got = model(inputs.float()), exported(inputs)
            tolerance = 1e-4 + 1e-3 * float(expected.abs().max())
            gap = float((expected - got).abs().max())
            if not gap <= tolerance:
                raise InputError(
                    f"cannot export {run.config.model} from {run.run_dir}: the exported module's logits differ from "
                    f"the model's by {gap:.3g} on held-out inputs (a forward that branches on input values is traced "
                    "with one branch only); make the branch tensor operations (torch.where) and export again"
                )


def export_run(run: TrainedRun, out: str | Path) -> ExportedModel:
    """Write ``run``'s model as TorchScript to ``out`` and its JSON to ``metadata_path(out)``, each a new file
    written whole (an existing file, a run's own file or a ``.json`` module name is an ``InputError``); a network
    that cannot be traced is an ``InputError`` saying why."""
    out = Path(out)
    if out.suffix.lower() == ".json":
        raise InputError(
            f"--out {out}: the module's JSON is written beside it as {out.stem}.json; name the module "
            f"{out.with_suffix('.pt')} instead"
        )
    check_new_files("--out", out, [out, metadata_path(out)])
    module = _script(run)
    metadata = _metadata(run)
    write_new_file("--out", module, out)
    try:
        write_new_file("--out", (json.dumps(metadata, indent=2, default=str) + "\n").encode(), metadata_path(out))
    except BaseException:
        out.unlink(missing_ok=True)  # ours, just written: no module without its JSON
        raise
    return ExportedModel(out, metadata_path(out), json.loads(metadata_path(out).read_text()))
