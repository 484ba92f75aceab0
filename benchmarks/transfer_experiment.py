"""Does MA2MI pre-training help? LOSO on the synthetic micro set, over several seeds.

For each seed: synthesise a macro (DFEW layout) and a micro (CASME II layout) set with that seed,
build both, pre-train MA2MI on the macro pairs, then fine-tune under LOSO (casme2_5 labels, fixed
epoch budget, no selection on the held-out subject): from scratch, from the MA2MI weights, and
without the position branch (plus any --extra variants). Prints UF1 / UAR per seed and mean +- std.

Usage: python benchmarks/transfer_experiment.py [--seeds 0 1 2] [--pretrain-epochs 60] [--out runs/transfer]
       [--extra ma2mi-freeze]
About 10 minutes per seed on 2 CPU cores with 60 pre-training epochs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from mepipe.demo import DEMO_VARIANTS, VARIANTS, DemoSizes, prepare_data, run_models


def _sd(x: list[float]) -> float:
    return statistics.stdev(x) if len(x) > 1 else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=Path("runs/transfer"))
    ap.add_argument("--extra", nargs="*", default=[], choices=sorted(set(VARIANTS) - set(DEMO_VARIANTS)))
    ap.add_argument("--pretrain-epochs", type=int, default=60, help="the demo uses 15 (too few, see README)")
    ap.add_argument("--finetune-epochs", type=int, default=DemoSizes.finetune_epochs)
    args = ap.parse_args()
    sizes = DemoSizes(pretrain_epochs=args.pretrain_epochs, finetune_epochs=args.finetune_epochs)
    variants = (*DEMO_VARIANTS, *args.extra)
    per_seed: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    t0 = time.perf_counter()
    for seed in args.seeds:
        out = args.out / f"seed{seed}"
        macro, micro = prepare_data(out, seed, sizes, log=lambda m: None)
        res = run_models(
            out, macro, micro, seed, sizes, variants, log=lambda m, s=seed: print(f"  seed {s}: {m}")
        )
        for v in variants:
            per_seed[v].append(res.metrics[v])
    print(
        f"\nLOSO, synthetic micro amplitude, {sizes.micro_subjects} subjects x {sizes.micro_clips} clips, "
        f"casme2_5 labels; pre-training {sizes.pretrain_epochs} epochs on {sizes.macro_subjects}x{sizes.macro_clips} "
        f"macro clips; fine-tuning {sizes.finetune_epochs} epochs; seeds {args.seeds}; {time.perf_counter() - t0:.0f} s"
    )
    print(
        f"{'model':<14}"
        + "".join(f"{'UF1 s' + str(s):>9}" for s in args.seeds)
        + f"{'UF1 mean+-std':>16}{'UAR mean+-std':>16}"
    )
    summary = {}
    for v in variants:
        uf1 = [m["uf1"] for m in per_seed[v]]
        uar = [m["uar"] for m in per_seed[v]]
        summary[v] = {"uf1": uf1, "uar": uar}
        print(
            f"{v:<14}"
            + "".join(f"{x:>9.3f}" for x in uf1)
            + f"{statistics.mean(uf1):>9.3f}+-{_sd(uf1):.3f}{statistics.mean(uar):>9.3f}+-{_sd(uar):.3f}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(
        json.dumps({"seeds": args.seeds, "sizes": sizes.__dict__, **summary}, indent=2)
    )


if __name__ == "__main__":
    main()
