"""The distributed helper: who this process is, and the collective operations the loop needs, each a no-op
outside a process group. ``torchrun`` starts the processes; ``cli`` joins the process group; the loop only calls
these. Inside a process group every collective runs, even in a world of one: a one-process group (NCCL on one GPU,
say) goes through the DistributedDataParallel path and the collectives exactly as a larger world does."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, overload

import torch
from torch import Tensor, nn


def local_gpu() -> int | None:
    """This process's GPU index under torchrun: ``LOCAL_RANK`` modulo the GPU count (more local processes than
    GPUs share them); None outside torchrun."""
    if "LOCAL_RANK" not in os.environ:
        return None
    return int(os.environ["LOCAL_RANK"]) % torch.cuda.device_count()


@dataclass(frozen=True)
class World:
    """This process's ``rank`` among ``size`` processes; ``distributed``: in an initialised process group, whose
    collectives the methods below then run (``World()``: a single process, no group)."""

    rank: int = 0
    size: int = 1
    distributed: bool = False

    @classmethod
    def current(cls) -> World:
        """The initialised ``torch.distributed`` process group's rank and size, else ``World()``."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return cls(torch.distributed.get_rank(), torch.distributed.get_world_size(), True)
        return cls()

    @property
    def leader(self) -> bool:
        """Rank 0: the process that reports and writes files for everyone."""
        return self.rank == 0

    def share(self, batch: Tensor) -> Tensor:
        """This rank's share of every batch (rows ``rank::size``)."""
        return batch[self.rank :: self.size] if self.size > 1 else batch

    def all_sum(self, tensor: Tensor) -> Tensor:
        """``tensor`` summed over ranks, in place."""
        if self.distributed:
            torch.distributed.all_reduce(tensor)
        return tensor

    def all_max(self, tensor: Tensor) -> Tensor:
        if self.distributed:
            torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
        return tensor

    def agree_on_stop(self, signum: int | None, device: torch.device) -> int | None:
        """The signal to stop for, the same on every rank (one seen by any rank stops all)."""
        if not self.distributed:
            return signum
        request = torch.tensor([signum or 0], device=device)
        return int(self.all_max(request)) or None

    def broadcast_buffers(self, model: nn.Module) -> None:
        """Give every rank rank 0's buffers (BatchNorm statistics) in one broadcast per dtype, so that scoring,
        evaluation and checkpoints see one model; DDP only does this at the start of the next training forward."""
        if not self.distributed:
            return
        by_dtype: dict[torch.dtype, list[Tensor]] = {}
        for buffer in model.buffers():
            by_dtype.setdefault(buffer.dtype, []).append(buffer)
        for buffers in by_dtype.values():
            flat = torch.cat([b.reshape(-1) for b in buffers])
            torch.distributed.broadcast(flat, src=0)
            torch._foreach_copy_(
                buffers, [v.view_as(b) for v, b in zip(flat.split([b.numel() for b in buffers]), buffers, strict=True)]
            )

    def gather_objects(self, value: Any) -> list[Any]:
        """``value`` of every rank, in rank order (picklable values; used for checkpoints only)."""
        if not self.distributed:
            return [value]
        every: list[Any] = [None] * self.size
        torch.distributed.all_gather_object(every, value)
        return every

    def parameter_checksums(self, model: nn.Module) -> list[float]:
        """Each rank's sum of all parameters: equal when the replicas agree."""
        checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().view(1)
        if not self.distributed:
            return [float(checksum)]
        every = [torch.zeros_like(checksum) for _ in range(self.size)]
        torch.distributed.all_gather(every, checksum)
        return [float(c) for c in every]

    @overload
    def wrap(self, model: nn.Module) -> nn.Module: ...
    @overload
    def wrap(self, model: None) -> None: ...
    def wrap(self, model: nn.Module | None) -> nn.Module | None:
        """``model`` as a DistributedDataParallel replica in a process group (of any size)."""
        if model is None or not self.distributed:
            return model
        return torch.nn.parallel.DistributedDataParallel(model)
