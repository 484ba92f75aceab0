"""Shared training machinery: device/precision runtime, seeding, optimiser, logging.

On CUDA the trainer uses bf16 autocast and channels-last tensors (``run.amp``, ``run.channels_last``);
on the CPU it runs in float32 and is bit-reproducible for a fixed seed and thread count.
"""

from __future__ import annotations

import contextlib
import json
import random
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mepipe.errors import ConfigError
from mepipe.train.config import OptimConfig, RunConfig
from mepipe.train.ddp import DistInfo, init_distributed

Logger = Callable[[str], None]


def print_log(msg: str) -> None:
    """Default logger: one line to stderr."""
    print(msg, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Runtime:
    """Where and how tensors run.

    Attributes:
        device: the training device.
        amp: bf16 autocast active (CUDA only).
        channels_last: channels-last memory format active (CUDA only).
        dist: this process's DDP rank information.
    """

    device: torch.device
    amp: bool
    channels_last: bool
    dist: DistInfo

    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA when ``amp``; a no-op otherwise."""
        if self.amp:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Move to the device (channels-last on CUDA)."""
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model


def make_runtime(cfg: RunConfig) -> Runtime:
    """Resolve ``run.device`` (``auto``: CUDA if available) and join a torchrun job if launched by one."""
    info = init_distributed()
    name = cfg.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"run.device={cfg.device!r} but CUDA is not available; use --set run.device=cpu"
            )
        dev = torch.device("cuda", info.local_rank) if name == "cuda" else torch.device(name)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return Runtime(dev, cfg.amp, cfg.channels_last, info)
    if name != "cpu":
        raise ConfigError(f"run.device={cfg.device!r}: use auto, cpu, cuda or cuda:N")
    return Runtime(torch.device("cpu"), False, False, info)


@contextlib.contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)`` (``n <= 0``: unchanged), then restore."""
    if n <= 0:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derive_seed(seed: int, *parts: str | int) -> int:
    """A 31-bit seed fixed by ``seed`` and labels (e.g. a fold name), independent of run order."""
    words = [int(seed) & 0xFFFFFFFF] + [zlib.crc32(str(p).encode()) for p in parts]
    return int(np.random.SeedSequence(words).generate_state(1)[0] & 0x7FFFFFFF)


def make_optimizer(
    params: Iterator[nn.Parameter] | list[nn.Parameter],
    cfg: OptimConfig,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW + per-epoch exponential decay (``lr * gamma ** epoch``).

    Weight decay applies to weight matrices and conv kernels (``ndim >= 2``); biases and norm scales
    are not decayed. Frozen parameters (``requires_grad=False``, e.g. the EMA target) are left out.
    """
    trainable = [p for p in params if p.requires_grad]
    groups = [
        {"params": [p for p in trainable if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr)
    return opt, torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.gamma)


def optimizer_step(
    loss: torch.Tensor,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    grad_clip: float,
    frozen: list[nn.Parameter] | None = None,
) -> None:
    """Backward, optional gradient clipping, skip ``frozen`` parameters (their grad is dropped), step."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if frozen:
        for p in frozen:
            p.grad = None
    if grad_clip > 0:
        nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], grad_clip)
    opt.step()


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor], rt: Runtime) -> int:
    """Re-estimate every BatchNorm's running statistics as the exact average over ``batches``.

    With few optimiser steps (tiny MER training sets) the running averages lag far behind the
    weights, and eval-mode predictions collapse; this "precise BN" pass fixes that. Only BatchNorm
    layers run in training mode (dropout stays off, so no random numbers are consumed).

    Args:
        model: the bare model (not DDP-wrapped).
        batches: prepared inputs, e.g. ``(B, 2, 3, N, N)`` pairs without augmentation.
        rt: runtime (autocast).

    Returns:
        Number of BatchNorm layers recalibrated (0: nothing to do, no forward pass run).
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    was_training = model.training
    momenta = [m.momentum for m in bns]
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
        m.train()
    for x in batches:
        with rt.autocast():
            model(x)
    for m, mom in zip(bns, momenta, strict=True):
        m.momentum = mom
    model.train(was_training)
    return len(bns)


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=True))
    tmp.replace(path)
    return path
