"""The ``mepipe`` command line: each command is a thin wrapper over one function of :mod:`mepipe.api`.

Conventions (``docs/cli.md``): ``-q``/``-v`` on the root command set the console's log level for every
command (``mepipe -v build-dataset ...``); results are reported through logging, tables and CSV go to
stdout; the build folder is the ``BUILD`` argument of verify/inspect/pairs/folds/flow/export and
``--build`` of train/predict; exit codes are those of :mod:`mepipe.clikit`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from mepipe import api
from mepipe.clikit import (
    BUILD_ARG_HELP,
    EXIT_DATA,
    EXIT_INCOMPLETE,
    EXIT_INTERRUPTED,
    choices,
    error,
    handled,
    log,
    verbosity,
)
from mepipe.logs import setup_logging
from mepipe.train.commands import train_app

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Micro-expression preprocessing and training. Exit codes: 0 ok, 1 data does not match "
    "(verification, unfinished build, rejected clip), 2 usage or config error, 3 verify: unfinished "
    "build, 130 interrupted (docs/cli.md).",
)

Layout = choices(api.names("layouts"))
BuildBackend = choices(api.names("build-backends"))
FlowBackend = choices(api.names("flow-backends"))
ExportFormat = choices(api.names("export-formats"))
Protocol = choices(["loso", "lodo"])
Unit = choices(["frames", "ms"])
Amplitude = choices(["micro", "macro"])
Expressions = choices(["canonical", "varied"])
Frames = choices(["keyframes", "all"])
Normalisation = choices(["none", "minmax", "fixed"])
LABELS_HELP = f"label scheme ({', '.join(api.names('labels'))}; `mepipe labels`)"
DEVICE_HELP = "cpu, cuda, cuda:N or auto (CUDA when available)"


def _version(value: bool) -> None:
    if value:
        from mepipe import __version__

        print(f"mepipe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print the mepipe version and exit"
    ),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="more log lines (-v: debug)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="warnings and errors only"),
) -> None:
    """Micro-expression preprocessing and training."""
    setup_logging(-1 if quiet else verbose)


@app.command()
@handled
def synth(
    out: Path = typer.Option(..., "--out", help="folder to write the dataset into"),
    layout: Layout = typer.Option("casme2", "--layout", help="on-disk layout to imitate"),  # type: ignore[valid-type]
    subjects: int = typer.Option(3, "--subjects", min=1),
    clips_per_subject: int = typer.Option(4, "--clips-per-subject", min=1),
    seed: int = typer.Option(0, "--seed"),
    amplitude: Amplitude | None = typer.Option(None, "--amplitude", help="default: per layout"),  # type: ignore[valid-type]
    faces_dir: Path | None = typer.Option(
        None, "--faces", help="folder of portrait photos to use as subjects"
    ),
    clip_frames: str | None = typer.Option(
        None, "--clip-frames", metavar="MIN:MAX", help="frames per clip (default: the layout's, e.g. 40:70)"
    ),
    expressions: Expressions = typer.Option(  # type: ignore[valid-type]
        "canonical", "--expressions", help="varied: several AU combinations per class, faint clips too"
    ),
    workers: int = typer.Option(
        1, "--workers", min=1, help="parallel worker processes (same files for any number)"
    ),
) -> None:
    """Write a synthetic dataset in a real dataset's native layout, with ground truth."""
    s = api.synth(
        out=out, layout=layout, subjects=subjects, clips_per_subject=clips_per_subject, seed=seed,
        amplitude=amplitude, faces_dir=faces_dir, clip_frames=clip_frames, expressions=expressions,
        workers=workers,
    )  # fmt: skip
    log.info("wrote %d clips (%d frames) to %s", s.n_clips, s.n_frames, s.out)


