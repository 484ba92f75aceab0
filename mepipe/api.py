"""The typed library API; the CLI (mepipe.cli) is a thin wrapper over these functions."""

from __future__ import annotations

from mepipe.build import BuildSummary, build_dataset
from mepipe.config import PipelineConfig, load_config, parse_config
from mepipe.datasets import ADAPTERS, get_adapter
from mepipe.folds import Fold, make_folds
from mepipe.inspect import contact_sheet
from mepipe.labels import LabelScheme, load_scheme
from mepipe.process import process_clip
from mepipe.shards import StoredClip, read_clip, read_manifest, verify_build

__all__ = [
    "ADAPTERS",
    "BuildSummary",
    "Fold",
    "LabelScheme",
    "PipelineConfig",
    "StoredClip",
    "build_dataset",
    "contact_sheet",
    "get_adapter",
    "load_config",
    "load_scheme",
    "make_folds",
    "parse_config",
    "process_clip",
    "read_clip",
    "read_manifest",
    "verify_build",
]
