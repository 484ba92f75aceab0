"""Does MA2MI pre-training help? Paired LOSO comparisons over seeds, the decoupling ablation, the δ sweep.

For each seed N (each seed its own synthetic macro (DFEW layout) and micro (CASME II layout) set, made
and built by ``mepipe.demo.prepare_data`` at the demo sizes): MA2MI pre-training on the macro pairs at
the default δ, then LOSO fine-tuning on the micro set (casme2_5 labels, fixed epoch budget, no
selection on the held-out subject, metrics pooled over folds) of the variants of ``mepipe.demo.VARIANTS``:

* ``scratch``: MIACNet from random weights;
* ``ma2mi``: MIACNet initialised from the seed's MA2MI checkpoint (the bundled fine-tuning defaults say
  which parts transfer and at which learning rate);
* ``no-position-scratch``: ``miacnet-nopos`` from random weights, the control of ``no-position``;
* ``no-position``: the decoupling ablation: MIACNet *without the position branch* (``miacnet-nopos``,
  the action map alone feeds the head), initialised from the same MA2MI checkpoint (its action branch);
* ``no-attention``: ``miacnet-noatt`` (no cascaded spatial attention), initialised from the same
  checkpoint (its convolutions; the attention convs have no counterpart and are dropped);
* ``supervised``: the positive control. MIACNet is first trained *with the macro set's emotion labels*
  (``mepipe.demo.supervised_run``: every macro clip's onset/apex pair, ``dfew_7``, the fine-tuning
  defaults; ``runs/supervised-pretrain/model.pt``), and its ``E_act``/``E_pos`` initialise the micro
  fine-tuning. MA2MI uses no macro labels; this variant measures how much a macro set *can* give the
  micro task when what is learnt from it is known to be about the expression.

With ``--deltas`` each of ``--delta-seeds`` also gets one MA2MI pre-training per δ range followed by the
``ma2mi`` fine-tuning (the default δ reuses the main run). With ``--budgets`` each of ``--budget-seeds``
gets one MA2MI pre-training per epoch budget (each its own cosine schedule) and its ``ma2mi``
fine-tuning: the learning curve of transfer UF1 against pre-training pairs seen (0 epochs = scratch, the
default budget = the main run).

Layout (the heat-map study reads it): ``OUT/seed{N}/data/micro`` (synthetic micro set),
``OUT/seed{N}/{macro,micro}-shards``, ``OUT/seed{N}/runs/{pretrain,scratch,ma2mi,...}`` (LOSO run folders
with per-fold checkpoints and heat maps), ``OUT/seed{N}/runs/{pretrain,ma2mi}-d{a}-{b}`` (δ sweep),
``OUT/seed{N}/runs/{pretrain,ma2mi}-e{E}`` (learning curve), ``OUT/seed{N}/result.json``,
``OUT/seed{N}/delta-{a}-{b}.json`` and ``OUT/seed{N}/budget-{E}.json`` (written as each part finishes and
reused when rerun: a killed experiment continues where it stopped; unfinished runs resume from their
checkpoints). Then: per-seed table, paired differences (variant - scratch, ma2mi - no-position) with
mean, 95 % t interval, exact Wilcoxon signed-rank p, exact sign-test p and exact sign-flip p; the δ
and learning-curve tables; time per seed; ``OUT/summary.json``, ``OUT/transfer.png``,
``OUT/delta_sweep.png``, ``OUT/learning_curve.png``.

Usage: python benchmarks/transfer_experiment.py [--seeds 0 1 2 3 4 5 6 7] [--out runs/transfer]
       [--variants scratch ma2mi no-position no-attention] [--deltas 1:2 1:4 1:8 2:8 4:16]
       [--delta-seeds 0 1 2] [--budgets 5 30] [--budget-seeds 0 1 2] [--jobs 2] [--threads 1]
       [--macro-align register] [--micro-align register] [--pretrain-set KEY=VALUE ...]
       [--macro-subjects 6] [--macro-clips 8] [--macro-frames 16:24] [--micro-subjects 5] [--micro-clips 8]
       [--finetune-repeats 1] [--finetune-budgets 10 20] [--summary-only]

``--macro-align`` / ``--micro-align`` build that set with another ``align.mode`` (default: the demo
pipelines' ``clip``; ``register`` removes the residual head motion, see the README's "Does MA2MI
pre-training help?" for what that does to the comparison). ``--pretrain-set`` changes the pre-training
config of every MA2MI run (``ma2mi.pixel_goal=change data.delta=1:8``); it is recorded in each seed's
``result.json`` and in ``summary.json``, and a seed folder made with other settings is refused. So is
one made with other sizes: ``--macro-subjects``, ``--macro-clips`` and ``--macro-frames`` (the macro set's
subjects, clips per subject and frames per clip; by default 6 x 8 clips of 25-75 frames, the sizes of
the README's runs), ``--micro-subjects`` and ``--micro-clips`` (by default 5 x 8), ``--pretrain-epochs``,
``--finetune-epochs``. ``mepipe demo`` uses ``--macro-subjects 24 --macro-clips 16 --macro-frames 16:24
--pretrain-epochs 20 --pretrain-set data.pairs_per_clip=2 --micro-clips 12`` (``mepipe.demo.DEMO_SIZES``).
Use a fresh ``--out`` for each setting.

``--finetune-repeats K`` fine-tunes every variant K times per seed on the same data and checkpoint,
with fine-tuning seeds ``N + 1000 r`` (r = 0 is the usual run; repeats in ``runs/{variant}-ft{r}``), and
the per-seed table and the paired tests use each seed's mean over the K: the fine-tuning noise of a
paired difference shrinks by sqrt(K), the data's and pre-training's does not. Raising K on a finished
``--out`` adds only the missing repeats. The δ and learning-curve tables stay one fine-tuning each.
``--finetune-budgets E ...`` fine-tunes every variant once more per seed for E epochs (its own
schedule, ``runs/{variant}-ft-e{E}``): the fine-tuning learning curve, each budget paired against
scratch at the same budget (the main budget is the main run).

``--macro-shards BUILD --micro-shards BUILD`` run the same comparison on existing builds (e.g. a real
DFEW build for pre-training and a CASME II build for fine-tuning; ``casme2_5`` labels) instead of the
seed's synthetic sets: they are linked into every seed folder and only read, so the seeds vary only
pre-training and fine-tuning.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import time
import typing
from pathlib import Path
from typing import Any

from baselines import sign_flip_p

from mepipe.config import AlignConfig
from mepipe.demo import (
    FROM_SCRATCH,
    FROM_SUPERVISED,
    VARIANTS,
    DemoSizes,
    finetune_run,
    prepare_data,
    pretrain_run,
    pretrain_settings,
    supervised_run,
)
from mepipe.errors import ConfigError
from mepipe.schema import parse_range, parse_set
from mepipe.synth.api import check_clip_frames
from mepipe.synth.expressions import EXPRESSION_SETS
from mepipe.train import config_from_dict

MAIN_VARIANTS = ("scratch", "ma2mi", "no-position", "no-attention")
FINETUNE_SEED_STEP = 1000  # fine-tuning repeat r of seed N runs with run.seed N + 1000 r
DEFAULT_DELTA = tuple(config_from_dict("pretrain").data.delta)  # the main runs' δ (the bundled default)
# two-sided 95 % Student t quantiles t_{0.975, df}, df = 1..30 (standard tables)
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042)  # fmt: skip


# ---------------------------------------------------------------------------------------- statistics
def t_interval(x: list[float]) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean of ``x`` and its two-sided 95 % Student t interval."""
    n = len(x)
    m = statistics.mean(x)
    if n < 2:
        return m, float("nan"), float("nan")
    t = T975[n - 2] if n - 1 <= len(T975) else 1.96
    half = t * statistics.stdev(x) / math.sqrt(n)
    return m, m - half, m + half


