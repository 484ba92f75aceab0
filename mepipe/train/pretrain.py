"""MA2MI pre-training on macro-expression shards (``mepipe train pretrain``).

Each epoch draws fresh pairs ``(I_t, I_{t+δ})`` with ``δ ~ U{a..b}`` from every clip (never crossing
a clip's bounds), augments both frames identically, and minimises the MA2MI loss. ``RUN/`` receives::

    train.resolved.yaml   the resolved config
    last.pt               checkpoint after the latest epoch (model incl. EMA target, optimiser,
                          scheduler, RNG states, epoch, history, config)
    history.jsonl         one JSON record per epoch
    pictures/             reconstructions (I_t, I_{t+δ}, reconstruction) and action heat maps
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mepipe.errors import ConfigError
from mepipe.train.augment import prepare_pairs
from mepipe.train.checkpoint import load_checkpoint, restore_training, save_checkpoint
from mepipe.train.config import PretrainConfig, config_to_dict, write_resolved
from mepipe.train.data import PairDataset, PairSampler, make_loader, prepared_batches, table_pairs
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
)
from mepipe.train.frames import ClipInfo, frame_size, load_clips
from mepipe.train.models import PRETRAINERS
from mepipe.train.models.ma2mi import MA2MI

CHECKPOINT_NAME = "last.pt"
RECALIBRATION_PAIRS = 256  # pairs used to re-estimate BatchNorm statistics after the last epoch


@dataclass
class PretrainResult:
    """What :func:`pretrain` produced.

    Attributes:
        out: the run folder.
        checkpoint: ``out/last.pt`` (pass it to ``finetune --init``).
        history: one record per epoch (``epoch`` 1-based, ``loss``, ``latent_loss``, ``pixel_loss``,
            ``target_std`` (collapse check), ``lr``, ``pairs``, ``seconds``, ``pairs_per_s``).
        model: the trained :class:`MA2MI` (unwrapped, on the training device).
        pictures: PNG files written.
    """

    out: Path
    checkpoint: Path
    history: list[dict[str, Any]]
    model: MA2MI
    pictures: list[Path] = field(default_factory=list)

    @property
    def final_loss(self) -> float:
        return float(self.history[-1]["loss"]) if self.history else float("nan")


def _check_run_dir(cfg: PretrainConfig) -> Path:
    if not cfg.run.out:
        raise ConfigError("run.out: no run folder given; pass --out RUN")
    if not cfg.data.shards:
        raise ConfigError("data.shards: no build folder given; pass --shards MACRO_OUT")
    out = Path(cfg.run.out)
    if (out / CHECKPOINT_NAME).is_file() and not cfg.run.resume:
        raise ConfigError(
            f"{out} already holds a run ({CHECKPOINT_NAME}); pass --resume to continue it or "
            "choose another --out"
        )
    return out


def load_pair_table(cfg: PretrainConfig, clips: list[ClipInfo]) -> list[tuple[int, int, int]]:
    """The build's ``pairs.csv`` as ``(clip, t, t2)`` indices (``data.pairs: table``)."""
    from mepipe.pairs import read_pair_table

    df = read_pair_table(cfg.data.shards)
    try:
        table = table_pairs(clips, zip(df["key"], df["t_idx"], df["t2_idx"], strict=True))
    except ValueError as exc:
        raise ConfigError(f"{cfg.data.shards}: {exc}") from None
    if not table:
        raise ConfigError(
            f"{cfg.data.shards}/pairs.csv holds no pair of the selected clips; rewrite it with "
            "`mepipe pairs` or use data.pairs=sample"
        )
    return table


def train_epoch(
    net: torch.nn.Module,
    loader: Any,
    *,
    cfg: PretrainConfig,
    rt: Runtime,
    opt: torch.optim.Optimizer,
    aug_gen: torch.Generator,
    log: Logger,
    epoch: int,
) -> dict[str, float]:
    """One pre-training epoch; returns summed (over ranks) loss terms and the pair count."""
    model = unwrap(net)
    assert isinstance(model, MA2MI)
    net.train()
    sums = [0.0, 0.0, 0.0, 0.0, 0.0]  # loss, latent, pixel, target std (each x batch size), pairs
    for step, batch in enumerate(loader):
        frames = batch["frames"].to(rt.device, non_blocking=True)
        x = prepare_pairs(frames, cfg.model.input_size, augment=cfg.augment, gen=aug_gen)
        with rt.autocast():
            out = net(x)
        optimizer_step(out.loss, net, opt, cfg.optim.grad_clip)
        model.update_target()
        b = frames.shape[0]
        sums[0] += float(out.loss.detach()) * b
        sums[1] += float(out.latent_loss) * b
        sums[2] += float(out.pixel_loss) * b
        sums[3] += float(out.target_std) * b
        sums[4] += b
        if cfg.run.log_every and (step + 1) % cfg.run.log_every == 0 and rt.is_main:
            log(f"  epoch {epoch + 1} step {step + 1}: loss {float(out.loss):.4f}")
    loss, lat, pix, tstd, n = all_reduce_sum(sums, rt.device)
    n = max(n, 1.0)
    return {
        "loss": loss / n,
        "latent_loss": lat / n,
        "pixel_loss": pix / n,
        "target_std": tstd / n,
        "pairs": int(n),
    }


