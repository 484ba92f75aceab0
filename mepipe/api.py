"""The typed API of mepipe: one function per thing the product does; ``mepipe`` (the CLI) only calls these.

Every function takes keyword arguments (the build or run folder first) and returns a typed result;
errors are :class:`mepipe.errors.ConfigError` (bad name, value or usage: the CLI exits 2) or another
:class:`mepipe.errors.MepipeError` (the data does not match: unfinished build, damaged shard, rejected
clip; the CLI exits 1). Importing this module is cheap: the heavy modules (numpy, OpenCV, h5py,
torch) are imported inside the functions that need them. Long work reports progress through
:mod:`mepipe.logs` (a rich bar on a terminal, plain periodic lines otherwise); call
:func:`mepipe.logs.setup_logging` once to see it.

Example, the whole method from a script::

    from mepipe import api

    api.synth(out="data/casme2", layout="casme2", subjects=4)
    built = api.build(pipeline="casme2", source="data/casme2", out="builds/casme2")
    assert api.verify("builds/casme2").ok
    api.pairs("builds/casme2", delta="1:4")
    api.folds("builds/casme2", protocol="loso", labels="casme2_5")
    api.inspect("builds/casme2", sheet="builds/casme2/sheet.png")
    cfg = api.train_config("finetune", overrides={"data.shards": "builds/casme2", "run.out": "runs/ft",
                                                  "data.labels": "casme2_5"})
    print(api.finetune(cfg).metrics["uf1"])

Names that the CLI offers as choices come from :func:`names` (``names("layouts")``,
``names("labels")`` ...), read from the one registry of each extension point.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mepipe.api_flow import FlowResult as FlowResult  # flow, export, predict live in mepipe/api_flow.py
from mepipe.api_flow import export as export
from mepipe.api_flow import flow as flow
from mepipe.api_flow import flow_settings as flow_settings
from mepipe.api_flow import predict as predict
from mepipe.api_flow import predict_build as predict_build
from mepipe.errors import ConfigError

if TYPE_CHECKING:
    from mepipe.build import BuildSummary
    from mepipe.config import PipelineConfig
    from mepipe.demo import DemoResult
    from mepipe.folds import Fold
    from mepipe.labels import LabelScheme
    from mepipe.shards.verify import VerifyReport
    from mepipe.synth import SynthSummary
    from mepipe.train.config import FinetuneConfig, PretrainConfig
    from mepipe.train.loso import DeployResult, LosoResult
    from mepipe.train.pretrain import PretrainResult

PathLike = str | Path
Protocol = Literal["loso", "lodo"]

# --- names: the choices of every extension point ---------------------------------------------------

_NAMES: dict[str, tuple[str, str]] = {
    # kind: (module, registry attribute or resource kind)
    "layouts": ("mepipe.synth.layouts", "LAYOUTS"),
    "adapters": ("mepipe.datasets", "ADAPTERS"),
    "detectors": ("mepipe.face.backends", "DETECTORS"),
    "landmarkers": ("mepipe.face.backends", "LANDMARKERS"),
    "flow-backends": ("mepipe.flow", "FLOW_BACKENDS"),
    "models": ("mepipe.train.models", "MODELS"),
    "export-formats": ("mepipe.export", "FORMATS"),
}
BUILD_BACKENDS = ("local", "dask")
"""Where ``build-dataset`` runs its workers (``--backend``)."""
RESOURCE_KINDS = ("labels", "pipelines", "configs", "composites", "fixes", "lists")


def names(kind: str) -> list[str]:
    """The valid names of ``kind``: a registry (``layouts``, ``adapters``, ``detectors``,
    ``landmarkers``, ``flow-backends``, ``models``, ``export-formats``, ``build-backends``) or a
    resource kind (``labels``, ``pipelines``, ``configs``, ``composites``, ``fixes``, ``lists``,
    bundled and from ``MEPIPE_RESOURCES``).

    Raises:
        ConfigError: an unknown ``kind``, listing the valid ones.
    """
    import importlib

    if kind == "build-backends":
        return list(BUILD_BACKENDS)
    if kind in RESOURCE_KINDS:
        from mepipe import resources

        return resources.names(kind)
    if kind not in _NAMES:
        valid = ", ".join([*_NAMES, "build-backends", *RESOURCE_KINDS])
        raise ConfigError(f"unknown kind of name {kind!r}; valid kinds: {valid}")
    module, attr = _NAMES[kind]
    reg = getattr(importlib.import_module(module), attr)
    return list(reg.names() if hasattr(reg, "names") else reg)


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["align.crop_size=112"]`` -> ``{"align.crop_size": 112}``: the one ``KEY=VALUE`` parser of
    ``--set`` / ``--param`` (values are YAML: ``1e-3`` a number, ``1:4`` a string)."""
    from mepipe.schema import parse_set

    return parse_set(list(items))