def sign_test_p(diffs: list[float]) -> float:
    """Exact two-sided sign test: binomial(n, 1/2) on the non-zero differences."""
    pos = sum(d > 0 for d in diffs)
    n = sum(d != 0 for d in diffs)
    if n == 0:
        return 1.0
    k = min(pos, n - pos)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


def wilcoxon_signed_rank_p(diffs: list[float]) -> float:
    """Exact two-sided Wilcoxon signed-rank p (zeros dropped, tied |d| get average ranks; the null
    distribution enumerates all 2^n sign assignments of the ranks)."""
    d = [x for x in diffs if x != 0]
    n = len(d)
    if n == 0:
        return 1.0
    order = sorted(range(n), key=lambda i: abs(d[i]))
    ranks = [0.0] * n
    i = 0
    while i < n:
        j = i
        while j + 1 < n and abs(d[order[j + 1]]) == abs(d[order[i]]):
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    w_plus = sum(r for r, x in zip(ranks, d, strict=True) if x > 0)
    centre = sum(ranks) / 2
    observed = abs(w_plus - centre)
    hits = sum(
        abs(sum(r for r, s in zip(ranks, signs, strict=True) if s) - centre) >= observed - 1e-9
        for signs in itertools.product((0, 1), repeat=n)
    )
    return hits / 2**n


def paired(a: list[float], b: list[float]) -> dict[str, Any]:
    """Paired comparison of ``a - b`` (one value per seed)."""
    d = [x - y for x, y in zip(a, b, strict=True)]
    m, lo, hi = t_interval(d)
    return {
        "diffs": d,
        "mean": m,
        "ci95": [lo, hi],
        "wins": sum(x > 0 for x in d),
        "losses": sum(x < 0 for x in d),
        "wilcoxon_p": wilcoxon_signed_rank_p(d),
        "sign_test_p": sign_test_p(d),
        "sign_flip_p": sign_flip_p(d),
    }


# ---------------------------------------------------------------------------------------- tasks
def paired_cells(r: dict[str, Any], width: int) -> str:
    """One :func:`paired` result as table cells: mean difference (``width`` wide), 95 % t interval,
    wins/losses and the Wilcoxon p."""
    lo, hi = r["ci95"]
    return f"{r['mean']:>+{width}.3f}   [{lo:+.3f}, {hi:+.3f}]{r['wins']:>3}/{r['losses']:<2}{r['wilcoxon_p']:>12.3f}"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def pretrain_objective(pre_set: dict[str, Any]) -> dict[str, Any]:
    """The resolved pre-training objective of the MA2MI runs (the ``ma2mi`` section and δ) under
    ``pre_set``: recorded in every seed's ``result.json``, so that a folder made under other bundled
    defaults (an older mepipe) is not mixed in either."""
    cfg = config_from_dict("pretrain", overrides=pre_set).model_dump(mode="json")
    return {"ma2mi": cfg["ma2mi"], "delta": cfg["data"]["delta"], "delta_unit": cfg["data"]["delta_unit"]}


def _check_record(
    seed_dir: Path, pre_set: dict[str, Any], sizes: DemoSizes, shards: dict[str, str] | None = None
) -> None:
    """Stop if ``seed_dir/result.json`` was made with other ``--pretrain-set`` values (a record without
    any was made with the defaults), another resolved pre-training objective (other bundled defaults;
    a record without one predates the motion-goal defaults), other data and training sizes, or other
    ``--macro-shards`` / ``--micro-shards`` (``None``: the seed's synthetic sets): its numbers must not
    be mixed with these settings'."""
    rec = _read_json(seed_dir / "result.json")
    if rec and rec.get("shards") != shards:
        sys.exit(f"{seed_dir / 'result.json'} was made with shards {rec.get('shards')}, not {shards}: use a fresh --out")  # fmt: skip
    if rec and rec.get("pretrain_set", {}) != pre_set:
        sys.exit(
            f"{seed_dir / 'result.json'} was made with --pretrain-set {rec.get('pretrain_set', {})}, "
            f"not {pre_set}: use a fresh --out"
        )
    here, default = (json.loads(json.dumps(x.__dict__)) for x in (sizes, DemoSizes()))  # tuples as lists
    there = {**default, **rec["sizes"]} if rec and "sizes" in rec else here  # older records lack macro_frames
    differ = {k: (v, here[k]) for k, v in there.items() if k != "workers" and v != here[k]}
    if differ:
        sys.exit(f"{seed_dir / 'result.json'} was made with other sizes (there, here): {differ}; use a fresh --out")  # fmt: skip
    if rec and rec.get("pretrain_objective") != pretrain_objective(pre_set):
        sys.exit(
            f"{seed_dir / 'result.json'} was made with another pre-training objective "
            f"({rec.get('pretrain_objective', 'not recorded: an older mepipe')}); use a fresh --out"
        )


