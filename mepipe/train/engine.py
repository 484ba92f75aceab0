"""The one run skeleton shared by MA2MI pre-training and fine-tuning.

:func:`run_epochs` does, in this order: seed -> build the model -> AdamW + lr schedule -> resume
from a checkpoint -> wrap for DDP -> loader -> for each epoch: train steps, sync BatchNorm buffers
across ranks, scheduler step, sum the epoch's numbers over ranks, BatchNorm recalibration, the
objective's end-of-epoch work (validation, pictures), history record, checkpoint. What differs between
pre-training and classification is an :class:`Objective` (the loss of one batch and what an epoch
record holds); everything else lives here once.

On the CPU a run is bit-reproducible for a fixed seed and thread count, and a resumed run reproduces
the uninterrupted one exactly (checkpoints hold every RNG state).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mepipe.logs import get_logger
from mepipe.train.checkpoint import load_checkpoint, restore_training, save_checkpoint
from mepipe.train.config import AugmentConfig, OptimConfig
from mepipe.train.data import PairDataset, PairIndex, PairSampler, make_loader
from mepipe.train.ddp import all_reduce_sum, sync_buffers, wrap_model
from mepipe.train.flowdata import prepare_batch, prepared_inputs
from mepipe.train.runtime import Runtime, derive_seed, seed_everything

log = get_logger(__name__)


@dataclass(frozen=True)
class LoopSettings:
    """The values the epoch loop uses.

    Attributes:
        epochs: epoch budget (the loop runs epochs ``start .. epochs - 1``, 0-based).
        batch_size, num_workers: loader settings.
        input_size: model input side N (frames are resized to it).
        optim: optimiser settings (lr, weight decay, gamma, gradient clipping, BN recalibration).
        augment: augmentation settings (``None``: no augmentation).
        checkpoint_every: save every N epochs (and after the last).
        log_every: log the loss every N steps (0: per epoch only).
        resume: continue from the checkpoint when it exists.
    """

    epochs: int
    batch_size: int
    num_workers: int
    input_size: int
    optim: OptimConfig
    augment: AugmentConfig | None
    checkpoint_every: int = 1
    log_every: int = 0
    resume: bool = False


def loop_settings(cfg: Any) -> LoopSettings:
    """The :class:`LoopSettings` of a :class:`~mepipe.train.config.PretrainConfig` or ``FinetuneConfig``."""
    return LoopSettings(
        epochs=cfg.optim.epochs,
        batch_size=cfg.data.batch_size,
        num_workers=cfg.data.num_workers,
        input_size=cfg.model.input_size,
        optim=cfg.optim,
        augment=cfg.augment,
        checkpoint_every=cfg.run.checkpoint_every,
        log_every=cfg.run.log_every,
        resume=cfg.run.resume,
    )


class Objective:
    """What one kind of training adds to the shared loop. Subclasses override :meth:`step` and
    :meth:`record`; the other hooks default to doing nothing.

    Attributes:
        kind: checkpoint kind (``pretrain``, ``finetune``).
        evaluates_every_epoch: BatchNorm is recalibrated before every :meth:`end_epoch` (validation),
            not only after the last epoch.
        log_level: level of the per-epoch log line.
    """

    kind = ""
    evaluates_every_epoch = False
    log_level = logging.INFO

    def step(
        self, net: nn.Module, x: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, list[float]]:
        """Loss of one prepared batch ``x`` (``(B, 2, 3, N, N)`` pairs, or flow images for flow models;
        :func:`~mepipe.train.flowdata.prepare_batch`) and its per-batch sums (each value
        already multiplied by the batch size; the last one is the batch size)."""
        raise NotImplementedError

    def after_step(self, model: nn.Module) -> None:
        """After each optimiser step (e.g. the EMA target update)."""

    def frozen(self, model: nn.Module, epoch: int) -> list[nn.Parameter] | None:
        """Parameters kept fixed during ``epoch`` (0-based)."""
        return None

    def transferred(self, model: nn.Module) -> list[nn.Parameter]:
        """Parameters loaded from a pre-trained checkpoint (they get ``lr * optim.init_lr_scale``)."""
        return []

    def record(self, sums: list[float], seconds: float) -> dict[str, Any]:
        """The epoch record's values from the sums of :meth:`step` over the epoch (and all ranks)."""
        raise NotImplementedError

    def head(self) -> dict[str, Any]:
        """Fields put first in every record (e.g. the fold name)."""
        return {}

    def recalibration_pairs(self) -> tuple[Sequence[PairIndex], int]:
        """The unaugmented pairs BatchNorm statistics are recomputed on, and their batch size."""
        raise NotImplementedError

    def end_epoch(self, model: nn.Module, epoch: int, rec: dict[str, Any], last: bool) -> None:
        """After the epoch (and BN recalibration); may add fields to ``rec`` (validation scores)."""

    def extra_state(self) -> dict[str, Any]:
        """Extra checkpoint content (e.g. the best validation epoch's weights)."""
        return {}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        """Inverse of :meth:`extra_state` on resume."""

    def describe(self, rec: dict[str, Any], epochs: int) -> str:
        """The per-epoch log line."""
        return f"epoch {rec['epoch']}/{epochs}"