@app.command("build-dataset")
@handled
def build_dataset_cmd(
    pipeline: str = typer.Argument(
        ..., help=f"pipeline YAML, or a bundled name: {', '.join(api.names('pipelines'))}"
    ),
    source: Path | None = typer.Option(None, "--source", help="dataset folder as distributed"),
    out: Path = typer.Option(..., "--out", help="the build folder to write (shards + manifest)"),
    workers: int = typer.Option(1, "--workers", min=1, help="parallel worker processes"),
    backend: BuildBackend = typer.Option(  # type: ignore[valid-type]
        "local", "--backend", help="local (worker processes on this machine) or dask (see docs/cluster.md)"
    ),
    scheduler: str | None = typer.Option(
        None,
        "--scheduler",
        help="dask: address tcp://HOST:PORT or scheduler file of a running cluster (default: a "
        "LocalCluster of --workers processes)",
    ),
    force: bool = typer.Option(
        False, "--force", help="DANGER: delete the build in --out and rebuild everything (not while it runs)"
    ),
    limit: int | None = typer.Option(None, "--limit", min=1, help="build only the first N clips"),
    set_: list[str] = typer.Option([], "--set", help="override a pipeline key: KEY=VALUE (repeatable)"),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="same as mepipe -v"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="same as mepipe -q"),
) -> None:
    """Detect, align and crop every clip of a dataset into HDF5 shards + manifest.

    Running the same command again into the same --out resumes: clips already stored are kept and
    the rest are built. Everything is logged to OUT/build.log. Nothing is written before the pipeline
    is valid (keys, values, registry names).
    """
    verbosity(verbose, quiet)
    try:
        s = api.build(
            pipeline=pipeline, source=source, out=out, overrides=api.parse_overrides(set_), workers=workers,
            force=force, limit=limit, backend=backend, scheduler=scheduler,
        )  # fmt: skip
    except (KeyboardInterrupt, api.BuildInterrupted) as exc:
        error(
            str(exc) if str(exc) else f"interrupted; run the same command again to resume the build in {out}"
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    # counts, failures by reason and the fix report are logged by the build itself (build.log too)
    log.info("%d shard(s), %.0f frames/s -> %s", len(s.shards), s.frames_per_second, out)


@app.command()
@handled
def verify(build: Path = typer.Argument(..., metavar="BUILD", help=BUILD_ARG_HELP)) -> None:
    """Re-read every shard against the manifest and checksums.

    Exit codes: 0 complete and consistent; 1 a mismatch or damaged file; 3 consistent but unfinished
    (clips still pending: run the build command again to finish it).
    """
    rep = api.verify(build)
    for p in rep.problems:
        log.error("mismatch: %s", p)
    for note in rep.notes:
        log.info("note: %s", note)
    log.info(
        "%d clips in %d shard(s) checked, %d failed rows listed, %d pending, %d problem(s)",
        rep.clips_checked, rep.shards_checked, rep.failed_rows, rep.pending, len(rep.problems),
    )  # fmt: skip
    if not rep.ok:
        raise typer.Exit(EXIT_DATA)
    if rep.pending:
        log.warning(
            "incomplete build: %d clip(s) not built yet (the build was interrupted); what is stored is "
            "consistent. Run the same `mepipe build-dataset ... --out %s` again to finish it",
            rep.pending, build,
        )  # fmt: skip
        raise typer.Exit(EXIT_INCOMPLETE)


@app.command()
@handled
def pairs(
    build: Path = typer.Argument(..., metavar="BUILD", help=BUILD_ARG_HELP),
    delta: str | None = typer.Option(
        None, "--delta", help="offset range A:B, inclusive (default: the build's pairs.delta)"
    ),
    unit: Unit | None = typer.Option(None, "--unit", help="default: the build's pairs.unit"),  # type: ignore[valid-type]
    per_clip: int | None = typer.Option(None, "--per-clip", min=1, help="at most N pairs per clip"),
    bias: float | None = typer.Option(
        None, "--bias", min=0.0, max=1.0, help="probability of drawing t inside onset..offset"
    ),
    seed: int | None = typer.Option(None, "--seed", help="random seed (default: the build's)"),
) -> None:
    """(Re)write BUILD/pairs.csv: (t, t+delta) frame pairs pointing into the shards (no pixels copied)."""
    r = api.pairs(build, delta=delta, unit=unit, per_clip=per_clip, bias=bias, seed=seed)
    log.info(
        "wrote %d pairs from %d/%d clips (delta %g..%g %s, seed %d) -> %s",
        r.pairs, r.clips_with_pairs, r.clips, r.delta[0], r.delta[1], r.unit, r.seed, r.path,
    )  # fmt: skip


@app.command()
@handled
def inspect(
    build: Path = typer.Argument(..., metavar="BUILD", help=BUILD_ARG_HELP),
    sheet: Path = typer.Option(
        ..., "--sheet", help="PNG to write (several pages: SHEET-001.png, SHEET-002.png ... next to it)"
    ),
    max_clips: int = typer.Option(200, "--max-clips", min=1, help="at most N ok (and N failed) clips"),
    per_page: int = typer.Option(25, "--per-page", min=1, help="at most N grid rows on a page"),
    columns: int = typer.Option(2, "--columns", min=1, help="clips side by side"),
) -> None:
    """Contact sheet: onset and apex crops with landmarks, |apex - onset| with a colour bar, the
    failures; flagged clips first; paged."""
    s = api.inspect(build, sheet=sheet, max_clips=max_clips, per_page=per_page, columns=columns)
    where = s.pages[0] if len(s.pages) == 1 else f"{len(s.pages)} pages {s.pages[0]} .. {s.pages[-1].name}"
    log.info(
        "contact sheet: %d of %d ok clips (%d flagged), %d of %d failed -> %s",
        s.shown, s.ok, s.flagged, s.failed_shown, s.failed, where,
    )  # fmt: skip


@app.command()
@handled
def backends(
    weights: Path | None = typer.Option(
        None, "--weights", help="a FAN weights file to check (face.options.weights)"
    ),
) -> None:
    """List every face detector and landmarker: usable here or not (and why), model file, sha256, licence."""
    print(api.backends(weights=weights))


@app.command()
@handled
def datasets() -> None:
    """List the registered dataset adapters (the names of dataset.adapter)."""
    print("\n".join(api.datasets()))


@app.command()
@handled
def labels(
    show: str | None = typer.Option(None, "--show", metavar="NAME", help="print one scheme's mapping"),
) -> None:
    """List the label schemes (name, classes, datasets it maps); --show NAME prints its mapping."""
    if show is None:
        for s in api.label_schemes():
            print(f"{s.name}: {s.num_classes} classes ({', '.join(s.classes)}); maps {', '.join(s.mapping)}")
        return
    s = api.label_scheme(show)
    print(f"{s.name}: classes {', '.join(f'{i}={c}' for i, c in enumerate(s.classes))}")
    for dataset, table in s.mapping.items():
        print(f"{dataset}:")
        for raw, cls in table.items():
            print(f"  {raw} -> {cls}")
    print("(raw strings not listed are left out of the scheme)")


@app.command()
@handled
def folds(
    build: Path = typer.Argument(..., metavar="BUILD", help="build folder (or its manifest.csv)"),
    protocol: Protocol = typer.Option(  # type: ignore[valid-type]
        "loso", "--protocol", help="loso (one fold per dataset/subject) or lodo (per dataset)"
    ),
    labels: str | None = typer.Option(None, "--labels", help=f"{LABELS_HELP}; keeps only clips it labels"),
    dataset: list[str] = typer.Option([], "--dataset", help="keep only this dataset (repeatable)"),
    per_dataset: bool = typer.Option(
        False, "--per-dataset", help="loso: train only on the held-out subject's dataset"
    ),
    csv_path: Path | None = typer.Option(
        None, "--out", help="CSV to write (default BUILD/folds-<protocol>[-<labels>].csv)"
    ),
) -> None:
    """Write leak-checked evaluation folds (one line per fold and clip) from a build's manifest."""
    r = api.folds(
        build, protocol=protocol, labels=labels, datasets=dataset, per_dataset=per_dataset, csv_path=csv_path
    )
    lo, hi = r.test_sizes
    log.info(
        "%d %s folds over %d clips (%d ok clips left out by --labels/--dataset); test side %d..%d clips -> %s",
        len(r.folds), protocol, r.clips, r.left_out, lo, hi, r.path,
    )  # fmt: skip


def _names(text: str | None) -> list[str] | None:
    """``"u,v,strain"`` -> ``["u", "v", "strain"]``; ``None`` stays ``None`` (option not given)."""
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


@app.command()
@handled
def flow(
    build: Path = typer.Argument(..., metavar="BUILD", help=BUILD_ARG_HELP),
    backend: FlowBackend | None = typer.Option(  # type: ignore[valid-type]
        None, "--backend", help="default dis; tvl1 needs the opencv-contrib wheel"
    ),
    size: int | None = typer.Option(None, "--size", min=16, help="flow computed on grey crops of this side"),
    pairs: str | None = typer.Option(
        None, "--pairs", help="comma list of onset_apex, apex_offset, onset_every (default onset_apex)"
    ),
    every: int | None = typer.Option(None, "--every", min=1, help="onset_every: every k-th frame"),
    channels: str | None = typer.Option(
        None, "--channels", help="comma list of u, v, magnitude, strain (default all four)"
    ),
    normalisation: Normalisation | None = typer.Option(  # type: ignore[valid-type]
        None, "--normalisation", help="none (pixels, default), minmax (per sample: STSTNet), fixed"
    ),
    scale: float | None = typer.Option(None, "--scale", help="fixed normalisation: divisor in pixels"),
    param: list[str] = typer.Option([], "--param", help="backend parameter KEY=VALUE (repeatable)"),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="same as mepipe -v"),
) -> None:
    """Add optical flow (u, v, magnitude, strain) to the shards of a finished build, without rebuilding.

    Settings: the build's `flow` section (BUILD/pipeline.resolved.yaml), overridden by the options given.
    Each shard is rewritten through a copy and an atomic rename; a shard whose flow already matches is
    skipped, so an interrupted run resumes. Frames are untouched (`mepipe verify` still passes).
    """
    verbosity(verbose, False)
    done = api.flow(
        build, backend=backend, size=size, pairs=_names(pairs), every=every, channels=_names(channels),
        normalisation=normalisation, scale=scale, params=api.parse_overrides(param) or None,
    )  # fmt: skip
    c = done.config
    log.info(
        "flow (%s, %d px, %s; %s; normalisation %s) in %d clips of %d shard(s) rewritten, %d already up to "
        "date -> %s", c.backend, c.size, ", ".join(c.pairs), ", ".join(c.channels), c.normalisation,
        done.clips, done.shards_done, done.shards_skipped, build / "flow-info.json",
    )  # fmt: skip