def _metrics(res) -> dict[str, Any]:
    return {
        "uf1": res.uf1,
        "uar": res.uar,
        "acc": res.acc,
        "n": len(res.predictions),
        "correct": {p["key"]: int(p["label"] == p["pred"]) for p in res.predictions},
    }


def _ensure_data(out: Path, seed: int, sizes: DemoSizes, record: dict[str, Any], align: dict[str, str],
                 expressions: str, shards: dict[str, str] | None = None) -> tuple[Path, Path]:  # fmt: skip
    """The seed's macro and micro build folders: ``OUT/seed{N}/{macro,micro}-shards``, synthesised and
    built for the seed, or with ``shards`` links to the given builds (read only; every seed shares
    them, so only the pre-training and fine-tuning seeds vary)."""
    if shards:
        for kind, target in shards.items():
            link = out / f"{kind}-shards"
            if not (link.exists() or link.is_symlink()):
                link.symlink_to(target, target_is_directory=True)
            elif link.resolve() != Path(target):  # e.g. a synthetic build left by a killed run
                sys.exit(f"{link} exists and is not a link to {target}: use a fresh --out")
        record["shards"] = shards
        record.setdefault("seconds", {})["data"] = 0.0
    elif "data" not in record.get("seconds", {}):
        t = time.perf_counter()
        prepare_data(out, seed, sizes, log=lambda m: None, align=align, expressions=expressions)
        record["align"] = align
        record["expressions"] = expressions
        record.setdefault("seconds", {})["data"] = time.perf_counter() - t
    return out / "macro-shards", out / "micro-shards"


def seed_task(out: Path, seed: int, sizes: DemoSizes, variants: list[str], threads: int, align: dict[str, str],
              expressions: str, pre_set: dict[str, Any], repeats: int = 1,
              finetune_budgets: tuple[int, ...] = (), shards: dict[str, str] | None = None) -> None:  # fmt: skip
    """Data, MA2MI pre-training (the default δ, or what ``pre_set`` sets) and every variant's LOSO run
    for one seed, ``repeats`` times with fine-tuning seeds ``seed + 1000 r`` (``runs/{v}`` for r = 0,
    ``runs/{v}-ft{r}`` after it; same data, same pre-trained checkpoint), then once more at each of
    ``finetune_budgets`` epochs (``runs/{v}-ft-e{E}``); each part recorded in ``out/result.json`` as soon
    as it finishes (and skipped when already there). ``shards``: given builds instead of synthetic sets
    (see :func:`_ensure_data`)."""
    path = out / "result.json"
    _check_record(out, pre_set, sizes, shards)
    rec = _read_json(path) or {"seed": seed, "sizes": sizes.__dict__, "seconds": {}, "results": {}}
    rec["pretrain_set"] = pre_set
    rec["pretrain_objective"] = pretrain_objective(pre_set)
    macro, micro = _ensure_data(out, seed, sizes, rec, align, expressions, shards)
    _write_json(path, rec)
    ckpt = out / "runs" / "pretrain" / "last.pt"
    if (
        any(v not in FROM_SCRATCH and v not in FROM_SUPERVISED for v in variants)
        and "pretrain" not in rec["seconds"]
    ):
        t = time.perf_counter()
        _, hist = pretrain_run(out / "runs" / "pretrain", macro, seed, sizes, threads=threads, resume=True,
                               overrides=pre_set, log=lambda m: None)  # fmt: skip
        rec["seconds"]["pretrain"] = time.perf_counter() - t
        rec["pretrain_history"] = [{k: h[k] for k in ("epoch", "loss", "pairs", "pairs_per_s")} for h in hist]
        _write_json(path, rec)
    supervised = out / "runs" / "supervised-pretrain" / "model.pt"
    if any(v in FROM_SUPERVISED for v in variants) and "supervised_pretrain" not in rec["seconds"]:
        t = time.perf_counter()
        supervised_run(supervised.parent, macro, seed, sizes, threads=threads, resume=True)
        rec["seconds"]["supervised_pretrain"] = time.perf_counter() - t
        _write_json(path, rec)
    runs = [(v, r, sizes.finetune_epochs) for r in range(repeats) for v in variants]  # each once first
    runs += [(v, 0, e) for e in finetune_budgets for v in variants]
    for v, r, epochs in runs:
        key = _run_key(v, r, epochs, sizes)
        done, name = _run_slot(rec, v, r, epochs, sizes)
        if name in done:
            continue
        t = time.perf_counter()
        sized = DemoSizes(**{**sizes.__dict__, "finetune_epochs": epochs})
        init = supervised if v in FROM_SUPERVISED else ckpt
        res = finetune_run(out / "runs" / key, micro, seed + FINETUNE_SEED_STEP * r, sized, v, init,
                           threads=threads, resume=True)  # fmt: skip
        done[name] = _metrics(res)
        rec["seconds"][key] = time.perf_counter() - t
        _write_json(path, rec)
        print(
            f"  seed {seed} {key:<17} UF1 {res.uf1:.3f} UAR {res.uar:.3f} ({rec['seconds'][key]:.0f} s)",
            flush=True,
        )


def _run_key(variant: str, r: int, epochs: int, sizes: DemoSizes) -> str:
    """Run folder and ``seconds`` key of fine-tuning repeat ``r`` of ``variant`` for ``epochs`` epochs: the
    variant itself (r = 0 at the main budget), ``{variant}-ft{r}`` or ``{variant}-ft-e{epochs}``."""
    if epochs != sizes.finetune_epochs:
        return f"{variant}-ft-e{epochs}"
    return variant if r == 0 else f"{variant}-ft{r}"


def _run_slot(
    rec: dict[str, Any], variant: str, r: int, epochs: int, sizes: DemoSizes
) -> tuple[dict[str, Any], str]:
    """``(table, name)``: where a seed's record keeps the metrics of that run (made if missing):
    ``results[variant]``, ``repeats[variant][r]`` or ``finetune_budgets[epochs][variant]``."""
    if epochs != sizes.finetune_epochs:
        return rec.setdefault("finetune_budgets", {}).setdefault(str(epochs), {}), variant
    if r == 0:
        return rec.setdefault("results", {}), variant
    return rec.setdefault("repeats", {}).setdefault(variant, {}), str(r)


