"""``build-info.json`` and the summary a finished build logs.

``build-info.json`` records what made the build and what it holds: mepipe version and git commit,
the versions of every library that shapes the output (:func:`mepipe.provenance.library_versions`),
pipeline and config hash, face backends and the sha256 of their model files, the video decoder, the
engine (backend, worker slots), counts (clips ok / failed / kept from earlier runs, frames), the
failures by reason, the quality flags of the ok clips (the ``qa`` column, ``;``-separated), and the
outcome of every row-anchored fix of the dataset's fix tables (``fix_report``: one
:meth:`FixOutcome.as_dict <mepipe.datasets.anchors.FixOutcome>` each, with ``fixes_applied`` and
``fixes_unmatched`` counts).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from mepipe import __version__
from mepipe.logs import get_logger
from mepipe.provenance import git_commit, library_versions
from mepipe.records import ManifestRow

log = get_logger(__name__)


def qa_counts(rows: list[ManifestRow]) -> dict[str, int]:
    """``{flag: number of ok clips carrying it}`` from the ``qa`` column (``;``-separated flags)."""
    c: Counter[str] = Counter()
    for r in rows:
        if r.status == "ok" and r.qa:
            c.update({f.strip() for f in r.qa.split(";") if f.strip()})
    return dict(sorted(c.items()))


def build_info(cfg, root, rows, frames_built, seconds, engine, kept, state, attrs) -> dict:
    ok = [r for r in rows if r.status == "ok"]
    failed = [r for r in rows if r.status == "failed"]
    return {
        "mepipe_version": __version__,
        "git_commit": git_commit(),
        "pipeline": cfg.name,
        "config_hash": cfg.hash(),
        "source": str(Path(root).resolve()),
        "versions": library_versions(),
        "backends": json.loads(str(attrs["backends"])),
        "model_files": json.loads(str(attrs["model_files"])),
        "video_decoder": cfg.video.decoder,
        "engine": engine,
        "clips": len(rows),
        "clips_ok": len(ok),
        "clips_failed": len(failed),
        "clips_kept_from_earlier_runs": kept,
        "frames": sum(r.n_frames for r in ok),
        "frames_built": frames_built,
        "seconds": round(seconds, 3),
        "attempts": len(state.get("attempts", [])),
        "failures_by_reason": dict(sorted(Counter(r.reason for r in failed).items())),
        "qa_flags": qa_counts(rows),
        "clips_flagged": sum(1 for r in ok if r.qa),
    }


def fix_report_info(outcomes: list) -> dict:
    """The ``fix_report`` part of ``build-info.json`` from the scan's
    :class:`~mepipe.datasets.anchors.FixOutcome` list (``ScanResult.fix_report``)."""
    return {
        "fixes_applied": sum(1 for o in outcomes if o.status == "applied"),
        "fixes_unmatched": sum(1 for o in outcomes if o.unmatched),
        "fix_report": [o.as_dict() for o in outcomes],
    }


def log_summary(info: dict) -> None:
    log.info(
        "build finished: %d ok (%d kept from earlier runs), %d failed, %d frames built in %.1f s",
        info["clips_ok"], info["clips_kept_from_earlier_runs"], info["clips_failed"],
        info["frames_built"], info["seconds"],
    )  # fmt: skip
    if info["failures_by_reason"]:
        text = ", ".join(f"{k} {v}" for k, v in info["failures_by_reason"].items())
        log.info("failures by reason: %s (see status=failed rows in manifest.csv)", text)
    if info.get("fix_report"):
        log.info(
            "fix tables: %d fix(es) applied, %d did not fit this copy of the dataset (fix_report in "
            "build-info.json)", info["fixes_applied"], info["fixes_unmatched"],
        )  # fmt: skip
    if info["qa_flags"]:
        text = ", ".join(f"{k} {v}" for k, v in info["qa_flags"].items())
        log.info("quality flags on ok clips: %s", text)


def stored_attrs(out: Path) -> dict | None:
    """Root attributes of any shard of the build (when this run built nothing)."""
    from mepipe.errors import ShardError
    from mepipe.shards.reader import open_shard

    for path in sorted((out / "shards").glob("shard-*.h5")):
        try:
            with open_shard(path) as f:
                return {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
        except (OSError, ShardError):
            continue
    return None
