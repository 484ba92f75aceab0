"""Does MA2MI pre-training put expression information into E_act? A leak-free linear probe.

Fine-tuning changes every weight, so a fine-tuned UF1 mixes what pre-training learned with what 32
training clips undo or add. A linear probe freezes the encoder and fits only a linear classifier on its
features, which isolates the first part. For each seed of a ``benchmarks/transfer_experiment.py`` run
(it reads ``OUT/seed{N}/micro-shards`` and ``OUT/seed{N}/runs/pretrain/last.pt``; run the experiment
first) and each held-out subject (LOSO, ``casme2_5`` labels, onset/apex pairs as in fine-tuning):

* encoders: ``ma2mi`` (E_act from the seed's MA2MI checkpoint), ``random`` (E_act at MIACNet's own
  initialisation, seeded per seed) and ``pixels`` (no encoder: the apex - onset difference of the model
  input, average-pooled to the action map's grid: a reference that involves no learning);
* E_act's BatchNorm statistics are recomputed on the fold's *training* pairs (as fine-tuning does before
  every evaluation), so the held-out subject reaches neither the features' normalisation nor the probe;
* features: the action map A ``(D, h, w)`` flattened (what MIACNet's head sees) and spatially averaged
  (``D``; not for ``pixels``); standardised with the training clips' mean and std;
* probe: multinomial logistic regression with an L2 penalty ``lam * ||W||^2 / 2`` (full-batch L-BFGS).
  There is no validation split to choose ``lam`` on, so every ``--lams`` value is reported; none is
  selected.

Prints pooled UF1 per seed, encoder, feature and ``lam``, and the paired difference ``ma2mi - random``
over seeds (mean, 95 % t interval, exact sign-flip p); writes ``OUT/linear-probe.json``.

Usage: python benchmarks/linear_probe.py --runs runs/transfer [--seeds 0 1 2 3 4 5 6 7]
       [--lams 0.01 0.1 1] [--threads 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from baselines import sign_flip_p
from transfer_experiment import t_interval

from mepipe.labels import load_scheme
from mepipe.train import config_from_dict
from mepipe.train.data import keyframe_pairs
from mepipe.train.engine import recalibrate_bn
from mepipe.train.flowdata import make_dataset, prepared_inputs
from mepipe.train.frames import frame_size, load_clips
from mepipe.train.metrics import classification_metrics
from mepipe.train.models import build_model
from mepipe.train.protocol import plan_folds
from mepipe.train.runtime import make_runtime
from mepipe.train.transfer import apply_init, load_init_state

BATCH = 16  # pairs per forward pass (BatchNorm recalibration averages over these batches)
ENCODERS = ("ma2mi", "random", "pixels")
FEATURES = {"ma2mi": ("flat", "mean"), "random": ("flat", "mean"), "pixels": ("flat",)}
"""Features probed per encoder (the spatial mean of the pixel difference is only its 3 colour means)."""


def fit_probe(x: torch.Tensor, y: torch.Tensor, k: int, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression: ``W (d, k)``, ``b (k,)`` minimising mean cross-entropy +
    ``lam * ||W||^2 / 2`` on ``x (n, d) float64`` (standardised), ``y (n,) int64``."""
    w = torch.zeros(x.shape[1], k, dtype=x.dtype, requires_grad=True)
    b = torch.zeros(k, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=500, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x @ w + b, y) + 0.5 * lam * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


@torch.no_grad()
def features(
    encoder: str, act: torch.nn.Module | None, inputs: list[torch.Tensor], grid: int
) -> dict[str, torch.Tensor]:
    """``{"flat": (n, D*h*w), "mean": (n, D)}`` float64 for the prepared pairs ``inputs``
    (``(B, 2, 3, N, N)`` batches); ``pixels`` pools ``I_apex - I_onset`` to ``grid x grid``."""
    maps = []
    for x in inputs:
        if encoder == "pixels":
            maps.append(F.adaptive_avg_pool2d(x[:, 1] - x[:, 0], grid))
        else:
            assert act is not None
            maps.append(act(x)[0])
    a = torch.cat(maps).double()
    return {"flat": a.flatten(1), "mean": a.mean(dim=(2, 3))}