def _run_result(
    rec: dict[str, Any], variant: str, r: int, epochs: int, sizes: DemoSizes
) -> dict[str, Any] | None:
    """The metrics of that run in a seed's record, or ``None`` if it has not finished."""
    table, name = _run_slot(rec, variant, r, epochs, sizes)
    return table.get(name)


def _pretrain_and_transfer(out: Path, seed: int, tag: str, sizes: DemoSizes, delta: tuple[int, int] | None,
                           threads: int, pre_set: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float], list[dict]]:  # fmt: skip
    """MA2MI pre-training (``sizes.pretrain_epochs``, δ range ``delta``) into ``runs/pretrain-TAG`` and
    the ``ma2mi`` LOSO run from it into ``runs/ma2mi-TAG``, once the seed's data exists (made by the
    seed's main task). Returns (metrics, seconds, pre-training history)."""
    while "data" not in _read_json(out / "result.json").get("seconds", {}):
        time.sleep(10)
    t = time.perf_counter()
    ckpt, hist = pretrain_run(out / "runs" / f"pretrain-{tag}", out / "macro-shards", seed, sizes, delta=delta,
                              threads=threads, resume=True, overrides=pre_set, log=lambda m: None)  # fmt: skip
    t_pre = time.perf_counter() - t
    res = finetune_run(out / "runs" / f"ma2mi-{tag}", out / "micro-shards", seed, sizes, "ma2mi", ckpt,
                       threads=threads, resume=True)  # fmt: skip
    return _metrics(res), {"pretrain": t_pre, "ma2mi": time.perf_counter() - t - t_pre}, hist


def delta_task(out: Path, seed: int, delta: tuple[int, int], sizes: DemoSizes, threads: int,
               pre_set: dict[str, Any]) -> None:  # fmt: skip
    """MA2MI pre-training at δ range ``delta`` and the ``ma2mi`` LOSO run for one seed."""
    path = out / f"delta-{delta[0]}-{delta[1]}.json"
    if "result" in _read_json(path):
        return
    res, secs, _ = _pretrain_and_transfer(
        out, seed, f"d{delta[0]}-{delta[1]}", sizes, delta, threads, pre_set
    )
    _write_json(path, {"seed": seed, "delta": list(delta), "result": res, "seconds": secs})
    print(f"  seed {seed} δ {delta[0]}:{delta[1]:<3} ma2mi UF1 {res['uf1']:.3f} ({sum(secs.values()):.0f} s)",
          flush=True)  # fmt: skip


def budget_task(
    out: Path, seed: int, epochs: int, sizes: DemoSizes, threads: int, pre_set: dict[str, Any]
) -> None:
    """MA2MI pre-training for ``epochs`` epochs (its own cosine schedule, annealed at its end) and the
    ``ma2mi`` LOSO run for one seed: a point of the learning curve."""
    path = out / f"budget-{epochs}.json"
    if "result" in _read_json(path):
        return
    sized = DemoSizes(**{**sizes.__dict__, "pretrain_epochs": epochs})
    res, secs, hist = _pretrain_and_transfer(out, seed, f"e{epochs}", sized, None, threads, pre_set)
    pairs = sum(h["pairs"] for h in hist)
    _write_json(path, {"seed": seed, "epochs": epochs, "pairs_seen": pairs, "final_loss": hist[-1]["loss"],
                       "result": res, "seconds": secs})  # fmt: skip
    print(
        f"  seed {seed} {epochs} pre-training epochs ({pairs} pairs) ma2mi UF1 {res['uf1']:.3f}", flush=True
    )


def _int_range(text: str) -> tuple[int, int]:
    a, b = parse_range(text)
    return int(a), int(b)


SET_SIZES: tuple[tuple[str, int, str], ...] = (
    ("micro_subjects", 2, "subjects (LOSO folds) of each seed's synthetic micro set"),
    ("micro_clips", 1, "clips per subject of each seed's synthetic micro set"),
    ("macro_subjects", 1, "subjects of each seed's synthetic macro set"),
    ("macro_clips", 1, "clips per subject of each seed's synthetic macro set"),
)
"""The synthetic sets' size options: the :class:`DemoSizes` field, its smallest value (LOSO needs two
subjects) and the option's help. One table for the arguments, the given-builds check, the seeds'
sizes and the command each task is run with."""


def _option(field: str) -> str:
    return "--" + field.replace("_", "-")


def _at_least(low: int):
    """An argparse ``type``: an integer ``>= low``."""

    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return parse


def run_tasks(tasks: list[list[str]], jobs: int, base: list[str]) -> None:
    """Run ``tasks`` (argument lists for ``--task``) in order, ``jobs`` subprocesses at a time."""
    running: list[subprocess.Popen] = []
    queue = list(tasks)
    failed = 0
    while queue or running:
        while queue and len(running) < jobs:
            running.append(subprocess.Popen([sys.executable, __file__, *base, "--task", *queue.pop(0)]))
        time.sleep(2)
        for p in [p for p in running if p.poll() is not None]:
            running.remove(p)
            failed += p.returncode != 0
    if failed:
        print(f"{failed} task(s) failed; rerun the same command to retry them (finished parts are kept)")


# ---------------------------------------------------------------------------------------- summary
def _seed_seconds(rec: dict[str, Any], variants: list[str], sizes: DemoSizes, repeats: int = 1) -> float:
    """Seconds of one seed's data, pre-training and the given variants' ``repeats`` fine-tuning runs (not
    other runs recorded there)."""
    main = sizes.finetune_epochs
    keys = [
        "data",
        "pretrain",
        "supervised_pretrain",
        *(_run_key(v, r, main, sizes) for r in range(repeats) for v in variants),
    ]
    return sum(rec["seconds"].get(k, 0.0) for k in keys)


