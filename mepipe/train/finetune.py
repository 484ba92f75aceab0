"""Training one classifier on one fold's training clips (:func:`fit`), on the shared epoch loop.

The fold's held-out clips never reach this module: :func:`fit` receives the training clips and,
optionally, validation clips carved from training subjects. With validation the epoch with the best
validation UF1 is kept (ties: the earlier one); otherwise the model after the fixed epoch budget.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mepipe.train.config import ModelConfig
from mepipe.train.data import PairIndex, PairSampler, keyframe_pairs
from mepipe.train.engine import LoopSettings, Objective, run_epochs
from mepipe.train.evaluate import predict
from mepipe.train.flowdata import FlowDataset, make_dataset, training_input
from mepipe.train.frames import ClipInfo
from mepipe.train.metrics import classification_metrics
from mepipe.train.models import build_model
from mepipe.train.runtime import Runtime
from mepipe.train.transfer import apply_init


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

    model: nn.Module
    history: list[dict[str, Any]]
    chosen_epoch: int


class Classification(Objective):
    """Cross-entropy on onset/apex pairs; optional validation every epoch with best-epoch tracking.

    Records: ``fold, epoch, lr, train_loss, train_acc, seconds`` (+ ``val_uf1, val_acc``).
    """

    kind = "finetune"
    log_level = logging.DEBUG

    def __init__(
        self,
        *,
        fold: str,
        train: Sequence[ClipInfo],
        val: Sequence[ClipInfo],
        size: int,
        loop: LoopSettings,
        rt: Runtime,
        num_classes: int,
        init_keys: Iterable[str],
        on_epoch: Callable[[EpochReport], None] | None,
    ) -> None:
        self.fold, self.train, self.val, self.size, self.loop, self.rt = fold, train, val, size, loop, rt
        self.num_classes, self.on_epoch = num_classes, on_epoch
        self.init_keys = frozenset(init_keys)
        self.pretrained = bool(self.init_keys)
        self.evaluates_every_epoch = bool(val)
        self.best: dict[str, Any] = {"score": -1.0, "epoch": 0, "state": None}
        self.train_keys = tuple(c.key for c in train)
        self.val_keys = tuple(c.key for c in val)

    def step(
        self, net: nn.Module, x: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, list[float]]:
        y = batch["label"].to(self.rt.device)
        with self.rt.autocast():
            logits = net(x).float()
        loss = F.cross_entropy(logits, y)
        correct = float((logits.detach().argmax(1) == y).sum())
        return loss, [float(loss.detach()) * len(y), correct, float(len(y))]

    def frozen(self, model: nn.Module, epoch: int) -> list[nn.Parameter] | None:
        if self.pretrained and epoch < self.loop.optim.freeze_epochs:
            if self.loop.optim.freeze_parts == "transferred":
                return self.transferred(model)
            return model.early_parameters()  # type: ignore[operator]
        return None

    def transferred(self, model: nn.Module) -> list[nn.Parameter]:
        return [p for n, p in model.named_parameters() if n in self.init_keys]

    def head(self) -> dict[str, Any]:
        return {"fold": self.fold}

    def record(self, sums: list[float], seconds: float) -> dict[str, Any]:
        loss, correct, n = sums
        n = max(n, 1.0)
        return {"train_loss": loss / n, "train_acc": correct / n, "seconds": round(seconds, 3)}

    def recalibration_pairs(self) -> tuple[Sequence[PairIndex], int]:
        return keyframe_pairs(self.train, 0, None), self.loop.batch_size

    def end_epoch(self, model: nn.Module, epoch: int, rec: dict[str, Any], last: bool) -> None:
        val_metrics = None
        if self.val:
            probs = predict(
                model,
                self.val,
                size=self.size,
                input_size=self.loop.input_size,
                batch_size=self.loop.batch_size,
                rt=self.rt,
            )
            val_metrics = classification_metrics(
                [c.label for c in self.val],
                probs.argmax(1).tolist(),
                [str(i) for i in range(self.num_classes)],
            )
            rec["val_uf1"], rec["val_acc"] = val_metrics["uf1"], val_metrics["acc"]
            if val_metrics["uf1"] > self.best["score"]:
                self.best = {
                    "score": val_metrics["uf1"],
                    "epoch": epoch + 1,
                    "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                }
        if self.on_epoch is not None:
            self.on_epoch(
                EpochReport(
                    self.fold,
                    epoch + 1,
                    rec["train_loss"],
                    rec["lr"],
                    self.train_keys,
                    self.val_keys,
                    val_metrics,
                )
            )

    def extra_state(self) -> dict[str, Any]:
        if not self.val:
            return {}
        return {
            "best_state": self.best["state"],
            "best_score": self.best["score"],
            "best_epoch": self.best["epoch"],
        }

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        if extra.get("best_state") is not None:
            self.best = {
                "score": extra["best_score"],
                "epoch": extra["best_epoch"],
                "state": extra["best_state"],
            }

    def describe(self, rec: dict[str, Any], epochs: int) -> str:
        text = f"  {self.fold} epoch {rec['epoch']}/{epochs}: loss {rec['train_loss']:.4f} acc {rec['train_acc']:.3f}"
        return text + (f" val UF1 {rec['val_uf1']:.3f}" if self.val else "")


def fit(
    train: Sequence[ClipInfo],
    val: Sequence[ClipInfo],
    *,
    model: ModelConfig,
    loop: LoopSettings,
    jitter: int,
    seed: int,
    num_classes: int,
    size: int,
    rt: Runtime,
    fold: str = "",
    init_state: dict[str, torch.Tensor] | None = None,
    checkpoint: Path | None = None,
    config: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
    on_record: Callable[[list[dict[str, Any]]], None] | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
) -> FitResult:
    """Train one fold's model on ``train`` (no access to the fold's test clips).

    Args:
        train, val: clips of training subjects (``val``: carved-out training subjects, may be empty).
        model: the model section (``model.name`` picks the registered classifier).
        loop: epoch-loop values (see :func:`mepipe.train.engine.loop_settings`).
        jitter: onset/apex indices moved by ``U{-jitter..jitter}`` frames every epoch.
        seed: the run's seed; the fold's seed is derived from it and ``fold``.
        num_classes, size: K and the stored crop side S.
        rt: runtime (device, precision, DDP).
        fold: fold name (seeds and messages).
        init_state: pre-trained ``act.*``/``pos.*`` tensors (see :func:`~mepipe.train.transfer.load_init_state`).
        checkpoint: where to save/resume this fold's checkpoint (``None``: no checkpoints).
        config, provenance: stored in the checkpoint.
        on_record: rank 0, with the fold's history after each epoch (history files).
        on_epoch: callback receiving an :class:`EpochReport` after every epoch.
    """
    from mepipe.train.runtime import derive_seed

    fold_seed = derive_seed(seed, fold)

    spec = training_input(train, model.name)  # None: a model on frame pairs
    dataset = make_dataset(train, size, spec)
    if isinstance(dataset, FlowDataset):
        dataset.warm()  # the onset/apex inputs, computed once here (DataLoader workers inherit them)

    def build() -> nn.Module:
        net = build_model(model, num_classes)
        if spec is not None:
            net.flow_input = spec  # what the model reads: recorded in model.pt, used by predict
        if init_state is not None:
            apply_init(net, init_state)
        return net

    objective = Classification(
        fold=fold,
        train=train,
        val=val,
        size=size,
        loop=loop,
        rt=rt,
        num_classes=num_classes,
        init_keys=init_state or (),
        on_epoch=on_epoch,
    )
    sampler = PairSampler(
        train,
        mode="keyframes",
        jitter=jitter,
        shuffle=True,
        seed=fold_seed,
        rank=rt.dist.rank,
        world_size=rt.dist.world_size,
    )
    result = run_epochs(
        objective,
        build,
        rt=rt,
        loop=loop,
        seed=fold_seed,
        sampler=sampler,
        dataset=dataset,
        checkpoint=checkpoint,
        config=config,
        provenance=provenance,
        on_record=on_record,
    )
    dataset.handles.close()
    net = result.model
    chosen = loop.epochs
    if val and objective.best["state"] is not None:
        net.load_state_dict(objective.best["state"])
        chosen = int(objective.best["epoch"])
    net.eval()
    return FitResult(net, result.history, chosen)