def _check_name(kind: str, name: str, what: str) -> None:
    valid = names(kind)
    if name not in valid:
        raise ConfigError(f"unknown {what} {name!r}; valid names: {', '.join(valid)}")


# --- synthetic data, builds -------------------------------------------------------------------------


def synth(
    *,
    out: PathLike,
    layout: str = "casme2",
    subjects: int = 3,
    clips_per_subject: int = 4,
    seed: int = 0,
    amplitude: str | None = None,
    faces_dir: PathLike | None = None,
    clip_frames: str | tuple[int, int] | None = None,
    expressions: str = "canonical",
    workers: int = 1,
) -> SynthSummary:
    """Write a synthetic dataset in a real dataset's native layout, with ground truth (``mepipe synth``;
    ``clip_frames``: ``(min, max)`` or ``"MIN:MAX"`` frames per clip instead of the layout's range;
    ``expressions``: ``canonical`` or ``varied``; ``workers``: clips rendered in parallel processes, the
    same files for any number; see :func:`mepipe.synth.synthesize`).

    Raises:
        ConfigError: ``clip_frames`` is not a range of whole frames."""
    from mepipe.logs import Progress
    from mepipe.synth import synthesize

    _check_name("layouts", layout, "synth layout")
    if isinstance(clip_frames, str):
        clip_frames = _frame_range(clip_frames)
    with Progress(f"synth {layout}", unit="clips") as bar:

        def step(done: int, total: int) -> None:
            if bar.total != total:
                bar.set_total(total)
            bar.advance(done - bar.done)

        return synthesize(
            layout,
            Path(out),
            subjects=subjects,
            clips_per_subject=clips_per_subject,
            seed=seed,
            amplitude=amplitude,
            faces_dir=Path(faces_dir) if faces_dir else None,
            progress=step,
            clip_frames=clip_frames,
            expressions=expressions,
            workers=workers,
        )


def _frame_range(text: str) -> tuple[int, int]:
    """``"150:300"`` -> ``(150, 300)`` (``"150"``: exactly 150 frames)."""
    from mepipe.schema import parse_range

    try:
        lo, hi = parse_range(text)
    except ValueError:
        lo = hi = 0.5  # not numbers: refused below
    if not (lo.is_integer() and hi.is_integer()):
        raise ConfigError(f"clip frames {text!r} is not MIN:MAX in whole frames; give e.g. 150:300")
    return int(lo), int(hi)


def check_pipeline(cfg: PipelineConfig) -> PipelineConfig:
    """Refuse a pipeline whose registry names are wrong before anything is written: the dataset
    adapter, a composite's rule and its members' adapters (face backends are checked by the schema).

    Raises:
        ConfigError: the bad name and the valid ones.
    """
    _check_name("adapters", cfg.dataset.adapter, "dataset adapter (dataset.adapter)")
    if cfg.dataset.adapter == "composite":
        rule = cfg.dataset.options.get("rule")
        if rule:
            from mepipe import resources

            resources.resolve("composites", str(rule))
        for i, m in enumerate(cfg.dataset.options.get("datasets") or []):
            if isinstance(m, dict) and "adapter" in m:
                _check_name("adapters", str(m["adapter"]), f"dataset adapter (dataset.options.datasets[{i}])")
    return cfg


def load_pipeline(
    pipeline: PathLike | PipelineConfig, *, overrides: dict[str, Any] | None = None
) -> PipelineConfig:
    """A validated pipeline: a YAML path, a bundled name (``casme2``) or a config, with ``--set``
    ``overrides`` (dotted keys) applied; registry names checked (:func:`check_pipeline`)."""
    from mepipe.config import PipelineConfig, load_config, parse_config
    from mepipe.schema import apply_overrides

    if isinstance(pipeline, PipelineConfig):
        cfg = parse_config(apply_overrides(pipeline.resolved(), overrides)) if overrides else pipeline
    else:
        cfg = load_config(pipeline, overrides)
    return check_pipeline(cfg)


