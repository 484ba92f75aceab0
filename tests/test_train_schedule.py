"""Learning-rate schedules (exp, cosine, warm-up) and the learning-rate scale of pre-trained weights."""

import math

import pytest
import torch

from mepipe.train.config import OptimConfig
from mepipe.train.engine import lr_factor, make_optimizer


def _lrs(cfg: OptimConfig, n: int) -> list[float]:
    p = torch.nn.Parameter(torch.zeros(2, 2))
    opt, sched = make_optimizer([p], cfg)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_exp_schedule_is_the_old_exponential_decay() -> None:
    cfg = OptimConfig(epochs=5, lr=1e-3, gamma=0.9)
    assert _lrs(cfg, 5) == pytest.approx([1e-3 * 0.9**e for e in range(5)])


def test_cosine_with_warmup_rises_then_anneals_towards_zero() -> None:
    cfg = OptimConfig(epochs=10, lr=2e-3, schedule="cosine", warmup_epochs=2)
    lrs = _lrs(cfg, 10)
    assert lrs[0] == pytest.approx(2e-3 / 3) and lrs[1] == pytest.approx(
        2 * 2e-3 / 3 * math.cos(math.pi / 20) ** 2
    )
    assert max(lrs) == lrs[2] and all(a > b for a, b in zip(lrs[2:], lrs[3:], strict=False))
    assert lrs[-1] < 0.03 * 2e-3
    assert lr_factor(0, OptimConfig(schedule="cosine")) == 1.0


def test_pretrained_parameters_get_the_scaled_learning_rate() -> None:
    new, old = torch.nn.Parameter(torch.zeros(3, 3)), torch.nn.Parameter(torch.zeros(3, 3))
    opt, _ = make_optimizer([new, old], OptimConfig(lr=1e-3, init_lr_scale=0.25), scaled=[old])
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lr_of[id(new)] == pytest.approx(1e-3) and lr_of[id(old)] == pytest.approx(2.5e-4)
