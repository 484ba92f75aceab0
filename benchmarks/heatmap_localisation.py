"""Do the heat maps locate the action? LOSO runs scored against the synthetic generator's ground truth.

For every seed folder ``RUNS/seed{N}/`` (the layout of ``benchmarks/transfer_experiment.py``:
``runs/<variant>/`` LOSO run folders, ``data/micro/`` the synthetic set with its
``synth_ground_truth.json``) and every variant, each fold's own model (``folds/<fold>/last.pt``; the
best-validation state when the fold selected one, i.e. the model that fold evaluated) is run on that
fold's held-out clips only (the keys of ``folds/<fold>/predictions.csv``) on their annotated
onset/apex pair, and its heat map is scored against the clip's true AU regions
(:mod:`mepipe.train.localisation`: discs of radius max(0.2 IOD, σ) around the AU anchors, mapped into
the crop through the shard's stored alignment transform):

* ``mass``: share of heat-map mass inside the AU regions (chance: the regions' area share);
* ``point``: pointing-game hit rate, the map's maximum within half a heat-map cell of a region
  (chance: the share of the crop within that tolerance).

The ``|apex - onset|`` difference image of the same pairs is scored the same way as a reference.
Prints, per variant, the mean over seeds of the per-seed clip means with a 95 % t-interval over seeds,
then paired comparisons of ``--full`` against each ablation: the per-seed difference (mean, 95 % CI,
exact sign-flip p over seeds) and, for the pointing game, McNemar's exact test on the pooled clips.

Usage: python benchmarks/heatmap_localisation.py --runs /work/evidence/transfer
       [--variants scratch ma2mi no-position no-attention] [--full scratch] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

from mepipe.shards.reader import open_shard
from mepipe.synth.truth import read_ground_truth
from mepipe.train.checkpoint import load_checkpoint
from mepipe.train.config import FinetuneConfig, config_from_dict
from mepipe.train.evaluate import predict
from mepipe.train.frames import ClipInfo, frame_size, load_clips
from mepipe.train.localisation import (
    REGION_RADIUS_IOD,
    au_region_mask,
    difference_map,
    onset_transform,
    score_map,
)
from mepipe.train.models import build_model
from mepipe.train.runtime import cpu_threads, make_runtime

_spec = importlib.util.spec_from_file_location("baselines", Path(__file__).with_name("baselines.py"))
_baselines = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(_baselines)  # type: ignore[union-attr]
sign_flip_p, mcnemar_exact_p = _baselines.sign_flip_p, _baselines.mcnemar_exact_p

VARIANTS = ("scratch", "ma2mi", "no-position", "no-attention")
DIFF = "|apex-onset|"
# two-sided 95 % Student t quantiles t_{0.975, df} for df = 1..30 (standard table values)
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042)  # fmt: skip


def mean_ci(x: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95 % t-interval (``nan`` half-width for fewer than 2 values)."""
    if not x:
        return float("nan"), float("nan")
    m = statistics.fmean(x)
    if len(x) < 2:
        return m, float("nan")
    t = T975[len(x) - 2] if len(x) - 1 <= len(T975) else 1.96
    return m, t * statistics.stdev(x) / math.sqrt(len(x))


def _truth_by_path(data_dir: Path) -> dict[str, dict[str, Any]]:
    doc = read_ground_truth(data_dir)
    return {str((data_dir / c["path"]).resolve()): c for c in doc["clips"]}


def _fold_model(fold_dir: Path) -> tuple[torch.nn.Module, FinetuneConfig]:
    """The model the fold evaluated: ``last.pt``'s best-validation state if it kept one, else its weights."""
    from mepipe.labels import load_scheme

    ckpt = load_checkpoint(fold_dir / "last.pt", "finetune")
    cfg = config_from_dict("finetune", ckpt["config"], origin=str(fold_dir / "last.pt"))
    assert isinstance(cfg, FinetuneConfig)
    net = build_model(cfg.model, len(load_scheme(cfg.data.labels).classes))
    best = (ckpt.get("extra") or {}).get("best_state")
    net.load_state_dict(best if best is not None else ckpt["model"])
    return net.eval(), cfg


def _clip_geometry(clip: ClipInfo, onset_frame: int) -> np.ndarray:
    with open_shard(clip.shard) as f:
        g = f["clips"][clip.key]
        return onset_transform(g["transform"][()], g["frame_numbers"][()], onset_frame)