def build(
    *,
    pipeline: PathLike | PipelineConfig,
    out: PathLike,
    source: PathLike | None = None,
    overrides: dict[str, Any] | None = None,
    workers: int = 1,
    force: bool = False,
    limit: int | None = None,
    backend: str = "local",
    scheduler: str | None = None,
) -> BuildSummary:
    """Detect, align and crop every clip into HDF5 shards + manifest (``mepipe build-dataset``);
    running it again into the same ``out`` resumes. The config is complete and valid before anything
    is written into ``out``."""
    from mepipe.build import build_dataset

    _check_name("build-backends", backend, "build backend (--backend)")
    cfg = load_pipeline(pipeline, overrides=overrides)
    return build_dataset(
        cfg, source, out, workers=workers, force=force, limit=limit, backend=backend, scheduler=scheduler
    )


def verify(build: PathLike) -> VerifyReport:
    """Re-read every shard of a build against its manifest and checksums (``mepipe verify``)."""
    from mepipe.shards.verify import verify_build

    return verify_build(build)


@dataclass(frozen=True)
class PairsResult:
    """What :func:`pairs` wrote: ``path`` (``pairs.csv``), the counts and the settings used."""

    path: Path
    pairs: int
    clips: int
    clips_with_pairs: int
    delta: tuple[float, float]
    unit: str
    seed: int


def pairs(
    build: PathLike,
    *,
    delta: str | tuple[float, float] | None = None,
    unit: str | None = None,
    per_clip: int | None = None,
    bias: float | None = None,
    seed: int | None = None,
) -> PairsResult:
    """(Re)write ``BUILD/pairs.csv`` + ``pairs.json`` (``mepipe pairs``); settings default to the
    build's ``pairs`` section, ``delta`` may be ``"A:B"``."""
    from mepipe.pairs import PAIRS_INFO_NAME, pair_settings, write_pair_table
    from mepipe.shards.manifest import require_complete

    build = Path(build)
    require_complete(build)
    cfg, used_seed = pair_settings(build, delta=delta, unit=unit, per_clip=per_clip, bias=bias, seed=seed)
    path = write_pair_table(build, cfg, seed=used_seed)
    info = json.loads((build / PAIRS_INFO_NAME).read_text())
    return PairsResult(
        path, info["pairs"], info["clips"], info["clips_with_pairs"], tuple(cfg.delta), cfg.unit, used_seed
    )


@dataclass(frozen=True)
class FoldsResult:
    """What :func:`folds` wrote: the folds, the CSV, how many ok clips were used and left out."""

    path: Path
    folds: list[Fold]
    clips: int
    left_out: int

    @property
    def test_sizes(self) -> tuple[int, int]:
        """Smallest and largest held-out side, in clips."""
        sizes = sorted(len(f.test) for f in self.folds)
        return sizes[0], sizes[-1]


def folds_file_name(protocol: str, labels: str | None = None) -> str:
    """``folds-loso.csv``, ``folds-loso-casme2_5.csv``: the default folds CSV of a build."""
    return f"folds-{protocol}" + (f"-{labels}" if labels else "") + ".csv"


def folds(
    build: PathLike,
    *,
    protocol: Protocol = "loso",
    labels: str | None = None,
    datasets: Sequence[str] | None = None,
    per_dataset: bool = False,
    csv_path: PathLike | None = None,
) -> FoldsResult:
    """Write leak-checked evaluation folds (one line per fold and clip) from a build's manifest
    (``mepipe folds``); ``build`` may be the folder or its ``manifest.csv``; the CSV defaults to
    ``BUILD/`` :func:`folds_file_name`."""
    from mepipe.folds import make_folds, select_rows, write_folds_csv
    from mepipe.labels import load_scheme
    from mepipe.shards.manifest import require_complete

    if protocol not in ("loso", "lodo"):
        raise ConfigError(f"protocol {protocol!r}: use loso or lodo")
    if labels is not None:
        load_scheme(labels)
    build = Path(build)
    rows = require_complete(build)
    chosen = select_rows(rows, scheme=labels, datasets=list(datasets) if datasets else None)
    made = make_folds(
        rows, protocol, scheme=labels, datasets=list(datasets) if datasets else None, per_dataset=per_dataset
    )
    if not made:
        raise ConfigError(f"no fold: {build} has no ok clip left after the labels/datasets selection")
    folder = build.parent if build.is_file() else build
    path = write_folds_csv(made, rows, csv_path or folder / folds_file_name(protocol, labels), scheme=labels)
    ok = sum(r.status == "ok" for r in rows)
    return FoldsResult(Path(path), made, len(chosen), ok - len(chosen))


