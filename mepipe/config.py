"""Pipeline configuration: the YAML schema, its validation, and the resolved config written next to outputs.

A pipeline YAML (``pipelines/*.yaml``) names a dataset adapter and the settings of each stage. Every
key is validated; an unknown or wrong key fails with a message naming the key and the fix. The
resolved config (defaults filled in) is written to ``OUT/pipeline.resolved.yaml`` and its hash into
every shard, so each output records exactly how it was made.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from mepipe import schema
from mepipe.errors import ConfigError
from mepipe.schema import Strict as _Strict

CONFIG_VERSION = 1
REFERENCE_DOC = "docs/pipelines.md"


class DatasetConfig(_Strict):
    """Which dataset adapter reads the source, and its options."""

    adapter: str = Field(
        description="registered dataset adapter name, e.g. casme2 (`mepipe datasets` lists them)"
    )
    options: dict[str, Any] = Field(default_factory=dict, description="adapter options")
    source: str | None = Field(default=None, description="dataset root; usually given with --source")


class FaceConfig(_Strict):
    """Face detection, the choice among candidates and the presence checks (see mepipe/face/)."""

    detector: str = Field(
        default="dlib-hog",
        description="registered face detector: dlib-hog, dlib-cnn, yunet (`mepipe backends`)",
    )
    landmarker: str = Field(default="dlib-68", description="registered 68-point landmarker: dlib-68, fan")
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="backend options, e.g. {weights: /path/2DFAN4.pth.tar} for fan, {threshold: -0.3} for dlib-hog",
    )
    reference: Literal["onset", "first", "apex"] = Field(
        default="onset", description="frame the face is detected and landmarked on (once per clip)"
    )
    search_frames: int = Field(
        default=10, ge=0, description="later frames tried when the reference has no face"
    )
    detect_max_side: int = Field(default=400, ge=64, description="detect on a copy downscaled to this side")
    upsample: int = Field(
        default=0, ge=0, le=2, description="detector upsampling passes (finds smaller faces, slower)"
    )
    min_face: int = Field(default=48, ge=8, description="smallest face box side accepted, source pixels")
    multiple_faces: Literal["best", "fail"] = Field(
        default="best",
        description="several plausible faces: keep the best (flagged several_faces) or fail the clip",
    )
    max_candidates: int = Field(
        default=5, ge=1, description="detector boxes judged per frame, best score first"
    )
    plausible_score: float = Field(
        default=0.3,
        ge=-2.0,
        le=3.0,
        description="referee score (dlib HOG on the aligned crop) a candidate needs to count as a face",
    )
    max_fit_error: float = Field(
        default=40.0, gt=0.0, description="largest landmark residual against the template for a face, % IOD"
    )
    check_every: int = Field(
        default=8, ge=0, description="presence check interval in frames (0: no checks, every frame kept)"
    )
    presence_similarity: float = Field(
        default=0.6,
        ge=-1.0,
        le=1.0,
        description="thumbnail correlation with the reference crop above which the face counts as present",
    )
    lost_frames: int = Field(
        default=2, ge=1, description="consecutive frames without the face that end the span (fewer: a glitch)"
    )

    @model_validator(mode="after")
    def _check_backends(self) -> FaceConfig:
        from mepipe.face.backends import check_face_backends

        try:
            check_face_backends(self.detector, self.landmarker, self.options)
        except ConfigError as exc:  # reported with the pipeline file and the key, like every bad value
            raise ValueError(str(exc)) from None
        return self


class AlignConfig(_Strict):
    """Similarity alignment onto the canonical 68-point template and cropping (see mepipe/face/register.py)."""

    crop_size: int = Field(default=224, ge=32, le=1024, description="side of the square crops, pixels")
    margin: float = Field(
        default=0.3, ge=0.0, le=1.0, description="space around the landmarks, fraction of their width"
    )
    mode: Literal["clip", "per_frame", "register"] = Field(
        default="clip",
        description="clip: one transform for every frame; per_frame: all landmarks tracked on every frame; "
        "register: each frame registered to the reference on rigid points (head motion goes, expression stays)",
    )
    smoothing: int = Field(
        default=9, ge=1, description="per_frame/register: moving-average window over frames (odd)"
    )


class QualityConfig(_Strict):
    """Thresholds of the per-clip quality flags (manifest `qa` column; see docs/shard-format.md)."""

    low_face_score: float | None = Field(
        default=None, description="flag low_face_score below this detector score; null: the backend's default"
    )
    poor_fit: float = Field(default=20.0, gt=0.0, description="flag poor_fit above this fit error, % IOD")
    unstable: float = Field(
        default=3.0, gt=0.0, description="flag unstable above this residual head motion in the crops, % IOD"
    )
    stability_frames: int = Field(
        default=5, ge=2, description="frames landmarked to measure stability (plus onset, apex, reference)"
    )


class ShardConfig(_Strict):
    """When a shard is closed and the next one started."""

    max_clips: int = Field(default=64, ge=1, description="clips per shard")
    max_bytes: int = Field(default=2_000_000_000, ge=1_000_000, description="bytes of frames per shard")


class VideoConfig(_Strict):
    """How video files are decoded (image-folder clips ignore this section)."""

    decoder: Literal["pyav", "decord"] = Field(
        default="pyav",
        description="video decoder: pyav (default, synchronous) or decord (pip install 'mepipe[decord]'); "
        "see benchmarks/video_decode.py",
    )
    decode_threads: int = Field(
        default=1, ge=0, description="decoder threads per worker (0: the decoder's automatic choice)"
    )
    search_frames: int | None = Field(
        default=None,
        ge=0,
        description="later frames tried when the reference frame has no face; null: until a face is found",
    )
    buffer_mb: int = Field(
        default=512,
        ge=0,
        description="raw frames kept while looking for the reference; beyond this the start is decoded again",
    )
    on_decode_error: Literal["fail", "truncate"] = Field(
        default="fail",
        description="a frame that cannot be decoded fails the clip, or ends it there (kept if "
        "at least 2 frames decoded)",
    )


class KeyframeConfig(_Strict):
    """Onset/apex/offset: annotated, estimated from facial motion, or uniform (see mepipe/keyframes.py)."""

    mode: Literal["annotated", "estimate", "uniform"] = Field(
        default="annotated",
        description="annotated: use annotations, estimate what is missing; estimate: always estimate; "
        "uniform: first/middle/last frame (clip-labelled data)",
    )
    regions: tuple[Literal["brows", "eyes", "nose", "mouth"], ...] = ("brows", "eyes", "nose", "mouth")
    region_radius: float = Field(
        default=0.35,
        gt=0.0,
        le=2.0,
        description="radius of the disc around each region landmark, x inter-ocular distance",
    )
    analysis_size: int = Field(
        default=112, ge=32, le=512, description="crops are resized to this side for the estimate"
    )
    smooth_ms: float = Field(default=30.0, ge=0.0, description="Gaussian sigma of the temporal smoothing, ms")
    noise_k: float = Field(
        default=3.0, ge=0.0, description="onset/offset threshold: floor + noise_k * noise sigma ..."
    )
    rise: float = Field(
        default=0.1, ge=0.0, lt=1.0, description="... or floor + rise * (peak - floor), the larger"
    )


class StorageConfig(_Strict):
    """How aligned frames are stored in the shards, and which frames are kept."""

    encoding: Literal["raw", "jpeg"] = Field(
        default="raw", description="raw uint8 arrays, or JPEG bytes inside HDF5"
    )
    jpeg_quality: int = Field(default=95, ge=1, le=100, description="JPEG quality when encoding is jpeg")
    frame_step: int = Field(default=1, ge=1, description="keep every k-th frame (keyframes are always kept)")
    max_frames: int = Field(
        default=0, ge=0, description="keep at most N frames per clip, evenly spread; 0: no cap"
    )


class PairsConfig(_Strict):
    """The (t, t+delta) pair table written next to the shards (OUT/pairs.csv; see docs/shard-format.md)."""

    write: bool = Field(default=False, description="write OUT/pairs.csv at the end of the build")
    delta: tuple[float, float] = Field(default=(1.0, 4.0), description="delta range [a, b], inclusive")
    unit: Literal["frames", "ms"] = Field(
        default="frames", description="unit of delta (ms handles mixed frame rates)"
    )
    per_clip: int = Field(default=16, ge=1, description="at most this many pairs per clip")
    expressive_bias: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="probability that t is drawn from onset..offset instead of the whole clip",
    )
    seed: int | None = Field(default=None, description="null: the pipeline's seed")

    @model_validator(mode="after")
    def _check_delta(self) -> PairsConfig:
        a, b = self.delta
        if not 0 < a <= b:
            raise ValueError(f"pairs.delta must satisfy 0 < a <= b, got [{a}, {b}]")
        return self


class FlowConfig(_Strict):
    """Optical flow between stored frames, kept in the shards (off by default; `mepipe flow OUT` adds it later)."""

    enabled: bool = Field(default=False, description="compute flow during the build")
    backend: Literal["dis", "farneback", "tvl1"] = Field(
        default="dis", description="dis/farneback: OpenCV core; tvl1: needs the opencv-contrib build"
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="backend parameters (e.g. preset: medium)"
    )
    size: int = Field(
        default=112, ge=16, le=1024, description="flow is computed on grey crops resized to this side"
    )
    pairs: tuple[Literal["onset_apex", "apex_offset", "onset_every"], ...] = Field(
        default=("onset_apex",),
        description="frame pairs: onset_apex, apex_offset, onset_every (onset to every k-th frame)",
    )
    every: int = Field(default=1, ge=1, description="onset_every: k")
    channels: tuple[Literal["u", "v", "magnitude", "strain"], ...] = Field(
        default=("u", "v", "magnitude", "strain"), description="stored channels"
    )
    normalisation: Literal["none", "minmax", "fixed"] = Field(
        default="none",
        description="none: pixels at `size`; minmax: per sample and channel to [0, 1] (STSTNet); fixed: / scale",
    )
    scale: float | None = Field(default=None, gt=0.0, description="fixed normalisation: the divisor (pixels)")

    @model_validator(mode="after")
    def _check_scale(self) -> FlowConfig:
        if self.normalisation == "fixed" and self.scale is None:
            raise ValueError("flow.normalisation=fixed needs flow.scale (pixels), e.g. flow.scale=4")
        return self


class BuildConfig(_Strict):
    """How the build runs: the smallest usable clip, resume fingerprints, task size (mepipe/engine/)."""

    min_frames: int = Field(
        default=2, ge=1, description="clips with fewer source frames fail as too_few_frames (onset + apex: 2)"
    )
    fingerprint: Literal["stat", "content"] = Field(
        default="stat",
        description="how a resumed build sees changed sources: stat (names, sizes, mtimes) or content "
        "(sha256 of every file, read on each run)",
    )
    clips_per_task: int = Field(
        default=0,
        ge=0,
        description="clips per worker task (one task writes one shard); 0: automatic "
        "(1 worker: 4 tasks; several: shrinking tasks, at most shards.max_clips, single clips at the end)",
    )

    RUNTIME_KEYS: ClassVar[tuple[str, ...]] = ("fingerprint", "clips_per_task")
    """Keys that change how a build runs, not what it writes: left out of the config hash, so changing
    them does not block resuming a build."""


class PipelineConfig(_Strict):
    version: int = Field(default=CONFIG_VERSION, description="pipeline schema version")
    name: str = Field(description="pipeline name, recorded in every shard")
    dataset: DatasetConfig
    face: FaceConfig = FaceConfig()
    align: AlignConfig = AlignConfig()
    quality: QualityConfig = QualityConfig()
    shards: ShardConfig = ShardConfig()
    video: VideoConfig = VideoConfig()
    keyframes: KeyframeConfig = KeyframeConfig()
    storage: StorageConfig = StorageConfig()
    pairs: PairsConfig = PairsConfig()
    flow: FlowConfig = FlowConfig()
    build: BuildConfig = BuildConfig()
    seed: int = Field(default=0, description="seed of every random choice (pair sampling ...)")

    @model_validator(mode="after")
    def _check_version(self) -> PipelineConfig:
        if self.version != CONFIG_VERSION:
            raise ValueError(
                f"pipeline version {self.version} is not supported; this mepipe reads version {CONFIG_VERSION}"
            )
        return self

    def resolved(self) -> dict[str, Any]:
        """The config with every default filled in, as plain JSON-able data."""
        return self.model_dump(mode="json")

    def hash(self) -> str:
        """sha256 of the resolved config minus ``dataset.source`` (where the data sits does not change it)
        and the build keys that do not change what is written (:attr:`BuildConfig.RUNTIME_KEYS`)."""
        data = self.resolved()
        data["dataset"].pop("source", None)
        for key in BuildConfig.RUNTIME_KEYS:
            data["build"].pop(key, None)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def parse_config(data: dict[str, Any], origin: str = "<config>") -> PipelineConfig:
    """Validate a config mapping; raises :class:`ConfigError` naming each bad key and the fix."""
    return schema.validate(PipelineConfig, data, origin, what="pipeline config", doc=REFERENCE_DOC)


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Read and validate a pipeline YAML, applying dotted-key ``overrides`` (``{"align.crop_size": 112}``).

    Args:
        path: a YAML file, or the name of a bundled pipeline (``casme2``; see ``mepipe.resources``).
        overrides: ``--set`` values (see :func:`mepipe.schema.parse_set`), applied after the file.
    """
    from mepipe import resources

    path = resources.resolve("pipelines", path)
    data = schema.apply_overrides(schema.load_yaml(path, "pipeline"), overrides)
    return parse_config(data, str(path))


def reference_markdown() -> str:
    """``docs/pipelines.md``: every pipeline key with its type, default and meaning, made from the schema."""
    lines = [
        "# Pipeline YAML reference",
        "",
        "Generated from `mepipe/config.py` by `python -m mepipe.config > docs/pipelines.md` (a test keeps",
        "it in sync). A pipeline names a dataset adapter and the settings of each stage; omitted keys take",
        "the defaults below, unknown keys are errors. `mepipe build-dataset PIPELINE --set KEY=VALUE`",
        "overrides any key (e.g. `--set align.crop_size=112`). The build writes the resolved config to",
        "`OUT/pipeline.resolved.yaml` and its hash into every shard.",
        "",
        *schema.reference_table(PipelineConfig),
    ]
    return "\n".join(lines) + "\n"


write_resolved = functools.partial(schema.write_resolved, name="pipeline.resolved.yaml")
"""``write_resolved(cfg, out_dir)``: ``OUT/pipeline.resolved.yaml`` (:func:`mepipe.schema.write_resolved`)."""


if __name__ == "__main__":
    print(reference_markdown(), end="")
