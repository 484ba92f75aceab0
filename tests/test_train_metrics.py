"""Pooled MER metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mepipe.train.metrics import classification_metrics, confusion_matrix


def test_docstring_example() -> None:
    m = classification_metrics([0, 0, 1, 2], [0, 1, 1, 1], ["a", "b", "c"])
    assert m["acc"] == pytest.approx(0.5)
    assert m["uf1"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert m["uar"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert m["confusion"] == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]
    assert m["per_class"]["b"] == {"precision": pytest.approx(1 / 3), "recall": 1.0, "f1": 0.5, "support": 1}


def test_class_missing_in_one_fold_is_scored_on_the_pooled_predictions() -> None:
    # fold 1 has no class-2 clip, fold 2 has no class-0 clip; metrics pool both folds first
    fold1_y, fold1_p = [0, 0, 1], [0, 1, 1]
    fold2_y, fold2_p = [1, 2, 2], [2, 2, 1]
    y, p = fold1_y + fold2_y, fold1_p + fold2_p
    m = classification_metrics(y, p, ["x", "y", "z"], ["d"] * 6)
    # class 0: TP 1 FN 1 FP 0 -> F1 2/3, R 1/2; class 1: TP 1 FN 1 FP 2 -> F1 2/5, R 1/2;
    # class 2: TP 1 FN 1 FP 1 -> F1 1/2, R 1/2
    assert m["acc"] == pytest.approx(3 / 6)
    assert m["uf1"] == pytest.approx((2 / 3 + 2 / 5 + 1 / 2) / 3)
    assert m["uar"] == pytest.approx(0.5)
    # averaging per-fold scores instead would give another number; the pooled one is what we report
    per_fold_f1 = np.mean(
        [
            classification_metrics(fold1_y, fold1_p, ["x", "y", "z"])["uf1"],
            classification_metrics(fold2_y, fold2_p, ["x", "y", "z"])["uf1"],
        ]
    )
    assert per_fold_f1 != pytest.approx(m["uf1"])


def test_class_absent_from_ground_truth_is_left_out_of_the_means() -> None:
    m = classification_metrics([0, 1, 1], [0, 1, 2], ["a", "b", "c", "d"])
    # classes c, d have no true clip: F1/recall undefined (None), not averaged; c's false positive
    # still lowers b's recall and c's precision
    assert m["per_class"]["c"]["support"] == 0 and m["per_class"]["c"]["f1"] is None
    assert m["per_class"]["d"]["recall"] is None
    assert m["uar"] == pytest.approx((1 + 0.5) / 2)
    assert m["uf1"] == pytest.approx((1 + 2 / 3) / 2)


def test_per_dataset_breakdown() -> None:
    y = [0, 1, 0, 1]
    p = [0, 1, 1, 1]
    m = classification_metrics(y, p, ["a", "b"], ["casme2", "casme2", "samm", "samm"])
    assert set(m["per_dataset"]) == {"casme2", "samm"}
    assert m["per_dataset"]["casme2"]["uf1"] == pytest.approx(1.0)
    s = m["per_dataset"]["samm"]
    assert s["acc"] == pytest.approx(0.5) and s["uar"] == pytest.approx(0.5)
    assert s["uf1"] == pytest.approx((0 + 2 / 3) / 2)


def test_empty_and_confusion() -> None:
    m = classification_metrics([], [], ["a", "b"])
    assert m["n"] == 0 and math.isnan(m["acc"]) and math.isnan(m["uf1"])
    assert confusion_matrix([1, 1, 0], [1, 0, 0], 2).tolist() == [[1, 0], [1, 1]]
