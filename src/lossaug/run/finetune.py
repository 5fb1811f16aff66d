"""Starting from pre-trained weights: ``--init PATH`` (a lossaug checkpoint, its run directory, or a plain
``state_dict`` file), ``--init-strict`` and ``--backbone-lr-scale``.

``read_init`` loads the file (``torch.load(weights_only=True)``: nothing but tensors and plain data ever runs) and
returns its tensors named as the bare network's ``state_dict`` keys: a lossaug checkpoint's ``Normalized`` wrapper
(``net.`` and the data's own ``mean``/``std``), a ``module.`` (DDP) or ``model.`` prefix, or a ``{"state_dict":
...}`` container are unwrapped. ``apply_init`` copies every tensor whose name and shape match into the network;
the rest keep their fresh initialisation and are listed in the returned ``InitReport`` (typically the classifier
head when the number of classes changed). ``sgd_groups`` puts the loaded parameters in their own SGD group, whose
learning rate is ``lr * backbone_lr_scale``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lossaug.errors import InputError
from lossaug.run.checkpoint import RunCheckpoint, UnreadableFile, load_torch_file, newest_valid_checkpoint

__all__ = ["InitReport", "apply_init", "read_init", "sgd_groups"]

_PREFIXES = ("", "net.", "module.", "model.", "module.net.", "model.net.")
_WRAPPER_BUFFERS = ("mean", "std")  # Normalized's: the new data's statistics, never loaded


@dataclass(frozen=True)
class InitReport:
    """What ``--init`` did: tensors loaded, kept fresh because their shapes differ (``name: model vs file``), in
    the model but not in the file, and in the file but unused."""

    path: str
    loaded: tuple[str, ...]
    shape_mismatch: tuple[str, ...]
    missing: tuple[str, ...]
    unused: tuple[str, ...]
    converted: tuple[str, ...] = ()  # loaded in the model's float dtype: "from float16 to float32: names"

    @property
    def exact(self) -> bool:
        return not (self.shape_mismatch or self.missing or self.unused)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        text = f"init from {self.path}: {len(self.loaded)} tensors loaded"
        skipped = (
            ("kept fresh, shape differs", self.shape_mismatch),
            ("not in the file", self.missing),
            ("unused from the file", self.unused),
        )
        for label, names in skipped:
            if names:
                shown = ", ".join(names[:6]) + (f", ... ({len(names)} in all)" if len(names) > 6 else "")
                text += f"; {label}: {shown}"
        for line in self.converted:  # "from float16 to float32: name, name, ..."
            kinds, listed = line.split(": ", 1)
            text += f"; converted {kinds}: {_listed(listed.split(', '))}"
        return text


def _load_file(path: Path) -> Any:
    if path.is_dir():
        return newest_valid_checkpoint(path, keys=("model",))[1]
    try:
        return load_torch_file(path)
    except FileNotFoundError:
        raise InputError(f"--init {path}: no such file or run directory") from None
    except UnreadableFile as error:
        raise InputError(f"--init {path}: not a readable state dict or lossaug checkpoint ({error.reason})") from None


def read_init(path: str | Path) -> dict[str, Tensor]:
    """The tensors of ``path`` keyed as in the file (a lossaug checkpoint or a run directory: its model's)."""
    path = Path(path)
    payload = _load_file(path)
    if _is_run_checkpoint(payload):
        payload = RunCheckpoint.from_dict(payload, path, needs=()).model  # the Normalized network
    elif isinstance(payload, Mapping) and isinstance(payload.get("state_dict"), Mapping):
        payload = payload["state_dict"]  # e.g. a Lightning checkpoint
    if not isinstance(payload, Mapping) or not payload:
        raise InputError(f"--init {path}: expected a state dict (names to tensors), got {type(payload).__name__}")
    tensors = {k: v for k, v in payload.items() if isinstance(v, Tensor)}
    if not tensors:
        raise InputError(f"--init {path}: holds no tensors")
    non_finite = [k for k, v in tensors.items() if _floating(v) and not bool(torch.isfinite(v).all())]
    if non_finite:
        raise InputError(f"--init {path}: tensors not finite (NaN or inf): {_listed(non_finite)}")
    return tensors


def _is_run_checkpoint(payload: Any) -> bool:
    """Whether a file's contents are a lossaug checkpoint (its model a state dict) rather than a state dict."""
    return isinstance(payload, Mapping) and isinstance(payload.get("model"), Mapping) and "format" in payload


def _floating(tensor: Tensor) -> bool:
    return tensor.is_floating_point() or tensor.is_complex()


def _listed(names: list[str]) -> str:
    return ", ".join(names[:6]) + (f", ... ({len(names)} in all)" if len(names) > 6 else "")


def _dtype(tensor: Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def _strip(tensors: Mapping[str, Tensor], wanted: Iterable[str]) -> dict[str, Tensor]:
    """``tensors`` with the prefix removed that makes the most names match ``wanted``."""
    wanted = set(wanted)

    def stripped(prefix: str) -> dict[str, Tensor]:
        return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

    best = max(_PREFIXES, key=lambda prefix: len(wanted & set(stripped(prefix))))
    return {k: v for k, v in stripped(best).items() if k not in _WRAPPER_BUFFERS or k in wanted}


def apply_init(net: nn.Module, tensors: Mapping[str, Tensor], path: str, strict: bool = False) -> InitReport:
    """Copy into ``net`` (the bare network) every tensor of ``tensors`` whose name and shape match; raise
    ``InputError`` when none does, or with ``strict`` on any mismatch."""
    own = net.state_dict()
    tensors = _strip(tensors, own)
    loaded: list[str] = []
    mismatch: list[str] = []
    wrong_kind: list[str] = []
    converted: dict[str, list[str]] = {}
    for name, target in own.items():
        source = tensors.get(name)
        if source is None:
            continue
        if source.shape != target.shape:
            mismatch.append(f"{name} {tuple(target.shape)} vs {tuple(source.shape)}")
            continue
        if target.is_floating_point() and not source.is_floating_point():
            wrong_kind.append(f"{name} ({_dtype(source)})")  # integers copied into weights train to chance
        elif target.is_floating_point() and source.dtype != target.dtype:
            converted.setdefault(f"{_dtype(source)} to {_dtype(target)}", []).append(name)
        loaded.append(name)
    if wrong_kind:
        raise InputError(
            f"--init {path}: weights must be floating point; {len(wrong_kind)} tensors are not: {_listed(wrong_kind)}"
        )
    report = InitReport(
        path=str(path),
        loaded=tuple(loaded),
        shape_mismatch=tuple(mismatch),
        missing=tuple(n for n in own if n not in tensors),
        unused=tuple(n for n in tensors if n not in own),
        converted=tuple(f"from {kinds}: {', '.join(names)}" for kinds, names in converted.items()),
    )
    if not loaded:
        raise InputError(f"--init {path}: no tensor matches the model by name and shape ({report.summary()})")
    if strict and not report.exact:
        raise InputError(f"--init-strict: {path} does not match the model exactly ({report.summary()})")
    with torch.no_grad():
        for name in loaded:
            own[name].copy_(tensors[name].to(own[name].dtype))
    return report


def sgd_groups(model: nn.Module, loaded: Iterable[str], lr: float, scale: float) -> list[dict[str, Any]]:
    """SGD parameter groups of ``model`` (the ``Normalized`` wrapper or a bare network): the parameters loaded
    by ``--init`` (names as in the bare network) at ``lr * scale``, the others at ``lr``; empty groups left out.
    Each group records its ``lr_scale``, so a resumed run restores the same split."""
    loaded = set(loaded)
    backbone: list[nn.Parameter] = []
    head: list[nn.Parameter] = []
    for name, parameter in model.named_parameters():
        bare = name[len("net.") :] if name.startswith("net.") else name
        (backbone if bare in loaded else head).append(parameter)
    groups = [("backbone", backbone, scale), ("head", head, 1.0)]
    return [{"params": p, "lr": lr * s, "lr_scale": s, "name": n} for n, p, s in groups if p]
