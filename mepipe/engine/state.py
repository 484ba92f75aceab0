"""What an earlier (finished, interrupted or killed) build left in ``OUT``, and what a new run keeps.

Files: ``OUT/build-state.json`` (this module: config hash, status, the next free shard number, one
entry per attempt), ``OUT/manifest.csv`` (rows), ``OUT/shards/*.h5`` (complete shards),
``OUT/shards/*.h5.tmp`` and ``OUT/scratch/`` (leftovers of interrupted writes).

:func:`reconcile` decides, for a new run with the same config, which stored clips are kept:

* a shard the manifest lists is kept whole when it opens, carries the build's config hash and holds
  every listed clip, and each of those clips is still in the dataset with an unchanged source
  fingerprint; otherwise none of its clips is kept (they are built again) and the file is deleted
  once the new manifest no longer lists it;
* a complete shard the manifest does not list (the build was killed between the shard's rename and
  the next manifest write) is adopted when every clip group in it carries the build's config hash,
  its manifest row (attribute ``manifest_row``) and an unchanged fingerprint, and no kept shard
  already holds that clip; otherwise it is deleted;
* ``*.tmp`` shards and scratch files are deleted (they were never listed).
"""

from __future__ import annotations

import json
import os
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mepipe.errors import ShardError
from mepipe.logs import get_logger
from mepipe.records import ManifestRow
from mepipe.shards.clipwriter import SCRATCH_DIR
from mepipe.shards.format import CLIPS_GROUP
from mepipe.shards.manifest import MANIFEST_NAME, STATE_NAME, read_manifest, read_state
from mepipe.shards.reader import iter_clip_keys, open_shard

RESOLVED_NAME = "pipeline.resolved.yaml"
OUTPUTS = (MANIFEST_NAME, STATE_NAME, "build-info.json", RESOLVED_NAME, "pairs.csv", "pairs.json")
"""Files of a build that ``--force`` removes (with ``shards/`` and ``scratch/``; ``build.log`` stays)."""

log = get_logger(__name__)


