"""Helpers for the build-engine tests: a small synthetic CASME II set, builds run as real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np

from mepipe.shards import read_manifest

REPO = Path(__file__).resolve().parents[1]
PIPELINE = REPO / "pipelines" / "demo-micro.yaml"
FAST_OVERRIDES = {"align.crop_size": 64, "build.clips_per_task": 1, "shards.max_clips": 2}
"""Small crops and one clip per task: quick builds with many shards (many moments to be killed at)."""
FAST = [arg for k, v in FAST_OVERRIDES.items() for arg in ("--set", f"{k}={v}")]


def fast_cfg(**extra):
    """The pipeline the subprocess builds use (same config hash), with ``extra`` overrides."""
    from mepipe.config import load_config

    return load_config(PIPELINE, {**FAST_OVERRIDES, **extra})


_SYNTH: dict[tuple[int, int, int], Path] = {}


def make_synth(root: Path, subjects: int = 2, clips: int = 3, seed: int = 0) -> Path:
    """A synthetic CASME II-layout set (written once per test session and shared: treat it as
    read-only, copy it to change it)."""
    from mepipe.synth import synthesize

    key = (subjects, clips, seed)
    if key not in _SYNTH or not _SYNTH[key].is_dir():
        synthesize("casme2", root, subjects=subjects, clips_per_subject=clips, seed=seed)
        _SYNTH[key] = root
    return _SYNTH[key]


def env(**extra: str) -> dict[str, str]:
    """The environment of a build subprocess: this checkout first on the path."""
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    e.update(extra)
    return e


def build_cmd(source: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "mepipe", "build-dataset", str(PIPELINE),
        "--source", str(source), "--out", str(out), *FAST, *extra,
    ]  # fmt: skip


def start_build(source: Path, out: Path, *extra: str, **env_extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        build_cmd(source, out, *extra),
        env=env(**env_extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run_build(source: Path, out: Path, *extra: str, timeout: float = 300, **env_extra: str):
    """Run a build to the end in a subprocess; returns the CompletedProcess."""
    return subprocess.run(
        build_cmd(source, out, *extra), env=env(**env_extra), capture_output=True, text=True, timeout=timeout
    )


def ok_digests(out: Path) -> dict[str, str]:
    """``{key: frames_sha256}`` of the ok rows of a build."""
    return {r.key: r.frames_sha256 for r in read_manifest(out) if r.status == "ok"}


def descendants(pid: int) -> list[int]:
    """Pids of every live process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(cond, timeout: float, step: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return cond()


def group_items(g: h5py.Group, prefix: str = "") -> dict[str, object]:
    """Every dataset (as bytes + dtype + shape) and attribute below ``g``, by path."""
    out: dict[str, object] = {}
    for k, v in g.attrs.items():
        out[f"{prefix}@{k}"] = v.tolist() if isinstance(v, np.ndarray) else v
    for name, item in g.items():
        path = f"{prefix}/{name}"
        if isinstance(item, h5py.Group):
            out.update(group_items(item, path))
            continue
        data = item[()]
        if item.dtype.kind == "O":  # vlen JPEG frames
            out[path] = [bytes(x) for x in data]
        else:
            out[path] = (item.dtype.str, data.shape, np.ascontiguousarray(data).tobytes())
        for k, v in item.attrs.items():
            out[f"{path}@{k}"] = v.tolist() if isinstance(v, np.ndarray) else v
    return out


def untrained_fan_weights(path: Path) -> Path:
    """Write a FAN checkpoint of the right architecture (1 hourglass module, untrained, seed 0) to
    ``path`` for the ``fan`` landmarker's ``weights`` option; skips the test without torch or
    face-alignment."""
    import pytest

    torch = pytest.importorskip("torch")
    from mepipe.errors import ConfigError
    from mepipe.face.backends import fan

    try:
        fan.fan_module()
    except ConfigError:
        pytest.skip("face-alignment is not installed (pip install --no-deps face-alignment==1.5.0)")
    torch.manual_seed(0)
    torch.save(fan.fan_module().FAN(1).state_dict(), path)
    return path
