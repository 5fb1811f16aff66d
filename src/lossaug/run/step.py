"""One training step, guarded: forward, backward and SGD update, undone whole if anything came out non-finite.

A step is non-finite when its loss, any gradient, or any parameter or buffer after the update is NaN or inf.
``train_step`` snapshots the parameters, buffers and optimizer state into preallocated copies before the step
and puts them back after a non-finite one, so the model and optimizer are exactly as before it. The finiteness
flag is computed on the device and read once per step: the step's only host sync.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lossaug.run.distributed import World
from lossaug.selection import CandidateWeights


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA; fp32 elsewhere (CPU bf16 is slower than fp32 on most CPUs)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def training_loss(logits: Tensor, labels: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Mean cross-entropy of ``logits (B,K)`` for ``labels (B,)``, computed in float32."""
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)


class StepOutput(NamedTuple):
    """``loss`` (0-d), ``logits (B,K)`` and whether the step was finite (and so applied)."""

    loss: Tensor
    logits: Tensor
    finite: bool


def _tensors(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[Tensor]:
    """Everything a step writes: parameters, buffers and the optimizer's per-parameter tensors."""
    state = [v for p in model.parameters() for v in optimizer.state.get(p, {}).values() if isinstance(v, Tensor)]
    return [*(p.data for p in model.parameters()), *model.buffers(), *state]


class StepSnapshot:
    """Copies of a model's and optimizer's tensors, reused across steps (no allocation once warm)."""

    def __init__(self) -> None:
        self.copies: list[Tensor] = []
        self.state_keys: dict[nn.Parameter, set[str]] = {}

    def take(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        tensors = _tensors(model, optimizer)
        if len(self.copies) != len(tensors) or any(
            c.shape != t.shape for c, t in zip(self.copies, tensors, strict=True)
        ):
            self.copies = [t.detach().clone() for t in tensors]
        else:
            torch._foreach_copy_(self.copies, [t.detach() for t in tensors])
        self.state_keys = {p: set(optimizer.state.get(p, {})) for p in model.parameters()}

    def restore(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        # Optimizer state made by this step (momentum buffers at the first step) is dropped again.
        for p in model.parameters():
            for key in set(optimizer.state.get(p, {})) - self.state_keys.get(p, set()):
                del optimizer.state[p][key]
        with torch.no_grad():
            torch._foreach_copy_([t for t in _tensors(model, optimizer)], self.copies)


def _all_finite(tensors: list[Tensor]) -> Tensor:
    """0-d bool on the device: every element of every floating tensor is finite."""
    floats = [t for t in tensors if t.is_floating_point()]
    if not floats:
        return torch.ones((), dtype=torch.bool)
    return torch.stack(torch._foreach_norm([t.float() for t in floats])).isfinite().all()


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    inputs: Tensor,
    labels: Tensor,
    device: torch.device,
    *,
    label_smoothing: float = 0.0,
    snapshot: StepSnapshot | None = None,
    weighting: CandidateWeights | None = None,
) -> StepOutput:
    """Forward ``inputs (B,...)``, backward and one optimizer update; undone whole when the loss, a gradient, a
    parameter or a buffer comes out non-finite. Under ``torch.distributed`` the ranks agree: one rank's
    non-finite step is undone everywhere. Pass the same ``snapshot`` at every step to reuse its copies.
    ``weighting`` (the weighted mode): ``inputs`` are M candidates per image and the loss is their weighted sum."""
    snapshot = snapshot if snapshot is not None else StepSnapshot()
    snapshot.take(model, optimizer)
    with autocast_for(device):
        logits = model(inputs)
        if weighting is None or weighting.num_candidates == 1:
            loss = training_loss(logits, labels, label_smoothing)
        else:
            loss = weighting.loss(logits, labels, label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    finite_before = _all_finite([loss.detach().view(1), *grads])
    optimizer.step()
    bad = (~(finite_before & _all_finite(_tensors(model, optimizer)))).float().view(1)
    finite = not bool(World.current().all_max(bad))
    if not finite:
        snapshot.restore(model, optimizer)
    return StepOutput(loss, logits, finite)


def state_is_finite(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> bool:
    """Whether every parameter, buffer and optimizer tensor is finite (checked before a checkpoint is written)."""
    tensors = _tensors(model, optimizer) if optimizer is not None else [*model.parameters(), *model.buffers()]
    return bool(_all_finite([t.detach() for t in tensors]))
