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
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mepipe.errors import ConfigError

CONFIG_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetConfig(_Strict):
    adapter: str = Field(description="registered dataset adapter name, e.g. casme2")
    options: dict[str, Any] = Field(default_factory=dict, description="adapter options")
    source: str | None = Field(default=None, description="dataset root; usually given with --source")


class FaceConfig(_Strict):
    detector: str = "dlib-hog"
    landmarker: str = "dlib-68"
    reference: Literal["onset", "first", "apex"] = "onset"
    search_frames: int = Field(default=10, ge=0, description="later frames tried when the reference has no face")
    detect_max_side: int = Field(default=400, ge=64, description="detect on a copy downscaled to this side")
    upsample: int = Field(default=0, ge=0, le=2)
    min_face: int = Field(default=48, ge=8, description="smallest face box side accepted, source pixels")
    multiple_faces: Literal["largest", "fail"] = "largest"


class AlignConfig(_Strict):
    crop_size: int = Field(default=224, ge=32, le=1024)
    margin: float = Field(default=0.3, ge=0.0, le=1.0, description="space around the landmarks, fraction of their width")
    mode: Literal["clip", "per_frame"] = "clip"
    smoothing: int = Field(default=9, ge=1, description="per_frame: moving-average window over frames (odd)")


class ShardConfig(_Strict):
    max_clips: int = Field(default=64, ge=1)
    max_bytes: int = Field(default=2_000_000_000, ge=1_000_000)


class PipelineConfig(_Strict):
    version: int = CONFIG_VERSION
    name: str
    dataset: DatasetConfig
    face: FaceConfig = FaceConfig()
    align: AlignConfig = AlignConfig()
    shards: ShardConfig = ShardConfig()
    seed: int = 0

    @model_validator(mode="after")
    def _check_version(self) -> PipelineConfig:
        if self.version != CONFIG_VERSION:
            raise ValueError(f"pipeline version {self.version} is not supported; this mepipe reads version {CONFIG_VERSION}")
        return self

    def resolved(self) -> dict[str, Any]:
        """The config with every default filled in, as plain JSON-able data."""
        return self.model_dump(mode="json")

    def hash(self) -> str:
        """sha256 of the resolved config minus ``dataset.source`` (where the data sits does not change it)."""
        data = self.resolved()
        data["dataset"].pop("source", None)
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
    """Read and validate a pipeline YAML, applying dotted-key ``overrides`` (``{"align.crop_size": 112}``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"pipeline file {path} not found; pass one of the files in pipelines/")
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


def write_resolved(cfg: PipelineConfig, out_dir: Path) -> Path:
    """Write ``pipeline.resolved.yaml`` (every default filled in) into ``out_dir``."""
    p = out_dir / "pipeline.resolved.yaml"
    p.write_text(yaml.safe_dump(cfg.resolved(), sort_keys=False))
    return p
