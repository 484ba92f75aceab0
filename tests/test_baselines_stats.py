"""The paired tests of benchmarks/baselines.py (exact sign-flip over seeds, exact McNemar over clips)."""

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "baselines", Path(__file__).resolve().parents[1] / "benchmarks" / "baselines.py"
)
baselines = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(baselines)


def test_sign_flip_p_is_exact():
    assert baselines.sign_flip_p([0.1, 0.2, 0.3]) == pytest.approx(2 / 8)  # only all-+ and all-- as extreme
    assert baselines.sign_flip_p([0.1, -0.1]) == 1.0
    assert baselines.sign_flip_p([0.5, 0.1, -0.05, 0.2]) == pytest.approx(4 / 16)


def test_mcnemar_exact_p():
    assert baselines.mcnemar_exact_p(0, 6) == pytest.approx(2 / 64)
    assert baselines.mcnemar_exact_p(3, 3) == 1.0 and baselines.mcnemar_exact_p(0, 0) == 1.0
    # b=1, c=9: 2 * (C(10,0) + C(10,1)) / 2^10
    assert baselines.mcnemar_exact_p(1, 9) == pytest.approx(2 * 11 / 1024)
