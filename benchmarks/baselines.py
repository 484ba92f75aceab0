"""MIACNet against the usual baselines, by one leak-free LOSO protocol, on the synthetic micro set.

For each seed (each seed its own data): synthesise and build a macro (DFEW layout) and a micro
(CASME II layout) set with ``mepipe.demo.prepare_data``, pre-train MA2MI on the macro pairs, then
fine-tune under LOSO with the same fixed epoch budget, labels (``casme2_5``), folds and pooled metrics
for every model (no selection on the held-out subject):

* ``miacnet-scratch``: MIACNet from random weights;
* ``miacnet-ma2mi``: MIACNet initialised from the MA2MI weights;
* ``resnet-diff``: a plain ResNet-18-style network on ``apex - onset``;
* ``ststnet``: STSTNet on the 28x28 (u, v, strain) onset -> apex optical flow.

Prints UF1 / UAR per seed, mean +- std, the time of each part per seed, and paired comparisons
against MIACNet-MA2MI: the per-seed UF1 difference (mean +- std, with the exact sign-flip p over seeds)
and, pooled over seeds, McNemar's exact test on the held-out clips (the same clips, so the test is
paired per clip: b = clips only the baseline gets right, c = clips only MIACNet-MA2MI gets right).

Usage: python benchmarks/baselines.py [--seeds 0 1 2] [--out runs/baselines] [--pretrain-epochs 15]
       [--finetune-epochs 40] [--models miacnet-scratch ststnet ...] [--threads 1]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

from mepipe.demo import DemoSizes, prepare_data

MODELS: dict[str, dict[str, Any]] = {
    "miacnet-scratch": {"model.name": "miacnet"},
    "miacnet-ma2mi": {"model.name": "miacnet"},  # + init: the seed's MA2MI checkpoint
    "resnet-diff": {"model.name": "resnet-diff"},
    "ststnet": {"model.name": "ststnet"},
}
REFERENCE = "miacnet-ma2mi"


def _sd(x: list[float]) -> float:
    return statistics.stdev(x) if len(x) > 1 else 0.0


def sign_flip_p(diffs: list[float]) -> float:
    """Exact two-sided sign-flip (paired permutation) p of the mean of ``diffs`` being 0."""
    if not diffs:
        return float("nan")
    observed = abs(sum(diffs))
    hits = sum(
        abs(sum(s * d for s, d in zip(signs, diffs, strict=True))) >= observed - 1e-12
        for signs in itertools.product((1, -1), repeat=len(diffs))
    )
    return hits / 2 ** len(diffs)


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p (binomial on the ``b + c`` discordant clips, p = 1/2)."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def run_seed(seed: int, out: Path, sizes: DemoSizes, models: list[str], threads: int) -> dict[str, Any]:
    """Data, MA2MI pre-training (when needed) and every model's LOSO run for one seed."""
    from mepipe.train import config_from_dict, finetune_loso, pretrain

    times: dict[str, float] = {}
    t = time.perf_counter()
    macro, micro = prepare_data(out, seed, sizes, log=lambda m: None)
    times["data"] = time.perf_counter() - t
    init = ""
    if any("ma2mi" in m for m in models):
        t = time.perf_counter()
        pre = pretrain(
            config_from_dict(
                "pretrain",
                overrides={
                    "data.shards": str(macro),
                    "run.out": str(out / "runs" / "pretrain"),
                    "run.seed": seed,
                    "run.force": True,
                    "optim.epochs": sizes.pretrain_epochs,
                    "run.device": "cpu",
                    "run.cpu_threads": threads,
                },
            )
        )
        init = str(pre.checkpoint)
        times["ma2mi-pretrain"] = time.perf_counter() - t
    results: dict[str, Any] = {}
    for name in models:
        t = time.perf_counter()
        over = {
            "data.shards": str(micro),
            "data.labels": "casme2_5",
            "run.out": str(out / "runs" / name),
            "run.seed": seed,
            "run.force": True,
            "optim.epochs": sizes.finetune_epochs,
            "run.device": "cpu",
            "run.cpu_threads": threads,
            "init": init if "ma2mi" in name else "",
            **MODELS[name],
        }
        res = finetune_loso(config_from_dict("finetune", overrides=over))
        times[name] = time.perf_counter() - t
        results[name] = {
            "uf1": res.uf1,
            "uar": res.uar,
            "acc": res.acc,
            "n": len(res.predictions),
            "correct": {p["key"]: int(p["label"] == p["pred"]) for p in res.predictions},
        }
        print(
            f"  seed {seed} {name:<16} UF1 {res.uf1:.3f} UAR {res.uar:.3f} ({times[name]:.0f} s)", flush=True
        )
    return {"results": results, "times": times}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=Path("runs/baselines"))
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--pretrain-epochs", type=int, default=DemoSizes.pretrain_epochs)
    ap.add_argument("--finetune-epochs", type=int, default=DemoSizes.finetune_epochs)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads per run (0: torch's default). 1 by default: on the shared 2-core machine "
        "two threads per process ran MA2MI pre-training 3x slower than one (66 vs 22 s per epoch)",
    )
    args = ap.parse_args()
    sizes = DemoSizes(pretrain_epochs=args.pretrain_epochs, finetune_epochs=args.finetune_epochs)
    seeds: dict[int, dict[str, Any]] = {}
    t0 = time.perf_counter()
    for seed in args.seeds:
        t = time.perf_counter()
        seeds[seed] = run_seed(seed, args.out / f"seed{seed}", sizes, args.models, args.threads)
        parts = ", ".join(f"{k} {v:.0f} s" for k, v in seeds[seed]["times"].items())
        print(f"seed {seed}: {time.perf_counter() - t:.0f} s ({parts})", flush=True)
    total = time.perf_counter() - t0
    print(
        f"\nLOSO on the synthetic micro set ({sizes.micro_subjects} subjects x {sizes.micro_clips} clips, "
        f"casme2_5 labels, pooled over folds), fine-tuning {sizes.finetune_epochs} epochs, MA2MI "
        f"{sizes.pretrain_epochs} epochs on {sizes.macro_subjects} x {sizes.macro_clips} macro clips; "
        f"seeds {args.seeds}; {total:.0f} s ({total / len(args.seeds):.0f} s per seed)"
    )
    head = "".join(f"{'UF1 s' + str(s):>9}" for s in args.seeds)
    print(f"{'model':<17}{head}{'UF1 mean+-std':>16}{'UAR mean+-std':>16}{'s/seed':>8}")
    summary: dict[str, Any] = {}
    for m in args.models:
        uf1 = [seeds[s]["results"][m]["uf1"] for s in args.seeds]
        uar = [seeds[s]["results"][m]["uar"] for s in args.seeds]
        secs = statistics.mean(seeds[s]["times"][m] for s in args.seeds)
        summary[m] = {"uf1": uf1, "uar": uar, "seconds": secs}
        print(
            f"{m:<17}"
            + "".join(f"{x:>9.3f}" for x in uf1)
            + f"{statistics.mean(uf1):>9.3f}+-{_sd(uf1):.3f}{statistics.mean(uar):>9.3f}+-{_sd(uar):.3f}"
            + f"{secs:>8.0f}"
        )
    if REFERENCE in args.models:
        print(f"\npaired against {REFERENCE} (baseline minus {REFERENCE}):")
        print(f"{'model':<17}{'dUF1 mean+-std':>16}{'sign-flip p':>13}{'b':>5}{'c':>5}{'McNemar p':>11}")
        for m in args.models:
            if m == REFERENCE:
                continue
            d = [seeds[s]["results"][m]["uf1"] - seeds[s]["results"][REFERENCE]["uf1"] for s in args.seeds]
            b = c = 0
            for s in args.seeds:
                mine, ref = seeds[s]["results"][m]["correct"], seeds[s]["results"][REFERENCE]["correct"]
                b += sum(1 for k in ref if mine[k] and not ref[k])
                c += sum(1 for k in ref if ref[k] and not mine[k])
            p_seed, p_clip = sign_flip_p(d), mcnemar_exact_p(b, c)
            summary[m]["paired"] = {"d_uf1": d, "sign_flip_p": p_seed, "b": b, "c": c, "mcnemar_p": p_clip}
            print(
                f"{m:<17}{statistics.mean(d):>+9.3f}+-{_sd(d):.3f}{p_seed:>13.3f}{b:>5}{c:>5}{p_clip:>11.2g}"
            )
        print(
            f"(with {len(args.seeds)} seeds the smallest possible sign-flip p is {2 / 2 ** len(args.seeds):.3f})"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(
        json.dumps(
            {"seeds": args.seeds, "sizes": sizes.__dict__, "seconds": total, "models": summary}, indent=2
        )
    )


if __name__ == "__main__":
    main()