def lr_factor(epoch: int, cfg: OptimConfig) -> float:
    """Learning-rate multiplier during 0-based ``epoch``: linear warm-up times the schedule.

    ``exp``: ``gamma ** epoch``. ``cosine``: ``(1 + cos(pi * epoch / epochs)) / 2``, from 1 at the
    first epoch down to ``(1 + cos(pi * (epochs - 1) / epochs)) / 2`` (near 0) at the last one.
    Warm-up: epochs ``e < warmup_epochs`` are further multiplied by ``(e + 1) / (warmup_epochs + 1)``.
    """
    warm = (epoch + 1) / (cfg.warmup_epochs + 1) if epoch < cfg.warmup_epochs else 1.0
    if cfg.schedule == "cosine":
        return warm * 0.5 * (1.0 + math.cos(math.pi * min(epoch, cfg.epochs) / max(cfg.epochs, 1)))
    return warm * cfg.gamma**epoch


def make_optimizer(
    params: Iterator[nn.Parameter] | list[nn.Parameter],
    cfg: OptimConfig,
    scaled: Iterable[nn.Parameter] = (),
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW + the per-epoch schedule of :func:`lr_factor` (default ``lr * gamma ** epoch``).

    Weight decay applies to weight matrices and conv kernels (``ndim >= 2``); biases and norm scales
    are not decayed. Frozen parameters (``requires_grad=False``, e.g. the EMA target) are left out.
    Parameters in ``scaled`` (the transferred ones when fine-tuning from MA2MI) run at
    ``lr * cfg.init_lr_scale``; the schedule multiplies both rates alike.
    """
    trainable = [p for p in params if p.requires_grad]
    slow = {id(p) for p in scaled}
    groups = []
    for is_slow in (False, True):
        mine = [p for p in trainable if (id(p) in slow) == is_slow]
        lr = cfg.lr * (cfg.init_lr_scale if is_slow else 1.0)
        groups += [
            {"params": [p for p in mine if p.ndim >= 2], "weight_decay": cfg.weight_decay, "lr": lr},
            {"params": [p for p in mine if p.ndim < 2], "weight_decay": 0.0, "lr": lr},
        ]
    opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: lr_factor(epoch, cfg))


def optimizer_step(
    loss: torch.Tensor,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    grad_clip: float,
    frozen: list[nn.Parameter] | None = None,
) -> None:
    """Backward, optional gradient clipping, skip ``frozen`` parameters (their grad is dropped), step."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if frozen:
        for p in frozen:
            p.grad = None
    if grad_clip > 0:
        nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], grad_clip)
    opt.step()


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor], rt: Runtime) -> int:
    """Re-estimate every BatchNorm's running statistics as the exact average over ``batches``.

    With few optimiser steps (tiny MER training sets) the running averages lag far behind the
    weights, and eval-mode predictions collapse; this "precise BN" pass fixes that. Only BatchNorm
    layers run in training mode (dropout stays off, so no random numbers are consumed).

    Args:
        model: the bare model (not DDP-wrapped).
        batches: prepared inputs, e.g. ``(B, 2, 3, N, N)`` pairs without augmentation.
        rt: runtime (autocast).

    Returns:
        Number of BatchNorm layers recalibrated (0: nothing to do, no forward pass run).
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    was_training = model.training
    momenta = [m.momentum for m in bns]
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
        m.train()
    for x in batches:
        with rt.autocast():
            model(x)
    for m, mom in zip(bns, momenta, strict=True):
        m.momentum = mom
    model.train(was_training)
    return len(bns)


def train_steps(
    net: nn.Module,
    loader: Iterable[dict[str, torch.Tensor]],
    objective: Objective,
    *,
    rt: Runtime,
    opt: torch.optim.Optimizer,
    aug_gen: torch.Generator,
    loop: LoopSettings,
    epoch: int,
    frozen: list[nn.Parameter] | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """One pass over ``loader``: prepare + augment, the objective's loss, optimiser step; returns the
    sums of :meth:`Objective.step` over the batches (this rank only).

    Args:
        on_step: called with ``(step, loss)`` after every step (progress bars).
    """
    model = net.module if isinstance(net, nn.parallel.DistributedDataParallel) else net
    net.train()
    sums: list[float] = []
    for step, batch in enumerate(loader):
        x = prepare_batch(batch, loop.input_size, device=rt.device, augment=loop.augment, gen=aug_gen)
        loss, values = objective.step(net, x, batch)
        optimizer_step(loss, net, opt, loop.optim.grad_clip, frozen)
        objective.after_step(model)
        sums = values if not sums else [a + b for a, b in zip(sums, values, strict=True)]
        if on_step is not None or (loop.log_every and (step + 1) % loop.log_every == 0):
            value = float(loss.detach())
            if loop.log_every and (step + 1) % loop.log_every == 0 and rt.is_main:
                log.info("  epoch %d step %d: loss %.4f", epoch + 1, step + 1, value)
            if on_step is not None:
                on_step(step, value)
    return sums


@dataclass
class LoopResult:
    """A finished loop: the bare model (on the device), every epoch record, and the first epoch run."""

    model: nn.Module
    history: list[dict[str, Any]]
    start_epoch: int


def run_epochs(
    objective: Objective,
    build: Callable[[], nn.Module],
    *,
    rt: Runtime,
    loop: LoopSettings,
    seed: int,
    sampler: PairSampler,
    dataset: PairDataset,
    checkpoint: Path | None = None,
    config: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
    on_record: Callable[[list[dict[str, Any]]], None] | None = None,
    on_step: Callable[[int, float], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> LoopResult:
    """Train ``build()`` for ``loop.epochs`` epochs (see the module docstring for the order of work).

    Args:
        objective: the loss and record of this kind of training.
        build: makes the bare model (called right after seeding, so initial weights follow ``seed``).
        rt: runtime (device, precision, DDP).
        loop: the loop's values.
        seed: seeds the model initialisation and the augmentation stream (the sampler has its own).
        sampler, dataset: where the pairs come from.
        checkpoint: file saved every ``loop.checkpoint_every`` epochs and resumed from (``None``: none).
        config, provenance: stored in the checkpoint.
        on_record: rank 0, after each epoch, with the whole history (history files, TensorBoard).
        on_step: rank 0, ``(step, loss)`` after each step.
        on_epoch: every rank, with the epoch's record.
    """
    seed_everything(seed)
    model = rt.prepare_model(build())
    opt, sched = make_optimizer(model.parameters(), loop.optim, scaled=objective.transferred(model))
    aug_gen = torch.Generator().manual_seed(derive_seed(seed, "augment"))
    history: list[dict[str, Any]] = []
    start = 0
    if checkpoint is not None and loop.resume and checkpoint.is_file():
        ckpt = load_checkpoint(checkpoint, objective.kind)
        start = restore_training(ckpt, model=model, optimizer=opt, scheduler=sched, aug_gen=aug_gen)
        history = list(ckpt["history"])
        objective.load_extra_state(ckpt.get("extra") or {})
        # the schedule follows this run's settings (a resumed run may extend `epochs`, which moves
        # the cosine's end): the learning rate of the next epoch is recomputed, not the stored one
        for group, base in zip(opt.param_groups, sched.base_lrs, strict=True):
            group["lr"] = base * lr_factor(start, loop.optim)
        if rt.is_main:
            log.info("resuming %s after epoch %d", checkpoint, start)
    net = wrap_model(model, rt.dist, rt.device)
    loader = make_loader(
        dataset,
        sampler,
        batch_size=loop.batch_size,
        num_workers=loop.num_workers,
        pin_memory=rt.device.type == "cuda",
    )
    for epoch in range(start, loop.epochs):
        last = epoch + 1 == loop.epochs
        sampler.set_epoch(epoch)
        t0 = time.perf_counter()
        lr = opt.param_groups[0]["lr"]
        sums = train_steps(
            net,
            loader,
            objective,
            rt=rt,
            opt=opt,
            aug_gen=aug_gen,
            loop=loop,
            epoch=epoch,
            frozen=objective.frozen(model, epoch),
            on_step=on_step if rt.is_main else None,
        )
        sync_buffers(model)
        sched.step()
        sums = all_reduce_sum(sums, rt.device)
        rec: dict[str, Any] = {**objective.head(), "epoch": epoch + 1, "lr": lr}
        rec.update(objective.record(sums, time.perf_counter() - t0))
        if loop.optim.bn_recalibrate and (last or objective.evaluates_every_epoch):
            pairs, batch_size = objective.recalibration_pairs()
            batches = prepared_inputs(
                dataset, pairs, batch_size=batch_size, input_size=loop.input_size, device=rt.device
            )
            recalibrate_bn(model, batches, rt)
        objective.end_epoch(model, epoch, rec, last)
        history.append(rec)
        if rt.is_main:
            if checkpoint is not None and (last or (epoch + 1) % loop.checkpoint_every == 0):
                save_checkpoint(
                    checkpoint,
                    kind=objective.kind,
                    epoch=epoch + 1,
                    model=model,
                    optimizer=opt,
                    scheduler=sched,
                    config=config or {},
                    aug_gen=aug_gen,
                    history=history,
                    extra=objective.extra_state(),
                    provenance=provenance,
                )
            if on_record is not None:
                on_record(history)
            log.log(objective.log_level, objective.describe(rec, loop.epochs))
        if on_epoch is not None:
            on_epoch(rec)
    return LoopResult(model, history, start)
