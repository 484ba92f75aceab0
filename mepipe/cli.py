"""The ``mepipe`` command line: a thin wrapper over the typed API (see mepipe.api)."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mepipe.errors import MepipeError
from mepipe.train.commands import train_app, train_errors

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Micro-expression preprocessing and training."
)
console = Console(stderr=True, soft_wrap=True)


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
) -> None:
    """Micro-expression preprocessing and training."""


def friendly(fn):
    """Turn mepipe's own errors into a one-paragraph message and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MepipeError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def parse_overrides(items: list[str]) -> dict[str, object]:
    """``["align.crop_size=112"]`` -> ``{"align.crop_size": 112}``: the one ``--set`` parser of every
    command (:func:`mepipe.schema.parse_set`; values are YAML, ``1e-3`` a number, ``1:4`` a string)."""
    from mepipe.schema import parse_set

    return parse_set(items)


@app.command()
@friendly
def synth(
    out: Path = typer.Option(..., "--out", help="folder to write the dataset into"),
    layout: str = typer.Option("casme2", "--layout", help="on-disk layout to imitate"),
    subjects: int = typer.Option(3, "--subjects", min=1),
    clips_per_subject: int = typer.Option(4, "--clips-per-subject", min=1),
    seed: int = typer.Option(0, "--seed"),
    amplitude: str | None = typer.Option(None, "--amplitude", help="micro or macro (default: per layout)"),
    faces_dir: Path | None = typer.Option(
        None, "--faces", help="folder of portrait photos to use as subjects"
    ),
) -> None:
    """Write a synthetic dataset in a real dataset's native layout, with ground truth."""
    from mepipe.synth import synthesize

    with progress_bar() as bar:
        task = bar.add_task(f"synth {layout}", total=None)
        summary = synthesize(
            layout,
            out,
            subjects=subjects,
            clips_per_subject=clips_per_subject,
            seed=seed,
            amplitude=amplitude,
            faces_dir=faces_dir,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    console.print(f"wrote {summary.n_clips} clips ({summary.n_frames} frames) to {summary.out}")


@app.command("build-dataset")
@friendly
def build_dataset_cmd(
    pipeline: Path = typer.Argument(..., help="pipeline YAML, e.g. pipelines/casme2.yaml"),
    source: Path | None = typer.Option(None, "--source", help="dataset folder as distributed"),
    out: Path = typer.Option(..., "--out", help="output folder for shards + manifest"),
    workers: int = typer.Option(1, "--workers", min=1, help="parallel worker processes"),
    backend: str = typer.Option(
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
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="more log lines (-v: debug)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="warnings and errors only"),
) -> None:
    """Detect, align and crop every clip of a dataset into HDF5 shards + manifest.

    Running the same command again into the same --out resumes: clips already stored are kept and
    the rest are built. Everything is logged to OUT/build.log.
    """
    from mepipe.build import build_dataset
    from mepipe.config import load_config
    from mepipe.logs import setup_logging

    setup_logging(-1 if quiet else verbose)
    cfg = load_config(pipeline, parse_overrides(set_))
    try:
        summary = build_dataset(
            cfg,
            source,
            out,
            workers=workers,
            force=force,
            limit=limit,
            backend=backend,
            scheduler=scheduler,
        )
    except KeyboardInterrupt:
        console.print(f"interrupted; run the same command again to resume the build in {out}")
        raise typer.Exit(130) from None
    kept = f" ({summary.clips_kept} kept from earlier runs)" if summary.clips_kept else ""
    console.print(
        f"{summary.clips_ok} clips ok{kept}, {summary.clips_failed} failed, {summary.frames} frames built "
        f"in {summary.seconds:.1f} s ({summary.frames_per_second:.0f} frames/s), {len(summary.shards)} "
        f"shard(s) -> {out}"
    )
    if summary.clips_failed:
        console.print(f"see the failed rows (status=failed, reason, message) in {out / 'manifest.csv'}")
    if summary.fixes_applied or summary.fixes_unmatched:
        console.print(
            f"fix tables: {summary.fixes_applied} fix(es) applied, {summary.fixes_unmatched} did not fit "
            f"(fix_report in {out / 'build-info.json'})"
        )


@app.command()
@friendly
def verify(out: Path = typer.Argument(..., help="build folder")) -> None:
    """Re-read every shard against the manifest and checksums.

    Exit codes: 0 complete and consistent; 1 a mismatch or damaged file; 3 consistent but unfinished
    (clips still pending: run the build command again to finish it).
    """
    from mepipe.shards.verify import verify_build

    rep = verify_build(out)
    for p in rep.problems:
        console.print(f"[red]mismatch:[/] {p}", highlight=False)
    for note in rep.notes:
        console.print(f"note: {note}", highlight=False)
    console.print(
        f"{rep.clips_checked} clips in {rep.shards_checked} shard(s) checked, "
        f"{rep.failed_rows} failed rows listed, {rep.pending} pending, {len(rep.problems)} problem(s)"
    )
    if not rep.ok:
        raise typer.Exit(1)
    if rep.pending:
        console.print(
            f"incomplete build: {rep.pending} clip(s) not built yet (the build was interrupted); what "
            f"is stored is consistent. Run the same `mepipe build-dataset ... --out {out}` again to finish it"
        )
        raise typer.Exit(3)


@app.command()
@friendly
def pairs(
    out: Path = typer.Argument(..., help="build folder"),
    delta: str | None = typer.Option(
        None, "--delta", help="offset range A:B, inclusive (default: the build's pairs.delta)"
    ),
    unit: str | None = typer.Option(None, "--unit", help="frames or ms (default: the build's pairs.unit)"),
    per_clip: int | None = typer.Option(None, "--per-clip", min=1, help="at most N pairs per clip"),
    bias: float | None = typer.Option(
        None, "--bias", min=0.0, max=1.0, help="probability of drawing t inside onset..offset"
    ),
    seed: int | None = typer.Option(None, "--seed", help="random seed (default: the build's)"),
) -> None:
    """(Re)write OUT/pairs.csv: (t, t+delta) frame pairs pointing into the shards (no pixels copied)."""
    from mepipe.pairs import pair_settings, write_pair_table
    from mepipe.shards.manifest import require_complete

    require_complete(out)
    cfg, used_seed = pair_settings(out, delta=delta, unit=unit, per_clip=per_clip, bias=bias, seed=seed)
    path = write_pair_table(out, cfg, seed=used_seed)
    import json

    info = json.loads((out / "pairs.json").read_text())
    console.print(
        f"wrote {info['pairs']} pairs from {info['clips_with_pairs']}/{info['clips']} clips "
        f"(delta {cfg.delta[0]:g}..{cfg.delta[1]:g} {cfg.unit}, seed {used_seed}) -> {path}"
    )


@app.command()
@friendly
def inspect(
    out: Path = typer.Argument(..., help="build folder"),
    sheet: Path = typer.Option(..., "--sheet", help="PNG file to write"),
    max_clips: int = typer.Option(200, "--max-clips", min=1),
) -> None:
    """Contact sheet: onset and apex crops with landmarks, |apex - onset|, and the failures."""
    from mepipe.inspect import contact_sheet

    console.print(f"wrote {contact_sheet(out, sheet, max_clips=max_clips)}")


@app.command()
@friendly
def backends(
    weights: Path | None = typer.Option(
        None, "--weights", help="a FAN weights file to check (face.options.weights)"
    ),
) -> None:
    """List every face detector and landmarker: usable here or not (and why), model file, sha256, licence."""
    from mepipe.face.backends import backend_table

    print(backend_table({"weights": str(weights)} if weights else None))


@app.command()
def datasets() -> None:
    """List the registered dataset adapters."""
    import mepipe.datasets as ds

    for name in ds.ADAPTERS.names():
        print(name)


@app.command()
@friendly
def folds(
    out: Path = typer.Argument(..., help="build folder (or its manifest.csv)"),
    protocol: str = typer.Option(
        "loso", "--protocol", help="loso (one fold per dataset/subject) or lodo (per dataset)"
    ),
    labels: str | None = typer.Option(
        None, "--labels", help="label scheme; folds keep only the clips it labels"
    ),
    dataset: list[str] = typer.Option([], "--dataset", help="keep only this dataset (repeatable)"),
    per_dataset: bool = typer.Option(
        False, "--per-dataset", help="loso: train only on the held-out subject's dataset"
    ),
    csv_path: Path | None = typer.Option(
        None, "--out", help="CSV to write (default OUT/folds-<protocol>.csv)"
    ),
) -> None:
    """Write leak-checked evaluation folds (one line per fold and clip) from a build's manifest."""
    from mepipe.folds import make_folds, select_rows, write_folds_csv
    from mepipe.shards.manifest import require_complete

    if protocol not in ("loso", "lodo"):
        raise typer.BadParameter(f"--protocol {protocol!r}: use loso or lodo")
    rows = require_complete(out)
    chosen = select_rows(rows, scheme=labels, datasets=dataset or None)
    made = make_folds(rows, protocol, scheme=labels, datasets=dataset or None, per_dataset=per_dataset)  # type: ignore[arg-type]
    if not made:
        raise typer.BadParameter(f"no fold: {out} has no ok clip left after --labels/--dataset")
    folder = out.parent if out.is_file() else out
    name = f"folds-{protocol}" + (f"-{labels}" if labels else "") + ".csv"
    path = write_folds_csv(made, rows, csv_path or folder / name, scheme=labels)
    sizes = sorted(len(f.test) for f in made)
    ok = sum(r.status == "ok" for r in rows)
    console.print(
        f"{len(made)} {protocol} folds over {len(chosen)} clips ({ok - len(chosen)} ok clips left out by "
        f"--labels/--dataset); test side {sizes[0]}..{sizes[-1]} clips -> {path}"
    )


def _names(text: str | None) -> list[str] | None:
    """``"u,v,strain"`` -> ``["u", "v", "strain"]``; ``None`` stays ``None`` (option not given)."""
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


@app.command()
@train_errors
def flow(
    out: Path = typer.Argument(..., help="build folder (build-dataset --out)"),
    backend: str | None = typer.Option(
        None, "--backend", help="dis (default), farneback, or tvl1 (needs the opencv-contrib wheel)"
    ),
    size: int | None = typer.Option(None, "--size", min=16, help="flow computed on grey crops of this side"),
    pairs: str | None = typer.Option(
        None, "--pairs", help="comma list of onset_apex, apex_offset, onset_every (default onset_apex)"
    ),
    every: int | None = typer.Option(None, "--every", min=1, help="onset_every: every k-th frame"),
    channels: str | None = typer.Option(
        None, "--channels", help="comma list of u, v, magnitude, strain (default all four)"
    ),
    normalisation: str | None = typer.Option(
        None, "--normalisation", help="none (pixels, default), minmax (per sample: STSTNet), fixed"
    ),
    scale: float | None = typer.Option(None, "--scale", help="fixed normalisation: divisor in pixels"),
    param: list[str] = typer.Option([], "--param", help="backend parameter KEY=VALUE (repeatable)"),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True),
) -> None:
    """Add optical flow (u, v, magnitude, strain) to the shards of a finished build, without rebuilding.

    Settings: the build's `flow` section (OUT/pipeline.resolved.yaml), overridden by the options given.
    Each shard is rewritten through a copy and an atomic rename; a shard whose flow already matches is
    skipped, so an interrupted run resumes. Frames are untouched (`mepipe verify` still passes).
    """
    from mepipe.flow_stage import add_flow, flow_config_for
    from mepipe.logs import Progress, setup_logging
    from mepipe.shards.manifest import require_complete

    setup_logging(verbose)
    over: dict[str, object] = {
        "backend": backend,
        "size": size,
        "pairs": _names(pairs),
        "every": every,
        "channels": _names(channels),
        "normalisation": normalisation,
        "scale": scale,
        "params": parse_overrides(param) or None,
    }
    cfg = flow_config_for(out, over)
    n = sum(r.status == "ok" for r in require_complete(out))
    desc = f"flow {cfg.backend} {cfg.size}px {'+'.join(cfg.pairs)}"
    with Progress(desc, total=n, unit="clips") as bar:
        done = add_flow(out, cfg, progress=bar.advance)  # a build lock on OUT goes around this call
    console.print(
        f"flow ({cfg.backend}, {cfg.size} px, {', '.join(cfg.pairs)}; {', '.join(cfg.channels)}; "
        f"normalisation {cfg.normalisation}) in {done.clips} clips of {done.shards_done} shard(s) rewritten, "
        f"{done.shards_skipped} already up to date -> {out / 'flow-info.json'}"
    )


@app.command("export")
@train_errors
def export_cmd(
    out: Path = typer.Argument(..., help="build folder (build-dataset --out)"),
    fmt: str = typer.Option(..., "--format", help="frames, npz or ststnet (28x28 u/v/strain images)"),
    dest: Path = typer.Option(..., "--out", help="folder to write (must be new or empty unless --force)"),
    labels: str | None = typer.Option(
        None, "--labels", help="label scheme: clips it does not label are skipped (ststnet needs one)"
    ),
    frames: str = typer.Option("keyframes", "--frames", help="frames format: keyframes (onset, apex) or all"),
    flow_backend: str | None = typer.Option(
        None, "--flow-backend", help="ststnet: flow backend (default: the build's stored flow, else dis)"
    ),
    force: bool = typer.Option(False, "--force", help="DANGER: replace a non-empty --out folder"),
) -> None:
    """Export a build's clips as frame folders, one npz per clip, or STSTNet/HTNet flow images, each with
    index.csv (key, dataset, subject, clip_id, label, onset, apex, offset, path) and export-info.json."""
    from mepipe.export import export_build
    from mepipe.logs import Progress, setup_logging

    setup_logging(0)
    with Progress(f"export {fmt}", unit="clips") as bar:
        s = export_build(
            out, dest, fmt, labels=labels, frames=frames, flow_backend=flow_backend, force=force,
            progress=bar.advance,
        )  # fmt: skip
    skipped = f", {s.skipped} not labelled by {labels} skipped" if s.skipped else ""
    console.print(
        f"{s.clips} clips exported as {s.format} ({s.files} files{skipped}) -> {s.out}; index {s.index}"
    )


@app.command()
@train_errors
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
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or auto"),
) -> None:
    """Run a trained model on a video or frame folder (face stage and keyframes as in its training
    build), or on every clip of a build (--build, stored crops). Exit 1 when the clip is rejected."""
    from mepipe.predict import predict_build, predict_clip, write_prediction

    if (input_path is None) == (build is None):
        raise typer.BadParameter("give INPUT (a video or frame folder) or --build OUT, not both")
    if build is not None:
        if onset is not None or apex is not None or fps is not None:
            raise typer.BadParameter("--onset/--apex/--fps apply to INPUT; --build uses the stored keyframes")
        res = predict_build(run, build, out=out, device=device)
        if res.path is None:
            import csv

            if res.rows:
                w = csv.DictWriter(sys.stdout, fieldnames=list(res.rows[0]))
                w.writeheader()
                w.writerows(res.rows)
        else:
            console.print(f"{len(res.rows)} clips predicted -> {res.path}")
        return
    assert input_path is not None
    pred = predict_clip(run, input_path, onset=onset, apex=apex, fps=fps, device=device)
    print("\n".join(pred.lines()))
    if out is not None:
        js, png = write_prediction(pred, out)
        console.print(f"wrote {js}" + (f" and {png}" if png else ""))