def score_run(run: Path, truth: dict[str, dict[str, Any]], radius_iod: float) -> pd.DataFrame:
    """Per-clip scores of one LOSO run folder: one row per (held-out clip, map) with ``map`` in
    ``heat`` / :data:`DIFF`. Raises ``FileNotFoundError`` for a run without per-fold models."""
    resolved = yaml.safe_load((run / "train.resolved.yaml").read_text())
    build = Path(resolved["data"]["shards"])
    clips, rows, _ = load_clips(build)
    by_key = {c.key: c for c in clips}
    source = {r.key: str(Path(r.source_path).resolve()) for r in rows if r.status == "ok"}
    size = frame_size(clips)
    rt = make_runtime("cpu", False, False)
    out: list[dict[str, Any]] = []
    folds = sorted(p for p in (run / "folds").iterdir() if (p / "predictions.csv").is_file())
    if not folds:
        raise FileNotFoundError(f"{run}: no folds/<fold>/predictions.csv (an unfinished or non-LOSO run)")
    for fdir in folds:
        keys = pd.read_csv(fdir / "predictions.csv", dtype={"key": str})["key"].tolist()
        held = [by_key[k] for k in keys]
        net, cfg = _fold_model(fdir)
        n_in = cfg.model.input_size
        _, samples = predict(net, held, size=size, input_size=n_in, batch_size=16, rt=rt, heat=len(held))
        for s in samples:
            gt = truth.get(source[s["key"]])
            if gt is None:
                raise KeyError(f"{s['key']}: source {source[s['key']]} is not in the ground truth")
            m = _clip_geometry(by_key[s["key"]], int(gt["onset"]))
            mask, iod = au_region_mask(gt, m, n_in, scale=n_in / size, radius_iod=radius_iod)
            tol = 0.5 * n_in / s["heat"].shape[0]
            base = {
                "fold": fdir.name,
                "key": s["key"],
                "aus": gt["aus_written"],
                "iod_px": iod,
                "tol_px": tol,
            }
            for name, hm in (("heat", s["heat"]), (DIFF, difference_map(s["onset"], s["apex"]))):
                out.append({**base, "map": name, **score_map(hm, mask, tol)})
    return pd.DataFrame(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, required=True, help="folder of seed*/ (transfer_experiment --out)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument(
        "--full", default="scratch", help="the full MIACNet variant the ablations are paired with"
    )
    ap.add_argument("--radius-iod", type=float, default=REGION_RADIUS_IOD)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--json", type=Path, default=None, help="also write the per-clip scores here (JSON lines)"
    )
    args = ap.parse_args()
    seeds = sorted((p for p in args.runs.glob("seed*") if p.is_dir()), key=lambda p: int(p.name[4:]))
    if not seeds:
        sys.exit(f"{args.runs}: no seed*/ folders (run benchmarks/transfer_experiment.py --out {args.runs})")
    frames = []
    with cpu_threads(args.threads):
        for sd in seeds:
            truth = _truth_by_path(sd / "data" / "micro")
            for v in args.variants:
                run = sd / "runs" / v
                if not (run / "folds").is_dir():
                    print(f"  {sd.name}: no {v} run, skipped")
                    continue
                df = score_run(run, truth, args.radius_iod)
                frames.append(df.assign(seed=sd.name, variant=v))
                h = df[df["map"] == "heat"]
                print(f"  {sd.name} {v}: {len(h)} held-out clips, mass {h['mass'].mean():.3f}, "
                      f"point {h['hit'].mean():.3f}", flush=True)  # fmt: skip
    if not frames:
        sys.exit("no LOSO run folders found")
    allc = pd.concat(frames, ignore_index=True)
    if args.json:
        allc.to_json(args.json, orient="records", lines=True)
    heat = allc[allc["map"] == "heat"]
    diff = allc[(allc["map"] == DIFF) & (allc["variant"] == allc["variant"].iloc[0])]
    per_seed = heat.groupby(["variant", "seed"])[["mass", "hit", "chance_mass", "chance_hit"]].mean()
    print(
        f"\nheat-map localisation on held-out clips, {len(seeds)} seeds, AU regions max({args.radius_iod:g} IOD, σ), "
        f"pointing tolerance half a heat-map cell; mean ± 95 % CI over seeds"
    )
    print(f"{'map':<16}{'clips':>7}{'mass in AU':>18}{'chance':>8}{'pointing game':>18}{'chance':>8}")

    def line(name: str, ps: pd.DataFrame, n: int) -> None:
        cells = [mean_ci(ps[c].tolist()) for c in ("mass", "chance_mass", "hit", "chance_hit")]
        (m, mc), (c, _), (p, pc), (pch, _) = cells
        print(f"{name:<16}{n:>7}{m:>10.3f} ± {mc:<5.3f}{c:>8.3f}{p:>10.3f} ± {pc:<5.3f}{pch:>8.3f}")

    for v in args.variants:
        if v in per_seed.index.get_level_values(0):
            line(v, per_seed.loc[v], int((heat["variant"] == v).sum()))
    dps = diff.groupby("seed")[["mass", "hit", "chance_mass", "chance_hit"]].mean()
    line(DIFF, dps, len(diff))
    if args.full not in per_seed.index.get_level_values(0):
        return
    print(f"\npaired: {args.full} minus ablation (per-seed difference, mean ± 95 % CI, sign-flip p over seeds; "
          "pointing game also McNemar over pooled clips)")  # fmt: skip
    full = heat[heat["variant"] == args.full].set_index(["seed", "key"])
    for v in args.variants:
        if v == args.full or v not in per_seed.index.get_level_values(0):
            continue
        other = heat[heat["variant"] == v].set_index(["seed", "key"])
        both = full.merge(other, left_index=True, right_index=True, suffixes=("_f", "_a"))
        parts = []
        for col in ("mass", "hit"):
            d = (both[f"{col}_f"] - both[f"{col}_a"]).groupby(level="seed").mean().tolist()
            m, ci = mean_ci(d)
            parts.append(
                f"{'mass' if col == 'mass' else 'point'} {m:+.3f} ± {ci:.3f} (p={sign_flip_p(d):.2g})"
            )
        b = int(((both["hit_f"] == 0) & (both["hit_a"] == 1)).sum())
        c = int(((both["hit_f"] == 1) & (both["hit_a"] == 0)).sum())
        print(f"{args.full} vs {v}: {len(both)} clips; " + "; ".join(parts)
              + f"; McNemar b={b} c={c} p={mcnemar_exact_p(b, c):.2g}")  # fmt: skip


if __name__ == "__main__":
    main()
