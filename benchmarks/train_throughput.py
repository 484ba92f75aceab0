"""Pre-training throughput: (I_t, I_t+δ) pairs/s fed from HDF5 shards, mepipe's loader vs a naive one.

Writes its own small build folder (synthetic clips through the real ShardWriter), then measures, in
one run and on the same shards:

1. naive loader (baseline): a Dataset whose ``__getitem__`` reads each pair with h5py's strided
   slice ``frames[t : t+δ+1 : δ]`` and the default collate (what many training scripts do);
2. mepipe loader: ``PairSampler`` + ``PairDataset.__getitems__`` (whole-frame ``read_direct`` into one
   preallocated batch buffer), 0 workers and, with ``--workers N``, N worker processes;
3. on-device ceiling: the MA2MI training step (augment + forward + backward + AdamW + EMA) on
   synthetic uint8 pairs created on the device (no loader, no host-to-device copy);
4. from shards: the trainer's step loop (``engine.train_steps`` with the MA2MI objective) fed by the
   mepipe loader, same model, same settings.

On CUDA the model runs with bf16 autocast (``--amp bf16``), channels-last (``--channels-last``) and
``torch.compile`` (``--compile``, ``nn.Module.compile`` in place), each on by default there and
switchable (``--amp off``, ``--no-channels-last``, ``--no-compile``); on the CPU all three default off.
Compilation happens in the warm-up steps, which are not timed.

The shards are the tests' toy build (``tests/toy.py``), so run it from the repository root.

Usage: python benchmarks/train_throughput.py [--size 112] [--clips 24] [--frames 40] [--batch 32]
       [--pairs 1024] [--steps 10] [--workers 0] [--device auto] [--threads 0]
       [--amp bf16|off] [--[no-]channels-last] [--[no-]compile]
Prints pairs/s for each, the ratios, and from-shards / ceiling. Timings vary on a shared machine; compare ratios from one run.
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
    ap.add_argument("--amp", choices=("bf16", "off"), default=None, help="default: bf16 on CUDA, off on CPU")
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile")
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
        cuda = cfg.run.device.startswith("cuda") or (cfg.run.device == "auto" and torch.cuda.is_available())
        amp = (args.amp or ("bf16" if cuda else "off")) == "bf16"
        channels_last = cuda if args.channels_last is None else args.channels_last
        compiled = cuda if args.compile is None else args.compile
        rt = make_runtime(cfg.run.device, amp, channels_last)
        torch.manual_seed(0)
        model = rt.prepare_model(PRETRAINERS.get("ma2mi")(cfg.model, cfg.ma2mi))
        if compiled:
            model.compile()  # in place: parameters, state_dict keys and methods stay those of the model
        opt, _ = make_optimizer(model.parameters(), cfg.optim)
        gen = torch.Generator().manual_seed(0)
        ds = PairDataset(clips, args.size)
        shape = (args.batch, 2, args.size, args.size, 3)
        fixed = torch.randint(0, 256, shape, dtype=torch.uint8, device=rt.device)  # synthetic, on device

        def sync() -> None:
            if rt.device.type == "cuda":
                torch.cuda.synchronize(rt.device)

        def step_only() -> int:
            for _ in range(args.steps):
                x = prepare_pairs(fixed, n_in, augment=cfg.augment, gen=gen)
                with rt.autocast():
                    out = model(x)
                optimizer_step(out.loss, model, opt, 0.0)
                model.update_target()
            sync()
            return args.steps * args.batch

        step_only()  # warm-up (allocator, cudnn autotune, compilation)
        n_steps = args.steps * args.batch
        settings = f"amp {'bf16' if rt.amp else 'off'}, channels-last {rt.channels_last}, compile {compiled}"
        rows.append(
            (f"on-device ceiling: model step on synthetic tensors ({rt.device})", rate(step_only, n_steps))
        )

        # the same number of steps as the ceiling, or as many full batches as one epoch of pairs holds
        fed = PairSampler(
            clips, delta=(1, 4), pairs_per_clip=max(per_clip, -(-n_steps // len(clips))), seed=1
        )
        fed_steps = min(args.steps, len(fed) // args.batch)

        def loader_and_step(steps: int = fed_steps) -> int:
            s = PairSampler(
                clips, delta=(1, 4), pairs_per_clip=fed.pairs_per_clip, seed=1, timelines=fed.timelines
            )
            dl = make_loader(
                ds, s, batch_size=args.batch, num_workers=args.workers, pin_memory=rt.device.type == "cuda"
            )
            loop = loop_settings(cfg)
            objective = MA2MIObjective(clips=clips, dataset=ds, loop=loop, delta=(1, 4), seed=1, rt=rt)
            sums = train_steps(
                model,
                itertools.islice(dl, steps),
                objective,
                rt=rt,
                opt=opt,
                aug_gen=gen,
                loop=loop,
                epoch=0,
            )
            sync()
            return int(sums[-1])

        loader_and_step(2)  # warm-up: the trainer's input path may compile once more (other strides)
        rows.append(
            (
                "from shards: mepipe loader + model step (engine.train_steps)",
                rate(loader_and_step, fed_steps * args.batch),
            )
        )

    base = rows[0][1]
    print(f"\nMA2MI {n_in}px, width {args.width}, batch {args.batch}, {rt.device}: {settings}")
    print(f"{'what':<66} {'pairs/s':>10} {'vs baseline':>12}")
    for name, r in rows:
        print(f"{name:<66} {r:>10.0f} {r / base:>11.1f}x")
    loader, step, both = rows[1][1], rows[-2][1], rows[-1][1]
    print(
        f"\nloader alone / ceiling: {loader / step:.1f}x (>1: the loader keeps up); "
        f"from shards / ceiling: {both / step:.2f}"
    )
    print(
        f"device {rt.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"numpy {np.__version__}, h5py {h5py.version.version}"
    )


if __name__ == "__main__":
    main()