def probe_seed(seed_dir: Path, seed: int, lams: list[float]) -> dict[str, Any]:
    """Pooled LOSO probe metrics ``{encoder: {feature: {lam: {"uf1", "uar", "acc"}}}}`` of one seed."""
    micro, ckpt = seed_dir / "micro-shards", seed_dir / "runs" / "pretrain" / "last.pt"
    for p in (micro, ckpt):
        if not p.exists():
            sys.exit(f"{p} is missing: run benchmarks/transfer_experiment.py --out {seed_dir.parent} first")
    scheme = load_scheme("casme2_5")
    clips, _, _ = load_clips(micro, label_fn=lambda r: scheme.label(r.dataset, r.emotion_raw))
    cfg = config_from_dict("finetune", overrides={"data.shards": str(micro), "run.device": "cpu"})
    rt = make_runtime("cpu", False, False)
    size, n_in = frame_size(clips), cfg.model.input_size
    grid = n_in // 16
    state, _ = load_init_state(ckpt, "action")
    torch.manual_seed(seed)
    nets = {"random": build_model(cfg.model, len(scheme.classes)).act}
    trained = build_model(cfg.model, len(scheme.classes))
    apply_init(trained, state)
    nets["ma2mi"] = trained.act
    # every clip's onset/apex input, prepared once; the folds index into it
    pairs = keyframe_pairs(clips, 0, None)
    x_all = torch.cat(list(prepared_inputs(make_dataset(clips, size, None), pairs, batch_size=BATCH,
                                           input_size=n_in, device=rt.device)))  # fmt: skip
    y_all = torch.tensor([c.label for c in clips])
    pos = {c.key: i for i, c in enumerate(clips)}
    pred: dict[tuple[str, str, float], list[int]] = {}
    order: list[int] = []
    for plan in plan_folds(clips, "loso"):
        train = [pos[c.key] for c in plan.train]
        test = [pos[c.key] for c in plan.test.release()]
        order += test
        x_train, x_test = list(x_all[train].split(BATCH)), list(x_all[test].split(BATCH))
        for enc in ENCODERS:
            act = nets.get(enc)
            if act is not None:
                recalibrate_bn(act, x_train, rt)
                act.eval()
            f_train, f_test = features(enc, act, x_train, grid), features(enc, act, x_test, grid)
            for feat in FEATURES[enc]:
                mu, sd = f_train[feat].mean(0), f_train[feat].std(0).clamp_min(1e-6)
                a, t = (f_train[feat] - mu) / sd, (f_test[feat] - mu) / sd
                for lam in lams:
                    w, b = fit_probe(a, y_all[train], len(scheme.classes), lam)
                    pred.setdefault((enc, feat, lam), []).extend((t @ w + b).argmax(1).tolist())
    y_true = [int(y_all[i]) for i in order]
    out: dict[str, Any] = {}
    for (enc, feat, lam), p in pred.items():
        m = classification_metrics(y_true, p, scheme.classes)
        out.setdefault(enc, {}).setdefault(feat, {})[str(lam)] = {k: m[k] for k in ("uf1", "uar", "acc")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=Path, required=True, help="a transfer_experiment.py --out folder")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(8)))
    ap.add_argument("--lams", type=float, nargs="+", default=[0.01, 0.1, 1.0])
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results: dict[int, Any] = {}
    for s in args.seeds:
        t = time.perf_counter()
        results[s] = probe_seed(args.runs / f"seed{s}", s, args.lams)
        print(f"seed {s}: probed in {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    seeds = " / ".join(str(s) for s in args.seeds)
    print(f"Linear probe, pooled LOSO UF1 (seeds {seeds}), runs from {args.runs}\n")
    print("| encoder | features | lam | UF1 per seed | mean |\n|---|---|---|---|---|")
    for enc in ENCODERS:
        for feat in FEATURES[enc]:
            for lam in args.lams:
                u = [results[s][enc][feat][str(lam)]["uf1"] for s in args.seeds]
                print(
                    f"| {enc} | {feat} | {lam:g} | {' / '.join(f'{v:.3f}' for v in u)} | {np.mean(u):.3f} |"
                )
    for v in ("scratch", "ma2mi"):  # the fine-tuned runs of the same seeds, for scale
        done = [
            json.loads((args.runs / f"seed{s}" / "result.json").read_text())["results"].get(v)
            for s in args.seeds
        ]
        if all(done):
            u = [r["uf1"] for r in done]
            print(f"| {v}, fine-tuned (transfer_experiment) | - | - | {' / '.join(f'{x:.3f}' for x in u)} | "
                  f"{np.mean(u):.3f} |")  # fmt: skip
    print("\n| ma2mi - random | features | lam | mean | 95 % t interval | wins / losses | sign-flip p |")
    print("|---|---|---|---|---|---|---|")
    for feat in FEATURES["ma2mi"]:
        for lam in args.lams:
            d = [results[s]["ma2mi"][feat][str(lam)]["uf1"] - results[s]["random"][feat][str(lam)]["uf1"]
                 for s in args.seeds]  # fmt: skip
            m, lo, hi = t_interval(d)
            wins, losses = sum(x > 0 for x in d), sum(x < 0 for x in d)
            print(f"| | {feat} | {lam:g} | {m:+.3f} | [{lo:+.3f}, {hi:+.3f}] | {wins} / {losses} | "
                  f"{sign_flip_p(d):.3f} |")  # fmt: skip
    (args.runs / "linear-probe.json").write_text(
        json.dumps({str(k): v for k, v in results.items()}, indent=1)
    )


if __name__ == "__main__":
    main()
