"""What ``load_trained`` checks in a checkpoint before it builds or runs anything: the model's code is imported only
when the user names its module (``trust_code``), the recorded config and inputs are what lossaug writes (types and
sizes bounded), and the weights are finite floats where the network has floats. Each failure is one ``InputError``
naming the checkpoint and the offending value or tensors.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.machinery
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from lossaug.errors import InputError
from lossaug.kinds import KINDS
from lossaug.models.user import is_factory_name
from lossaug.run.rundir import LOCK_NAME

__all__ = ["check_config_fields", "check_inputs", "check_trusted", "check_weights", "warn_if_training"]

# Bounds on an input record: beyond them a hand-edited checkpoint would ask for gigabytes before any error.
_MAX_SIDE = 4096  # pixels, an image's height or width
_MAX_CHANNELS = 4
_MAX_RATE = 384_000  # Hz
_MAX_CLIP = 1 << 24  # samples (17 min at 16 kHz)
_BOUNDS = {
    "channels": _MAX_CHANNELS,
    "height": _MAX_SIDE,
    "width": _MAX_SIDE,
    "sample_rate": _MAX_RATE,
    "clip_samples": _MAX_CLIP,
}


def _module_file(module: str) -> str:
    """Where ``module``'s top package would be imported from (the current directory first, as the import does)."""
    top = module.split(".")[0]
    with contextlib.suppress(ImportError, ValueError):
        spec = importlib.machinery.PathFinder.find_spec(top, [os.getcwd(), *sys.path])
        if spec is not None and spec.origin:
            return spec.origin
    return "not found on the path"


def check_trusted(model: str, trust_code: str | None, path: Path) -> None:
    """Refuse a model that is the user's own code (``PACKAGE.MODULE:FACTORY``) unless ``trust_code`` names its
    module (or its top package); when it does, warn what will be imported and from where."""
    if not is_factory_name(model):
        return  # a built-in network: lossaug's own code
    module = model.split(":")[0]
    where = _module_file(module)
    if trust_code not in (module, module.split(".")[0]):
        raise InputError(
            f"checkpoint {path}: its model {model} is Python code, and loading it would import and run module "
            f"{module!r} ({where}); if you trust that file, pass --trust-code {module} (trust_code={module!r})"
        )
    warnings.warn(f"importing {module} ({where}) to build the model of {path}, as --trust-code asked", stacklevel=3)


def check_config_fields(config: Any, path: Path) -> None:
    """Refuse recorded config values of the wrong type that building the network reads."""
    if not isinstance(config.model, str):
        raise InputError(f"checkpoint {path}: config model {config.model!r} is not a name")
    for name in ("width", "image_size"):
        value = getattr(config, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1 << 16):
            raise InputError(f"checkpoint {path}: config {name} {value!r} is not a whole number in [1, 65536]")


def check_inputs(inputs: Any, path: Path) -> dict[str, Any]:
    """The checkpoint's ``inputs`` record if it is what lossaug writes: image or audio keys only, whole numbers
    within bounds; else an ``InputError`` naming the checkpoint and the value."""
    kind = inputs.get("kind") if isinstance(inputs, dict) else None
    keys = KINDS[kind].input_keys if kind in KINDS else None
    if keys is None or set(inputs) != set(keys):
        writes = "; ".join(f"{name}: {sorted(row.input_keys)}" for name, row in KINDS.items())
        raise InputError(f"checkpoint {path}: its inputs record {inputs!r:.120} is not one lossaug writes ({writes})")
    for key, bound in _BOUNDS.items():
        if key in keys:
            value = inputs[key]
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= bound:
                raise InputError(f"checkpoint {path}: inputs {key} {value!r} is not a whole number in [1, {bound}]")
    return dict(inputs)


def check_weights(model: nn.Module, state: dict[str, Tensor], path: Path) -> None:
    """Refuse weights the network cannot use as they are: NaN or inf, or integers where the network has floats
    (``load_state_dict`` would cast them silently)."""
    expected = model.state_dict()
    integer = [
        k
        for k, v in state.items()
        if k in expected and expected[k].is_floating_point() and isinstance(v, Tensor) and not v.is_floating_point()
    ]
    if integer:
        raise InputError(f"checkpoint {path} has integer weights where the network has floats: {_listed(integer)}")
    non_finite = [
        k for k, v in state.items() if isinstance(v, Tensor) and v.is_floating_point() and not bool(v.isfinite().all())
    ]
    if non_finite:
        raise InputError(f"checkpoint {path} has weights that are not finite (NaN or inf): {_listed(non_finite)}")


def _listed(names: list[str]) -> str:
    return ", ".join(names[:6]) + (f", ... ({len(names)} in all)" if len(names) > 6 else "")


def warn_if_training(run_dir: Path) -> bool:
    """Warn, and return True, when a training process holds ``run_dir``'s lock: its checkpoints are still
    changing, and the one used is only the newest so far."""
    try:
        fd = os.open(run_dir / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False  # no lock file: no run has trained here with this lossaug
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        warnings.warn(
            f"run {run_dir} is still training (its lock is held): using its newest checkpoint so far", stacklevel=3
        )
        return True
    finally:
        os.close(fd)  # closing also drops the shared lock if we took it
    return False
