"""MA2MI pre-training on macro-expression shards (``mepipe train pretrain``), on the shared epoch loop.

Each epoch draws fresh pairs ``(I_t, I_{t+δ})`` with ``δ ~ U{a..b}`` from every clip (never crossing
a clip's bounds), or reshuffles the build's pair table, augments both frames identically, and
minimises the MA2MI loss. ``RUN/`` receives::

    train.resolved.yaml   the resolved config
    train.log             the run's log (every epoch, DEBUG lines included)
    last.pt               checkpoint after the latest epoch (model incl. EMA target, optimiser,
                          scheduler, RNG states, epoch, history, config, provenance)
    history.jsonl/.csv    one record per epoch
    curves.png            loss terms, target spread and learning rate per epoch
    pictures/             reconstructions (I_t, I_{t+δ}, reconstruction) and action heat maps, every
                          ``run.pictures_every`` epochs and after the last one
    tensorboard/          with ``run.tensorboard: true``
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mepipe.errors import ConfigError
from mepipe.logs import Progress, get_logger
from mepipe.train.augment import prepare_pairs
from mepipe.train.checkpoint import checkpoint_epoch
from mepipe.train.config import PretrainConfig, config_to_dict
from mepipe.train.data import PairDataset, PairIndex, PairSampler, table_pairs
from mepipe.train.ddp import barrier
from mepipe.train.engine import LoopSettings, Objective, loop_settings, run_epochs
from mepipe.train.frames import ClipInfo, frame_size, load_clips
from mepipe.train.models import PRETRAINERS
from mepipe.train.outputs import RunFolder, check_run_dir, run_provenance
from mepipe.train.runtime import Runtime, cpu_threads, make_runtime

log = get_logger(__name__)
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
        model: the trained MA2MI network (unwrapped, on the training device).
        pictures: PNG files written.
    """

    out: Path
    checkpoint: Path
    history: list[dict[str, Any]]
    model: nn.Module
    pictures: list[Path] = field(default_factory=list)

    @property
    def final_loss(self) -> float:
        return float(self.history[-1]["loss"]) if self.history else float("nan")


def load_pair_table(build_dir: str, clips: list[ClipInfo]) -> list[PairIndex]:
    """The build's ``pairs.csv`` as ``(clip, t, t2)`` indices (``data.pairs: table``)."""
    from mepipe.pairs import read_pair_table

    df = read_pair_table(build_dir)
    try:
        table = table_pairs(clips, zip(df["key"], df["t_idx"], df["t2_idx"], strict=True))
    except ValueError as exc:
        raise ConfigError(f"{build_dir}: {exc}") from None
    if not table:
        raise ConfigError(
            f"{build_dir}/pairs.csv holds no pair of the selected clips; rewrite it with "
            "`mepipe pairs` or use data.pairs=sample"
        )
    return table


