"""Distributed data parallel on the CPU: 2 processes, gloo backend (what torchrun does on GPUs with NCCL)."""

from __future__ import annotations

import copy
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from tests.toy import write_toy_build

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _flat_grads(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def _worker(rank: int, port: int, macro: str, micro: str, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    import torch.distributed as dist
    import torch.nn.functional as F

    from mepipe.labels import load_scheme
    from mepipe.train import finetune_loso, pretrain
    from mepipe.train.config import ModelConfig
    from mepipe.train.ddp import cleanup, init_distributed, wrap_model
    from mepipe.train.models import build_model
    from tests.toy import tiny_config

    info = init_distributed("gloo")
    assert info.world_size == WORLD and info.rank == rank
    # 1. DDP gradients are the average of the per-rank gradients
    torch.manual_seed(0)
    model = build_model(ModelConfig(input_size=32, width=4, pos_heads=2, dropout=0.0), 3)  # no random masks
    local = copy.deepcopy(model)
    torch.manual_seed(100 + rank)  # different data on each rank
    x, y = torch.randn(4, 2, 3, 32, 32), torch.randint(0, 3, (4,))
    F.cross_entropy(local(x), y).backward()
    g_local = _flat_grads(local)
    gathered = [torch.zeros_like(g_local) for _ in range(WORLD)]
    dist.all_gather(gathered, g_local)
    ddp = wrap_model(model, info, torch.device("cpu"))
    F.cross_entropy(ddp(x), y).backward()
    g_ddp = _flat_grads(model)
    grads_differ = not torch.allclose(gathered[0], gathered[1])
    grad_is_mean = torch.allclose(g_ddp, torch.stack(gathered).mean(0), atol=1e-6, rtol=1e-4)
    # 2. a whole pre-training and fine-tuning run: every rank ends with the same weights / predictions
    pre = pretrain(tiny_config("pretrain", macro, f"{out}/pre", optim__epochs=2))
    ft = finetune_loso(
        tiny_config("finetune", micro, f"{out}/ft", optim__epochs=2), scheme=load_scheme("casme2_5")
    )
    torch.save(
        {
            "grads_differ": grads_differ,
            "grad_is_mean": grad_is_mean,
            "state": pre.model.state_dict(),
            "history": pre.history,
            "predictions": ft.predictions,
        },
        f"{out}/rank{rank}.pt",
    )
    cleanup()


def test_ddp_two_processes_gloo(tmp_path: Path) -> None:
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available")
    macro = write_toy_build(
        tmp_path / "macro",
        subjects=2,
        clips_per_subject=3,
        n_frames=10,
        size=32,
        dataset="toymacro",
        expression_type="macro",
        amplitude=60,
    )
    micro = write_toy_build(tmp_path / "micro", subjects=3, clips_per_subject=2, n_frames=6, size=32)
    mp.spawn(_worker, args=(_free_port(), str(macro), str(micro), str(tmp_path)), nprocs=WORLD, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD))
    assert r0["grads_differ"] and r0["grad_is_mean"] and r1["grad_is_mean"]
    assert r0["state"].keys() == r1["state"].keys()
    assert all(
        torch.equal(r0["state"][k], r1["state"][k]) for k in r0["state"]
    )  # identical weights on both ranks
    assert [h["loss"] for h in r0["history"]] == [h["loss"] for h in r1["history"]]
    # each rank saw half of the pairs; the logged count is the global one
    assert r0["history"][0]["pairs"] == 2 * 3 * 4
    assert r0["predictions"] == r1["predictions"]
    assert (tmp_path / "pre" / "last.pt").is_file() and (tmp_path / "ft" / "metrics.json").is_file()


def test_backend_follows_the_run_device() -> None:
    """NCCL for CUDA runs, gloo for CPU runs even on a machine with GPUs (NCCL cannot reduce CPU tensors)."""
    from mepipe.train.ddp import backend_for

    assert backend_for("cpu") == "gloo"
    assert backend_for("cuda") == backend_for("cuda:1") == "nccl"
    assert backend_for("auto") == ("nccl" if torch.cuda.is_available() else "gloo")
