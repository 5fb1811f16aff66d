"""Run state and its checkpoints: where the loop is (``RunState``), what the epoch has summed (``EpochStats``),
the named random streams (``Streams``) and each network with its optimizer and schedule (``Learner``): the parts
of a run's ``checkpoint.RunCheckpoint``, built from them and restored into them. Resuming from it is bit-exact on
the CPU."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lossaug.run.checkpoint import CheckpointError
from lossaug.run.config import TrainConfig
from lossaug.run.distributed import World
from lossaug.run.method import reapply_hyperparameters
from lossaug.run.pipeline import make_generator
from lossaug.run.step import StepOutput, StepSnapshot, train_step
from lossaug.selection import Selection, probs_entropy

_SUMS = (
    "loss",
    "wrong",
    "entropy",
    "chosen_score",
    "mean_score",
    "fallback_rows",
    "selected",
    "stale_scored",
    "stale_scored_count",
    "stale_unscored",
    "stale_unscored_count",
)


@dataclass
class EpochStats:
    """Sums over an epoch's finite steps on this rank. ``sums`` stay on the device (float64, updated without a
    host sync); the image count is a host integer. ``selected`` counts the images that went through selection
    (under stale-loss gating, the scored ones); ``stale_*`` sum the finite stale losses of scored and unscored
    images at gated steps."""

    sums: dict[str, Tensor]
    images: int = 0  # trained on (finite steps)
    nonfinite_steps: int = 0

    @classmethod
    def zeros(cls, device: torch.device) -> EpochStats:
        return cls({name: torch.zeros((), dtype=torch.float64, device=device) for name in _SUMS})

    def add(self, out: StepOutput, labels: Tensor, selection: Selection, selecting: bool, stale: Tensor) -> None:
        """Count a step (``stale (B,)``: the batch's stale losses before it); non-finite ones only as such."""
        if not out.finite:
            self.nonfinite_steps += 1
            return
        with torch.no_grad():
            sums, targets = self.sums, selection.input_targets(labels)
            per_image = len(targets) // len(labels)  # inputs per image: M in the weighted mode, else 1
            # Soft targets (Mixup, CutMix): an input counts as wrong when its prediction misses the class with the
            # most mass in its target.
            classes = targets.argmax(dim=1) if targets.is_floating_point() else targets
            sums["loss"] += out.loss.detach().double() * len(labels)
            sums["wrong"] += (out.logits.argmax(dim=1) != classes).sum().double() / per_image
            probs, scores, fallback = selection.probs, selection.scores, selection.fallback
            chosen = None if scores is None else scores.gather(1, selection.index.view(-1, 1)).squeeze(1)
            if selection.weighting is not None and per_image > 1:  # the weights of the training pass
                probs, fallback, scores = selection.weighting.probs(out.logits, targets)
                chosen = (probs * scores).sum(dim=1)
            sums["entropy"] += probs_entropy(probs).sum().double()
            sums["fallback_rows"] += fallback.sum().double()
            if scores is not None and chosen is not None:  # NaN rows: not scored under gating
                means = scores.mean(dim=1)
                sums["chosen_score"] += chosen.where(~chosen.isnan(), 0.0).sum().double()
                sums["mean_score"] += means.where(~means.isnan(), 0.0).sum().double()
            rows = selection.scored_rows
            if selecting:
                sums["selected"] += rows.sum().double() if rows is not None else float(len(labels))
            if rows is not None:
                seen = torch.isfinite(stale)
                for name, mask in (("stale_scored", rows & seen), ("stale_unscored", ~rows & seen)):
                    sums[name] += stale.where(mask, 0.0).sum().double()
                    sums[name + "_count"] += mask.sum().double()
        self.images += len(labels)

    def totals(self, world) -> dict[str, float]:
        """Every sum and the image count over all ranks (one all-reduce; reads the device once)."""
        values = torch.stack([*(self.sums[n] for n in _SUMS), self.sums["loss"].new_tensor(float(self.images))])
        return dict(zip([*_SUMS, "images"], world.all_sum(values).tolist(), strict=True))

    def state_dict(self) -> dict[str, Any]:
        return {
            "sums": {k: v.cpu() for k, v in self.sums.items()},
            "images": self.images,
            "nonfinite_steps": self.nonfinite_steps,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], device: torch.device) -> EpochStats:
        stats = cls.zeros(device)
        for name, value in state["sums"].items():
            stats.sums[name] = value.to(device)
        if "selected_images" in state:  # saved before "selected" was a device sum
            stats.sums["selected"] += float(state["selected_images"])
        stats.images, stats.nonfinite_steps = state["images"], state["nonfinite_steps"]
        return stats