def summarise(args: argparse.Namespace, sizes: DemoSizes) -> dict[str, Any]:
    """Per-seed table and paired differences; with ``args.finetune_repeats`` K > 1 a seed's value of a
    variant is the mean over its K fine-tuning seeds (the data and the pre-training stay one per seed)."""
    k = args.finetune_repeats
    all_recs = {s: _read_json(args.out / f"seed{s}" / "result.json") for s in args.seeds}
    runs = {s: {v: [_run_result(rec, v, r, sizes.finetune_epochs, sizes) for r in range(k)] for v in args.variants}
            for s, rec in all_recs.items()}  # fmt: skip
    seeds = [s for s in args.seeds if all(None not in x for x in runs[s].values())]
    recs = {s: all_recs[s] for s in seeds}
    missing = sorted(set(args.seeds) - set(seeds))
    pre_set = parse_set(args.pretrain_set)
    delta = pre_set.get("data.delta", "{}:{}".format(*DEFAULT_DELTA))
    if args.micro_shards:  # given builds
        data = f"LOSO on {args.micro_shards} (casme2_5 labels, pooled over folds); MA2MI "
        data += f"{sizes.pretrain_epochs} epochs on {args.macro_shards}, "
    else:
        data = (
            f"LOSO on the synthetic micro set ({sizes.micro_subjects} subjects x {sizes.micro_clips} clips, "
        )
        data += f"casme2_5 labels, pooled over folds); MA2MI {sizes.pretrain_epochs} epochs on "
        data += f"{sizes.macro_subjects} x {sizes.macro_clips} macro clips"
        data += (
            f" of {sizes.macro_frames[0]}-{sizes.macro_frames[1]} frames, " if sizes.macro_frames else ", "
        )
    print(
        "\n"
        + data
        + f"δ {delta}"
        + (f", --pretrain-set {pre_set}" if pre_set else "")
        + f"; fine-tuning {sizes.finetune_epochs} epochs"
        + (f", UF1 = mean of {k} fine-tuning seeds (run.seed + {FINETUNE_SEED_STEP} r)" if k > 1 else "")
        + f"; seeds {seeds}"
        + (f" (not finished: {missing})" if missing else "")
    )
    summary: dict[str, Any] = {"seeds": seeds, "sizes": sizes.__dict__, "pretrain_set": pre_set,
                               "finetune_repeats": k, "variants": {}, "paired": {}}  # fmt: skip
    if not seeds:
        return summary
    w = max(14, *(len(v) + 2 for v in args.variants))  # column width
    each = {v: [[x["uf1"] for x in runs[s][v]] for s in seeds] for v in args.variants}
    uf1 = {v: [statistics.mean(x) for x in each[v]] for v in args.variants}
    print(f"{'seed':<6}" + "".join(f"{v:>{w}}" for v in args.variants) + f"{'s/seed':>9}")
    for i, s in enumerate(seeds):
        print(f"{s:<6}" + "".join(f"{uf1[v][i]:>{w}.3f}" for v in args.variants)
              + f"{_seed_seconds(recs[s], args.variants, sizes, k):>9.0f}")  # fmt: skip
    for v in args.variants:
        m, lo, hi = t_interval(uf1[v])
        uar = [statistics.mean(x["uar"] for x in runs[s][v]) for s in seeds]
        summary["variants"][v] = {"uf1": uf1[v], "uar": uar, "uf1_mean": m, "uf1_ci95": [lo, hi],
                                  "seconds_mean": statistics.mean(recs[s]["seconds"][v] for s in seeds)}  # fmt: skip
        if k > 1:
            sd = statistics.mean(statistics.stdev(x) for x in each[v])
            summary["variants"][v].update(uf1_each_repeat=each[v], finetune_sd=sd)
    print(f"{'mean':<6}" + "".join(f"{summary['variants'][v]['uf1_mean']:>{w}.3f}" for v in args.variants))
    if k > 1:  # the spread a single fine-tuning seed adds, which the mean of k divides by sqrt(k)
        print(f"{'ft sd':<6}" + "".join(f"{summary['variants'][v]['finetune_sd']:>{w}.3f}" for v in args.variants)
              + "   (sd over the fine-tuning seeds within a seed, mean over seeds)")  # fmt: skip
    per_seed = [_seed_seconds(recs[s], args.variants, sizes, k) for s in seeds]
    ran = [
        p
        for p in ("data", "pretrain", "supervised_pretrain", *args.variants)
        if any(p in recs[s]["seconds"] for s in seeds)
    ]  # e.g. no supervised pre-training without its variant
    summary["seconds_per_seed"] = {"mean": statistics.mean(per_seed), "each": per_seed,
                                   "parts": {p: statistics.mean(recs[s]["seconds"].get(p, 0.0) for s in seeds) for p in ran}}  # fmt: skip
    parts = ", ".join(f"{k} {v:.0f} s" for k, v in summary["seconds_per_seed"]["parts"].items())
    print(
        f"time per seed (one worker, {args.threads} thread(s)): {statistics.mean(per_seed):.0f} s ({parts})"
    )
    comps = [(v, "scratch") for v in args.variants if v != "scratch" and "scratch" in args.variants]
    if "ma2mi" in args.variants and "no-position" in args.variants:
        comps.append(("ma2mi", "no-position"))
    if "no-position" in args.variants and "no-position-scratch" in args.variants:
        comps.append(("no-position", "no-position-scratch"))
    print(f"\npaired UF1 differences over {len(seeds)} seeds (a - b):")
    print(f"{'a - b':<36}{'mean':>8}{'95% t CI':>18}{'W/L':>6}{'Wilcoxon p':>12}{'sign p':>8}{'flip p':>8}")
    for a, b in comps:
        r = paired(uf1[a], uf1[b])
        summary["paired"][f"{a} - {b}"] = r
        print(f"{a + ' - ' + b:<36}{paired_cells(r, 8)}{r['sign_test_p']:>8.3f}{r['sign_flip_p']:>8.3f}")
    if len(seeds) < 6:
        print(
            f"(with {len(seeds)} seeds the smallest two-sided Wilcoxon/sign p is {2 / 2 ** len(seeds):.3f})"
        )
    return summary


