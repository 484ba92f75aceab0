"""Checkpoints: model, optimiser, scheduler, every RNG state, epoch, history and the resolved config.

A checkpoint is a ``torch.save`` dict that loads with ``weights_only=True`` (every value is a
tensor, a number, a string or a list/dict/tuple of those)::

    {"format": "mepipe-train-checkpoint", "version": 1, "kind": "pretrain" | "finetune",
     "epoch": E,                 # epochs completed (resume starts at epoch E, 0-based)
     "model": state_dict, "optimizer": ..., "scheduler": ...,
     "rng": {"python": ..., "numpy": ..., "torch": ..., "cuda": [...], "augment": ...},
     "config": {...},            # the resolved training config
     "history": [{...}, ...],    # one record per completed epoch
     "extra": {...},             # e.g. best-epoch state when selecting on validation subjects
     "provenance": {...}}        # library versions, git commit, the build's config hash and manifest sha256

A file that does not load with ``weights_only=True`` (a pickle carrying code, a damaged or foreign
file) is refused with a :class:`~mepipe.errors.ConfigError` naming it; mepipe never unpickles code.

Saving writes ``path.tmp`` then renames, so an interrupted save never leaves a broken checkpoint.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mepipe.errors import ConfigError

FORMAT = "mepipe-train-checkpoint"
VERSION = 1


def capture_rng(aug_gen: torch.Generator | None = None) -> dict[str, Any]:
    """Current python, numpy, torch (CPU + CUDA) and augmentation RNG states, as tensors/plain data."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "name": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    if aug_gen is not None:
        state["augment"] = aug_gen.get_state()
    return state


def restore_rng(state: dict[str, Any], aug_gen: torch.Generator | None = None) -> None:
    """Inverse of :func:`capture_rng`."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if aug_gen is not None and "augment" in state:
        aug_gen.set_state(state["augment"])


def save_checkpoint(
    path: Path,
    *,
    kind: str,
    epoch: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    config: dict[str, Any],
    aug_gen: torch.Generator | None,
    history: list[dict[str, Any]],
    extra: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (see the module docstring for the layout)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "epoch": int(epoch),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else {},
        "rng": capture_rng(aug_gen),
        "config": config,
        "history": list(history),
        "extra": extra or {},
        "provenance": provenance or {},
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)
    return path


def safe_load(path: Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; anything that fails to load that way raises
    :class:`ConfigError` naming the file (never a traceback, never an unpickled object)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (UnpicklingError, RuntimeError, EOFError ... all mean one thing)
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"{path}: not loadable as a plain-tensor checkpoint (torch.load weights_only=True failed: "
            f"{first}). mepipe refuses files that need arbitrary unpickling; use a RUN/last.pt written by "
            "`mepipe train`, or re-save the weights as a plain state dict"
        ) from None


def load_checkpoint(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """Load a checkpoint on the CPU; checks the format (and ``kind`` when given)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"checkpoint {p} not found; pass RUN/last.pt of a finished `mepipe train` run")
    ckpt = safe_load(p)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ConfigError(f"{p} is not a mepipe training checkpoint (no {FORMAT!r} format marker)")
    if kind is not None and ckpt.get("kind") != kind:
        raise ConfigError(f"{p} is a {ckpt.get('kind')!r} checkpoint; a {kind!r} checkpoint is needed here")
    return ckpt


def restore_training(
    ckpt: dict[str, Any],
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    aug_gen: torch.Generator | None,
) -> int:
    """Load model/optimiser/scheduler/RNG states from ``ckpt``; returns the epoch to start at."""
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler is not None and ckpt.get("scheduler"):
        scheduler.load_state_dict(ckpt["scheduler"])
    restore_rng(ckpt["rng"], aug_gen)
    return int(ckpt["epoch"])


def checkpoint_epoch(path: Path, kind: str) -> int:
    """Epochs completed in the checkpoint at ``path`` (0 when there is none)."""
    return int(load_checkpoint(path, kind)["epoch"]) if Path(path).is_file() else 0