@app.command("export")
@handled
def export_cmd(
    build: Path = typer.Argument(..., metavar="BUILD", help=BUILD_ARG_HELP),
    fmt: ExportFormat = typer.Option(..., "--format", help="ststnet: 28x28 u/v/strain images"),  # type: ignore[valid-type]
    dest: Path = typer.Option(..., "--out", help="folder to write (must be new or empty unless --force)"),
    labels: str | None = typer.Option(
        None, "--labels", help=f"{LABELS_HELP}: clips it does not label are skipped (ststnet needs one)"
    ),
    frames: Frames = typer.Option(
        "keyframes", "--frames", help="frames format: keyframes (onset, apex) or all"
    ),  # type: ignore[valid-type]
    flow_backend: FlowBackend | None = typer.Option(  # type: ignore[valid-type]
        None, "--flow-backend", help="ststnet: flow backend (default: the build's stored flow, else dis)"
    ),
    force: bool = typer.Option(False, "--force", help="replace an earlier export in --out (nothing else)"),
) -> None:
    """Export a build's clips as frame folders, one npz per clip, or STSTNet/HTNet flow images, each with
    index.csv (key, dataset, subject, clip_id, label, onset, apex, offset, path) and export-info.json."""
    s = api.export(
        build, out=dest, fmt=fmt, labels=labels, frames=frames, flow_backend=flow_backend, force=force
    )
    skipped = f", {s.skipped} not labelled by {labels} skipped" if s.skipped else ""
    log.info("%d clips exported as %s (%d files%s) -> %s; index %s", s.clips, s.format, s.files, skipped,
             s.out, s.index)  # fmt: skip


