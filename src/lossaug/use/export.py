"""``lossaug export``: a trained run as one module file (``torch.export`` by default, TorchScript or ONNX: the
rows of ``use.formats``) and a JSON file beside it, so that the model runs where lossaug is not installed.

The module takes the run's own inputs: uint8 images ``(B,C,H,W)`` at the run's size, or int16 waveforms ``(B,C,T)``
at the run's rate and clip length (TorchScript: also float in [-1, 1]); it applies the run's normalisation (images)
or front end (the audio network's own log-mel) and returns logits ``(B,K)``. What turns a file into those inputs
(decoding, mono mix, resampling, fitting the clip; image resize) is specified exactly in the JSON's
``preprocessing`` (README, Export, has a torch-only reference), so a file gives what ``lossaug predict`` gives.
The saved module, in every format, is checked against the model on held-out inputs (tracing keeps one branch of a
forward that branches on values), and both files are new files (``use.outputs``).
"""

from __future__ import annotations

import copy
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lossaug.errors import InputError
from lossaug.kinds import kind_named
from lossaug.use.formats import DEFAULT_FORMAT, FORMATS, Format
from lossaug.use.outputs import check_new_files, write_new_file
from lossaug.use.run import TrainedRun

__all__ = ["EXPORT_FORMAT", "ExportedModel", "export_run", "metadata_path"]

EXPORT_FORMAT = FORMATS["torchscript"].tag  # the format of the first exports


@dataclass(frozen=True)
class ExportedModel:
    """Where the module (in ``format``: a ``FORMATS`` key) and its JSON were written, and the JSON's contents."""

    path: Path
    metadata_path: Path
    metadata: dict[str, Any]
    format: str = DEFAULT_FORMAT


def metadata_path(path: str | Path) -> Path:
    """The JSON beside an exported module: ``model.pt`` -> ``model.json``."""
    return Path(path).with_suffix(".json")


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


def _metadata(run: TrainedRun, fmt: Format) -> dict[str, Any]:
    config_json = run.provenance.get("config.json", {})
    test_error, test_error_note = _test_error(run)
    return {
        "format": fmt.tag,
        "load": fmt.loads_with,
        "classes": list(run.classes),
        "inputs": run.inputs.to_json(),
        "takes": kind_named(run.kind).export_takes(run.inputs, fmt.takes_float),
        "preprocessing": kind_named(run.kind).export_preprocessing(run.inputs),
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


def _held_out(run: TrainedRun) -> list[Tensor]:
    """Inputs unlike the tracing example, as a user passes them: the extremes of the input range and random values
    of another seed, in batches of one and three."""
    generator = torch.Generator().manual_seed(1)
    shape = run.inputs.shape
    kind = kind_named(run.kind)
    (low, high), dtype = kind.value_range, kind.dtype
    return [
        torch.full((1, *shape), low, dtype=dtype),
        torch.full((1, *shape), high, dtype=dtype),
        torch.zeros((1, *shape), dtype=dtype),
        torch.randint(low, high + 1, (3, *shape), generator=generator).to(dtype),
    ]


def _check_same_function(run: TrainedRun, model: nn.Module, fmt: Format, module: bytes) -> None:
    """Refuse an export whose logits differ from the model's on held-out inputs, in every format: tracing records
    one path through the network, so a forward that branches on input values is exported with the example's."""
    exported = fmt.load(module)
    with torch.no_grad():
        for inputs in _held_out(run):
            expected, got = model(inputs.float()), exported(inputs)
            tolerance = 1e-4 + 1e-3 * float(expected.abs().max())
            gap = float((expected - got).abs().max()) if got.shape == expected.shape else float("inf")
            if not gap <= tolerance:
                raise InputError(
                    f"cannot export {run.config.model} from {run.run_dir}: the exported module's logits differ from "
                    f"the model's by {gap:.3g} on held-out inputs (a forward that branches on input values is traced "
                    "with one branch only); make the branch tensor operations (torch.where) and export again"
                )


def _module(run: TrainedRun, format: str | None) -> tuple[str, bytes]:
    """``(format, the module's bytes)``, checked against the model; ``format`` None: torch.export, or TorchScript
    with a one-line notice for a network torch.export cannot capture."""
    if format is not None and format not in FORMATS:
        raise InputError(f"unknown export format {format!r}; choose from {sorted(FORMATS)}")
    name = format or DEFAULT_FORMAT
    model = copy.deepcopy(run.model).eval().requires_grad_(False)  # an inference module: logits need no graph
    try:
        module = FORMATS[name].write(run, model)
    except InputError as error:
        if format is not None:
            raise
        warnings.warn(f"{error}; writing TorchScript instead (--format torchscript)", stacklevel=3)
        name = "torchscript"
        module = FORMATS[name].write(run, model)
    _check_same_function(run, model, FORMATS[name], module)
    return name, module


def export_run(run: TrainedRun, out: str | Path, format: str | None = None) -> ExportedModel:
    """Write ``run``'s model to ``out`` in ``format`` (a ``FORMATS`` key; None: torch.export, falling back to
    TorchScript with a notice) and its JSON to ``metadata_path(out)``, each a new file written whole (an existing
    file, a run's own file or a ``.json`` module name is an ``InputError``); a network that cannot be exported, or
    whose module computes other logits than the model, is an ``InputError`` saying why."""
    out = Path(out)
    if out.suffix.lower() == ".json":
        raise InputError(
            f"--out {out}: the module's JSON is written beside it as {out.stem}.json; name the module "
            f"{out.with_suffix('.pt2')} instead"
        )
    check_new_files("--out", out, [out, metadata_path(out)])
    name, module = _module(run, format)
    metadata = _metadata(run, FORMATS[name])
    write_new_file("--out", module, out)
    try:
        write_new_file("--out", (json.dumps(metadata, indent=2, default=str) + "\n").encode(), metadata_path(out))
    except BaseException:
        out.unlink(missing_ok=True)  # ours, just written: no module without its JSON
        raise
    return ExportedModel(out, metadata_path(out), json.loads(metadata_path(out).read_text()), name)
