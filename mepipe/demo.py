"""``mepipe demo``: the whole method on the embedded default data, on a CPU, in a few minutes.

synth macro (DFEW layout, video) + micro (CASME II layout) -> build both (verify, contact sheet) ->
MA2MI pre-training on the macro pairs -> LOSO fine-tuning of MIACNet from scratch and from the
pre-trained weights -> a results table (UF1 / UAR / Acc). The ablations (no position branch, no attention,
δ ranges) are the transfer experiment's (``benchmarks/transfer_experiment.py``), not the demo's.
Everything is seeded; the run folder keeps every config, manifest, checkpoint, metric and picture.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mepipe import resources
from mepipe.build import build_dataset
from mepipe.config import load_config
from mepipe.errors import ConfigError, ShardError
from mepipe.inspect import contact_sheet
from mepipe.logs import Progress
from mepipe.shards.verify import verify_build

VARIANTS: dict[str, dict[str, object]] = {
    "scratch": {"model.name": "miacnet"},
    "ma2mi": {"model.name": "miacnet"},
    "no-position": {"model.name": "miacnet-nopos"},
    "no-attention": {"model.name": "miacnet-noatt"},
    "no-position-scratch": {"model.name": "miacnet-nopos"},
    "ma2mi-freeze": {"model.name": "miacnet", "optim.freeze_epochs": 10},
    "supervised": {"model.name": "miacnet"},
}
"""Fine-tuning overrides of each variant; the variants not in :data:`FROM_SCRATCH` start from the MA2MI
checkpoint (``no-position-scratch`` is the control of the MA2MI-initialised ``no-position``), except
those in :data:`FROM_SUPERVISED`."""
FROM_SCRATCH = frozenset({"scratch", "no-position-scratch"})
FROM_SUPERVISED = frozenset({"supervised"})
"""Variants initialised from MIACNet trained *with labels* on the macro set (:func:`supervised_run`): the
naive transfer that MA2MI, which uses no macro labels, is compared with."""
MACRO_LABELS = "dfew_7"
"""The label scheme of the synthetic macro set (DFEW layout) for :func:`supervised_run`."""
DEMO_VARIANTS = ("scratch", "ma2mi")
"""What ``mepipe demo`` fine-tunes: the comparison the method stands on. The time a third variant would
take goes into a larger micro set (:data:`DEMO_SIZES`), so that one demo compares the two on more clips."""
DEMO_ALIGN = {"macro": "register", "micro": "register"}
"""``align.mode`` of the demo's two builds: stabilised crops, as the real micro-expression pipelines make
them (``pipelines/casme2.yaml``), and for the macro set too, so that the motion MA2MI learns to encode
is the facial action, not the head's (README, "Does MA2MI pre-training help?"). The demo pipelines
themselves keep ``clip``, which the tests and benchmarks use."""
DEMO_EXPRESSIONS = "varied"
"""The generator's expression set for the demo (several AU combinations per class, sharing AUs; see
:data:`mepipe.synth.expressions.EXPRESSION_SETS`): with ``canonical`` expressions and stabilised crops
every model gets every clip right."""


@dataclass
class DemoSizes:
    """How much synthetic data and training a demo-style run uses. The defaults are the small sets of
    the transfer experiments in the README (``benchmarks/transfer_experiment.py``, ``baselines.py``);
    ``mepipe demo`` itself runs at :data:`DEMO_SIZES`.

    ``macro_frames``: ``(min, max)`` frames per macro clip (``None``: the DFEW layout's 25-75)."""

    micro_subjects: int = 5
    micro_clips: int = 8
    macro_subjects: int = 6
    macro_clips: int = 8
    pretrain_epochs: int = 15
    finetune_epochs: int = 40
    workers: int = 2
    macro_frames: tuple[int, int] | None = None


DEMO_SIZES = DemoSizes(
    micro_clips=12, macro_subjects=24, macro_clips=16, macro_frames=(16, 24), pretrain_epochs=20
)
"""What ``mepipe demo`` uses (its time is measured in the README, "What `mepipe demo` does and shows").
With 48 macro clips no pre-training transferred, labels included (README, "Does MA2MI pre-training
help?"); 384 did. Short clips (16-24 frames, δ ≤ 8 still fits) keep those 384 diverse clips within
the demo's time, and :data:`DEMO_PRETRAIN` keeps the pairs per epoch of the small set. The micro set
has 5 subjects x 12 clips, not 8: with ~36 test clips one clip is ~3 UF1 points and the fine-tuning
seed alone moved one model's UF1 by ~7 (sd), too coarse for one run to show a ~10-point gain."""
DEMO_PRETRAIN: dict[str, object] = {"data.pairs_per_clip": 2}
"""Pre-training overrides of the demo: 2 pairs per clip and epoch (768 pairs per epoch on 384 clips)."""


@dataclass
class DemoResult:
    out: Path
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)

    def table(self) -> str:
        lines = [f"{'model':<14}{'UF1':>8}{'UAR':>8}{'Acc':>8}{'clips':>7}"]
        for name, m in self.metrics.items():
            lines.append(f"{name:<14}{m['uf1']:>8.3f}{m['uar']:>8.3f}{m['acc']:>8.3f}{m['n']:>7d}")
        return "\n".join(lines)


