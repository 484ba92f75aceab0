"""Fine-tuning runs: leak-free LOSO / LODO evaluation (:func:`finetune_loso`) and one model on every
subject for deployment (:func:`finetune_all`, ``--protocol all``).

Per fold: :func:`~mepipe.train.finetune.fit` trains on the fold's training subjects, then
:func:`~mepipe.train.evaluate.evaluate_held_out` predicts the held-out clips exactly once; the
predictions are pooled over folds and scored (:mod:`mepipe.train.report`). ``RUN/``::

    train.resolved.yaml, train.log        resolved config; the run's log
    folds/<fold>/last.pt                  per-fold checkpoint (resume point; final weights)
    folds/<fold>/history.jsonl/.csv       per-epoch records of the fold
    folds/<fold>/predictions.csv          the fold's test predictions (written once the fold is done)
    history.csv, curves.png               every fold's epochs; loss / training accuracy / lr per fold
    predictions.csv, metrics.json, per_class.csv, confusion.png, pictures/heatmaps.png  (see report)

``--protocol all`` writes ``last.pt``, ``history.*``, ``curves.png`` and ``model.pt`` (see
:mod:`mepipe.train.deploy`) and no metrics: there is no held-out side.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from mepipe.errors import ConfigError
from mepipe.logs import Progress, get_logger
from mepipe.train.checkpoint import checkpoint_epoch
from mepipe.train.config import FinetuneConfig, config_to_dict
from mepipe.train.ddp import barrier
from mepipe.train.deploy import save_model
from mepipe.train.engine import loop_settings
from mepipe.train.evaluate import evaluate_held_out
from mepipe.train.finetune import EpochReport, fit
from mepipe.train.frames import ClipInfo, frame_size, load_clips
from mepipe.train.models import build_model
from mepipe.train.outputs import (
    RunFolder,
    build_pipeline,
    check_run_dir,
    read_csv,
    run_provenance,
    write_csv,
    write_json,
)
from mepipe.train.protocol import plan_folds
from mepipe.train.report import pooled_metrics, read_predictions, write_fold_histories, write_report
from mepipe.train.runtime import Runtime, cpu_threads, make_runtime
from mepipe.train.transfer import apply_init, check_init_config, load_init_state

log = get_logger(__name__)


class LabelMap(Protocol):
    """What fine-tuning needs from a label scheme (``mepipe.labels.LabelScheme`` fits)."""

    name: str
    classes: tuple[str, ...]

    def label(self, dataset: str, emotion_raw: str) -> int | None: ...


@dataclass
class LosoResult:
    """Pooled outcome of a LOSO (or LODO) fine-tuning run.

    Attributes:
        out: run folder.
        metrics: ``acc``, ``uf1``, ``uar``, ``per_class``, ``confusion``, ``classes``, ``per_dataset``,
            ``per_fold``, ``provenance`` (see :func:`mepipe.train.metrics.classification_metrics`).
        predictions: one dict per held-out clip (fold, key, dataset, subject, label, pred, probs).
        classes: class names of the label scheme.
    """

    out: Path
    metrics: dict[str, Any]
    predictions: list[dict[str, Any]]
    classes: list[str]

    @property
    def acc(self) -> float:
        return float(self.metrics["acc"])

    @property
    def uf1(self) -> float:
        return float(self.metrics["uf1"])

    @property
    def uar(self) -> float:
        return float(self.metrics["uar"])


@dataclass
class DeployResult:
    """Outcome of ``--protocol all``: ``model`` is ``RUN/model.pt`` (load it with
    :func:`mepipe.train.deploy.load_model`)."""

    out: Path
    model: Path
    history: list[dict[str, Any]]
    classes: list[str]
    n_clips: int


@dataclass
class _Prepared:
    """Everything read and checked before the run folder is touched."""

    out: Path
    rt: Runtime
    scheme: LabelMap
    clips: list[ClipInfo]
    dropped: dict[str, int]
    size: int
    init_state: dict[str, torch.Tensor] | None
    provenance: dict[str, Any]


def _prepare(cfg: FinetuneConfig, scheme: LabelMap | None) -> _Prepared:
    """Check the run folder, read the build, the label scheme and ``--init``; writes nothing."""
    if not cfg.data.shards:
        raise ConfigError("data.shards: no build folder given; pass --build MICRO_OUT")
    rt = make_runtime(cfg.run.device, cfg.run.amp, cfg.run.channels_last)
    out = check_run_dir(cfg.run.out, resume=cfg.run.resume, force=cfg.run.force, kind="finetune")
    if scheme is None:
        from mepipe.labels import load_scheme

        scheme = load_scheme(cfg.data.labels)
    sch = scheme
    clips, _, dropped = load_clips(
        cfg.data.shards, label_fn=lambda r: sch.label(r.dataset, r.emotion_raw), datasets=cfg.data.datasets
    )
    size = frame_size(clips)
    init_state = None
    if cfg.init:
        init_state, init_cfg = load_init_state(cfg.init, cfg.init_parts)
        check_init_config(cfg.init, init_cfg, config_to_dict(cfg)["model"])
        apply_init(build_model(cfg.model, len(scheme.classes)), init_state)  # shapes and model kind, now
    return _Prepared(
        out, rt, scheme, clips, dropped, size, init_state, run_provenance(cfg.data.shards, clips[0].shard)
    )


def _fold_dir(out: Path, fold: str) -> Path:
    return out / "folds" / fold.replace("/", "__")


def finetune_loso(
    cfg: FinetuneConfig,
    *,
    scheme: LabelMap | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
) -> LosoResult:
    """Fine-tune under LOSO (or LODO) and score the pooled held-out predictions.

    Args:
        cfg: the resolved config (``data.shards`` and ``run.out`` required; ``init`` optional).
        scheme: label scheme; default ``mepipe.labels.load_scheme(cfg.data.labels)``. Clips the scheme
            excludes are dropped before folds are formed.
        on_epoch: called after every epoch of every fold with an :class:`EpochReport` (train/val only).

    Returns:
        :class:`LosoResult`; files as listed in the module docstring.

    Raises:
        ConfigError: ``protocol.name=all`` (use :func:`finetune_all`), bad run folder, device, folds or
            ``--init``; ShardError: unfinished or unusable build. All before anything is written.
    """
    if cfg.protocol.name == "all":
        raise ConfigError(
            "protocol.name=all has no held-out side: use finetune_all (mepipe train finetune does)"
        )
    with cpu_threads(cfg.run.cpu_threads):
        return _finetune_loso(cfg, _prepare(cfg, scheme), on_epoch)


def _finetune_loso(
    cfg: FinetuneConfig, p: _Prepared, on_epoch: Callable[[EpochReport], None] | None
) -> LosoResult:
    out, rt, classes = p.out, p.rt, list(p.scheme.classes)
    plans = plan_folds(
        p.clips,
        cfg.protocol.name,
        cfg.protocol.val_subjects,
        cfg.run.seed,
        cfg.protocol.folds,
        cfg.protocol.per_dataset,
    )
    loop = loop_settings(cfg)
    config = config_to_dict(cfg)
    pooled: list[dict[str, Any]] = []
    per_fold: list[dict[str, Any]] = []
    heat_samples: list[dict[str, Any]] = []
    histories: dict[str, list[dict[str, Any]]] = {}
    t_start = time.perf_counter()
    with RunFolder(out, cfg, rt.is_main) as run:
        if rt.is_main:
            log.info(
                "finetune: %d clips, %d classes (%s), dropped %s, %d %s folds, model %s, init %s, device %s",
                len(p.clips), len(classes), p.scheme.name, p.dropped, len(plans), cfg.protocol.name,
                cfg.model.name, "MA2MI " + cfg.init if cfg.init else "scratch", rt.device,
            )  # fmt: skip
        todo = [
            pl
            for pl in plans
            if not (cfg.run.resume and (_fold_dir(out, pl.name) / "predictions.csv").is_file())
        ]
        todo_names = {pl.name for pl in todo}
        done_epochs = sum(
            min(checkpoint_epoch(_fold_dir(out, pl.name) / "last.pt", "finetune"), cfg.optim.epochs)
            for pl in todo
            if cfg.run.resume
        )
        bar = Progress(
            "finetune", total=len(todo) * cfg.optim.epochs - done_epochs, unit="epochs", logger=log
        )
        with bar if rt.is_main else contextlib.nullcontext():
            for i, plan in enumerate(plans):
                fdir = _fold_dir(out, plan.name)
                done = fdir / "predictions.csv"
                if plan.name not in todo_names:
                    rows, chosen = read_predictions(done), None
                    if (fdir / "history.csv").is_file():
                        histories[plan.name] = read_csv(fdir / "history.csv")
                    log.info(
                        "fold %d/%d %s: done before, %d predictions read",
                        i + 1,
                        len(plans),
                        plan.name,
                        len(rows),
                    )
                else:
                    t0 = time.perf_counter()
                    writer = run.history(fdir, plan.name)

                    def record(history: list[dict[str, Any]], name: str = plan.name, w: Any = writer) -> None:
                        w(history)
                        histories[name] = history
                        write_fold_histories(out, histories)

                    def epoch_done(r: EpochReport, k: int = i) -> None:
                        if rt.is_main:
                            bar.advance(
                                1,
                                f"fold {k + 1}/{len(plans)} {r.fold} epoch {r.epoch}/{cfg.optim.epochs} loss {r.train_loss:.4f}",
                            )
                        if on_epoch is not None:
                            on_epoch(r)

                    fitted = fit(
                        plan.train,
                        plan.val,
                        model=cfg.model,
                        loop=loop,
                        jitter=cfg.data.jitter,
                        seed=cfg.run.seed,
                        num_classes=len(classes),
                        size=p.size,
                        rt=rt,
                        fold=plan.name,
                        init_state=p.init_state,
                        checkpoint=fdir / "last.pt",
                        config=config,
                        provenance=p.provenance,
                        on_record=record,
                        on_epoch=epoch_done,
                    )
                    preds = evaluate_held_out(
                        fitted.model,
                        plan.test,
                        size=p.size,
                        input_size=cfg.model.input_size,
                        batch_size=cfg.data.batch_size,
                        rt=rt,
                        classes=classes,
                        heat=max(cfg.run.pictures - len(heat_samples), 0),
                    )
                    rows, chosen = preds.rows, fitted.chosen_epoch
                    heat_samples.extend(preds.heat_samples)
                    if rt.is_main:
                        write_csv(done, rows)
                        acc = (
                            float(np.mean([r["label"] == r["pred"] for r in rows])) if rows else float("nan")
                        )
                        log.info(
                            "fold %d/%d %s: %d train / %d val / %d test clips, epoch %s, fold acc %.3f, %.1f s",
                            i + 1, len(plans), plan.name, len(plan.train), len(plan.val), len(rows), chosen, acc,
                            time.perf_counter() - t0,
                        )  # fmt: skip
                pooled.extend(rows)
                per_fold.append(
                    {
                        "fold": plan.name,
                        "held_out": plan.held_out,
                        "n_train": len(plan.train),
                        "n_val": len(plan.val),
                        "val_subjects": plan.val_subjects,
                        "n_test": len(rows),
                        "chosen_epoch": chosen,
                        "acc": float(np.mean([r["label"] == r["pred"] for r in rows])) if rows else None,
                    }
                )
        barrier()
        extra = {
            "protocol": cfg.protocol.name,
            "scheme": p.scheme.name,
            "model": cfg.model.name,
            "n_folds": len(plans),
            "per_fold": per_fold,
            "dropped": p.dropped,
            "init": cfg.init,
            "seconds": round(time.perf_counter() - t_start, 2),
            "provenance": p.provenance,
        }
        if rt.is_main:
            write_fold_histories(out, histories)
            metrics = write_report(out, pooled, classes, extra, heat_samples if cfg.run.pictures else None)
            log.info(
                "%s pooled over %d folds (%d clips): acc %.4f UF1 %.4f UAR %.4f -> %s",
                cfg.protocol.name, len(plans), len(pooled), metrics["acc"], metrics["uf1"], metrics["uar"],
                out / "metrics.json",
            )  # fmt: skip
        else:
            metrics = {**pooled_metrics(pooled, classes), **extra}
    return LosoResult(out, metrics, pooled, classes)


def finetune_all(cfg: FinetuneConfig, *, scheme: LabelMap | None = None) -> DeployResult:
    """Train one model on every subject with the fixed epoch budget (``protocol.name=all``), for use.

    There is no test side and no selection; report LOSO numbers (:func:`finetune_loso`) for the same
    config. ``RUN/model.pt`` records the class names, the model config and the build's pipeline (see
    :mod:`mepipe.train.deploy`).

    Raises:
        ConfigError / ShardError: as :func:`finetune_loso`, before anything is written.
    """
    if cfg.protocol.name != "all":
        raise ConfigError(f"finetune_all needs protocol.name=all, got {cfg.protocol.name!r}")
    with cpu_threads(cfg.run.cpu_threads):
        p = _prepare(cfg, scheme)
        out, rt, classes = p.out, p.rt, list(p.scheme.classes)
        pipeline = build_pipeline(cfg.data.shards)
        with RunFolder(out, cfg, rt.is_main) as run:
            subjects = sorted({c.subject_key for c in p.clips})
            if rt.is_main:
                log.info(
                    "finetune on every subject (protocol all): %d clips of %d subjects, %d classes (%s), model %s, %d epochs",
                    len(p.clips), len(subjects), len(classes), p.scheme.name, cfg.model.name, cfg.optim.epochs,
                )  # fmt: skip
            writer = run.history(out, "all")

            def record(history: list[dict[str, Any]]) -> None:
                writer(history)
                write_fold_histories(out, {"all": history})

            start = (
                min(checkpoint_epoch(out / "last.pt", "finetune"), cfg.optim.epochs) if cfg.run.resume else 0
            )
            bar = Progress("finetune all", total=cfg.optim.epochs - start, unit="epochs", logger=log)
            with bar if rt.is_main else contextlib.nullcontext():
                fitted = fit(
                    p.clips,
                    (),
                    model=cfg.model,
                    loop=loop_settings(cfg),
                    jitter=cfg.data.jitter,
                    seed=cfg.run.seed,
                    num_classes=len(classes),
                    size=p.size,
                    rt=rt,
                    fold="all",
                    init_state=p.init_state,
                    checkpoint=out / "last.pt",
                    config=config_to_dict(cfg),
                    provenance=p.provenance,
                    on_record=record,
                    on_epoch=(
                        lambda r: bar.advance(
                            1, f"epoch {r.epoch}/{cfg.optim.epochs} loss {r.train_loss:.4f}"
                        )
                    )
                    if rt.is_main
                    else None,
                )
            path = out / "model.pt"
            if rt.is_main:
                save_model(
                    path,
                    fitted.model,
                    classes=classes,
                    scheme=p.scheme.name,
                    model_config=config_to_dict(cfg)["model"],
                    crop_size=p.size,
                    pipeline=pipeline,
                    provenance=p.provenance,
                    config=config_to_dict(cfg),
                )
                write_json(
                    out / "model.json",
                    {
                        "protocol": "all",
                        "scheme": p.scheme.name,
                        "classes": classes,
                        "model": cfg.model.name,
                        "n_clips": len(p.clips),
                        "subjects": subjects,
                        "epochs": cfg.optim.epochs,
                        "dropped": p.dropped,
                        "init": cfg.init,
                        "provenance": p.provenance,
                    },
                )
                log.info("model for use -> %s (%d clips, %d subjects)", path, len(p.clips), len(subjects))
            barrier()
    return DeployResult(out, path, fitted.history, classes, len(p.clips))
