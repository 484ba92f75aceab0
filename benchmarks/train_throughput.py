"""Pre-training throughput: (I_t, I_t+δ) pairs/s fed from HDF5 shards, mepipe's loader vs a naive one.

Writes its own small build folder (synthetic clips through the real ShardWriter), then measures, in
one run and on the same shards:

1. naive loader (baseline): a Dataset whose ``__getitem__`` reads each pair with h5py's strided
   slice ``frames[t : t+δ+1 : δ]`` and the default collate (what many training scripts do);
2. mepipe loader: ``PairSampler`` + ``PairDataset.__getitems__`` (whole-frame ``read_direct`` into one
   preallocated batch buffer), 0 workers and, with ``--workers N``, N worker processes;
3. model step alone: the MA2MI training step (augment + forward + backward + AdamW + EMA) on a batch
   already in memory;
4. loader + model step: the trainer's step loop (``engine.train_steps`` with the MA2MI objective) fed
   by the mepipe loader.

The shards are the tests' toy build (``tests/toy.py``), so run it from the repository root.

Usage: python benchmarks/train_throughput.py [--size 112] [--clips 24] [--frames 40] [--batch 32]
       [--pairs 1024] [--steps 10] [--workers 0] [--device auto] [--threads 0]
Prints pairs/s for each and the ratios. Timings vary on a shared machine; compare ratios from one run.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mepipe.train.augment import prepare_pairs
from mepipe.train.config import config_from_dict
from mepipe.train.data import PairDataset, PairSampler, make_loader
from mepipe.train.engine import loop_settings, make_optimizer, optimizer_step, train_steps
from mepipe.train.frames import ClipInfo, load_clips
from mepipe.train.models import PRETRAINERS
from mepipe.train.pretrain import MA2MIObjective
from mepipe.train.runtime import make_runtime


class StridedPairs(Dataset):
    """Baseline: one pair per ``__getitem__``, read with a strided h5py slice (files opened lazily)."""

    def __init__(self, clips: list[ClipInfo], pairs: list[tuple[int, int, int]]) -> None:
        self.clips, self.pairs = clips, pairs
        self.files: dict[str, h5py.File] = {}

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> torch.Tensor:
        ci, t, t2 = self.pairs[i]
        c = self.clips[ci]
        f = self.files.get(c.shard) or self.files.setdefault(c.shard, h5py.File(c.shard, "r"))
        return torch.from_numpy(f["clips"][c.key]["frames"][t : t2 + 1 : t2 - t])


def rate(fn, n_pairs: int) -> float:
    t0 = time.perf_counter()
    done = fn()
    dt = time.perf_counter() - t0
    assert done == n_pairs, (done, n_pairs)
    return n_pairs / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=112, help="stored crop side S")
    ap.add_argument("--input-size", type=int, default=None, help="model input side (default: S)")
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--frames", type=int, default=40, help="frames per clip")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--pairs", type=int, default=1024, help="pairs read per loader measurement")
    ap.add_argument("--steps", type=int, default=10, help="training steps per model measurement")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--workers", type=int, default=0, help="also time the mepipe loader with N workers")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument(
        "--workdir", type=Path, default=None, help="where to write the shards (default: a temp dir)"
    )
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests/toy.py
    from tests.toy import write_toy_build

    if args.threads:
        torch.set_num_threads(args.threads)
    n_in = args.input_size or args.size
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        t0 = time.perf_counter()
        build = write_toy_build(
            work / "macro",
            subjects=max(args.clips // 6, 1),
            clips_per_subject=6,
            n_frames=args.frames,
            size=args.size,
            dataset="toymacro",
            expression_type="macro",
            amplitude=60.0,
            max_clips=16,
        )
        clips, _, _ = load_clips(build)
        print(
            f"wrote {len(clips)} clips x {args.frames} frames of {args.size}x{args.size} in "
            f"{time.perf_counter() - t0:.1f} s -> {build}"
        )
        per_clip = -(-args.pairs // len(clips))
        sampler = PairSampler(clips, delta=(1, 4), pairs_per_clip=per_clip, seed=0)
        pairs = sampler.pairs()[: args.pairs]
        n = len(pairs)
        # warm the page cache so every loader reads from memory
        for c in clips:
            with h5py.File(c.shard) as f:
                f["clips"][c.key]["frames"][()]

        def naive() -> int:
            dl = DataLoader(StridedPairs(clips, pairs), batch_size=args.batch, num_workers=0)
            return sum(b.shape[0] for b in dl)

        def mepipe_loader(workers: int):
            def run() -> int:
                s = PairSampler(clips, delta=(1, 4), pairs_per_clip=per_clip, seed=0)
                s.pairs = lambda: pairs  # the same pairs as the baseline  # type: ignore[method-assign]
                dl = make_loader(PairDataset(clips, args.size), s, batch_size=args.batch, num_workers=workers)
                return sum(b["frames"].shape[0] for b in dl)

            return run

        rows = [("naive loader: h5py strided slice per pair (baseline)", rate(naive, n))]
        rows.append(("mepipe loader, 0 workers (read_direct into batch buffer)", rate(mepipe_loader(0), n)))
        if args.workers:
            rows.append((f"mepipe loader, {args.workers} workers", rate(mepipe_loader(args.workers), n)))

        cfg = config_from_dict(
            "pretrain",
            overrides={
                "data.shards": str(build),
                "run.out": str(work / "run"),
                "data.batch_size": args.batch,
                "model.input_size": n_in,
                "model.width": args.width,
                "run.device": args.device,
            },
        )
        rt = make_runtime(cfg.run.device, cfg.run.amp, cfg.run.channels_last)
        torch.manual_seed(0)
        model = rt.prepare_model(PRETRAINERS.get("ma2mi")(cfg.model, cfg.ma2mi))
        opt, _ = make_optimizer(model.parameters(), cfg.optim)
        gen = torch.Generator().manual_seed(0)
        ds = PairDataset(clips, args.size)
        fixed = ds.__getitems__(pairs[: args.batch])["frames"].to(rt.device)

        def sync() -> None:
            if rt.device.type == "cuda":
                torch.cuda.synchronize()

        def step_only() -> int:
            for _ in range(args.steps):
                x = prepare_pairs(fixed, n_in, augment=cfg.augment, gen=gen)
                with rt.autocast():
                    out = model(x)
                optimizer_step(out.loss, model, opt, 0.0)
                model.update_target()
            sync()
            return args.steps * args.batch

        step_only()  # warm-up (allocator, cudnn autotune)
        n_steps = args.steps * args.batch
        rows.append(
            (f"model step alone (MA2MI, {n_in}px, width {args.width}, {rt.device})", rate(step_only, n_steps))
        )

        def loader_and_step() -> int:
            s = PairSampler(clips, delta=(1, 4), pairs_per_clip=per_clip, seed=1)
            dl = make_loader(
                ds, s, batch_size=args.batch, num_workers=args.workers, pin_memory=rt.device.type == "cuda"
            )
            loop = loop_settings(cfg)
            objective = MA2MIObjective(clips=clips, dataset=ds, loop=loop, delta=(1, 4), seed=1, rt=rt)
            sums = train_steps(
                model,
                itertools.islice(dl, args.steps),
                objective,
                rt=rt,
                opt=opt,
                aug_gen=gen,
                loop=loop,
                epoch=0,
            )
            sync()
            return int(sums[-1])

        rows.append(("mepipe loader + model step (engine.train_steps)", rate(loader_and_step, n_steps)))

    base = rows[0][1]
    print(f"\n{'what':<66} {'pairs/s':>10} {'vs baseline':>12}")
    for name, r in rows:
        print(f"{name:<66} {r:>10.0f} {r / base:>11.1f}x")
    loader, step, both = rows[1][1], rows[-2][1], rows[-1][1]
    print(
        f"\nloader alone / model step alone: {loader / step:.1f}x "
        f"(>1: the loader keeps up); end-to-end / model step alone: {both / step:.2f}"
    )
    print(
        f"device {rt.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"numpy {np.__version__}, h5py {h5py.version.version}"
    )


if __name__ == "__main__":
    main()