def inspect(build: PathLike, *, sheet: PathLike, max_clips: int = 200, per_page: int = 25, columns: int = 2):
    """Contact sheet(s) of a build (``mepipe inspect``): see :func:`mepipe.inspect.contact_sheet`."""
    from mepipe.inspect import contact_sheet

    return contact_sheet(build, sheet, max_clips=max_clips, per_page=per_page, columns=columns)


# --- what is available ------------------------------------------------------------------------------


def backends(*, weights: PathLike | None = None) -> str:
    """The face backends table: usable here or not (and why), model file, sha256, licence."""
    from mepipe.face.backends import backend_table

    return backend_table({"weights": str(weights)} if weights else None)


def datasets() -> list[str]:
    """The registered dataset adapters."""
    return names("adapters")


def label_schemes() -> list[LabelScheme]:
    """Every label scheme available (bundled and from ``MEPIPE_RESOURCES``), by name."""
    from mepipe.labels import available_schemes, load_scheme

    return [load_scheme(n) for n in available_schemes()]


def label_scheme(name: str) -> LabelScheme:
    """One label scheme (raw emotion string per dataset -> class)."""
    from mepipe.labels import load_scheme

    return load_scheme(name)


# --- training ---------------------------------------------------------------------------------------


def train_config(
    kind: Literal["pretrain", "finetune"],
    *,
    config: PathLike | None = None,
    overrides: dict[str, Any] | None = None,
) -> PretrainConfig | FinetuneConfig:
    """The validated training config: ``config`` (a YAML file or a bundled name) with dotted
    ``overrides`` applied; complete and valid before anything is written."""
    from mepipe.train.config import load_train_config

    return load_train_config(kind, config, overrides)


def pretrain(cfg: PretrainConfig) -> PretrainResult:
    """MA2MI pre-training on macro-expression pairs (``mepipe train pretrain``)."""
    from mepipe.train.pretrain import pretrain as _pretrain

    return _pretrain(cfg)


def finetune(cfg: FinetuneConfig) -> LosoResult | DeployResult:
    """LOSO/LODO fine-tuning with pooled scores, or (``protocol.name: all``) one model for use
    written to ``RUN/model.pt`` (``mepipe train finetune``)."""
    from mepipe.train.loso import finetune_all, finetune_loso

    return finetune_all(cfg) if cfg.protocol.name == "all" else finetune_loso(cfg)


def demo(
    *,
    out: PathLike = "demo-out",
    seed: int = 0,
    workers: int = 2,
    force: bool = False,
    log: Callable[[str], None] | None = None,
) -> DemoResult:
    """The main job on the embedded default: synth -> build -> MA2MI -> LOSO fine-tune (``mepipe demo``)."""
    from dataclasses import replace

    from mepipe.demo import DEMO_SIZES, run_demo
    from mepipe.logs import get_logger

    return run_demo(
        out,
        seed=seed,
        sizes=replace(DEMO_SIZES, workers=workers),
        force=force,
        log=log or get_logger("mepipe.demo").info,
    )


def __getattr__(name: str) -> Any:
    """Earlier names of this module (``build_dataset``, ``read_manifest`` ...), imported on first use."""
    legacy = {
        "BuildSummary": "mepipe.build", "build_dataset": "mepipe.build", "BuildInterrupted": "mepipe.build",
        "BuildLockedError": "mepipe.engine.lock",
        "PipelineConfig": "mepipe.config", "load_config": "mepipe.config", "parse_config": "mepipe.config",
        "ADAPTERS": "mepipe.datasets", "get_adapter": "mepipe.datasets",
        "Fold": "mepipe.folds", "make_folds": "mepipe.folds", "contact_sheet": "mepipe.inspect",
        "LabelScheme": "mepipe.labels", "load_scheme": "mepipe.labels", "process_clip": "mepipe.process",
        "StoredClip": "mepipe.shards", "read_clip": "mepipe.shards", "read_manifest": "mepipe.shards",
        "verify_build": "mepipe.shards",
    }  # fmt: skip
    if name in legacy:
        import importlib

        return getattr(importlib.import_module(legacy[name]), name)
    raise AttributeError(f"module 'mepipe.api' has no attribute {name!r}")
