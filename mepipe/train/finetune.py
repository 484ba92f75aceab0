"""MIACNet fine-tuning with leak-free LOSO evaluation (``mepipe train finetune``).

Per fold: :func:`fit` trains on the fold's training subjects (optionally selecting the epoch on
validation subjects carved from them), then :func:`evaluate_held_out` predicts the held-out clips
exactly once. Predictions are pooled over folds and scored (:mod:`mepipe.train.metrics`). ``RUN/``::

    train.resolved.yaml             resolved config
    folds/<fold>/last.pt            per-fold checkpoint (resume point; final weights)
    folds/<fold>/predictions.csv    the fold's test predictions (written once the fold is done)
    folds/<fold>/history.jsonl      per-epoch records
    predictions.csv                 pooled predictions (fold, key, dataset, subject, label, pred, p_<class>)
    metrics.json                    acc, uf1, uar, per_class, confusion, per_dataset, per_fold
    per_class.csv                   per-class precision/recall/F1/support (overall and per dataset)
    confusion.png                   the pooled confusion matrix
    pictures/heatmaps.png           action heat maps over onset frames of held-out clips
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from mepipe.errors import ConfigError
from mepipe.train.augment import prepare_pairs
from mepipe.train.checkpoint import load_checkpoint, restore_training, save_checkpoint
from mepipe.train.config import FinetuneConfig, config_to_dict, write_resolved
from mepipe.train.data import PairDataset, PairSampler, keyframe_pairs, make_loader, prepared_batches
from mepipe.train.ddp import all_reduce_sum, barrier, sync_buffers, unwrap, wrap_model
from mepipe.train.engine import (
    Logger,
    Runtime,
    append_jsonl,
    cpu_threads,
    derive_seed,
    make_optimizer,
    make_runtime,
    optimizer_step,
    print_log,
    recalibrate_bn,
    seed_everything,
    write_json,
)
from mepipe.train.frames import ClipInfo, frame_size, load_clips
from mepipe.train.metrics import classification_metrics
from mepipe.train.models import build_model
from mepipe.train.models.ma2mi import transfer_state
from mepipe.train.models.miacnet import MIACNet
from mepipe.train.protocol import FoldPlan, HeldOut, plan_folds


class LabelMap(Protocol):
    """What fine-tuning needs from a label scheme (``mepipe.labels.LabelScheme`` fits)."""

    name: str
    classes: tuple[str, ...]

    def label(self, dataset: str, emotion_raw: str) -> int | None: ...


@dataclass(frozen=True)
class EpochReport:
    """What a model-selection / logging callback sees after each fine-tuning epoch.

    It carries training and validation information only; the held-out clips never appear here.
    """

    fold: str
    epoch: int
    train_loss: float
    lr: float
    train_keys: tuple[str, ...]
    val_keys: tuple[str, ...]
    val_metrics: dict[str, Any] | None


@dataclass
class FitResult:
    """A trained fold model. ``chosen_epoch`` is the last epoch, or the best validation epoch."""

    model: MIACNet
    history: list[dict[str, Any]]
    chosen_epoch: int


@dataclass
class HeldOutPredictions:
    """Test predictions of one fold: ``rows`` (one dict per clip) and heat-map samples."""

    rows: list[dict[str, Any]]
    heat_samples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class LosoResult:
    """Pooled outcome of a LOSO (or LODO) fine-tuning run.

    Attributes:
        out: run folder.
        metrics: ``acc``, ``uf1``, ``uar``, ``per_class``, ``confusion``, ``classes``, ``per_dataset``,
            ``per_fold`` (see :func:`mepipe.train.metrics.classification_metrics`).
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