def summarise_deltas(args: argparse.Namespace, summary: dict[str, Any]) -> None:
    if not args.deltas:
        return
    rows: dict[str, dict[int, float]] = {}
    for d in args.deltas:
        key = f"{d[0]}:{d[1]}"
        rows[key] = {}
        for s in args.delta_seeds:
            main = _read_json(args.out / f"seed{s}" / "result.json").get("results", {})
            if tuple(d) == DEFAULT_DELTA and "ma2mi" in main:
                rows[key][s] = main["ma2mi"]["uf1"]
            rec = _read_json(args.out / f"seed{s}" / f"delta-{d[0]}-{d[1]}.json")
            if "result" in rec:
                rows[key][s] = rec["result"]["uf1"]
    seeds = [s for s in args.delta_seeds if all(s in r for r in rows.values())]
    print(f"\nδ sweep (ma2mi UF1; seeds with every δ done: {seeds}):")
    print(f"{'δ':<7}" + "".join(f"{'s' + str(s):>8}" for s in seeds) + f"{'mean':>8}{'95% t CI':>18}"
          + (f"{'vs scratch':>12}" if seeds else ""))  # fmt: skip
    out: dict[str, Any] = {"seeds": seeds, "rows": {}}
    for key, vals in rows.items():
        x = [vals[s] for s in seeds]
        if not x:
            continue
        m, lo, hi = t_interval(x)
        scratch = [
            _read_json(args.out / f"seed{s}" / "result.json")["results"]["scratch"]["uf1"] for s in seeds
        ]
        dm = statistics.mean(a - b for a, b in zip(x, scratch, strict=True))
        out["rows"][key] = {"uf1": x, "mean": m, "ci95": [lo, hi], "minus_scratch": dm}
        print(
            f"{key:<7}" + "".join(f"{v:>8.3f}" for v in x) + f"{m:>8.3f}   [{lo:.3f}, {hi:.3f}]{dm:>+12.3f}"
        )
    summary["delta_sweep"] = out


def summarise_finetune_budgets(args: argparse.Namespace, summary: dict[str, Any], sizes: DemoSizes) -> None:
    """The fine-tuning learning curve: each variant's UF1 at every ``--finetune-budgets`` epoch count
    (one fine-tuning per seed; the main budget is the main run, repeat 0), paired against scratch."""
    if not args.finetune_budgets:
        return
    budgets = sorted({*args.finetune_budgets, sizes.finetune_epochs})
    recs = {s: _read_json(args.out / f"seed{s}" / "result.json") for s in args.seeds}
    got = {
        (s, v, e): _run_result(recs[s], v, 0, e, sizes)
        for s in args.seeds
        for v in args.variants
        for e in budgets
    }
    seeds = [s for s in args.seeds if all(got[s, v, e] is not None for v in args.variants for e in budgets)]
    others = [v for v in args.variants if v != "scratch"] if "scratch" in args.variants else []
    print(f"\nfine-tuning budget (UF1, one fine-tuning per seed; seeds {seeds}):")
    print(f"{'epochs':<8}" + "".join(f"{v:>14}" for v in args.variants)
          + "".join(f"{v + ' - scratch':>24}{'95% t CI':>18}{'W/L':>6}{'Wilcoxon p':>12}" for v in others))  # fmt: skip
    out: dict[str, Any] = {"seeds": seeds, "rows": {}}
    for e in budgets if seeds else []:
        uf1 = {v: [got[s, v, e]["uf1"] for s in seeds] for v in args.variants}
        row: dict[str, Any] = {"uf1": uf1, "paired": {v: paired(uf1[v], uf1["scratch"]) for v in others}}
        out["rows"][str(e)] = row
        line = f"{e:<8}" + "".join(f"{statistics.mean(uf1[v]):>14.3f}" for v in args.variants)
        print(line + "".join(paired_cells(r, 24) for r in row["paired"].values()))
    summary["finetune_budgets"] = out


def summarise_budgets(args: argparse.Namespace, summary: dict[str, Any]) -> None:
    """The learning curve: ``ma2mi`` UF1 against pre-training epochs (0 = scratch) and pairs seen, each
    budget paired against scratch over the seeds that have every budget."""
    if not args.budgets:
        return
    main = {s: _read_json(args.out / f"seed{s}" / "result.json") for s in args.budget_seeds}
    points: dict[int, dict[int, tuple[float, int, float]]] = {0: {}}
    for s, rec in main.items():
        if "scratch" in rec.get("results", {}):
            points[0][s] = (rec["results"]["scratch"]["uf1"], 0, float("nan"))
        if "ma2mi" in rec.get("results", {}) and rec.get("pretrain_history"):
            hist = rec["pretrain_history"]
            points.setdefault(args.pretrain_epochs, {})[s] = (
                rec["results"]["ma2mi"]["uf1"],
                sum(h["pairs"] for h in hist),
                hist[-1]["loss"],
            )
    for e in args.budgets:
        for s in args.budget_seeds:
            rec = _read_json(args.out / f"seed{s}" / f"budget-{e}.json")
            if "result" in rec:
                points.setdefault(e, {})[s] = (rec["result"]["uf1"], rec["pairs_seen"], rec["final_loss"])
    seeds = [s for s in args.budget_seeds if all(s in p for p in points.values())]
    print(f"\nlearning curve (ma2mi UF1 by pre-training budget; 0 = scratch; seeds {seeds}):")
    print(f"{'epochs':<8}{'pairs seen':>11}{'final loss':>11}" + "".join(f"{'s' + str(s):>8}" for s in seeds)
          + f"{'mean':>8}{'95% t CI':>18}{'- scratch':>11}{'95% t CI':>18}{'W/L':>6}{'Wilcoxon p':>12}")  # fmt: skip
    out: dict[str, Any] = {"seeds": seeds, "rows": {}}
    for e in sorted(points):
        if not seeds:
            break
        x = [points[e][s][0] for s in seeds]
        pairs = statistics.mean(points[e][s][1] for s in seeds)
        loss = statistics.mean(points[e][s][2] for s in seeds)
        m, lo, hi = t_interval(x)
        d = paired(x, [points[0][s][0] for s in seeds])
        out["rows"][str(e)] = {"uf1": x, "pairs_seen": pairs, "final_loss": loss, "mean": m, "ci95": [lo, hi],
                               "minus_scratch": d["mean"], "paired": d}  # fmt: skip
        line = (
            f"{e:<8}{pairs:>11.0f}{loss:>11.4f}"
            + "".join(f"{v:>8.3f}" for v in x)
            + f"{m:>8.3f}   [{lo:.3f}, {hi:.3f}]"
        )
        print(line + (paired_cells(d, 11) if e else ""))
    summary["learning_curve"] = out


