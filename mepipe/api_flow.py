"""The typed API's flow, export and predict functions (re-exported by :mod:`mepipe.api`, where they
are documented with the rest; cheap to import like it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mepipe.export import ExportSummary
    from mepipe.predict import BuildPredictions, ClipPrediction

PathLike = str | Path


def flow_settings(build: PathLike, **options: Any):
    """The flow settings ``flow`` would use: the build's ``flow`` section with ``options`` (flow keys,
    ``None`` = not given) applied; validated (:class:`~mepipe.config.FlowConfig`)."""
    from mepipe.flow_stage import flow_config_for

    return flow_config_for(build, options)


@dataclass(frozen=True)
class FlowResult:
    """What :func:`flow` did: the settings used and :class:`~mepipe.flow_stage.FlowSummary`'s counts."""

    config: Any
    shards_done: int
    shards_skipped: int
    clips: int
    flows: int


def flow(build: PathLike, **options: Any) -> FlowResult:
    """Add optical flow to the shards of a finished build without rebuilding (``mepipe flow``).

    Args:
        build: the build folder.
        **options: flow keys overriding the build's ``flow`` section (``backend``, ``size``, ``pairs``,
            ``every``, ``channels``, ``normalisation``, ``scale``, ``params``); ``None`` = not given.
    """
    from mepipe.flow_stage import add_flow
    from mepipe.logs import Progress
    from mepipe.shards.manifest import require_complete

    cfg = flow_settings(build, **options)
    n = sum(r.status == "ok" for r in require_complete(build))
    with Progress(f"flow {cfg.backend} {cfg.size}px {'+'.join(cfg.pairs)}", total=n, unit="clips") as bar:
        s = add_flow(build, cfg, progress=bar.advance)  # a build lock on BUILD goes around this call
    return FlowResult(cfg, s.shards_done, s.shards_skipped, s.clips, s.flows)


def export(
    build: PathLike,
    *,
    out: PathLike,
    fmt: str,
    labels: str | None = None,
    frames: str = "keyframes",
    flow_backend: str | None = None,
    force: bool = False,
) -> ExportSummary:
    """Export a build's clips as frame folders, npz files or STSTNet flow images (``mepipe export``)."""
    from mepipe.export import export_build
    from mepipe.logs import Progress

    with Progress(f"export {fmt}", unit="clips") as bar:
        return export_build(
            build, out, fmt, labels=labels, frames=frames, flow_backend=flow_backend, force=force,
            progress=bar.advance,
        )  # fmt: skip


def predict(
    run: PathLike,
    *,
    input_path: PathLike,
    onset: int | None = None,
    apex: int | None = None,
    fps: float | None = None,
    device: str = "cpu",
    out: PathLike | None = None,
) -> tuple[ClipPrediction, list[Path]]:
    """Run a trained model (``train finetune --protocol all``) on a video or frame folder; with
    ``out`` writes ``prediction.json`` (+ ``heatmap.png``). Returns the prediction and the files."""
    from mepipe.predict import predict_clip, write_prediction

    pred = predict_clip(run, input_path, onset=onset, apex=apex, fps=fps, device=device)
    if out is None:
        return pred, []
    js, png = write_prediction(pred, out)
    return pred, [p for p in (js, png) if p is not None]


def predict_build(
    run: PathLike, *, build: PathLike, out: PathLike | None = None, device: str = "cpu"
) -> BuildPredictions:
    """Score every ok clip of a finished build on its stored onset/apex pair (``mepipe predict --build``)."""
    from mepipe.predict import predict_build as _predict_build

    return _predict_build(run, build, out=out, device=device)
