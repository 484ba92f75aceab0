"""Exception types. Every message names the offending object (file, row, key) and what to do."""

from __future__ import annotations


class MepipeError(Exception):
    """Base class for errors raised by mepipe on bad input or configuration."""


class ConfigError(MepipeError):
    """A pipeline YAML or training config is invalid (message names the key and the fix)."""


class AnnotationError(MepipeError):
    """An annotation file is missing, unreadable or has the wrong structure (names file and row)."""


class ShardError(MepipeError):
    """A shard or manifest is missing, incomplete or does not match its checksums."""
