"""Where does a CPU MA2MI pre-training step spend its time, and which settings make it faster?

Runs on a real macro build folder (e.g. ``demo-out/macro-shards`` from ``mepipe demo``) and measures,
in one process and on the same batch of real frames:

1. a breakdown of the default step: ``prepare_pairs`` (uint8 -> float, resize to the input size,
   augmentation, normalisation), then forward + backward of each part (``E_act``, ``E_pos``, EMA target
   forward, bottleneck + fuse + decoder, pixel head), the AdamW step and the EMA update;
2. pairs/s of the whole step (prepare + forward + backward + AdamW + EMA) for each variant, side by
   side with the default at one thread (the ``x`` column is the ratio to it): threads 1 vs 2,
   channels-last, the light pixel head, decoder blocks, frames already stored at the input size,
   ``torch.compile`` (``--compile``; its compile time is in the ``first step`` column).

Usage: python benchmarks/pretrain_step_profile.py SHARDS [--steps 8] [--threads 1 2] [--compile]
Timings vary on a shared machine: compare the rows of one run, not runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from mepipe.train.augment import denormalize, prepare_pairs
from mepipe.train.config import config_from_dict
from mepipe.train.data import PairDataset, PairSampler
from mepipe.train.engine import make_optimizer, optimizer_step
from mepipe.train.frames import frame_size, load_clips
from mepipe.train.models import PRETRAINERS


def timed(fn: Callable[[], object], reps: int) -> float:
    """Median seconds of ``fn`` over ``reps`` runs (after one warm-up)."""
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return sorted(ts)[len(ts) // 2]


def build(overrides: dict, shards: str):
    """The resolved pre-training config and its MA2MI network (seeded, CPU)."""
    cfg = config_from_dict("pretrain", overrides={"data.shards": shards, "run.device": "cpu", **overrides})
    torch.manual_seed(0)
    return cfg, PRETRAINERS.get("ma2mi")(cfg.model, cfg.ma2mi)


def step_rate(
    shards: str,
    frames: torch.Tensor,
    overrides: dict,
    steps: int,
    *,
    threads: int,
    channels_last: bool = False,
    compile_model: bool = False,
) -> tuple[float, float]:
    """``(pairs/s of the full training step, seconds of the first step)`` for one variant.

    Args:
        frames: ``(M, 2, S, S, 3)`` uint8 pairs; the first ``batch_size`` are used (repeated if fewer).
    """
    torch.set_num_threads(threads)
    cfg, model = build(overrides, shards)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if compile_model else model
    opt, _ = make_optimizer(model.parameters(), cfg.optim)
    gen = torch.Generator().manual_seed(0)
    b = cfg.data.batch_size
    fixed = frames[:b]
    if fixed.shape[0] < b:
        fixed = fixed.repeat((b + fixed.shape[0] - 1) // fixed.shape[0], 1, 1, 1, 1)[:b]

    def one() -> None:
        x = prepare_pairs(fixed, cfg.model.input_size, augment=cfg.augment, gen=gen)
        out = net(x)
        optimizer_step(out.loss, model, opt, 0.0)
        model.update_target()

    model.train()
    t0 = time.perf_counter()
    one()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        one()
    return steps * b / (time.perf_counter() - t0), first


def breakdown(shards: str, frames: torch.Tensor, threads: int, reps: int) -> list[tuple[str, float]]:
    """Seconds of each part of the default step (batch and input size of the default config)."""
    torch.set_num_threads(threads)
    cfg, model = build({}, shards)
    b, n_in = cfg.data.batch_size, cfg.model.input_size
    model.train()
    opt, _ = make_optimizer(model.parameters(), cfg.optim)
    gen = torch.Generator().manual_seed(0)
    fr = frames[:b]
    rows = [
        ("prepare_pairs: to float + resize", timed(lambda: prepare_pairs(fr, n_in), reps)),
        (
            "prepare_pairs: + augmentation",
            timed(lambda: prepare_pairs(fr, n_in, augment=cfg.augment, gen=gen), reps),
        ),
    ]
    x = prepare_pairs(fr, n_in, augment=cfg.augment, gen=gen)
    dim, g = model.act.out_channels, n_in // 16

    def fb(fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            model.zero_grad(set_to_none=True)
            fn().float().pow(2).mean().backward()

        return run

    def no_grad(fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                fn()

        return run

    rows.append(("E_act forward + backward", timed(fb(lambda: model.act(x)[0]), reps)))
    rows.append(("E_pos forward + backward", timed(fb(lambda: model.pos(x[:, 0])), reps)))
    rows.append(("EMA target forward (no grad)", timed(no_grad(lambda: model.target_enc(x[:, 1])), reps)))
    p = torch.randn(b, dim, g, g, requires_grad=True)
    a = torch.randn(b, dim, g, g, requires_grad=True)
    rows.append(
        (
            "bottleneck + fuse + decoder + predict, fwd + bwd",
            timed(
                fb(
                    lambda: model.predict(
                        model.decoder(model.fuse(torch.cat([p, model.expand(model.squeeze(a))], 1)))
                    )
                ),
                reps,
            ),
        )
    )
    if model.pixel_head is not None:
        h = torch.randn(b, dim, g, g, requires_grad=True)

        def pix() -> torch.Tensor:
            z = model.pixel_reduce(h) if model.pixel_reduce is not None else h
            up = F.interpolate(z, size=(model.pixel_size,) * 2, mode="bilinear", align_corners=False)
            return model.pixel_head(up)

        rows.append((f"pixel head ({model.pixel_size} px), fwd + bwd", timed(fb(pix), reps)))

    def whole() -> None:
        out = model(x)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()

    rows.append(("whole model forward + backward", timed(whole, reps)))
    whole()
    rows.append(("AdamW step", timed(opt.step, reps)))
    rows.append(("EMA target update", timed(model.update_target, reps)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("shards", help="macro build folder")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    ap.add_argument("--no-breakdown", action="store_true")
    args = ap.parse_args()
    clips, _, _ = load_clips(args.shards)
    size = frame_size(clips)
    ds = PairDataset(clips, size)
    pairs = PairSampler(clips, delta=(1, 4), pairs_per_clip=2, seed=0).pairs()[:64]
    frames = ds.__getitems__(pairs)["frames"]
    ds.handles.close()
    n_in = config_from_dict("pretrain").model.input_size
    small = (denormalize(prepare_pairs(frames, n_in)).clamp(0, 1) * 255).round().to(torch.uint8)
    small = small.permute(0, 1, 3, 4, 2).contiguous()  # frames as a build at the input size stores them
    t1 = min(args.threads)
    if not args.no_breakdown:
        print(f"breakdown of the default step, {t1} thread(s), {size} px crops -> {n_in} px:")
        for name, s in breakdown(args.shards, frames, t1, args.reps):
            print(f"  {name:<56} {s * 1000:8.1f} ms")
    variants: list[tuple[str, dict, dict, torch.Tensor]] = [
        (f"default, {t} thr", {}, {"threads": t}, frames) for t in args.threads
    ]
    variants += [
        (f"channels_last, {t1} thr", {}, {"threads": t1, "channels_last": True}, frames),
        (f"pixel_head light, {t1} thr", {"ma2mi.pixel_head": "light"}, {"threads": t1}, frames),
        (
            f"pixel_head light + channels_last, {t1} thr",
            {"ma2mi.pixel_head": "light"},
            {"threads": t1, "channels_last": True},
            frames,
        ),
        (f"decoder 1 block, {t1} thr", {"ma2mi.decoder_blocks": 1}, {"threads": t1}, frames),
        (f"crops stored at {n_in} px (no resize), {t1} thr", {}, {"threads": t1}, small),
        (f"augmentation off, {t1} thr", {"augment.enabled": False}, {"threads": t1}, frames),
    ]
    if args.compile:
        variants.append((f"torch.compile, {t1} thr", {}, {"threads": t1, "compile_model": True}, frames))
    print(f"\n{'variant':<52} {'pairs/s':>8} {'x':>6} {'first step s':>13}")
    base = None
    for name, over, kw, fr in variants:
        with contextlib.suppress(Exception) if "compile" in name else contextlib.nullcontext():
            rate, first = step_rate(args.shards, fr, over, args.steps, **kw)
            base = base or rate
            print(f"  {name:<50} {rate:8.1f} {rate / base:6.2f} {first:13.2f}", flush=True)
    load = os.getloadavg()
    print(f"\ntorch {torch.__version__}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