@app.command()
@handled
def predict(
    run: Path = typer.Argument(..., help="a `train finetune --protocol all` run folder, or its model.pt"),
    input_path: Path | None = typer.Argument(None, metavar="[INPUT]", help="a video file or a frame folder"),
    build: Path | None = typer.Option(None, "--build", help="instead of INPUT: every ok clip of this build"),
    onset: int | None = typer.Option(None, "--onset", help="onset, source frame number (default: estimated)"),
    apex: int | None = typer.Option(None, "--apex", help="apex, source frame number (default: estimated)"),
    fps: float | None = typer.Option(
        None, "--fps", min=1.0, help="frame rate of a frame folder (default 30)"
    ),
    out: Path | None = typer.Option(
        None, "--out", help="write prediction.json + heatmap.png (--build: predictions.csv) here"
    ),
    device: str = typer.Option("cpu", "--device", help=DEVICE_HELP),
) -> None:
    """Run a trained model on a video or frame folder (face stage and keyframes as in its training
    build), or on every clip of a build (--build, stored crops). Exit 1 when the clip is rejected."""
    if (input_path is None) == (build is None):
        raise typer.BadParameter("give INPUT (a video or frame folder) or --build BUILD, not both")
    if build is not None:
        if onset is not None or apex is not None or fps is not None:
            raise typer.BadParameter("--onset/--apex/--fps apply to INPUT; --build uses the stored keyframes")
        res = api.predict_build(run, build=build, out=out, device=device)
        if res.path is None:
            import csv

            if res.rows:
                w = csv.DictWriter(sys.stdout, fieldnames=list(res.rows[0]))
                w.writeheader()
                w.writerows(res.rows)
        else:
            log.info("%d clips predicted -> %s", len(res.rows), res.path)
        return
    assert input_path is not None
    pred, files = api.predict(
        run, input_path=input_path, onset=onset, apex=apex, fps=fps, device=device, out=out
    )
    print("\n".join(pred.lines()))
    if files:
        log.info("wrote %s", " and ".join(str(p) for p in files))