@torch.no_grad()
def draw_pretrain_pictures(
    model: nn.Module,
    dataset: PairDataset,
    clips: Sequence[ClipInfo],
    *,
    n: int,
    delta: int,
    input_size: int,
    rt: Runtime,
    out_dir: Path,
    tag: str,
) -> list[Path]:
    """Reconstructions and action heat maps for the first ``n`` clips, each on the pair
    ``(t, t + delta)`` from the clip's middle (no augmentation, eval mode; the model's training mode
    and every RNG are left as they were)."""
    from mepipe.train.pictures import heatmap_grid, reconstruction_grid, to_uint8_images

    n = min(n, len(clips))
    if n == 0:
        return []
    idx = []
    for ci in range(n):
        c = clips[ci]
        d = min(delta, c.n_frames - 1)
        t = max(0, (c.n_frames - 1 - d) // 2)
        idx.append((ci, t, t + d))
    batch = dataset.__getitems__(idx)
    x = prepare_pairs(batch["frames"].to(rt.device), input_size)
    was_training = model.training
    model.eval()
    with rt.autocast():
        out = model(x)
    model.train(was_training)
    i_t, i_td = to_uint8_images(x[:, 0]), to_uint8_images(x[:, 1])
    written = []
    titles = [f"{clips[ci].key}  t={t}, t+d={t2} (d={t2 - t})" for ci, t, t2 in idx]
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
        samples = [
            {
                "onset": i_t[j],
                "apex": i_td[j],
                "heat": heat[j],
                "title": titles[j],
                "subtitle": "attention of E_act",
            }
            for j in range(n)
        ]
        p = heatmap_grid(samples, out_dir / f"heatmaps-{tag}.png")
        if p:
            written.append(p)
    return written


class MA2MIObjective(Objective):
    """The MA2MI loss (latent + pixel terms) with the EMA target update after every step.

    Records: ``epoch, lr, loss, latent_loss, pixel_loss, target_std, pairs, seconds, pairs_per_s``.
    """

    kind = "pretrain"

    def __init__(
        self,
        *,
        clips: Sequence[ClipInfo],
        dataset: PairDataset,
        loop: LoopSettings,
        delta: tuple[int, int],
        seed: int,
        rt: Runtime,
        sampler: PairSampler | None = None,
        pictures: int = 0,
        pictures_every: int = 0,
        pictures_dir: Path | None = None,
        latent: bool = True,
    ) -> None:
        self.latent = latent  # the latent term is on (else its loss and the target spread are not shown)
        self.clips, self.dataset, self.loop, self.delta, self.seed, self.rt = (
            clips,
            dataset,
            loop,
            delta,
            seed,
            rt,
        )
        self.sampler = sampler  # the training sampler: its δ unit and the clips' timelines are reused
        self.pictures, self.pictures_every, self.pictures_dir = pictures, pictures_every, pictures_dir
        self.written: list[Path] = []

    def step(
        self, net: nn.Module, x: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, list[float]]:
        with self.rt.autocast():
            out = net(x)
        b = float(x.shape[0])
        values = [float(out.loss.detach()) * b, float(out.latent_loss) * b, float(out.pixel_loss) * b]
        return out.loss, [*values, float(out.target_std) * b, b]

    def after_step(self, model: nn.Module) -> None:
        model.update_target()  # type: ignore[operator]

    def record(self, sums: list[float], seconds: float) -> dict[str, Any]:
        loss, lat, pix, tstd, n = sums
        n = max(n, 1.0)
        rec = {"loss": loss / n, "latent_loss": lat / n, "pixel_loss": pix / n, "target_std": tstd / n}
        rec.update(pairs=int(n), seconds=round(seconds, 3))
        rec["pairs_per_s"] = round(rec["pairs"] / max(rec["seconds"], 1e-9), 1)
        return rec

    def recalibration_pairs(self) -> tuple[Sequence[PairIndex], int]:
        """Up to :data:`RECALIBRATION_PAIRS` fixed, unaugmented pairs drawn with ``delta``."""
        per_clip = -(-RECALIBRATION_PAIRS // len(self.clips))
        same = {"unit": self.sampler.unit, "timelines": self.sampler.timelines} if self.sampler else {}
        pairs = PairSampler(
            self.clips, mode="delta", delta=self.delta, pairs_per_clip=per_clip, shuffle=False, seed=self.seed,
            **same,
        ).pairs()[:RECALIBRATION_PAIRS]  # fmt: skip
        return pairs, max(self.loop.batch_size, 64)

    def picture_offset(self) -> int:
        """The pictures' offset in stored frames: the largest δ (in ms: converted with the first clip's
        median frame interval)."""
        if self.sampler is None or self.sampler.unit == "frames":
            return int(self.delta[1])
        ts = self.sampler.timelines[0].timestamps_ms
        step = float(np.median(np.diff(ts))) if len(ts) > 1 else 1.0
        return max(1, round(self.delta[1] / max(step, 1e-9)))

    def draw(self, model: nn.Module, epoch: int) -> None:
        """Pictures after ``epoch`` (1-based) into ``pictures_dir`` (rank 0 only)."""
        if self.pictures and self.pictures_dir is not None and self.rt.is_main:
            self.written += draw_pretrain_pictures(
                model,
                self.dataset,
                self.clips,
                n=self.pictures,
                delta=self.picture_offset(),
                input_size=self.loop.input_size,
                rt=self.rt,
                out_dir=self.pictures_dir,
                tag=f"epoch{epoch:03d}",
            )

    def end_epoch(self, model: nn.Module, epoch: int, rec: dict[str, Any], last: bool) -> None:
        if not last and self.pictures_every and (epoch + 1) % self.pictures_every == 0:
            self.draw(model, epoch + 1)

    def describe(self, rec: dict[str, Any], epochs: int) -> str:
        terms = f"pixel {rec['pixel_loss']:.4f}"
        if self.latent:
            terms = f"latent {rec['latent_loss']:.4f}, {terms}, target std {rec['target_std']:.3f}"
        return (
            f"pretrain epoch {rec['epoch']}/{epochs}: loss {rec['loss']:.4f} ({terms}) lr {rec['lr']:.2e} "
            f"{rec['pairs']} pairs {rec['seconds']:.1f} s ({rec['pairs_per_s']:.0f} pairs/s)"
        )


def pretrain_curves(history: list[dict[str, Any]], path: Path) -> Path | None:
    """``curves.png`` of a pre-training run: loss terms, target spread, learning rate."""
    from mepipe.train.pictures import curves_png

    ep = [h["epoch"] for h in history]
    return curves_png(
        [
            ("loss", {k: (ep, [h[k] for h in history]) for k in ("loss", "latent_loss", "pixel_loss")}),
            ("target std (collapse check)", {"target_std": (ep, [h["target_std"] for h in history])}),
            ("learning rate", {"lr": (ep, [h["lr"] for h in history])}),
        ],
        path,
    )


def pretrain(
    cfg: PretrainConfig, *, on_epoch: Callable[[dict[str, Any]], None] | None = None
) -> PretrainResult:
    """Run MA2MI pre-training as configured (see :class:`~mepipe.train.config.PretrainConfig`).

    Under ``torchrun`` every rank calls this; only rank 0 writes files. Nothing is written before the
    run folder, the build and the device are known to be usable.

    Args:
        cfg: the resolved config (``data.shards`` and ``run.out`` required).
        on_epoch: called with each epoch's history record.

    Raises:
        ConfigError: bad run folder or device; ShardError: unfinished or unusable build.
    """
    with cpu_threads(cfg.run.cpu_threads):
        return _pretrain(cfg, on_epoch)


def _pretrain(cfg: PretrainConfig, on_epoch: Callable[[dict[str, Any]], None] | None) -> PretrainResult:
    if not cfg.data.shards:
        raise ConfigError("data.shards: no build folder given; pass --build MACRO_OUT")
    rt = make_runtime(cfg.run.device, cfg.run.amp, cfg.run.channels_last)
    out = check_run_dir(cfg.run.out, resume=cfg.run.resume, force=cfg.run.force, kind="pretrain")
    clips, _, dropped = load_clips(cfg.data.shards, datasets=cfg.data.datasets)
    size = frame_size(clips)
    table = load_pair_table(cfg.data.shards, clips) if cfg.data.pairs == "table" else []
    provenance = run_provenance(cfg.data.shards, clips[0].shard)
    loop = loop_settings(cfg)
    sampler = PairSampler(
        clips,
        mode=cfg.data.pairs.replace("sample", "delta"),
        delta=cfg.data.delta,
        unit=cfg.data.delta_unit,
        pairs_per_clip=cfg.data.pairs_per_clip,
        shuffle=True,
        seed=cfg.run.seed,
        rank=rt.dist.rank,
        world_size=rt.dist.world_size,
        table=table,
    )
    dataset = PairDataset(clips, size)
    objective = MA2MIObjective(
        clips=clips,
        dataset=dataset,
        loop=loop,
        delta=cfg.data.delta,
        seed=cfg.run.seed,
        rt=rt,
        sampler=sampler,
        pictures=cfg.run.pictures,
        pictures_every=cfg.run.pictures_every,
        pictures_dir=out / "pictures",
        latent=cfg.ma2mi.target == "latent",
    )
    if len(sampler) == 0:
        raise ConfigError(
            f"data.delta {cfg.data.delta[0]}:{cfg.data.delta[1]} ({cfg.data.delta_unit}) gives no frame pair in "
            f"{cfg.data.shards}: its longest clip has {max(c.n_frames for c in clips)} stored frames; lower "
            "data.delta (or set data.delta_unit: ms for offsets in milliseconds)"
        )
    ckpt_path = out / CHECKPOINT_NAME
    with RunFolder(out, cfg, rt.is_main) as run:
        source = (
            f"{len(table)} pairs from pairs.csv"
            if table
            else f"delta {cfg.data.delta[0]}:{cfg.data.delta[1]}"
        )
        if rt.is_main:
            log.info(
                "pretrain: %d clips (%d failed rows skipped), crops %dpx -> %dpx, %s, %d pairs/epoch, device %s",
                len(clips), dropped["failed"], size, cfg.model.input_size, source,
                len(sampler) * rt.dist.world_size, rt.device,
            )  # fmt: skip
        history_writer = run.history(out, "pretrain")

        def record(history: list[dict[str, Any]]) -> None:
            history_writer(history)
            pretrain_curves(history, out / "curves.png")

        steps = -(-len(sampler) // cfg.data.batch_size)
        start = min(checkpoint_epoch(ckpt_path, "pretrain"), cfg.optim.epochs) if cfg.run.resume else 0
        bar = Progress("pretrain", total=(cfg.optim.epochs - start) * steps, unit="steps", logger=log)
        with bar if rt.is_main else contextlib.nullcontext():

            def step(i: int, loss: float) -> None:
                bar.advance(
                    1, f"epoch {start + 1 + bar.done // max(steps, 1)}/{cfg.optim.epochs} loss {loss:.4f}"
                )

            result = run_epochs(
                objective,
                lambda: PRETRAINERS.get("ma2mi")(cfg.model, cfg.ma2mi),
                rt=rt,
                loop=loop,
                seed=cfg.run.seed,
                sampler=sampler,
                dataset=dataset,
                checkpoint=ckpt_path,
                config=config_to_dict(cfg),
                provenance=provenance,
                on_record=record,
                on_step=step if rt.is_main else None,
                on_epoch=on_epoch,
            )
        barrier()
        objective.draw(result.model, cfg.optim.epochs)
        dataset.handles.close()
    return PretrainResult(out, ckpt_path, result.history, result.model, objective.written)
