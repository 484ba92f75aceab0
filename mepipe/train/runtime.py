"""Where and how a run executes: device and precision, CPU threads, seeds.

On CUDA the trainer uses bf16 autocast and channels-last tensors (``run.amp``, ``run.channels_last``);
on the CPU it runs in float32 and is bit-reproducible for a fixed seed and thread count.
"""

from __future__ import annotations

import contextlib
import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mepipe.errors import ConfigError
from mepipe.train.ddp import DistInfo, init_distributed


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


def make_runtime(device: str = "auto", amp: bool = True, channels_last: bool = True) -> Runtime:
    """Resolve ``device`` (``auto``: CUDA if available) and join a torchrun job if launched by one.

    Args:
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (``run.device``).
        amp, channels_last: ``run.amp`` / ``run.channels_last`` (used on CUDA only).

    Raises:
        ConfigError: CUDA asked for but not available, or an unknown device name.
    """
    name = device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"run.device={device!r} but CUDA is not available; use --device cpu")
    info = init_distributed(device=name)  # NCCL on CUDA, gloo on the CPU
    if name.startswith("cuda"):
        dev = torch.device("cuda", info.local_rank) if name == "cuda" else torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(
                f"run.device={device!r}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                f"(cuda:0..cuda:{torch.cuda.device_count() - 1})"
            )
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return Runtime(dev, amp, channels_last, info)
    if name != "cpu":
        raise ConfigError(f"run.device={device!r}: use auto, cpu, cuda or cuda:N")
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