def remember_losses(table: Tensor, indices: Tensor, out: StepOutput, targets: Tensor, world: World) -> None:
    """Write each trained image's loss into the stale-loss ``table (N,)`` at its dataset index (``indices (b,)``
    of this rank): the plain cross-entropy of its input (the mean over its M inputs in the weighted mode). Under
    torch.distributed every rank writes the whole batch's, so the tables stay equal."""
    with torch.no_grad():
        losses = F.cross_entropy(out.logits.detach().float(), targets, reduction="none")
        losses = losses.view(len(indices), -1).mean(dim=1)
        if world.distributed:  # each rank holds rows rank::size of the batch: sum the zero-padded whole
            whole = losses.new_zeros(len(indices) * world.size, 2, dtype=torch.float64)
            whole[world.rank :: world.size] = torch.stack([indices.double(), losses.double()], dim=1)
            whole = world.all_sum(whole)
            indices, losses = whole[:, 0].long(), whole[:, 1].float()
        table[indices] = losses


@dataclass
class RunState:
    """Where the loop is and what it has recorded; all of it goes into checkpoints."""

    epoch: int = 0  # epochs finished
    step: int = 0  # steps finished in the current epoch
    global_step: int = 0
    permutation: Tensor | None = None  # the current epoch's data order, (N,) int64 on the CPU
    nonfinite_in_a_row: int = 0
    epoch_seconds: float = 0.0
    run_seconds: float = 0.0
    test_error: float = math.nan
    test_loss: float = math.nan
    metrics: list[dict] = field(default_factory=list)

    def state_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RunState:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in state.items() if k in known})


class Streams:
    """The run's named random streams: ``order`` (data order, CPU, shared by all ranks), ``augment`` (each
    image's first candidate: the baseline's augmentation), ``augment-extra`` (candidates 1..M-1, common random
    numbers) and ``select`` (the choice), distinct per rank under torch.distributed."""

    NAMES = ("order", "augment", "augment-extra", "select")

    def __init__(self, seed: int, device: torch.device, rank: int, world_size: int):
        suffix = f"-rank{rank}" if world_size > 1 else ""
        self.device = device
        cpu = torch.device("cpu")
        self.generators = {
            name: make_generator(seed, name, cpu) if name == "order" else make_generator(seed, name + suffix, device)
            for name in self.NAMES
        }

    def __getitem__(self, name: str) -> torch.Generator:
        return self.generators[name]

    def state(self) -> dict[str, Tensor]:
        """Every stream's state, torch's global CPU generator and, on CUDA, the run device's global generator
        (a CPU run never touches CUDA)."""
        states = {name: g.get_state() for name, g in self.generators.items()}
        states["torch_cpu"] = torch.get_rng_state()
        if self.device.type == "cuda":
            states["torch_cuda"] = torch.cuda.get_rng_state(self.device)
        return states

    def foreign(self, states: dict[str, Tensor]) -> list[str]:
        """Streams in ``states`` that no generator here can take: saved on another kind of device (a CUDA
        generator's state is a 16-byte seed and offset, a CPU one's the whole Mersenne Twister)."""
        return [
            name
            for name, g in self.generators.items()
            if name in states and states[name].numel() != g.get_state().numel()
        ]

    def restore(self, states: dict[str, Tensor], cannot: str) -> None:
        """``load`` a checkpoint's ``states``, refused (``CheckpointError`` starting with ``cannot``) when they
        were saved on another kind of device."""
        if self.foreign(states):
            raise CheckpointError(
                f"{cannot}: its random streams were saved on another kind of device than {self.device.type} "
                "(a CUDA generator's state cannot continue on the CPU, nor the reverse); run it on the device it "
                "was saved on, or start a new run from its weights with --init"
            )
        self.load(states)

    def load(self, states: dict[str, Tensor]) -> None:
        for name, generator in self.generators.items():
            if name in states:  # a trunk saved before a stream existed leaves it at its seed
                generator.set_state(states[name])
        torch.set_rng_state(states["torch_cpu"])
        if "torch_cuda" in states and self.device.type == "cuda":
            torch.cuda.set_rng_state(states["torch_cuda"], self.device)


@dataclass
class Learner:
    """A network trained by the loop (the model, or the proxy): ``model`` itself, ``trainee`` what steps run
    (its DistributedDataParallel replica, or the model), its optimizer and schedule."""

    model: nn.Module
    trainee: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    world: World
    snapshot: StepSnapshot = field(default_factory=StepSnapshot)

    def step(self, selection: Selection, labels: Tensor, device: torch.device, label_smoothing: float) -> StepOutput:
        """One guarded update (``step.train_step``) on what ``selection`` chose for the batch's ``labels (B,)``,
        with its mode's loss; every rank then holds rank 0's buffers."""
        out = train_step(
            self.trainee,
            self.optimizer,
            selection.inputs,
            selection.input_targets(labels),
            device,
            label_smoothing=label_smoothing,
            snapshot=self.snapshot,
            weighting=selection.weighting,
        )
        self.world.broadcast_buffers(self.model)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any], config: TrainConfig) -> None:
        """Load weights, optimizer and schedule position; ``config``'s hyperparameters then take effect."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        reapply_hyperparameters(self.optimizer, self.scheduler, config)
