"""Provenance: what made an output. Library versions, the git commit, file checksums.

Every output mepipe writes records where it came from (``build-info.json`` next to shards; the
``provenance`` object in training metrics and checkpoints), so a number can be traced to the code,
the libraries and the data that produced it.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
from functools import cache
from pathlib import Path

from mepipe import __version__

#: Distributions whose version can change what mepipe writes or computes.
SHAPING_LIBRARIES = (
    "numpy",
    "opencv-python-headless",
    "opencv-python",
    "dlib-bin",
    "face-recognition-models",
    "h5py",
    "pandas",
    "openpyxl",
    "xlrd",
    "av",
    "decord",
    "pydantic",
    "PyYAML",
    "torch",
    "yuface",
    "face-alignment",
)


def library_versions(names: tuple[str, ...] = SHAPING_LIBRARIES) -> dict[str, str]:
    """``{"python": ..., "mepipe": ..., <distribution>: version or "not installed"}``."""
    import importlib.metadata as md

    out = {"python": platform.python_version(), "mepipe": __version__}
    for dist in names:
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "not installed"
    return out


@cache
def git_commit(path: str | None = None) -> str:
    """The commit of the source checkout mepipe runs from (``+dirty`` when it has local changes), or
    ``""`` when mepipe is not running from a git checkout (an installed wheel)."""
    here = Path(path) if path else Path(__file__).resolve().parent
    try:
        top = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        if top.returncode != 0 or not (Path(top.stdout.strip()) / "mepipe" / "__init__.py").is_file():
            return ""
        sha = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return sha + ("+dirty" if dirty else "") if sha else ""


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read in 4 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


@cache
def cached_file_sha256(path: str) -> str:
    """:func:`file_sha256` memoised per process (model files that do not change while mepipe runs)."""
    return file_sha256(path)