def _pipeline(name: str, overrides: dict[str, object] | None = None):
    """A bundled pipeline (``pipelines/<name>.yaml``) with dotted-key ``overrides``."""
    return load_config(resources.find("pipelines", name), overrides)


def prepare_data(
    out: Path,
    seed: int,
    sizes: DemoSizes,
    log: Callable[[str], None] = print,
    align: dict[str, str] | None = None,
    expressions: str = "canonical",
) -> tuple[Path, Path]:
    """Synthesise and build the macro and micro sets under ``out``; returns the two build folders.

    ``align``: ``align.mode`` for ``"macro"`` and/or ``"micro"`` instead of the demo pipelines' ``clip``
    (the transfer experiment's ``--macro-align`` / ``--micro-align``). ``expressions``: the generator's
    expression set for both (:data:`mepipe.synth.expressions.EXPRESSION_SETS`)."""
    from mepipe.synth import synthesize

    builds = {}
    for kind, layout, pipeline, subjects, clips in (
        ("macro", "dfew", "demo-macro", sizes.macro_subjects, sizes.macro_clips),
        ("micro", "casme2", "demo-micro", sizes.micro_subjects, sizes.micro_clips),
    ):
        with Progress(f"synth {layout}", subjects * clips, unit="clips") as bar:
            data = synthesize(
                layout, out / "data" / kind, subjects=subjects, clips_per_subject=clips, seed=seed,
                expressions=expressions, progress=lambda done, _total: bar.advance(done - bar.done),
                workers=sizes.workers, clip_frames=sizes.macro_frames if kind == "macro" else None,
            )  # fmt: skip
        log(f"synth {layout}: {data.n_clips} clips, {data.n_frames} frames -> {data.out}")
        mode = {"align.mode": align[kind]} if align and kind in align else {}
        cfg = _pipeline(pipeline, {"seed": seed, **mode})
        s = build_dataset(cfg, data.out, out / f"{kind}-shards", workers=sizes.workers, force=True)
        rep = verify_build(out / f"{kind}-shards")
        if not rep.ok:
            raise ShardError(f"verify failed for {out / f'{kind}-shards'}: {rep.problems[:3]}")
        log(f"build {pipeline}: {s.clips_ok} ok, {s.clips_failed} failed, {s.frames} frames, verified")
        builds[kind] = out / f"{kind}-shards"
    sheet = contact_sheet(builds["micro"], out / "micro-contact-sheet.png", max_clips=24)
    log(f"contact sheet -> {', '.join(str(p) for p in sheet.pages)}")
    return builds["macro"], builds["micro"]


def _with_overrides(
    own: dict[str, object], overrides: dict[str, object] | None, what: str
) -> dict[str, object]:
    """``own`` (the settings a run function derives from its arguments) plus the caller's dotted-key
    ``overrides``; an override of one of ``own``'s keys is refused, not applied silently (a δ-sweep run
    given ``data.delta`` would otherwise train at that δ and be reported under its own)."""
    clash = sorted(set(own) & set(overrides or {}))
    if clash:
        raise ConfigError(
            f"{what}: {', '.join(clash)} {'is' if len(clash) == 1 else 'are'} set by the run's own "
            "arguments (data, output, seed, epochs, threads, checkpoints, δ, variant); pass them there, "
            "not as overrides"
        )
    return {**own, **(overrides or {})}