# ---------------------------------------------------------------------------------------- plots
def _plot(path: Path, title: str, columns: list[tuple[str, list[float], tuple[float, float, float]]],
          zero_line: bool) -> None:  # fmt: skip
    """Dots (one per seed) and a mean with its 95 % interval per column, drawn with OpenCV."""
    import cv2
    import numpy as np

    w, h, left, top, bottom = 150 * len(columns) + 90, 420, 70, 40, 76
    img = np.full((h, w, 3), 255, np.uint8)
    vals = [v for _, xs, (m, lo, hi) in columns for v in (*xs, m, lo, hi) if v == v]
    if zero_line:
        vals.append(0.0)
    ymin, ymax = min(vals), max(vals)
    pad = 0.08 * (ymax - ymin or 1)
    ymin, ymax = ymin - pad, ymax + pad
    font = cv2.FONT_HERSHEY_SIMPLEX

    def py(v: float) -> int:
        return int(round(h - bottom - (v - ymin) / (ymax - ymin) * (h - top - bottom)))

    cv2.putText(img, title[:90], (10, 22), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.line(img, (left, top), (left, h - bottom), (0, 0, 0), 1)
    for k in range(5):
        v = ymin + (ymax - ymin) * k / 4
        cv2.putText(img, f"{v:+.2f}" if zero_line else f"{v:.2f}", (8, py(v) + 4), font, 0.4, (60, 60, 60), 1)
        cv2.line(img, (left - 4, py(v)), (left, py(v)), (0, 0, 0), 1)
    if zero_line:
        cv2.line(img, (left, py(0.0)), (w - 10, py(0.0)), (150, 150, 150), 1)
    for i, (name, xs, (m, lo, hi)) in enumerate(columns):
        cx = left + 80 + 150 * i
        for j, v in enumerate(xs):
            cv2.circle(img, (cx - 30 + (j % 8) * 4, py(v)), 4, (90, 140, 220), -1, cv2.LINE_AA)
        if lo == lo:
            cv2.line(img, (cx + 20, py(lo)), (cx + 20, py(hi)), (200, 40, 40), 2)
            for v in (lo, hi):
                cv2.line(img, (cx + 14, py(v)), (cx + 26, py(v)), (200, 40, 40), 2)
        cv2.circle(img, (cx + 20, py(m)), 5, (200, 40, 40), -1, cv2.LINE_AA)
        label = [*(name.replace(" - ", " -| ").split("|")), f"{m:+.3f}" if zero_line else f"{m:.3f}"]
        for k, part in enumerate(label):
            cv2.putText(img, part, (cx - 55, h - bottom + 20 + 16 * k), font, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))


def plots(args: argparse.Namespace, summary: dict[str, Any]) -> None:
    cols = [(k, r["diffs"], (r["mean"], *r["ci95"])) for k, r in summary.get("paired", {}).items()]
    if cols:
        _plot(args.out / "transfer.png", f"paired UF1 differences, {len(summary['seeds'])} seeds "
              "(dots: seeds; red: mean and 95% t interval)", cols, zero_line=True)  # fmt: skip
    curve = summary.get("learning_curve", {}).get("rows", {})
    if curve:
        ccols = [(f"{k} epochs", r["uf1"], (r["mean"], *r["ci95"])) for k, r in curve.items()]
        _plot(args.out / "learning_curve.png", f"ma2mi LOSO UF1 by pre-training epochs (0: scratch), seeds "
              f"{summary['learning_curve']['seeds']}", ccols, zero_line=False)  # fmt: skip
    rows = summary.get("delta_sweep", {}).get("rows", {})
    if rows:
        dcols = [(f"delta {k}", r["uf1"], (r["mean"], *r["ci95"])) for k, r in rows.items()]
        _plot(args.out / "delta_sweep.png", f"ma2mi LOSO UF1 by delta range, seeds "
              f"{summary['delta_sweep']['seeds']} (dots: seeds; red: mean, 95% t interval)", dcols, zero_line=False)  # fmt: skip


