"""The probe of benchmarks/linear_probe.py: L2-penalised multinomial logistic regression."""

import importlib.util
import sys
from pathlib import Path

import torch

_bench = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(_bench))  # the script imports its statistics from the other benchmarks
_spec = importlib.util.spec_from_file_location("linear_probe", _bench / "linear_probe.py")
lp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lp)


def _clusters(n_per: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    centres = torch.zeros(3, 20, dtype=torch.float64)
    centres[0, 0], centres[1, 1], centres[2, 2] = 3.0, 3.0, 3.0
    y = torch.arange(3).repeat_interleave(n_per)
    return centres[y] + torch.randn(len(y), 20, generator=gen, dtype=torch.float64), y


def test_probe_separates_clusters_and_generalises():
    gen = torch.Generator().manual_seed(0)
    x, y = _clusters(10, gen)
    w, b = lp.fit_probe(x, y, 3, lam=0.1)
    assert w.shape == (20, 3) and b.shape == (3,)
    assert ((x @ w + b).argmax(1) == y).float().mean() == 1.0
    xt, yt = _clusters(50, gen)  # new points from the same clusters
    assert ((xt @ w + b).argmax(1) == yt).float().mean() > 0.85


def test_probe_penalty_shrinks_the_weights():
    x, y = _clusters(10, torch.Generator().manual_seed(1))
    norms = [lp.fit_probe(x, y, 3, lam=lam)[0].norm().item() for lam in (0.01, 1.0, 100.0)]
    assert norms[0] > norms[1] > norms[2] > 0