# --- mepipe train: MA2MI pre-training and fine-tuning (the commands live in mepipe.train.commands) ------

app.add_typer(train_app, name="train")


@app.command()
@handled
def demo(
    out: Path = typer.Option(Path("demo-out"), "--out", help="run folder (data, shards, runs, results.json)"),
    seed: int = typer.Option(0, "--seed"),
    workers: int = typer.Option(2, "--workers", min=1),
    force: bool = typer.Option(
        False, "--force", help="DANGER: delete an earlier demo in --out (only its files)"
    ),
) -> None:
    """The main job on the embedded default: synth -> build -> MA2MI pre-train -> LOSO fine-tune -> table."""
    result = api.demo(out=out, seed=seed, workers=workers, force=force)
    print(f"\nLOSO on the synthetic micro-expression set (casme2_5 labels, pooled over folds, seed {seed}):")
    print(result.table())
    n = min(m["n"] for m in result.metrics.values())
    print(
        f"\nOne seed is one draw: on these {n} held-out clips one clip is {100 / n:.1f} accuracy points, and "
        "with the demo's sizes (55 clips) the fine-tuning seed alone moves the UF1 of one model by about "
        "0.04 (sd). The paired statistics over many seeds: benchmarks/transfer_experiment.py (README, "
        "'Does MA2MI pre-training help?')."
    )
    print(
        f"\nEverything is under {out}: results.json, micro-contact-sheet.png, runs/*/ (configs, metrics, "
        "confusion matrices, heat maps, reconstructions)"
    )


def main() -> None:
    app(prog_name="mepipe")


if __name__ == "__main__":
    sys.exit(main())