# --- mepipe train: MA2MI pre-training and fine-tuning (the commands live in mepipe.train.commands) ------

app.add_typer(train_app, name="train")


@app.command()
@friendly
def demo(
    out: Path = typer.Option(Path("demo-out"), "--out", help="run folder (data, shards, runs, results.json)"),
    seed: int = typer.Option(0, "--seed"),
    workers: int = typer.Option(2, "--workers", min=1),
) -> None:
    """The main job on the embedded default: synth -> build -> MA2MI pre-train -> LOSO fine-tune -> table."""
    import time

    from mepipe.demo import DemoSizes, run_demo

    t0 = time.perf_counter()
    result = run_demo(
        out,
        seed=seed,
        sizes=DemoSizes(workers=workers),
        log=lambda msg: console.print(f"[{time.perf_counter() - t0:6.1f}s] {msg}", highlight=False),
    )
    print(f"\nLOSO on the synthetic micro-expression set (casme2_5 labels, pooled over folds, seed {seed}):")
    print(result.table())
    print(
        f"\nEverything is under {out}: results.json, micro-contact-sheet.png, runs/*/ (configs, metrics, "
        "confusion matrices, heat maps, reconstructions)"
    )


def main() -> None:
    app(prog_name="mepipe")


if __name__ == "__main__":
    sys.exit(main())
