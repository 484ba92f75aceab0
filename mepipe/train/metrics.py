"""Classification metrics for MER, computed on predictions pooled over all folds.

Conventions (the usual MEGC ones):

* ``acc`` = correct / total.
* ``uf1`` (unweighted F1) = mean over classes of ``F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c)``.
* ``uar`` (unweighted average recall) = mean over classes of ``TP_c / N_c``.
* Both means run over the classes that *occur in the ground truth* being scored (``N_c > 0``); a class
  absent from the pooled ground truth is reported per class with ``support = 0`` but does not enter
  the means. A class present but never predicted correctly contributes ``F1 = recall = 0``.

Worked example: ``y = [0, 0, 1, 2]``, ``p = [0, 1, 1, 1]``: class 0: TP 1, FN 1, FP 0 -> F1 2/3,
recall 1/2; class 1: TP 1, FP 2 -> F1 1/2, recall 1; class 2: TP 0, FN 1 -> F1 0, recall 0.
UF1 = (2/3 + 1/2 + 0) / 3 = 0.3889, UAR = (1/2 + 1 + 0) / 3 = 0.5, acc = 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """``(K, K) int64`` counts, rows = true class, columns = predicted class."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def scores_from_confusion(cm: np.ndarray, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Accuracy, UF1, UAR and per-class precision/recall/F1/support from a confusion matrix.

    Returns:
        ``{"n", "acc", "uf1", "uar", "per_class": {name: {"precision", "recall", "f1", "support"}}}``;
        ``acc``/``uf1``/``uar`` are ``nan`` when ``n == 0``.
    """
    k = cm.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    fp, fn = predicted - tp, support - tp
    n = int(cm.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, tp / np.maximum(support, 1), np.nan)
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        denom = 2 * tp + fp + fn
        f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    present = support > 0
    per_class = {
        names[c]: {
            "precision": float(precision[c]),
            "recall": float(recall[c]) if present[c] else None,
            "f1": float(f1[c]) if present[c] else None,
            "support": int(support[c]),
        }
        for c in range(k)
    }
    return {
        "n": n,
        "acc": float(tp.sum() / n) if n else float("nan"),
        "uf1": float(f1[present].mean()) if present.any() else float("nan"),
        "uar": float(recall[present].mean()) if present.any() else float("nan"),
        "per_class": per_class,
    }


def classification_metrics(
    y_true: Sequence[int],
    y_pred: Sequence[int],
    class_names: Sequence[str],
    groups: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Pooled metrics, with a breakdown per group (dataset) when ``groups`` is given.

    Args:
        y_true, y_pred: class indices in ``[0, K)``, one per clip, pooled over all folds.
        class_names: the K class names (label scheme order).
        groups: e.g. the dataset of each clip, for composite evaluations.

    Returns:
        ``{"n", "acc", "uf1", "uar", "per_class", "confusion" (K x K list), "classes", "per_dataset"}``;
        ``per_dataset`` maps group -> ``{"n", "acc", "uf1", "uar", "per_class", "confusion"}``.
    """
    k = len(class_names)
    cm = confusion_matrix(y_true, y_pred, k)
    out = scores_from_confusion(cm, class_names)
    out["confusion"] = cm.tolist()
    out["classes"] = list(class_names)
    out["per_dataset"] = {}
    if groups is not None:
        yt, yp, g = np.asarray(y_true), np.asarray(y_pred), np.asarray(groups)
        for name in sorted(set(g.tolist())):
            sel = g == name
            cm_g = confusion_matrix(yt[sel], yp[sel], k)
            sub = scores_from_confusion(cm_g, class_names)
            sub["confusion"] = cm_g.tolist()
            out["per_dataset"][name] = sub
    return out
