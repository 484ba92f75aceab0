"""Bundled data files: label schemes, fix tables, composite rules, pipelines and training configs.

The files live at the repository root (``manifests/``, ``pipelines/``, ``configs/``) and ship inside
the wheel under ``mepipe/_bundled/`` (in a source checkout that folder holds links to the root
folders, so an editable install and a wheel see the same files). Every reader in mepipe finds them
here, through :func:`find` and :func:`names`.

User folders come first: each folder in the environment variable ``MEPIPE_RESOURCES``
(``os.pathsep``-separated) and each folder passed to :func:`add_resource_dir` may hold any of the
sub-folders named in :data:`KINDS` (``labels/``, ``fixes/``, ``composites/``, ``pipelines/``,
``configs/``); a file there shadows the bundled file of the same name.

This module imports only the standard library, so ``import mepipe.labels`` stays light.
"""

from __future__ import annotations

import os
from pathlib import Path

from mepipe.errors import ConfigError

BUNDLED = Path(__file__).resolve().parent / "_bundled"

KINDS: dict[str, tuple[str, str, str]] = {
    # kind: (folder under _bundled, file suffix, what one file is, for messages)
    "labels": ("manifests/labels", ".yaml", "label scheme"),
    "fixes": ("manifests/fixes", ".yaml", "fix table"),
    "composites": ("manifests/composites", ".yaml", "composite rule"),
    "lists": ("manifests/lists", ".csv", "clip list"),
    "pipelines": ("pipelines", ".yaml", "pipeline"),
    "configs": ("configs", ".yaml", "training config"),
}
"""What can be looked up: ``kind -> (bundled folder, suffix, description)``."""

ENV_VAR = "MEPIPE_RESOURCES"

_extra_dirs: list[Path] = []


def add_resource_dir(path: str | os.PathLike) -> None:
    """Search ``path`` (holding ``labels/``, ``pipelines/`` ... sub-folders) before the bundled files."""
    p = Path(path).expanduser().resolve()
    if not p.is_dir():
        raise ConfigError(f"resource folder {p} does not exist; create it or fix the path")
    if p not in _extra_dirs:
        _extra_dirs.insert(0, p)


def user_dirs() -> list[Path]:
    """User resource folders, highest priority first (:func:`add_resource_dir`, then ``MEPIPE_RESOURCES``)."""
    env = [Path(p).expanduser() for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p.strip()]
    return [*_extra_dirs, *env]


def search_dirs(kind: str) -> list[Path]:
    """The folders searched for ``kind``, highest priority first (existing ones only)."""
    if kind not in KINDS:
        raise ConfigError(f"unknown resource kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    folder = KINDS[kind][0]
    dirs = [d / kind for d in user_dirs()] + [BUNDLED / folder]
    return [d for d in dirs if d.is_dir()]


def names(kind: str) -> list[str]:
    """Names (file stems) of every ``kind`` resource available, sorted."""
    suffix = KINDS[kind][1] if kind in KINDS else ""
    return sorted({p.stem for d in search_dirs(kind) for p in d.glob(f"*{suffix}")})


def find(kind: str, name: str) -> Path:
    """The file of resource ``name`` (e.g. ``find("labels", "casme2_5")``).

    Raises:
        ConfigError: naming the kind, the folders searched and the names available.
    """
    suffix = KINDS[kind][1] if kind in KINDS else ""
    dirs = search_dirs(kind)
    for d in dirs:
        p = d / f"{name}{suffix}"
        if p.is_file():
            return p
    available = ", ".join(names(kind)) or "(none)"
    where = ", ".join(str(d) for d in dirs) or str(BUNDLED / KINDS[kind][0])
    raise ConfigError(
        f"unknown {KINDS[kind][2]} {name!r}; available: {available} "
        f"(searched {where}; add your own with {ENV_VAR}=DIR holding {kind}/{name}{suffix})"
    )


def resolve(kind: str, name_or_path: str | os.PathLike) -> Path:
    """A path given by the user (an existing file) or the name of a bundled/user resource."""
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p
    text = str(name_or_path)
    if os.sep in text or text.endswith((".yaml", ".yml", ".csv")):
        stem = Path(text).stem
        if stem in names(kind):
            return find(kind, stem)
        raise ConfigError(
            f"{KINDS[kind][2]} file {p} not found; pass an existing file or one of: {', '.join(names(kind))}"
        )
    return find(kind, text)
