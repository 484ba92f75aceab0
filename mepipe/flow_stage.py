"""The flow stage: optical flow between a clip's stored frames, kept in its shard (``mepipe flow OUT``).

Per clip, the frame pairs of ``flow.pairs`` (:func:`mepipe.flow.frame_pairs`: onset -> apex by default)
are read from the shard, the flow of each pair is computed on the aligned grey crops resized to
``flow.size`` (:mod:`mepipe.flow`), and its channels are stored as
``/clips/<key>/flow/<pair name>``: ``(N, N, C) float32`` with ``N = flow.size`` and ``C`` the channels
(``u``, ``v``, ``magnitude``, ``strain``), normalised as ``flow.normalisation`` says. Every flow dataset
carries its settings as attributes (``backend``, ``params``, ``size``, ``channels``, ``normalisation``
with what is needed to undo it, the pair's stored-frame indices and source frame numbers), so plain
h5py reads it with no mepipe. See ``docs/shard-format.md`` (schema version 3).

:func:`add_flow` adds flow to an existing build without rebuilding it. Each shard is copied to
``<shard>.flowtmp``, the flow is written into the copy, and the copy atomically replaces the shard; a
shard whose flow already matches the settings is skipped, so an interrupted run resumes where it
stopped and a kill never leaves a damaged shard. Frames and their checksums are untouched, so
``mepipe verify`` passes afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from mepipe import __version__
from mepipe.config import FlowConfig
from mepipe.flow import FlowInput, compute_flow, flow_channels, frame_pairs, normalise, require_backend
from mepipe.shards.format import CLIPS_GROUP, FLOW_SCHEMA_VERSION
from mepipe.shards.manifest import require_complete
from mepipe.shards.reader import assert_self_contained, open_shard, read_frame

FLOW_GROUP = "flow"
FLOW_INFO_NAME = "flow-info.json"
TMP_SUFFIX = ".flowtmp"


def flow_config_for(build_dir: str | Path, overrides: dict | None = None) -> FlowConfig:
    """The flow settings for ``mepipe flow OUT``: the build's recorded ``flow`` section
    (``OUT/pipeline.resolved.yaml``; the defaults when it has none) with ``overrides`` applied.

    Args:
        build_dir: the build folder.
        overrides: flow keys without the ``flow.`` prefix (``{"backend": "farneback", "size": 64}``);
            ``None`` values are ignored (an option that was not given).

    Raises:
        ConfigError: a bad value, naming the key, the value and what is allowed; a backend that cannot
            run here (``tvl1`` without opencv-contrib).
    """
    from mepipe import schema

    recorded: dict = {}
    resolved = Path(build_dir) / "pipeline.resolved.yaml"
    origin = "flow defaults"
    if resolved.is_file():
        recorded = dict(schema.load_yaml(resolved, "pipeline").get("flow") or {})
        origin = f"{resolved} flow section"
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    if given:
        origin += " + options"
    cfg = schema.validate(
        FlowConfig, {**recorded, **given}, origin, what="flow settings", doc="docs/pipelines.md"
    )
    require_backend(cfg.backend)
    return cfg


def flow_settings(cfg: FlowConfig) -> dict:
    """The settings that determine the stored flow (everything but ``enabled``), JSON-able."""
    data = cfg.model_dump(mode="json")
    data.pop("enabled", None)
    return data


def flow_hash(cfg: FlowConfig) -> str:
    """sha256 of :func:`flow_settings` (stored on the flow group; equal hash = same flow)."""
    return hashlib.sha256(json.dumps(flow_settings(cfg), sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class ClipFlow:
    """One stored flow: pair ``name`` between stored frames ``i0 -> i1``, ``data`` ``(N, N, C) float32``
    and the normalisation ``record`` (see :func:`mepipe.flow.normalise`)."""

    name: str
    i0: int
    i1: int
    data: np.ndarray
    record: dict


def clip_flows(
    read: Callable[[int], np.ndarray],
    onset_idx: int,
    apex_idx: int,
    offset_idx: int,
    n_frames: int,
    cfg: FlowConfig,
) -> list[ClipFlow]:
    """The flows ``cfg`` asks for on one clip.

    Args:
        read: returns stored frame ``i`` (0-based) as ``(S, S, 3) uint8 RGB``.
        onset_idx, apex_idx, offset_idx, n_frames: the clip's keyframes (0-based stored indices) and T.
        cfg: the flow settings.

    Returns:
        One :class:`ClipFlow` per pair (pairs whose two frames coincide are skipped).
    """
    cache: dict[int, np.ndarray] = {}

    def frame(i: int) -> np.ndarray:
        if i not in cache:
            cache[i] = read(i)
        return cache[i]

    out = []
    for spec in cfg.pairs:
        for name, i0, i1 in frame_pairs(spec, onset_idx, apex_idx, offset_idx, n_frames, cfg.every):
            flow = compute_flow(frame(i0), frame(i1), backend=cfg.backend, size=cfg.size, params=cfg.params)
            x, rec = normalise(flow_channels(flow, cfg.channels), cfg.normalisation, cfg.scale)
            out.append(ClipFlow(name, i0, i1, x, rec))
    return out


def write_clip_flows(group: h5py.Group, flows: list[ClipFlow], cfg: FlowConfig, frame_numbers) -> None:
    """Store ``flows`` under ``group/flow`` (replacing any flow there), with their settings as attributes."""
    if FLOW_GROUP in group:
        del group[FLOW_GROUP]
    fg = group.create_group(FLOW_GROUP)
    fg.attrs["flow_hash"] = flow_hash(cfg)
    fg.attrs["settings"] = json.dumps(flow_settings(cfg), sort_keys=True)
    for f in flows:
        ds = fg.create_dataset(f.name, data=f.data.astype(np.float32))
        ds.attrs["backend"] = cfg.backend
        ds.attrs["params"] = json.dumps(cfg.params, sort_keys=True)
        ds.attrs["size"] = int(cfg.size)
        ds.attrs["channels"] = np.array(list(cfg.channels), dtype=h5py.string_dtype())
        ds.attrs["normalisation"] = json.dumps(f.record, sort_keys=True)
        ds.attrs["units"] = "pixels at size x size" if cfg.normalisation == "none" else cfg.normalisation
        ds.attrs["frame_idx"] = np.array([f.i0, f.i1], dtype=np.int64)
        ds.attrs["frame_numbers"] = np.array(
            [int(frame_numbers[f.i0]), int(frame_numbers[f.i1])], dtype=np.int64
        )


def read_clip_flow(group: h5py.Group, name: str = "onset_apex") -> tuple[np.ndarray, dict]:
    """A stored flow ``(N, N, C) float32`` and its attributes (``channels`` as a list of str)."""
    fg = group.get(FLOW_GROUP)
    if fg is None or name not in fg:
        from mepipe.errors import ShardError

        have = sorted(fg) if fg is not None else []
        raise ShardError(
            f"{group.file.filename}:{group.name} holds no flow {name!r} (has {have}); "
            "add it with `mepipe flow OUT`"
        )
    ds = fg[name]
    attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in ds.attrs.items()}
    attrs["channels"] = [c.decode() if isinstance(c, bytes) else str(c) for c in attrs.get("channels", [])]
    return ds[()], attrs


def stored_flow_input(group: h5py.Group, spec: FlowInput, i0: int, i1: int) -> np.ndarray | None:
    """The model input ``spec`` of pair ``i0 -> i1`` read from the clip's stored ``onset_apex`` flow, or
    ``None`` when the clip stores no such flow, or one of another pair, backend, parameters or size, or
    lacking a channel (the caller then computes it with :meth:`FlowInput.from_frames`)."""
    fg = group.get(FLOW_GROUP)
    if fg is None or "onset_apex" not in fg:
        return None
    ds = fg["onset_apex"]
    a = ds.attrs
    if [int(v) for v in a.get("frame_idx", [])] != [int(i0), int(i1)]:
        return None
    params = json.loads(a.get("params", "{}"))
    if not spec.same_flow(str(a.get("backend", "")), params, int(a.get("size", -1))):
        return None
    channels = [c.decode() if isinstance(c, bytes) else str(c) for c in a.get("channels", [])]
    return spec.from_stored(ds[()], channels, json.loads(a.get("normalisation", '{"mode": "none"}')))


def recorded_flow_settings(build_dir: str | Path) -> dict | None:
    """The settings of the flow a build stores: ``OUT/flow-info.json`` (``mepipe flow``), else the
    ``flow`` section of ``OUT/pipeline.resolved.yaml`` when it was enabled during the build; ``None``
    when the build stores no flow. (Readers still check each clip's own flow attributes.)"""
    info = Path(build_dir) / FLOW_INFO_NAME
    if info.is_file():
        try:
            return dict(json.loads(info.read_text())["settings"])
        except (ValueError, KeyError, TypeError):
            return None
    resolved = Path(build_dir) / "pipeline.resolved.yaml"
    if resolved.is_file():
        import yaml

        section = (yaml.safe_load(resolved.read_text()) or {}).get("flow") or {}
        if section.get("enabled"):
            return {k: v for k, v in section.items() if k != "enabled"}
    return None


def build_flow_input(
    build_dir: str | Path, base: FlowInput, backend: str | None = None
) -> tuple[FlowInput, bool]:
    """The flow input to use on a build: ``base`` made from the flow the build stores when that flow has
    the onset -> apex pair and every channel ``base`` needs (and is of ``backend`` when one is asked
    for); else ``base`` with ``backend``, computed from the crops.

    Returns:
        ``(spec, stored)``: ``stored`` says that the build's stored flow can be read for it.
    """
    settings = recorded_flow_settings(build_dir)
    if (
        settings is not None
        and "onset_apex" in settings.get("pairs", ())
        and all(c in settings.get("channels", ()) for c in base.channels)
        and (backend is None or settings.get("backend") == backend)
    ):
        spec = base.with_flow(str(settings["backend"]), settings.get("params") or {}, int(settings["size"]))
        return spec, True
    return (base if backend is None else base.with_flow(backend)), False


@dataclass(frozen=True)
class FlowSummary:
    """What :func:`add_flow` did: shards rewritten / already up to date, clips and flows written."""

    shards_done: int
    shards_skipped: int
    clips: int
    flows: int


def _shard_up_to_date(path: Path, h: str) -> bool:
    with open_shard(path) as f:
        return f.attrs.get("flow_hash") == h


def add_flow(
    build_dir: str | Path, cfg: FlowConfig, *, progress: Callable[[int], None] | None = None
) -> FlowSummary:
    """Add (or replace) flow in every shard of a finished build; see the module docstring.

    Args:
        build_dir: the build folder.
        cfg: flow settings (``enabled`` is ignored: calling this is asking for flow).
        progress: called with the number of clips of each finished shard.

    The build's lock (``OUT/build.lock``, :class:`mepipe.engine.lock.BuildLock`) is held throughout,
    so flow is never added while a build writes into ``OUT``, nor a build started meanwhile.

    Raises:
        ShardError: unfinished build, or a shard that is missing or not self-contained.
        ConfigError: a backend that cannot run here (``tvl1`` without opencv-contrib), before any work.
        BuildLockedError: a build (or another ``mepipe flow``) is running in ``build_dir``.
    """
    from mepipe.engine.lock import BuildLock

    build = Path(build_dir)
    require_backend(cfg.backend)  # before any work or lock file
    require_complete(build)  # a folder that holds no build is refused before the lock file is made
    with BuildLock(build):
        return _add_flow_locked(build, cfg, progress)


def _add_flow_locked(build: Path, cfg: FlowConfig, progress: Callable[[int], None] | None) -> FlowSummary:
    rows = [r for r in require_complete(build) if r.status == "ok"]
    by_shard: dict[str, list] = {}
    for r in rows:
        by_shard.setdefault(r.shard, []).append(r)
    for stale in (build / "shards").glob(f"*{TMP_SUFFIX}"):  # left by an interrupted run
        stale.unlink()
    h = flow_hash(cfg)
    done = skipped = clips = flows = 0
    for shard, shard_rows in sorted(by_shard.items()):
        path = build / "shards" / shard
        if _shard_up_to_date(path, h):
            skipped += 1
            if progress:
                progress(len(shard_rows))
            continue
        tmp = path.with_name(path.name + TMP_SUFFIX)
        shutil.copyfile(path, tmp)
        try:
            with h5py.File(tmp, "r+") as f:
                assert_self_contained(f)
                for r in shard_rows:
                    g = f[CLIPS_GROUP][r.key]
                    made = clip_flows(
                        lambda i, g=g: read_frame(g, i),
                        r.onset_idx,
                        r.apex_idx,
                        r.offset_idx,
                        r.n_frames,
                        cfg,
                    )
                    write_clip_flows(g, made, cfg, g["frame_numbers"][()])
                    clips += 1
                    flows += len(made)
                f.attrs["flow_hash"] = h
                f.attrs["schema_version"] = max(int(f.attrs.get("schema_version", 1)), FLOW_SCHEMA_VERSION)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        done += 1
        if progress:
            progress(len(shard_rows))
    write_flow_info(build, cfg, len(rows))
    return FlowSummary(done, skipped, clips, flows)


def write_flow_info(build_dir: str | Path, cfg: FlowConfig, clips: int) -> None:
    """``OUT/flow-info.json``: the flow settings and hash of the build's ``clips`` ok clips (written
    atomically by :func:`add_flow`, and by a build with ``flow.enabled``)."""
    build = Path(build_dir)
    info = {
        "mepipe_version": __version__,
        "flow_hash": flow_hash(cfg),
        "settings": flow_settings(cfg),
        "clips": clips,
    }
    tmp_info = build / (FLOW_INFO_NAME + ".tmp")
    tmp_info.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp_info, build / FLOW_INFO_NAME)
