"""Multi-process data parallel training (``torchrun``), CUDA (NCCL) or CPU (gloo).

Launch: ``torchrun --nproc_per_node 2 -m mepipe.cli train pretrain ...`` (one process per GPU: NCCL
refuses two ranks on the same GPU; ``--device cpu`` runs gloo, also on a machine with GPUs). torchrun sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` reads them.
Without those variables everything runs in one process and these helpers are no-ops.

Every rank draws the same epoch's pairs (seeded by ``(seed, epoch)``) and keeps its own slice
(:class:`~mepipe.train.data.PairSampler`); DDP averages the gradients, so all ranks hold identical
weights after every step. Only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (``world_size == 1``: not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def backend_for(device: str) -> str:
    """The process-group backend for a run on ``device``: ``nccl`` for ``cuda`` / ``cuda:N`` (and
    ``auto`` when CUDA is available), ``gloo`` for the CPU (also on a machine that has GPUs)."""
    if device == "auto":
        return "nccl" if torch.cuda.is_available() else "gloo"
    return "nccl" if device.startswith("cuda") else "gloo"


def init_distributed(backend: str | None = None, *, device: str = "auto") -> DistInfo:
    """Join the process group described by torchrun's environment variables (idempotent).

    Under NCCL each process is bound to GPU ``LOCAL_RANK`` (``torch.cuda.set_device``) before the group
    is created, so collectives and barriers run on that GPU.

    Args:
        backend: ``nccl`` / ``gloo``; default :func:`backend_for` ``(device)``.
        device: the run's device (``run.device``), which picks the default backend.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    if not dist.is_initialized():
        be = backend or backend_for(device)
        if be == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(be, rank=rank, world_size=world)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local)


def _nccl() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_backend() == "nccl"


def wrap_model(model: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """Wrap in ``DistributedDataParallel`` when distributed (gradients averaged over ranks)."""
    if not info.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DDP wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum a few floats over ranks (identity when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    if _nccl() and device.type != "cuda":  # NCCL reduces CUDA tensors only
        device = torch.device("cuda", torch.cuda.current_device())
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def sync_buffers(model: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP broadcasts buffers at the start of each forward, so after the last step of an epoch each
    rank holds its own statistics; syncing keeps evaluation (and epoch selection) identical on all ranks.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    for b in unwrap(model).buffers():
        dist.broadcast(b, 0)


def barrier() -> None:
    """Wait for every rank (on this rank's GPU under NCCL)."""
    if _nccl():
        dist.barrier(device_ids=[torch.cuda.current_device()])
    elif dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    """Leave the process group (call once at the end of a distributed run)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
