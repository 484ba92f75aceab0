"""``mepipe export``: a build's clips in the formats other MER code reads.

Formats (every export also writes ``DIR/index.csv``: one row per exported clip with ``key``,
``dataset``, ``subject``, ``clip_id``, ``label`` (class index, ``-1`` without a label scheme),
``label_name``, ``emotion_raw``, ``onset``/``apex``/``offset`` (source frame numbers),
``onset_idx``/``apex_idx``/``offset_idx`` (0-based stored-frame indices), ``n_frames`` and ``path``
(relative to ``DIR``); ids are written as strings exactly as in the manifest):

* ``frames``: ``DIR/<dataset>/<clip_id>/`` with ``onset.png`` and ``apex.png`` (``frames="keyframes"``)
  or every stored frame as ``<source frame number>.png`` (``frames="all"``): aligned RGB crops.
* ``npz``: ``DIR/<dataset>/<clip_id>.npz`` (folders follow the clip id), one file per clip holding
  ``frames`` ``(T, S, S, 3) uint8``, ``frame_numbers`` ``(T,) int64``, ``timestamps_ms`` ``(T,)
  float64``, ``onset_idx``/``apex_idx``/``offset_idx``, ``transform`` and ``landmarks_ref`` (source
  pixels), as stored in the shard.
* ``ststnet``: the optical-flow images STSTNet / HTNet-style code reads: per clip one ``28 x 28``
  3-channel image of (u, v, optical strain) of the onset -> apex flow, each channel min-max normalised
  per sample to 0..255 (``mepipe.flow``), written with OpenCV so that ``cv2.imread`` returns the
  channels in the order u, v, strain. Layout, as those repositories read it (HTNet's
  ``three_norm_u_v_os`` / ``STSNet_whole_norm_u_v_os`` folders): ``DIR/<subject>/u_train/<label>/`` and
  ``DIR/<subject>/u_test/<label>/`` per leave-one-subject-out fold (the held-out subject's clips in
  ``u_test``, everyone else's in ``u_train``) and ``DIR/whole/`` with every image once. Needs a label
  scheme. Subjects are named by their id (``sub01``, ``006``, ``s01``), or ``<dataset>_<subject>``
  when two datasets of a composite share an id. Flow stored in the build (``mepipe flow``) is used when
  it has the onset -> apex pair and the three channels, else it is computed from the stored crops (DIS
  on 112-px grey crops, or ``flow_backend``); both give the same image for the same flow settings.

``DIR/export-info.json`` records the build, its manifest sha256, the options, the versions and, for
``ststnet``, the flow settings and how many clips came from the stored flow.

Nothing outside ``DIR`` is written; an existing non-empty ``DIR`` is refused unless ``force``.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mepipe.errors import ConfigError
from mepipe.records import ManifestRow
from mepipe.shards.format import CLIPS_GROUP
from mepipe.shards.manifest import require_complete
from mepipe.shards.reader import open_shard, read_frame, read_frames, timestamps_ms

FORMATS = ("frames", "npz", "ststnet")
INDEX_COLUMNS = (
    "key",
    "dataset",
    "subject",
    "clip_id",
    "label",
    "label_name",
    "emotion_raw",
    "onset",
    "apex",
    "offset",
    "onset_idx",
    "apex_idx",
    "offset_idx",
    "n_frames",
    "path",
)
STSTNET_SIZE = 28


@dataclass(frozen=True)
class ExportSummary:
    """What :func:`export_build` wrote: ``clips`` exported, ``skipped`` (not labelled by the scheme),
    ``files`` written, the ``index`` CSV."""

    out: Path
    format: str
    clips: int
    skipped: int
    files: int
    index: Path


def _prepare(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise ConfigError(
                f"--out {out} is not empty; choose an empty folder or pass --force to replace it"
            )
        if not (out / "export-info.json").is_file():  # --force replaces an earlier export, nothing else
            raise ConfigError(
                f"--out {out} holds files that are not a mepipe export (no export-info.json); "
                "--force replaces only an earlier export: choose an empty folder"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1])):
        raise OSError(f"cannot write {path}")


def _labels(rows: list[ManifestRow], scheme_name: str | None):
    if scheme_name is None:
        return None, lambda r: (-1, "")
    from mepipe.labels import load_scheme

    scheme = load_scheme(scheme_name)

    def label(r: ManifestRow) -> tuple[int, str]:
        k = scheme.label(r.dataset, r.emotion_raw)
        return (-1, "") if k is None else (k, scheme.classes[k])

    return scheme, label


def _subject_names(rows: list[ManifestRow]) -> dict[tuple[str, str], str]:
    """Folder name per (dataset, subject): the id, or ``dataset_id`` when ids collide across datasets."""
    by_id: dict[str, set[str]] = {}
    for r in rows:
        by_id.setdefault(r.subject, set()).add(r.dataset)
    return {
        (r.dataset, r.subject): r.subject if len(by_id[r.subject]) == 1 else f"{r.dataset}_{r.subject}"
        for r in rows
    }


def ststnet_image(
    onset: np.ndarray, apex: np.ndarray, *, backend: str = "dis", size: int = 112
) -> np.ndarray:
    """The ``(28, 28, 3) uint8`` STSTNet input of one clip: (u, v, strain) of the onset -> apex flow
    computed on ``size x size`` grey crops, resized to 28, min-max normalised per channel to 0..255
    (:data:`mepipe.flow.STSTNET_INPUT`, the input mepipe's own ``ststnet`` model trains on)."""
    from mepipe.flow import STSTNET_INPUT

    return _to_uint8(STSTNET_INPUT.with_flow(backend, compute_size=size).from_frames(onset, apex))


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def export_build(
    build_dir: str | Path,
    out: str | Path,
    fmt: str,
    *,
    labels: str | None = None,
    frames: str = "keyframes",
    flow_backend: str | None = None,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ExportSummary:
    """Export the ``ok`` clips of a finished build (see the module docstring for the formats).

    Args:
        build_dir: the build folder (``--out`` of ``mepipe build-dataset``).
        out: the export folder (created; must be empty, or an earlier export with ``force``).
        fmt: one of :data:`FORMATS`.
        labels: label scheme name; clips it does not label are skipped (required for ``ststnet``).
        frames: ``keyframes`` (onset and apex) or ``all`` (``frames`` format only).
        flow_backend: ``ststnet``: the flow backend; ``None``: the build's stored flow when it has
            one (``mepipe flow``), else ``dis``. A backend other than the stored one is computed.
        force: replace a non-empty ``out``.
        progress: called with 1 after each exported clip.

    Raises:
        ConfigError: bad format/options or a non-empty ``out``; ShardError: unfinished build.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    if frames not in ("keyframes", "all"):
        raise ConfigError(f"--frames {frames!r}: use keyframes or all")
    if fmt == "ststnet" and labels is None:
        raise ConfigError("--format ststnet needs --labels SCHEME (the images are filed by class index)")
    build = Path(build_dir)
    rows = [r for r in require_complete(build) if r.status == "ok"]
    _, label_of = _labels(rows, labels)
    chosen = [(r, *label_of(r)) for r in rows]
    skipped = sum(1 for _, k, _ in chosen if labels is not None and k < 0)
    chosen = [c for c in chosen if labels is None or c[1] >= 0]
    out = Path(out)
    here, there = out.resolve(), build.resolve()
    if here == there or there.is_relative_to(here):
        raise ConfigError(f"--out {out} is (or holds) the build folder {build}; export into another folder")
    _prepare(out, force)
    names = _subject_names([r for r, _, _ in chosen])
    spec, use_stored = _ststnet_spec(build, flow_backend) if fmt == "ststnet" else (None, False)
    from_store = 0
    index_rows: list[dict[str, object]] = []
    files = 0
    images: list[tuple[ManifestRow, int, str, np.ndarray]] = []
    handles: dict[str, object] = {}
    try:
        for r, k, name in chosen:
            f = handles.get(r.shard) or handles.setdefault(r.shard, open_shard(build / "shards" / r.shard))
            g = f[CLIPS_GROUP][r.key]  # type: ignore[index]
            if fmt == "frames":
                folder = Path(r.dataset) / r.clip_id
                if frames == "keyframes":
                    _write_png(out / folder / "onset.png", read_frame(g, r.onset_idx))
                    _write_png(out / folder / "apex.png", read_frame(g, r.apex_idx))
                    files += 2
                else:
                    numbers = g["frame_numbers"][()]
                    for i in range(r.n_frames):
                        _write_png(out / folder / f"{int(numbers[i])}.png", read_frame(g, i))
                    files += r.n_frames
                rel = folder
            elif fmt == "npz":
                rel = Path(r.dataset) / f"{r.clip_id}.npz"
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                np.savez(
                    out / rel,
                    frames=read_frames(g),
                    frame_numbers=g["frame_numbers"][()],
                    timestamps_ms=timestamps_ms(g),
                    onset_idx=r.onset_idx,
                    apex_idx=r.apex_idx,
                    offset_idx=r.offset_idx,
                    transform=g["transform"][()],
                    landmarks_ref=g["landmarks_ref"][()],
                )
                files += 1
            else:
                from mepipe.flow_stage import stored_flow_input

                assert spec is not None
                x = stored_flow_input(g, spec, r.onset_idx, r.apex_idx) if use_stored else None
                from_store += x is not None
                if x is None:
                    x = spec.from_frames(read_frame(g, r.onset_idx), read_frame(g, r.apex_idx))
                img = _to_uint8(x)
                subject = names[(r.dataset, r.subject)]
                stem = f"{subject}_{r.clip_id.split('/')[-1]}"
                rel = Path("whole") / f"{stem}.png"
                images.append((r, k, stem, img))
            index_rows.append(_index_row(r, k, name, rel))
            if progress:
                progress(1)
    finally:
        for h in handles.values():
            h.close()  # type: ignore[attr-defined]
    if fmt == "ststnet":
        files += _write_ststnet_layout(out, images, names)
    index = out / "index.csv"
    with open(index, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=INDEX_COLUMNS)
        w.writeheader()
        w.writerows(index_rows)
    _write_info(out, build, fmt, labels, frames, len(index_rows), skipped, spec, from_store)
    return ExportSummary(out, fmt, len(index_rows), skipped, files, index)


def _ststnet_spec(build: Path, backend: str | None):
    from mepipe.flow import STSTNET_INPUT
    from mepipe.flow_stage import build_flow_input

    return build_flow_input(build, STSTNET_INPUT, backend)


def _write_info(out: Path, build: Path, fmt, labels, frames, clips, skipped, spec, from_store) -> None:
    """``DIR/export-info.json``: what was exported from which build, with which settings and versions."""
    import json

    from mepipe import __version__
    from mepipe.provenance import file_sha256, library_versions

    info: dict[str, object] = {
        "mepipe_version": __version__,
        "versions": library_versions(),
        "build": str(build.resolve()),
        "manifest_sha256": file_sha256(build / "manifest.csv"),
        "format": fmt,
        "labels": labels,
        "frames": frames if fmt == "frames" else None,
        "clips": clips,
        "skipped_unlabelled": skipped,
    }
    if spec is not None:
        info["flow"] = {
            **spec.to_dict(),
            "clips_from_stored_flow": from_store,
            "clips_computed": clips - from_store,
        }
    (out / "export-info.json").write_text(json.dumps(info, indent=2) + "\n")


def _index_row(r: ManifestRow, label: int, name: str, rel: Path) -> dict[str, object]:
    return {
        "key": r.key,
        "dataset": r.dataset,
        "subject": r.subject,
        "clip_id": r.clip_id,
        "label": label,
        "label_name": name,
        "emotion_raw": r.emotion_raw,
        "onset": r.onset,
        "apex": r.apex,
        "offset": r.offset,
        "onset_idx": r.onset_idx,
        "apex_idx": r.apex_idx,
        "offset_idx": r.offset_idx,
        "n_frames": r.n_frames,
        "path": rel.as_posix(),
    }


def _write_ststnet_layout(out: Path, images, names: dict[tuple[str, str], str]) -> int:
    """``whole/`` plus one ``<subject>/u_train|u_test/<label>/`` fold per subject; returns files written."""
    import cv2

    def put(path: Path, img: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(path), img):  # channel order u, v, strain as cv2.imread returns it
            raise OSError(f"cannot write {path}")

    n = 0
    for _, _, stem, img in images:
        put(out / "whole" / f"{stem}.png", img)
        n += 1
    subjects = sorted({names[(r.dataset, r.subject)] for r, _, _, _ in images})
    for held in subjects:
        for r, k, stem, img in images:
            side = "u_test" if names[(r.dataset, r.subject)] == held else "u_train"
            put(out / held / side / str(k) / f"{stem}.png", img)
            n += 1
    return n
