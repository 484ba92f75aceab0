"""The files of a fine-tuning run: pooled predictions, metrics, per-class table, pictures, curves.

Written by :func:`write_report` from the predictions pooled over every fold (metrics are never
averaged over folds; see :mod:`mepipe.train.metrics`)::

    predictions.csv    fold, key, dataset, subject, label, pred, label_name, pred_name, p_<class>
    metrics.json       acc, uf1, uar, per_class, confusion, classes, per_dataset, per_fold, provenance ...
    per_class.csv      precision / recall / F1 / support per class (overall and per dataset)
    confusion.png      the pooled confusion matrix
    pictures/heatmaps.png   heat maps of held-out clips, titled with the clip id and full class names

:func:`write_fold_histories` writes ``RUN/history.csv`` (every fold's epochs, in fold order) and
``RUN/curves.png`` (training loss, training accuracy, validation UF1 when used, learning rate).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mepipe.train.metrics import classification_metrics
from mepipe.train.outputs import write_csv, write_json


def read_predictions(path: Path) -> list[dict[str, Any]]:
    """A fold's ``predictions.csv`` back as rows (``label``/``pred`` int, ``p_*`` float)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["label"], r["pred"] = int(r["label"]), int(r["pred"])
        for k in list(r):
            if k.startswith("p_"):
                r[k] = float(r[k])
    return rows


def per_class_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (scope, class): scope ``all`` then each dataset."""
    rows = []
    for scope, m in [("all", metrics)] + sorted(metrics["per_dataset"].items()):
        for name, v in m["per_class"].items():
            rows.append({"scope": scope, "class": name, **v})
    return rows


def pooled_metrics(rows: Sequence[dict[str, Any]], classes: Sequence[str]) -> dict[str, Any]:
    """:func:`~mepipe.train.metrics.classification_metrics` of pooled prediction rows, per dataset too."""
    return classification_metrics(
        [r["label"] for r in rows], [r["pred"] for r in rows], list(classes), [r["dataset"] for r in rows]
    )


def write_report(
    out: Path,
    result_rows: list[dict[str, Any]],
    classes: list[str],
    extra: dict[str, Any],
    heat_samples: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Pool predictions, compute metrics and write predictions.csv, metrics.json, per_class.csv, PNGs.

    Args:
        out: run folder.
        result_rows: every held-out prediction row (all folds).
        classes: the label scheme's class names.
        extra: added to ``metrics.json`` (protocol, scheme, per_fold, provenance ...).
        heat_samples: heat-map samples (see :func:`mepipe.train.pictures.heatmap_grid`).

    Returns:
        The metrics (as written to ``metrics.json``).
    """
    metrics = pooled_metrics(result_rows, classes)
    metrics.update(extra)
    write_csv(out / "predictions.csv", result_rows)
    write_json(out / "metrics.json", metrics)
    write_csv(
        out / "per_class.csv",
        per_class_rows(metrics),
        ["scope", "class", "precision", "recall", "f1", "support"],
    )
    from mepipe.train.pictures import confusion_png, heatmap_grid

    confusion_png(
        np.asarray(metrics["confusion"]),
        classes,
        out / "confusion.png",
        f"pooled over {extra.get('n_folds', '?')} folds: acc {metrics['acc']:.3f} "
        f"UF1 {metrics['uf1']:.3f} UAR {metrics['uar']:.3f}",
    )
    if heat_samples:
        heatmap_grid(heat_samples, out / "pictures" / "heatmaps.png")
    return metrics


def write_fold_histories(out: Path, histories: dict[str, list[dict[str, Any]]]) -> None:
    """``RUN/history.csv`` (all folds, fold order) and ``RUN/curves.png`` (one line per fold)."""
    from mepipe.train.pictures import curves_png

    rows = [r for name in histories for r in histories[name]]
    if not rows:
        return
    write_csv(out / "history.csv", rows)

    def series(key: str) -> dict[str, tuple[list[Any], list[Any]]]:
        return {
            name: (
                [h["epoch"] for h in hist],
                [h[key] if h.get(key) is not None else float("nan") for h in hist],
            )
            for name, hist in histories.items()
            if any(h.get(key) is not None for h in hist)
        }

    panels = [("training loss", series("train_loss")), ("training accuracy", series("train_acc"))]
    if any(r.get("val_uf1") is not None for r in rows):
        panels.append(("validation UF1 (training subjects)", series("val_uf1")))
    first = next(iter(histories))
    panels.append(
        (
            "learning rate",
            {"lr": ([h["epoch"] for h in histories[first]], [h["lr"] for h in histories[first]])},
        )
    )
    curves_png(panels, out / "curves.png")