def pretrain_settings(
    run_dir: Path,
    macro: Path,
    seed: int,
    sizes: DemoSizes,
    *,
    delta: tuple[int, int] | None = None,
    threads: int = 0,
    resume: bool = False,
    overrides: dict[str, object] | None = None,
) -> dict[str, object]:
    """The dotted-key settings of an MA2MI pre-training on ``macro`` into ``run_dir``
    (``sizes.pretrain_epochs`` epochs, the bundled defaults otherwise). :func:`pretrain_run` trains with
    them; a caller can check its overrides with it before any data are made.

    Args:
        delta: another δ range.
        threads: torch CPU threads (0: torch's default).
        resume: continue an interrupted run in ``run_dir`` (else an existing run is replaced).
        overrides: further dotted-key settings of the pre-training config (``{"ma2mi.pixel_goal":
            "change"}``); one that the arguments already set raises :class:`ConfigError`.
    """
    over: dict[str, object] = {
        "data.shards": str(macro),
        "run.out": str(run_dir),
        "run.seed": seed,
        "optim.epochs": sizes.pretrain_epochs,
        "run.device": "cpu",
        "run.cpu_threads": threads,
        "run.resume" if resume else "run.force": True,
    }
    if delta is not None:
        over["data.delta"] = list(delta)
    return _with_overrides(over, overrides, "MA2MI pre-training")


