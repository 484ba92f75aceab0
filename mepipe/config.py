"""Pipeline configuration: the YAML schema, its validation, and the resolved config written next to outputs.

A pipeline YAML (``pipelines/*.yaml``) names a dataset adapter and the settings of each stage. Every
key is validated; an unknown or wrong key fails with a message naming the key and the fix. The
resolved config (defaults filled in) is written to ``OUT/pipeline.resolved.yaml`` and its hash into
every shard, so each output records exactly how it was made.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mepipe.errors import ConfigError

CONFIG_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetConfig(_Strict):
    """Which dataset adapter reads the source, and its options."""

    adapter: str = Field(
        description="registered dataset adapter name, e.g. casme2 (`mepipe datasets` lists them)"
    )
    options: dict[str, Any] = Field(default_factory=dict, description="adapter options")
    source: str | None = Field(default=None, description="dataset root; usually given with --source")


class FaceConfig(_Strict):
    """Face detection and landmarks on the clip's reference frame."""

    detector: str = Field(
        default="dlib-hog", description="registered face detector (mepipe.face.backends.DETECTORS)"
    )
    landmarker: str = Field(default="dlib-68", description="registered 68-point landmarker (LANDMARKERS)")
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
    multiple_faces: Literal["largest", "fail"] = Field(
        default="largest",
        description="several faces: keep the largest (noted in the manifest) or fail the clip",
    )


class AlignConfig(_Strict):
    """Similarity alignment onto the canonical 68-point template and cropping."""

    crop_size: int = Field(default=224, ge=32, le=1024, description="side of the square crops, pixels")
    margin: float = Field(
        default=0.3, ge=0.0, le=1.0, description="space around the landmarks, fraction of their width"
    )
    mode: Literal["clip", "per_frame"] = Field(
        default="clip",
        description="clip: one transform for every frame; per_frame: landmarks tracked on every "
        "frame, transforms smoothed over time",
    )
    smoothing: int = Field(default=9, ge=1, description="per_frame: moving-average window over frames (odd)")


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
        "(about 4 tasks per worker, at most shards.max_clips)",
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
    shards: ShardConfig = ShardConfig()
    video: VideoConfig = VideoConfig()
    keyframes: KeyframeConfig = KeyframeConfig()
    storage: StorageConfig = StorageConfig()
    pairs: PairsConfig = PairsConfig()
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


def _format_error(origin: str, err: ValidationError) -> str:
    lines = [f"{origin}: invalid pipeline config"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  - {key}: unknown key; remove it or check its spelling (see docs/pipelines.md)")
        elif e["type"] == "missing":
            lines.append(f"  - {key}: required key is missing; add it")
        else:
            lines.append(f"  - {key}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def parse_config(data: dict[str, Any], origin: str = "<config>") -> PipelineConfig:
    """Validate a config mapping; raises :class:`ConfigError` naming each bad key and the fix."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: a pipeline must be a YAML mapping with keys name, dataset, ...")
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_error(origin, err)) from None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Read and validate a pipeline YAML, applying dotted-key ``overrides`` (``{"align.crop_size": 112}``).

    Args:
        path: a YAML file, or the name of a bundled pipeline (``casme2``; see ``mepipe.resources``).
    """
    from mepipe import resources

    path = resources.resolve("pipelines", path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
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
        "| key | type | default | meaning |",
        "|---|---|---|---|",
    ]
    for name, field in PipelineConfig.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            lines.append(f"| **`{name}`** | section | | {(ann.__doc__ or '').strip()} |")
            for sub, f in ann.model_fields.items():
                lines.append(
                    f"| `{name}.{sub}` | {_type_name(f.annotation)} | {_default(f)} | {f.description or ''} |"
                )
        else:
            lines.append(f"| `{name}` | {_type_name(ann)} | {_default(field)} | {field.description or ''} |")
    return "\n".join(lines) + "\n"


def _type_name(tp: Any) -> str:
    text = getattr(tp, "__name__", None) if not getattr(tp, "__args__", None) else None
    return f"`{text or str(tp).replace('typing.', '')}`".replace("|", "\\|")


def _default(f: Any) -> str:
    if f.is_required():
        return "required"
    value = f.get_default(call_default_factory=True)
    return f"`{json.dumps(value.model_dump() if isinstance(value, BaseModel) else value)}`".replace(
        "|", "\\|"
    )


def write_resolved(cfg: PipelineConfig, out_dir: Path) -> Path:
    """Write ``pipeline.resolved.yaml`` (every default filled in) into ``out_dir``."""
    p = out_dir / "pipeline.resolved.yaml"
    p.write_text(yaml.safe_dump(cfg.resolved(), sort_keys=False))
    return p


if __name__ == "__main__":
    print(reference_markdown(), end="")
