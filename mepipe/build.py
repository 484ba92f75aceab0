"""``build-dataset``: adapter -> per-clip processing (:mod:`mepipe.process`) -> HDF5 shards + manifest
(+ the pair table).

Clips are processed in parallel worker processes (joblib); only the main process writes HDF5. A clip
that fails (unreadable frame or video, no face, bad annotation ...) becomes a ``failed`` manifest row
with its reason and the build goes on. The manifest is rewritten (atomically) each time a shard is
completed, so an interrupted build leaves complete shards that the manifest lists.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mepipe import __version__
from mepipe.config import PipelineConfig, write_resolved
from mepipe.datasets.base import get_adapter
from mepipe.errors import ConfigError
from mepipe.face.backends import get_detector, get_landmarker
from mepipe.process import ok_row, safe_process
from mepipe.provenance import library_versions
from mepipe.records import ClipIssue, ManifestRow, failed_row
from mepipe.shards.manifest import MANIFEST_NAME, write_manifest
from mepipe.shards.writer import ShardWriter


@dataclass
class BuildSummary:
    out_dir: Path
    clips_ok: int
    clips_failed: int
    frames: int
    seconds: float
    shards: list[str]

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def prepare_out_dir(out: Path, force: bool) -> None:
    """Refuse to overwrite an existing build unless ``force``; then remove its outputs only."""
    if (out / MANIFEST_NAME).exists() or (out / "shards").exists():
        if not force:
            raise ConfigError(
                f"{out} already holds a build; choose another --out or pass --force to replace it"
            )
        shutil.rmtree(out / "shards", ignore_errors=True)
        (out / MANIFEST_NAME).unlink(missing_ok=True)
        for stale in ("pairs.csv", "pairs.json"):  # they point into the shards being replaced
            (out / stale).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def build_dataset(
    cfg: PipelineConfig,
    source: str | Path | None,
    out: str | Path,
    *,
    workers: int = 1,
    force: bool = False,
    limit: int | None = None,
    on_total: Callable[[int], None] | None = None,
    on_clip: Callable[[ManifestRow], None] | None = None,
) -> BuildSummary:
    """Build shards + manifest for the dataset at ``source`` (or ``cfg.dataset.source``).

    Args:
        workers: worker processes for the face stage (1: in-process).
        force: replace an existing build in ``out``.
        limit: build only the first ``limit`` clips (quick looks at a new dataset).
        on_total, on_clip: progress callbacks (total clip count; each finished row).
    """
    from joblib import Parallel, delayed

    t0 = time.perf_counter()
    out = Path(out)
    root = source or cfg.dataset.source
    if root is None:
        raise ConfigError("no dataset folder: pass --source DIR (or set dataset.source in the pipeline)")
    adapter = get_adapter(cfg.dataset.adapter, root, **cfg.dataset.options)
    scan = adapter.scan()
    clips = scan.clips[:limit] if limit else scan.clips
    prepare_out_dir(out, force)
    write_resolved(cfg, out)
    det, lmk = get_detector(cfg.face.detector, cfg.face.upsample), get_landmarker(cfg.face.landmarker)
    file_attrs = {
        "pipeline": cfg.name,
        "config_hash": cfg.hash(),
        "backends": json.dumps({"detector": det.name, "landmarker": lmk.name}),
        "model_files": json.dumps({**det.model_files(), **lmk.model_files()}, sort_keys=True),
        "crop_size": cfg.align.crop_size,
        "align_mode": cfg.align.mode,
        "frame_encoding": cfg.storage.encoding,
    }
    failed = [failed_row(c, i) for c, i in scan.failures]
    done: list[ManifestRow] = []
    pending: list[ManifestRow] = []

    def shard_closed(name: str) -> None:
        done.extend(pending)
        pending.clear()
        write_manifest(done + failed, out)

    writer = ShardWriter(
        out,
        file_attrs,
        max_clips=cfg.shards.max_clips,
        max_bytes=cfg.shards.max_bytes,
        on_shard_closed=shard_closed,
    )
    if on_total:
        on_total(len(clips))
    for row in failed:
        if on_clip:
            on_clip(row)
    n_frames = 0
    by_key = {c.key: c for c in clips}
    jobs = (delayed(safe_process)(c, cfg) for c in clips)
    try:
        for result in Parallel(n_jobs=workers, return_as="generator")(jobs):
            if isinstance(result, ClipIssue):
                row = failed_row(by_key[f"{result.dataset}/{result.clip_id}"], result)
                failed.append(row)
            else:
                shard = writer.add(result)
                row = ok_row(result, shard)
                pending.append(row)
                n_frames += row.n_frames
            if on_clip:
                on_clip(row)
        writer.close()
    except BaseException:
        writer.abort()
        write_manifest(done + failed, out)
        raise
    write_manifest(done + failed, out)
    seconds = time.perf_counter() - t0
    info = {
        "mepipe_version": __version__,
        "pipeline": cfg.name,
        "config_hash": cfg.hash(),
        "source": str(Path(root).resolve()),
        "versions": library_versions(),
        "backends": json.loads(file_attrs["backends"]),
        "model_files": json.loads(file_attrs["model_files"]),
        "clips_ok": len(done),
        "clips_failed": len(failed),
        "frames": n_frames,
        "seconds": round(seconds, 3),
        "workers": workers,
        "failures_by_reason": dict(sorted(Counter(r.reason for r in failed).items())),
    }
    (out / "build-info.json").write_text(json.dumps(info, indent=2) + "\n")
    if cfg.pairs.write:
        from mepipe.pairs import write_pair_table

        write_pair_table(out, cfg.pairs, seed=cfg.pairs.seed if cfg.pairs.seed is not None else cfg.seed)
    shards = sorted(p.name for p in (out / "shards").glob("shard-*.h5"))
    return BuildSummary(out, len(done), len(failed), n_frames, seconds, shards)