def _recalibrate(
    model: MA2MI, dataset: PairDataset, clips: list[ClipInfo], cfg: PretrainConfig, rt: Runtime
) -> None:
    """Exact BatchNorm statistics over up to ``RECALIBRATION_PAIRS`` fixed, unaugmented pairs."""
    per_clip = -(-RECALIBRATION_PAIRS // len(clips))
    pairs = PairSampler(
        clips, mode="delta", delta=cfg.data.delta, pairs_per_clip=per_clip, shuffle=False, seed=cfg.run.seed
    ).pairs()[:RECALIBRATION_PAIRS]
    batches = prepared_batches(
        dataset,
        pairs,
        batch_size=max(cfg.data.batch_size, 64),
        input_size=cfg.model.input_size,
        device=rt.device,
    )
    recalibrate_bn(model, batches, rt)


@torch.no_grad()
def draw_pretrain_pictures(
    model: MA2MI,
    dataset: PairDataset,
    clips: list[ClipInfo],
    cfg: PretrainConfig,
    rt: Runtime,
    out_dir: Path,
    tag: str,
) -> list[Path]:
    """Reconstructions and action heat maps for the first ``run.pictures`` clips (pair ``(t, t + b)``
    from the clip's middle, no augmentation)."""
    from mepipe.train.pictures import heatmap_grid, reconstruction_grid, to_uint8_images

    n = min(cfg.run.pictures, len(clips))
    if n == 0:
        return []
    b = cfg.data.delta[1]
    idx = []
    for ci in range(n):
        c = clips[ci]
        d = min(b, c.n_frames - 1)
        t = max(0, (c.n_frames - 1 - d) // 2)
        idx.append((ci, t, t + d))
    batch = dataset.__getitems__(idx)
    x = prepare_pairs(batch["frames"].to(rt.device), cfg.model.input_size)
    was_training = model.training
    model.eval()
    with rt.autocast():
        out = model(x)
    model.train(was_training)
    i_t, i_td = to_uint8_images(x[:, 0]), to_uint8_images(x[:, 1])
    written = []
    titles = [f"{clips[ci].key.split('/')[-1]} t={t} d={t2 - t}" for ci, t, t2 in idx]
    if out.recon is not None:
        p = reconstruction_grid(
            i_t, i_td, to_uint8_images(out.recon), out_dir / f"reconstructions-{tag}.png", titles
        )
        if p:
            written.append(p)
    if out.attention:
        heat = out.attention[-1][:, 0].float()
        lo, hi = heat.flatten(1).amin(1).view(-1, 1, 1), heat.flatten(1).amax(1).view(-1, 1, 1)
        heat = ((heat - lo) / (hi - lo).clamp_min(1e-8)).cpu().numpy()
        samples = [{"onset": i_t[j], "apex": i_td[j], "heat": heat[j], "title": titles[j]} for j in range(n)]
        p = heatmap_grid(samples, out_dir / f"heatmaps-{tag}.png")
        if p:
            written.append(p)
    return written


def pretrain(
    cfg: PretrainConfig, *, log: Logger = print_log, on_epoch: Callable[[dict[str, Any]], None] | None = None
) -> PretrainResult:
    """Run MA2MI pre-training as configured (see :class:`~mepipe.train.config.PretrainConfig`).

    Under ``torchrun`` every rank calls this; only rank 0 writes files.

    Args:
        cfg: the resolved config (``data.shards`` and ``run.out`` required).
        log: receives one line per epoch.
        on_epoch: called with each epoch's history record.

    Returns:
        :class:`PretrainResult`.
    """
    with cpu_threads(cfg.run.cpu_threads):
        return _pretrain(cfg, log=log, on_epoch=on_epoch)


def _pretrain(
    cfg: PretrainConfig, *, log: Logger = print_log, on_epoch: Callable[[dict[str, Any]], None] | None = None
) -> PretrainResult:
    """:func:`pretrain` without the thread-count context."""
    out = _check_run_dir(cfg)
    rt = make_runtime(cfg.run)
    if rt.is_main:
        write_resolved(cfg, out)
    clips, _, dropped = load_clips(cfg.data.shards, datasets=cfg.data.datasets)
    size = frame_size(clips)
    seed_everything(cfg.run.seed)
    model = rt.prepare_model(PRETRAINERS.get("ma2mi")(cfg.model, cfg.ma2mi))
    assert isinstance(model, MA2MI)
    opt, sched = make_optimizer(model.parameters(), cfg.optim)
    aug_gen = torch.Generator().manual_seed(derive_seed(cfg.run.seed, "augment"))
    history: list[dict[str, Any]] = []
    start = 0
    ckpt_path = out / CHECKPOINT_NAME
    if cfg.run.resume and ckpt_path.is_file():
        ckpt = load_checkpoint(ckpt_path, "pretrain")
        start = restore_training(ckpt, model=model, optimizer=opt, scheduler=sched, aug_gen=aug_gen)
        history = list(ckpt["history"])
        if rt.is_main:
            log(f"resuming {ckpt_path} after epoch {start}")
    net = wrap_model(model, rt.dist, rt.device)
    table = load_pair_table(cfg, clips) if cfg.data.pairs == "table" else []
    sampler = PairSampler(
        clips,
        mode=cfg.data.pairs.replace("sample", "delta"),
        delta=cfg.data.delta,
        pairs_per_clip=cfg.data.pairs_per_clip,
        shuffle=True,
        seed=cfg.run.seed,
        rank=rt.dist.rank,
        world_size=rt.dist.world_size,
        table=table,
    )
    dataset = PairDataset(clips, size)
    loader = make_loader(
        dataset,
        sampler,
        batch_size=cfg.data.batch_size,
        num_workers=cfg.data.num_workers,
        pin_memory=rt.device.type == "cuda",
    )
    if rt.is_main:
        source = (
            f"{len(table)} pairs from pairs.csv"
            if table
            else f"delta {cfg.data.delta[0]}:{cfg.data.delta[1]}"
        )
        log(
            f"pretrain: {len(clips)} clips ({dropped['failed']} failed rows skipped), crops {size}px -> "
            f"{cfg.model.input_size}px, {source}, {len(sampler) * rt.dist.world_size} pairs/epoch, device {rt.device}"
        )
    resolved = config_to_dict(cfg)
    for epoch in range(start, cfg.optim.epochs):
        sampler.set_epoch(epoch)
        t0 = time.perf_counter()
        lr = opt.param_groups[0]["lr"]
        rec: dict[str, Any] = {"epoch": epoch + 1, "lr": lr}
        rec.update(train_epoch(net, loader, cfg=cfg, rt=rt, opt=opt, aug_gen=aug_gen, log=log, epoch=epoch))
        sync_buffers(model)
        sched.step()
        rec["seconds"] = round(time.perf_counter() - t0, 3)
        rec["pairs_per_s"] = round(rec["pairs"] / max(rec["seconds"], 1e-9), 1)
        if cfg.optim.bn_recalibrate and epoch + 1 == cfg.optim.epochs:
            _recalibrate(model, dataset, clips, cfg, rt)
        history.append(rec)
        if rt.is_main:
            log(
                f"pretrain epoch {epoch + 1}/{cfg.optim.epochs}: loss {rec['loss']:.4f} (latent "
                f"{rec['latent_loss']:.4f}, pixel {rec['pixel_loss']:.4f}, target std {rec['target_std']:.3f}) "
                f"lr {lr:.2e} {rec['pairs']} pairs {rec['seconds']:.1f} s ({rec['pairs_per_s']:.0f} pairs/s)"
            )
            append_jsonl(out / "history.jsonl", rec)
            last = epoch + 1 == cfg.optim.epochs
            if last or (epoch + 1) % max(cfg.run.checkpoint_every, 1) == 0:
                save_checkpoint(
                    ckpt_path,
                    kind="pretrain",
                    epoch=epoch + 1,
                    model=model,
                    optimizer=opt,
                    scheduler=sched,
                    config=resolved,
                    aug_gen=aug_gen,
                    history=history,
                )
        if on_epoch is not None:
            on_epoch(rec)
    barrier()
    pictures: list[Path] = []
    if rt.is_main and cfg.run.pictures > 0:
        pictures = draw_pretrain_pictures(
            model, dataset, clips, cfg, rt, out / "pictures", f"epoch{cfg.optim.epochs:03d}"
        )
    dataset.handles.close()
    return PretrainResult(out, ckpt_path, history, model, pictures)