def pretrain_run(
    run_dir: Path,
    macro: Path,
    seed: int,
    sizes: DemoSizes,
    *,
    log: Callable[[str], None] = print,
    **settings: Any,
) -> tuple[Path, list[dict]]:
    """MA2MI pre-training with :func:`pretrain_settings` (``settings``: its keyword arguments ``delta``,
    ``threads``, ``resume``, ``overrides``). Returns ``(checkpoint, history)``."""
    from mepipe.train import config_from_dict, pretrain

    over = pretrain_settings(run_dir, macro, seed, sizes, **settings)
    every = max(sizes.pretrain_epochs // 5, 1)  # a few progress lines, not one per epoch

    def epoch_line(rec: dict) -> None:
        if rec["epoch"] % every == 0 or rec["epoch"] == sizes.pretrain_epochs:
            log(f"MA2MI pre-training epoch {rec['epoch']}/{sizes.pretrain_epochs}: loss {rec['loss']:.4f}")

    pre = pretrain(config_from_dict("pretrain", overrides=over), on_epoch=epoch_line)
    log(f"MA2MI pre-training: {sizes.pretrain_epochs} epochs, final loss {pre.final_loss:.4f} -> {pre.out}")
    return pre.checkpoint, pre.history


def supervised_run(
    run_dir: Path,
    macro: Path,
    seed: int,
    sizes: DemoSizes,
    *,
    labels: str = MACRO_LABELS,
    threads: int = 0,
    resume: bool = False,
) -> Path:
    """Supervised macro pre-training: MIACNet trained on every macro clip's onset/apex pair with its
    emotion label (``labels``; ``mepipe train finetune --protocol all``, the fine-tuning defaults and
    ``sizes.finetune_epochs`` epochs). Returns ``RUN/model.pt``, which ``finetune --init`` takes like an
    MA2MI checkpoint (its ``E_act``/``E_pos``)."""
    from mepipe.train import config_from_dict
    from mepipe.train.loso import finetune_all

    over = _classifier_settings(run_dir, macro, labels, seed, sizes, threads, resume)
    over.update({"protocol.name": "all", "model.name": "miacnet"})
    return finetune_all(config_from_dict("finetune", overrides=over)).model


CHECKPOINT_EVERY = 10
"""Epochs between the checkpoints of the demo's classifier trainings (and the last epoch's)."""


def _classifier_settings(
    run_dir: Path, shards: Path, labels: str, seed: int, sizes: DemoSizes, threads: int, resume: bool
) -> dict[str, object]:
    """The dotted-key settings every classifier training of the demo shares (data, output, seed, epochs,
    CPU threads, checkpoints, resume or replace).

    A checkpoint every :data:`CHECKPOINT_EVERY` epochs: an epoch of these small folds takes ~0.35 s on
    2 cores and writing the checkpoint ~0.04 s (10 % of a LOSO run when written every epoch); saving
    less often changes nothing in the training (``tests/test_train_resume.py``), only how many epochs
    a killed fold repeats."""
    return {
        "data.shards": str(shards),
        "data.labels": labels,
        "run.out": str(run_dir),
        "run.seed": seed,
        "optim.epochs": sizes.finetune_epochs,
        "run.device": "cpu",
        "run.cpu_threads": threads,
        "run.checkpoint_every": CHECKPOINT_EVERY,
        "run.resume" if resume else "run.force": True,
    }


def finetune_run(
    run_dir: Path,
    micro: Path,
    seed: int,
    sizes: DemoSizes,
    variant: str,
    init: str | Path = "",
    *,
    threads: int = 0,
    resume: bool = False,
    overrides: dict[str, object] | None = None,
):
    """LOSO fine-tuning of ``variant`` (a :data:`VARIANTS` key) on ``micro`` into ``run_dir``; ``init`` is
    the MA2MI checkpoint, or for :data:`FROM_SUPERVISED` the supervised model (ignored for the variants in
    :data:`FROM_SCRATCH`). ``overrides``: further dotted-key settings of the fine-tuning config (one that
    the arguments or the variant already set raises :class:`ConfigError`). Returns the LOSO result."""
    from mepipe.train import config_from_dict, finetune_loso

    over = _classifier_settings(run_dir, micro, "casme2_5", seed, sizes, threads, resume)
    over.update({"init": "" if variant in FROM_SCRATCH else str(init), **VARIANTS[variant]})
    return finetune_loso(
        config_from_dict("finetune", overrides=_with_overrides(over, overrides, f"fine-tuning {variant}"))
    )


def run_models(
    out: Path,
    macro: Path,
    micro: Path,
    seed: int,
    sizes: DemoSizes,
    variants: tuple[str, ...] = DEMO_VARIANTS,
    log: Callable[[str], None] = print,
    pretrain_overrides: dict[str, object] | None = None,
) -> DemoResult:
    """Pre-train on ``macro`` (when a variant needs it; ``pretrain_overrides`` as in
    :func:`pretrain_settings`), then LOSO fine-tune each variant on ``micro``."""
    result = DemoResult(out)
    init: Path | str = ""
    if any(v not in FROM_SCRATCH for v in variants):
        init, _ = pretrain_run(
            out / "runs" / "pretrain", macro, seed, sizes, log=log, overrides=pretrain_overrides
        )
    for name in variants:
        res = finetune_run(out / "runs" / name, micro, seed, sizes, name, init)
        m = res.metrics
        result.metrics[name] = {"uf1": m["uf1"], "uar": m["uar"], "acc": m["acc"], "n": len(res.predictions)}
        log(f"LOSO {name}: UF1 {m['uf1']:.3f} UAR {m['uar']:.3f} Acc {m['acc']:.3f} -> {res.out}")
    return result


DEMO_ENTRIES = ("data", "macro-shards", "micro-shards", "runs", "results.json", "micro-contact-sheet")
"""What a demo folder holds (``micro-contact-sheet*.png`` pages included): ``force`` deletes only these."""


def _clear_demo(out: Path, force: bool) -> None:
    """Refuse an earlier demo in ``out`` unless ``force``; then delete only what a demo writes."""
    import shutil

    if not out.is_dir():
        return
    entries = list(out.iterdir())
    ours = [p for p in entries if p.name.startswith(DEMO_ENTRIES)]
    if not entries:
        return
    if not force:
        raise ConfigError(
            f"--out {out} is not empty (an earlier demo?); pass --force to replace the demo there, "
            "or choose another --out"
        )
    if len(ours) != len(entries):
        others = sorted(p.name for p in entries if p not in ours)
        raise ConfigError(
            f"--out {out} holds files a demo does not write ({', '.join(others[:5])}); --force deletes "
            "only a demo's own files: choose another --out"
        )
    for p in ours:
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def run_demo(
    out: str | Path,
    *,
    seed: int = 0,
    sizes: DemoSizes | None = None,
    log: Callable[[str], None] = print,
    force: bool = False,
) -> DemoResult:
    """The full demo; writes ``OUT/results.json`` and returns the metrics of each variant.

    An ``out`` holding an earlier demo is refused unless ``force`` (which deletes that demo's files
    and nothing else)."""
    out = Path(out)
    sizes = sizes or DEMO_SIZES
    _clear_demo(out, force)
    out.mkdir(parents=True, exist_ok=True)
    macro, micro = prepare_data(out, seed, sizes, log, align=DEMO_ALIGN, expressions=DEMO_EXPRESSIONS)
    result = run_models(out, macro, micro, seed, sizes, log=log, pretrain_overrides=DEMO_PRETRAIN)
    data = {"align": DEMO_ALIGN, "expressions": DEMO_EXPRESSIONS, "pretrain": DEMO_PRETRAIN}
    (out / "results.json").write_text(
        json.dumps({"seed": seed, "sizes": sizes.__dict__, "data": data, "metrics": result.metrics}, indent=2)
        + "\n"
    )
    return result