def write_state(out: Path, state: dict) -> None:
    """Write ``OUT/build-state.json`` atomically."""
    tmp = out / (STATE_NAME + ".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, out / STATE_NAME)


def holds_build(out: Path) -> bool:
    """True when ``out`` has a manifest, a state file or shards of an earlier build."""
    return (out / MANIFEST_NAME).exists() or (out / STATE_NAME).exists() or (out / "shards").is_dir()


def previous_config(out: Path) -> tuple[str | None, dict | None]:
    """``(config hash, resolved config)`` of the build in ``out`` (``None`` where unknown)."""
    from mepipe.config import parse_config

    state = read_state(out)
    resolved = None
    try:
        resolved = yaml.safe_load((out / RESOLVED_NAME).read_text())
    except (OSError, yaml.YAMLError):
        resolved = None
    digest = state.get("config_hash")
    if digest is None and isinstance(resolved, dict):
        try:
            digest = parse_config(resolved, str(out / RESOLVED_NAME)).hash()
        except Exception:  # noqa: BLE001  (an older or foreign config: no comparable hash)
            digest = None
    return digest, resolved if isinstance(resolved, dict) else None


def config_diff(old: dict | None, new: dict, prefix: str = "") -> list[str]:
    """``["align.crop_size: 224 -> 112", ...]``: dotted keys whose values differ (``dataset.source``
    and the build's run-time keys excluded: they do not change what is written)."""
    from mepipe.config import BuildConfig

    if old is None:
        return ["(the earlier build's pipeline.resolved.yaml is missing or unreadable)"]
    skip = {"dataset.source", *(f"build.{k}" for k in BuildConfig.RUNTIME_KEYS)}
    out: list[str] = []
    for key in sorted(set(old) | set(new)):
        dotted = f"{prefix}{key}"
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if dotted in skip:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_diff(a, b, dotted + ".")
        elif a != b:
            out.append(f"{dotted}: {a!r} -> {b!r}")
    return out


def clear_build(out: Path) -> None:
    """Remove every output of a build in ``out`` (``--force``); ``build.log`` and the lock stay."""
    shutil.rmtree(out / "shards", ignore_errors=True)
    shutil.rmtree(out / SCRATCH_DIR, ignore_errors=True)
    shutil.rmtree(out / "dask-scratch", ignore_errors=True)
    for name in OUTPUTS:
        (out / name).unlink(missing_ok=True)
        (out / (name + ".tmp")).unlink(missing_ok=True)
    (out / "manifest.csv.tmp").unlink(missing_ok=True)


def shard_index(name: str) -> int:
    """``shard-00042.h5`` / ``shard-00042-1.h5`` / ``shard-00042.h5.tmp`` -> 42 (-1 if not a shard name)."""
    stem = name.split(".", 1)[0]
    parts = stem.split("-")
    return int(parts[1]) if len(parts) >= 2 and parts[0] == "shard" and parts[1].isdigit() else -1


@dataclass
class Reconciled:
    """The outcome of :func:`reconcile`.

    Attributes:
        kept: ``key -> ok row`` of clips kept from earlier runs (listed or adopted shards).
        delete: shard files to delete once the new manifest is written (stale or duplicate).
        adopted: names of unlisted shards that were adopted.
        notes: what was decided, one sentence each (logged).
        max_index: the highest shard number found on disk (-1: none).
    """

    kept: dict[str, ManifestRow] = field(default_factory=dict)
    delete: list[Path] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    max_index: int = -1


def _row_from_attr(raw: object, shard: str) -> ManifestRow | None:
    try:
        data = json.loads(str(raw))
    except ValueError:
        return None
    row = ManifestRow.from_row({k: "" if v is None else v for k, v in data.items()})
    row.shard = shard
    return row


def reconcile(out: Path, config_hash: str, fingerprints: dict[str, str]) -> Reconciled:
    """Decide which stored clips a resumed build keeps (rules in the module docstring).

    Args:
        out: the build folder.
        config_hash: the current pipeline's :meth:`~mepipe.config.PipelineConfig.hash`.
        fingerprints: ``clip key -> current source fingerprint`` of every clip that may be kept.
    """
    res = Reconciled()
    shards = out / "shards"
    leftovers = sorted(shards.glob("*.tmp")) if shards.is_dir() else []
    for tmp in leftovers:
        res.max_index = max(res.max_index, shard_index(tmp.name))
        tmp.unlink(missing_ok=True)
    if leftovers:
        res.notes.append(f"deleted {len(leftovers)} unfinished shard file(s) left by an interrupted run")
    shutil.rmtree(out / SCRATCH_DIR, ignore_errors=True)
    on_disk = sorted(shards.glob("shard-*.h5")) if shards.is_dir() else []
    for p in on_disk:
        res.max_index = max(res.max_index, shard_index(p.name))
    try:
        rows = read_manifest(out) if (out / MANIFEST_NAME).is_file() else []
    except ShardError as exc:
        res.notes.append(f"the earlier manifest cannot be read ({exc}); its shards are checked one by one")
        rows = []
    listed: dict[str, list[ManifestRow]] = defaultdict(list)
    for r in rows:
        if r.status == "ok":
            listed[r.shard].append(r)
    for name, shard_rows in sorted(listed.items()):
        why = _listed_problem(shards / name, config_hash, shard_rows, fingerprints)
        if why:
            res.notes.append(f"{name}: its {len(shard_rows)} clip(s) are built again ({why})")
            if (shards / name).exists():
                res.delete.append(shards / name)
            continue
        for r in shard_rows:
            res.kept[r.key] = r
    for path in on_disk:
        if path.name in listed:
            continue
        adopted, why = _adoptable(path, config_hash, fingerprints, res.kept)
        if adopted is None:
            res.notes.append(f"{path.name}: not listed in the manifest and not adopted ({why}); deleted")
            res.delete.append(path)
            continue
        for r in adopted:
            res.kept[r.key] = r
        res.adopted.append(path.name)
        res.notes.append(f"{path.name}: adopted {len(adopted)} clip(s) finished just before the last stop")
    return res


def _listed_problem(
    path: Path, config_hash: str, rows: list[ManifestRow], fingerprints: dict[str, str]
) -> str:
    """Why a listed shard cannot be kept whole ('' when it can)."""
    for r in rows:
        if r.key not in fingerprints:
            return f"clip {r.key} is no longer in the dataset or the plan"
        if not r.fingerprint or r.fingerprint != fingerprints[r.key]:
            return f"the source of {r.key} changed"
    try:
        f = open_shard(path)
    except (ShardError, OSError) as exc:
        return f"the file cannot be used: {exc}"
    with f:
        if str(f.attrs.get("config_hash", "")) != config_hash:
            return "it was written with another pipeline config"
        clips = f[CLIPS_GROUP]
        for r in rows:
            if r.key not in clips:
                return f"clip {r.key} is missing from it"
    return ""


def _adoptable(
    path: Path, config_hash: str, fingerprints: dict[str, str], kept: dict[str, ManifestRow]
) -> tuple[list[ManifestRow] | None, str]:
    """The rows of an unlisted shard if it can be adopted, else ``(None, why)``."""
    try:
        f = open_shard(path)
    except (ShardError, OSError) as exc:
        return None, f"cannot be used: {exc}"
    with f:
        if str(f.attrs.get("config_hash", "")) != config_hash:
            return None, "written with another pipeline config"
        rows: list[ManifestRow] = []
        for key in iter_clip_keys(f):
            g = f[CLIPS_GROUP][key]
            fp = str(g.attrs.get("fingerprint", ""))
            if key in kept:
                return None, f"clip {key} is already stored in {kept[key].shard}"
            if key not in fingerprints or not fp or fp != fingerprints[key]:
                return None, f"clip {key} is not in the plan or its source changed"
            row = _row_from_attr(g.attrs.get("manifest_row", ""), path.name)
            if row is None or row.key != key or row.status != "ok":
                return None, f"clip {key} carries no usable manifest row"
            rows.append(row)
    if not rows:
        return None, "it holds no clip"
    return rows, ""