def _given_shards(
    ap: argparse.ArgumentParser, args: argparse.Namespace, align: dict[str, str]
) -> dict[str, str] | None:
    """``{"macro": DIR, "micro": DIR}`` (resolved) from ``--macro-shards`` / ``--micro-shards``, or ``None``;
    refuses one without the other, a folder that is not a build, and the options that shape synthetic sets."""
    given = {k: d for k, d in (("macro", args.macro_shards), ("micro", args.micro_shards)) if d}
    if not given:
        return None
    if len(given) == 1:
        ap.error(
            "--macro-shards and --micro-shards go together (pre-training reads one, fine-tuning the other)"
        )
    for kind, d in given.items():
        if not (d / "manifest.csv").is_file():
            ap.error(
                f"--{kind}-shards {d}: not a build folder (no manifest.csv); make it with mepipe build-dataset"
            )
    synthetic = [o for o, on in (("--macro-align/--micro-align", align), ("--expressions", args.expressions != "canonical"),
                                 *((_option(f), getattr(args, f) != getattr(DemoSizes, f)) for f, _, _ in SET_SIZES),
                                 ("--macro-frames", args.macro_frames is not None)) if on]  # fmt: skip
    if synthetic:
        ap.error(
            f"{', '.join(synthetic)} shape the synthetic sets; with --macro-shards/--micro-shards drop them"
        )
    return {k: str(d.resolve()) for k, d in given.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(8)))
    ap.add_argument("--out", type=Path, default=Path("runs/transfer"))
    ap.add_argument("--variants", nargs="+", default=list(MAIN_VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--deltas", type=_int_range, nargs="*", default=[], help="δ ranges a:b to sweep")
    ap.add_argument("--delta-seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument(
        "--budgets",
        type=int,
        nargs="*",
        default=[],
        help="pre-training epoch budgets for the learning curve (the default budget is the main run)",
    )
    ap.add_argument("--budget-seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=2, help="seeds (and δ runs) run in parallel processes")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads per process (0: default)")
    ap.add_argument("--pretrain-epochs", type=int, default=DemoSizes.pretrain_epochs)
    ap.add_argument("--finetune-epochs", type=int, default=DemoSizes.finetune_epochs)
    for f, low, what in SET_SIZES:
        ap.add_argument(_option(f), type=_at_least(low), default=getattr(DemoSizes, f), help=what)
    ap.add_argument("--macro-frames", type=_int_range, metavar="MIN:MAX",
                    help="frames per clip of each seed's synthetic macro set (default: the layout's 25:75)")  # fmt: skip
    for kind in ("macro", "micro"):
        ap.add_argument(f"--{kind}-align", choices=typing.get_args(AlignConfig.model_fields["mode"].annotation),
                        help=f"align.mode of the {kind} build (default: the demo pipeline's, clip)")  # fmt: skip
    ap.add_argument("--expressions", choices=list(EXPRESSION_SETS), default="canonical",
                    help="the generator's expression set for both synthetic sets")  # fmt: skip
    for kind in ("macro", "micro"):
        ap.add_argument(f"--{kind}-shards", type=Path, metavar="BUILD",
                        help=f"an existing {kind} build folder (mepipe build-dataset) instead of the synthetic set")  # fmt: skip
    ap.add_argument("--pretrain-set", nargs="+", default=[], metavar="KEY=VALUE",
                    help="pre-training config settings for every MA2MI run (e.g. ma2mi.pixel_goal=change)")  # fmt: skip
    ap.add_argument("--finetune-repeats", type=int, default=1, metavar="K",
                    help="fine-tune every variant K times per seed (run.seed + 1000 r) and pair the means")  # fmt: skip
    ap.add_argument("--finetune-budgets", type=int, nargs="*", default=[], metavar="E",
                    help="also fine-tune every variant for E epochs per seed (the fine-tuning learning curve)")  # fmt: skip
    ap.add_argument("--summary-only", action="store_true", help="only print/plot what is already finished")
    ap.add_argument("--task", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    sizes = DemoSizes(pretrain_epochs=args.pretrain_epochs, finetune_epochs=args.finetune_epochs,
                      workers=1, macro_frames=args.macro_frames,
                      **{f: getattr(args, f) for f, _, _ in SET_SIZES})  # fmt: skip
    try:  # a bad key or value (or one the experiment sets itself) stops here, not in every task
        pre_set = parse_set(args.pretrain_set)
        delta = args.deltas[0] if args.deltas else None  # the δ sweep's runs set data.delta themselves
        config_from_dict("pretrain", overrides=pretrain_settings(
            args.out, args.out, 0, sizes, delta=delta, resume=True, overrides=pre_set))  # fmt: skip
    except ConfigError as exc:
        ap.error(f"--pretrain-set: {exc}")
    try:  # checked here, not in every seed's task
        check_clip_frames(args.macro_frames)
    except ConfigError as exc:
        ap.error(f"--macro-frames: {exc}")
    if any(e < 1 for e in args.finetune_budgets):
        ap.error(f"--finetune-budgets must be positive epoch counts, got {args.finetune_budgets}")
    if args.finetune_repeats < 1:
        ap.error(f"--finetune-repeats must be at least 1, got {args.finetune_repeats}")
    align = {k: m for k, m in (("macro", args.macro_align), ("micro", args.micro_align)) if m}
    shards = _given_shards(ap, args, align)
    if args.deltas and not set(args.delta_seeds) <= set(args.seeds):
        ap.error("--delta-seeds must be among --seeds (the δ runs use the seeds' data and scratch runs)")
    if args.budgets and not set(args.budget_seeds) <= set(args.seeds):
        ap.error("--budget-seeds must be among --seeds (the curve uses the seeds' data and scratch runs)")
    if args.task:  # one unit of work, in its own process
        kind, seed = args.task[0], int(args.task[1])
        out = args.out / f"seed{seed}"
        out.mkdir(parents=True, exist_ok=True)
        if kind == "seed":
            seed_task(out, seed, sizes, args.variants, args.threads, align, args.expressions, pre_set,
                      args.finetune_repeats, tuple(args.finetune_budgets), shards)  # fmt: skip
        elif kind == "budget":
            budget_task(out, seed, int(args.task[2]), sizes, args.threads, pre_set)
        else:
            delta_task(out, seed, _int_range(args.task[2]), sizes, args.threads, pre_set)
        return
    if not args.summary_only:
        base = ["--out", str(args.out), "--threads", str(args.threads), "--variants", *args.variants,
                "--pretrain-epochs", str(args.pretrain_epochs), "--finetune-epochs", str(args.finetune_epochs),
                *(a for f, _, _ in SET_SIZES for a in (_option(f), str(getattr(args, f)))),
                "--finetune-repeats", str(args.finetune_repeats),
                *(["--macro-frames", "{}:{}".format(*args.macro_frames)] if args.macro_frames else []),
                "--finetune-budgets", *map(str, args.finetune_budgets),
                *(a for k, m in align.items() for a in (f"--{k}-align", m)), "--expressions", args.expressions,
                *(["--pretrain-set", *args.pretrain_set] if args.pretrain_set else []),
                *(a for k, d in (shards or {}).items() for a in (f"--{k}-shards", d))]  # fmt: skip
        for s in args.seeds:  # before any task, δ and budget runs included
            _check_record(args.out / f"seed{s}", pre_set, sizes, shards)
        tasks = [["seed", str(s)] for s in args.seeds]
        tasks += [["delta", str(s), f"{a}:{b}"] for s in args.delta_seeds for a, b in args.deltas
                  if (a, b) != DEFAULT_DELTA]  # fmt: skip
        tasks += [["budget", str(s), str(e)] for s in args.budget_seeds for e in args.budgets
                  if e != args.pretrain_epochs]  # fmt: skip
        t0 = time.perf_counter()
        run_tasks(tasks, args.jobs, base)
        print(f"all tasks: {time.perf_counter() - t0:.0f} s wall-clock with {args.jobs} job(s)")
    summary = summarise(args, sizes)
    summarise_deltas(args, summary)
    summarise_finetune_budgets(args, summary, sizes)
    summarise_budgets(args, summary)
    args.out.mkdir(parents=True, exist_ok=True)
    _write_json(args.out / "summary.json", summary)
    plots(args, summary)
    print(f"\nsummary -> {args.out / 'summary.json'}; plots -> {args.out}/transfer.png, delta_sweep.png")


if __name__ == "__main__":
    main()