def load_init_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``E_act``/``E_pos`` weights and the config of an MA2MI checkpoint (``pretrain`` kind)."""
    ckpt = load_checkpoint(path, "pretrain")
    return transfer_state(ckpt["model"]), ckpt.get("config", {})


def apply_init(model: MIACNet, state: dict[str, torch.Tensor]) -> int:
    """Copy pre-trained ``act.*``/``pos.*`` tensors into ``model``; returns how many were loaded.

    Raises:
        ConfigError: a tensor's shape differs (width, input size or action input do not match).
    """
    own = model.state_dict()
    prefixes = model.pretrained_prefixes()
    load = {}
    for k, v in state.items():
        if not k.startswith(prefixes) or k not in own:
            continue
        if own[k].shape != v.shape:
            raise ConfigError(
                f"--init: {k} has shape {tuple(v.shape)} in the checkpoint but {tuple(own[k].shape)} "
                "here; use the same model.width / model.input_size / model.action_input as in "
                "pre-training"
            )
        load[k] = v
    if not load:
        raise ConfigError("--init: no pre-trained tensor matches this model (is it an MA2MI checkpoint?)")
    model.load_state_dict(load, strict=False)
    return len(load)


def _logits(net: torch.nn.Module, x: torch.Tensor, rt: Runtime) -> torch.Tensor:
    with rt.autocast():
        return net(x).float()


def fit(
    cfg: FinetuneConfig,
    train: Sequence[ClipInfo],
    val: Sequence[ClipInfo],
    *,
    num_classes: int,
    size: int,
    rt: Runtime,
    fold: str = "",
    init_state: dict[str, torch.Tensor] | None = None,
    ckpt_path: Path | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
    log: Logger = print_log,
) -> FitResult:
    """Train one fold's model on ``train`` (no access to the fold's test clips).

    With ``val`` non-empty, the epoch with the best validation UF1 (ties: the earlier) is kept;
    otherwise the model after the fixed budget ``optim.epochs`` is returned.

    Args:
        cfg: the fine-tuning config.
        train, val: clips of training subjects (``val``: carved-out training subjects, may be empty).
        num_classes, size: K and the stored crop side S.
        rt: runtime (device, precision, DDP).
        fold: fold name (seeds and messages).
        init_state: pre-trained ``act.*``/``pos.*`` tensors (see :func:`load_init_state`).
        ckpt_path: where to save/resume this fold's checkpoint (``None``: no checkpoints).
        on_epoch: callback receiving an :class:`EpochReport` after every epoch.
        log: line logger.
    """
    seed = derive_seed(cfg.run.seed, fold)
    seed_everything(seed)
    model = build_model(cfg.model, num_classes)
    assert isinstance(model, MIACNet)
    if init_state is not None:
        apply_init(model, init_state)
    model = rt.prepare_model(model)
    opt, sched = make_optimizer(model.parameters(), cfg.optim)
    aug_gen = torch.Generator().manual_seed(derive_seed(seed, "augment"))
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"score": -1.0, "epoch": 0, "state": None}
    start = 0
    if ckpt_path is not None and cfg.run.resume and ckpt_path.is_file():
        ckpt = load_checkpoint(ckpt_path, "finetune")
        start = restore_training(ckpt, model=model, optimizer=opt, scheduler=sched, aug_gen=aug_gen)
        history = list(ckpt["history"])
        extra = ckpt.get("extra") or {}
        if extra.get("best_state") is not None:
            best = {"score": extra["best_score"], "epoch": extra["best_epoch"], "state": extra["best_state"]}
    net = wrap_model(model, rt.dist, rt.device)
    sampler = PairSampler(
        train,
        mode="keyframes",
        jitter=cfg.data.jitter,
        shuffle=True,
        seed=seed,
        rank=rt.dist.rank,
        world_size=rt.dist.world_size,
    )
    dataset = PairDataset(train, size)
    loader = make_loader(
        dataset,
        sampler,
        batch_size=cfg.data.batch_size,
        num_workers=cfg.data.num_workers,
        pin_memory=rt.device.type == "cuda",
    )
    frozen = model.early_parameters() if init_state is not None else []
    train_keys = tuple(c.key for c in train)
    val_keys = tuple(c.key for c in val)
    resolved = config_to_dict(cfg)
    for epoch in range(start, cfg.optim.epochs):
        sampler.set_epoch(epoch)
        net.train()
        t0 = time.perf_counter()
        lr = opt.param_groups[0]["lr"]
        loss_sum, n = 0.0, 0.0
        freeze = frozen if epoch < cfg.optim.freeze_epochs else None
        for batch in loader:
            x = prepare_pairs(
                batch["frames"].to(rt.device, non_blocking=True),
                cfg.model.input_size,
                augment=cfg.augment,
                gen=aug_gen,
            )
            y = batch["label"].to(rt.device)
            loss = F.cross_entropy(_logits(net, x, rt), y)
            optimizer_step(loss, net, opt, cfg.optim.grad_clip, freeze)
            loss_sum += float(loss.detach()) * len(y)
            n += len(y)
        sync_buffers(model)
        sched.step()
        loss_sum, n = all_reduce_sum([loss_sum, n], rt.device)
        rec: dict[str, Any] = {
            "fold": fold,
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": loss_sum / max(n, 1.0),
            "seconds": round(time.perf_counter() - t0, 3),
        }
        val_metrics = None
        if cfg.optim.bn_recalibrate and (val or epoch + 1 == cfg.optim.epochs):
            recalibrate_bn(
                model,
                prepared_batches(
                    dataset,
                    keyframe_pairs(train, 0, None),
                    batch_size=cfg.data.batch_size,
                    input_size=cfg.model.input_size,
                    device=rt.device,
                ),
                rt,
            )
        if val:
            probs = predict(model, val, size=size, cfg=cfg, rt=rt)
            val_metrics = classification_metrics(
                [c.label for c in val], probs.argmax(1).tolist(), [str(i) for i in range(num_classes)]
            )
            rec["val_uf1"], rec["val_acc"] = val_metrics["uf1"], val_metrics["acc"]
            if val_metrics["uf1"] > best["score"]:
                best = {
                    "score": val_metrics["uf1"],
                    "epoch": epoch + 1,
                    "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                }
        history.append(rec)
        if rt.is_main and ckpt_path is not None:
            append_jsonl(ckpt_path.parent / "history.jsonl", rec)
            if epoch + 1 == cfg.optim.epochs or (epoch + 1) % max(cfg.run.checkpoint_every, 1) == 0:
                extra = (
                    {"best_state": best["state"], "best_score": best["score"], "best_epoch": best["epoch"]}
                    if val
                    else {}
                )
                save_checkpoint(
                    ckpt_path,
                    kind="finetune",
                    epoch=epoch + 1,
                    model=model,
                    optimizer=opt,
                    scheduler=sched,
                    config=resolved,
                    aug_gen=aug_gen,
                    history=history,
                    extra=extra,
                )
        if cfg.run.log_every and rt.is_main:
            log(
                f"  {fold} epoch {epoch + 1}/{cfg.optim.epochs}: loss {rec['train_loss']:.4f}"
                + (f" val UF1 {rec['val_uf1']:.3f}" if val else "")
            )
        if on_epoch is not None:
            on_epoch(EpochReport(fold, epoch + 1, rec["train_loss"], lr, train_keys, val_keys, val_metrics))
    dataset.handles.close()
    chosen = cfg.optim.epochs
    if val and best["state"] is not None:
        model.load_state_dict(best["state"])
        chosen = int(best["epoch"])
    model.eval()
    return FitResult(model, history, chosen)


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    clips: Sequence[ClipInfo],
    *,
    size: int,
    cfg: FinetuneConfig,
    rt: Runtime,
    heat: int = 0,
) -> Any:
    """Class probabilities ``(N, K) float64`` for the annotated onset/apex pair of each clip.

    With ``heat > 0`` returns ``(probs, samples)`` where ``samples`` holds onset/apex images and the
    action heat map of the first ``heat`` clips.
    """
    net = unwrap(model)
    assert isinstance(net, MIACNet)
    was_training = net.training
    net.eval()
    dataset = PairDataset(clips, size)
    pairs = keyframe_pairs(clips, 0, None)
    probs, samples = [], []
    for s in range(0, len(pairs), cfg.data.batch_size):
        chunk = pairs[s : s + cfg.data.batch_size]
        batch = dataset.__getitems__(chunk)
        x = prepare_pairs(batch["frames"].to(rt.device), cfg.model.input_size)
        with rt.autocast():
            out = net.forward_all(x)
        probs.append(out.logits.float().softmax(1).cpu().double().numpy())
        want = heat - len(samples)
        if want > 0:
            from mepipe.train.pictures import to_uint8_images

            hm = out.heatmap()[:want].cpu().numpy()
            on, ap = to_uint8_images(x[:want, 0]), to_uint8_images(x[:want, 1])
            for j in range(len(hm)):
                samples.append({"onset": on[j], "apex": ap[j], "heat": hm[j], "key": clips[s + j].key})
    dataset.handles.close()
    net.train(was_training)
    p = np.concatenate(probs) if probs else np.zeros((0, 0))
    return (p, samples) if heat > 0 else p


def evaluate_held_out(
    model: MIACNet,
    held_out: HeldOut,
    *,
    size: int,
    cfg: FinetuneConfig,
    rt: Runtime,
    classes: Sequence[str],
    heat: int = 0,
) -> HeldOutPredictions:
    """Predict a fold's sealed test clips, once (a second call on the same fold raises).

    It receives a trained model only: no optimiser, no epochs, no way to feed results back into
    training or selection.
    """
    clips = held_out.release()
    probs, samples = predict(model, clips, size=size, cfg=cfg, rt=rt, heat=max(heat, 1))
    samples = samples[:heat]
    rows = []
    for c, p in zip(clips, probs, strict=True):
        pred = int(p.argmax())
        row = {
            "fold": held_out.fold,
            "key": c.key,
            "dataset": c.dataset,
            "subject": c.subject,
            "label": c.label,
            "pred": pred,
            "label_name": classes[c.label],
            "pred_name": classes[pred],
        }
        row.update({f"p_{name}": round(float(v), 6) for name, v in zip(classes, p, strict=True)})
        rows.append(row)
    for s in samples:
        r = next(r for r in rows if r["key"] == s["key"])
        s["title"] = f"{r['subject']} T:{r['label_name'][:5]} P:{r['pred_name'][:5]}"  # true, predicted
    return HeldOutPredictions(rows, samples)


def _fold_dir(out: Path, fold: str) -> Path:
    return out / "folds" / fold.replace("/", "__")


def _write_csv(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = list(columns or (rows[0].keys() if rows else []))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    return path


def _read_predictions(path: Path) -> list[dict[str, Any]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["label"], r["pred"] = int(r["label"]), int(r["pred"])
        for k in list(r):
            if k.startswith("p_"):
                r[k] = float(r[k])
    return rows


def _per_class_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for scope, m in [("all", metrics)] + sorted(metrics["per_dataset"].items()):
        for name, v in m["per_class"].items():
            rows.append({"scope": scope, "class": name, **v})
    return rows


def write_report(
    out: Path,
    result_rows: list[dict[str, Any]],
    classes: list[str],
    extra: dict[str, Any],
    heat_samples: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Pool predictions, compute metrics and write predictions.csv, metrics.json, per_class.csv, PNGs."""
    metrics = classification_metrics(
        [r["label"] for r in result_rows],
        [r["pred"] for r in result_rows],
        classes,
        [r["dataset"] for r in result_rows],
    )
    metrics.update(extra)
    _write_csv(out / "predictions.csv", result_rows)
    write_json(out / "metrics.json", metrics)
    _write_csv(
        out / "per_class.csv",
        _per_class_rows(metrics),
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


def _label_fn(scheme: LabelMap) -> Callable[[Any], int | None]:
    return lambda row: scheme.label(row.dataset, row.emotion_raw)


def finetune_loso(
    cfg: FinetuneConfig,
    *,
    scheme: LabelMap | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
    log: Logger = print_log,
) -> LosoResult:
    """Fine-tune MIACNet under LOSO (or LODO) and score the pooled held-out predictions.

    Args:
        cfg: the resolved config (``data.shards`` and ``run.out`` required; ``init`` optional).
        scheme: label scheme; default ``mepipe.labels.load_scheme(cfg.data.labels)``. Clips the scheme
            excludes are dropped before folds are formed.
        on_epoch: called after every epoch of every fold with an :class:`EpochReport` (train/val only).
        log: line logger.

    Returns:
        :class:`LosoResult`; files as listed in the module docstring.
    """
    with cpu_threads(cfg.run.cpu_threads):
        return _finetune_loso(cfg, scheme=scheme, on_epoch=on_epoch, log=log)


def _finetune_loso(
    cfg: FinetuneConfig,
    *,
    scheme: LabelMap | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
    log: Logger = print_log,
) -> LosoResult:
    """:func:`finetune_loso` without the thread-count context."""
    if not cfg.run.out:
        raise ConfigError("run.out: no run folder given; pass --out RUN")
    if not cfg.data.shards:
        raise ConfigError("data.shards: no build folder given; pass --shards MICRO_OUT")
    out = Path(cfg.run.out)
    if (out / "folds").is_dir() and any((out / "folds").iterdir()) and not cfg.run.resume:
        raise ConfigError(
            f"{out} already holds a fine-tuning run; pass --resume to continue it or choose another --out"
        )
    if scheme is None:
        from mepipe.labels import load_scheme

        scheme = load_scheme(cfg.data.labels)
    rt = make_runtime(cfg.run)
    if rt.is_main:
        write_resolved(cfg, out)
    clips, _, dropped = load_clips(cfg.data.shards, label_fn=_label_fn(scheme), datasets=cfg.data.datasets)
    size = frame_size(clips)
    classes = list(scheme.classes)
    plans: list[FoldPlan] = plan_folds(
        clips,
        cfg.protocol.name,
        cfg.protocol.val_subjects,
        cfg.run.seed,
        cfg.protocol.folds,
        cfg.protocol.per_dataset,
    )
    init_state = None
    if cfg.init:
        init_state, init_cfg = load_init_state(cfg.init)
        diffs = {
            k: (init_cfg.get("model", {}).get(k), v)
            for k, v in config_to_dict(cfg).get("model", {}).items()
            if k in ("input_size", "width", "action_input", "pos_layers", "pos_heads", "pos_input")
            and init_cfg.get("model", {}).get(k) not in (None, v)
        }
        if diffs:
            raise ConfigError(
                f"--init {cfg.init}: model settings differ from pre-training (pretrain, here): {diffs}; "
                "set them equal with --set model.KEY=VALUE"
            )
    if rt.is_main:
        log(
            f"finetune: {len(clips)} clips, {len(classes)} classes ({scheme.name}), dropped {dropped}, "
            f"{len(plans)} {cfg.protocol.name} folds, init {'MA2MI ' + cfg.init if cfg.init else 'scratch'}, "
            f"device {rt.device}"
        )
    pooled: list[dict[str, Any]] = []
    per_fold: list[dict[str, Any]] = []
    heat_samples: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    for plan in plans:
        fdir = _fold_dir(out, plan.name)
        done = fdir / "predictions.csv"
        if cfg.run.resume and done.is_file():
            rows = _read_predictions(done)
            chosen = None
        else:
            t0 = time.perf_counter()
            fitted = fit(
                cfg,
                plan.train,
                plan.val,
                num_classes=len(classes),
                size=size,
                rt=rt,
                fold=plan.name,
                init_state=init_state,
                ckpt_path=fdir / "last.pt",
                on_epoch=on_epoch,
                log=log,
            )
            want = max(cfg.run.pictures - len(heat_samples), 0)
            preds = evaluate_held_out(
                fitted.model, plan.test, size=size, cfg=cfg, rt=rt, classes=classes, heat=want
            )
            rows, chosen = preds.rows, fitted.chosen_epoch
            heat_samples.extend(preds.heat_samples)
            if rt.is_main:
                _write_csv(done, rows)
                acc = float(np.mean([r["label"] == r["pred"] for r in rows])) if rows else float("nan")
                log(
                    f"fold {plan.name}: {len(plan.train)} train / {len(plan.val)} val / {len(rows)} test clips, "
                    f"epoch {chosen}, fold acc {acc:.3f}, {time.perf_counter() - t0:.1f} s"
                )
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
        "scheme": scheme.name,
        "n_folds": len(plans),
        "per_fold": per_fold,
        "dropped": dropped,
        "init": cfg.init,
        "seconds": round(time.perf_counter() - t_start, 2),
    }
    if rt.is_main:
        metrics = write_report(out, pooled, classes, extra, heat_samples if cfg.run.pictures else None)
        log(
            f"{cfg.protocol.name} pooled over {len(plans)} folds ({len(pooled)} clips): acc {metrics['acc']:.4f} "
            f"UF1 {metrics['uf1']:.4f} UAR {metrics['uar']:.4f} -> {out / 'metrics.json'}"
        )
    else:
        metrics = classification_metrics(
            [r["label"] for r in pooled], [r["pred"] for r in pooled], classes, [r["dataset"] for r in pooled]
        )
        metrics.update(extra)
    return LosoResult(out, metrics, pooled, classes)
