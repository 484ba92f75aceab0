"""Source fingerprints: has a clip's input changed since it was built?

A resumed build keeps a stored clip only when its fingerprint is unchanged. The fingerprint is a
sha256 over

* the adapter's record of the clip (subject, keyframes, labels, frame list, fixes ... every field of
  :class:`~mepipe.records.ClipRecord`), with ``source_path`` relative to the dataset root, so a
  dataset copied elsewhere with its timestamps (``cp -a``, ``rsync -a``) still matches, and a
  corrected annotation does not;
* for every source file (each frame image, or the video): its name, size in bytes and modification
  time in nanoseconds (``stat``; one system call per file, so resuming a 16k-clip build does not
  re-read terabytes), or with ``build.fingerprint: content`` the sha256 of its bytes (for filesystems
  whose modification times cannot be trusted; reads every file once per run).

A file replaced by one with the same size and modification time is not noticed in ``stat`` mode.
The value is ``"<mode>:<hex>"``; it is stored in the manifest (``fingerprint`` column) and in the clip
group (attribute ``fingerprint``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

from mepipe.provenance import file_sha256
from mepipe.records import ClipRecord

MODES = ("stat", "content")


def _relative(path: str, root: Path | None) -> str:
    if root is None:
        return path
    try:
        return Path(path).resolve().relative_to(root).as_posix()
    except ValueError:
        return path


def source_files(clip: ClipRecord) -> list[Path]:
    """The files a clip is built from: its frame images, or its video file."""
    base = Path(clip.source_path)
    if clip.source_kind == "images":
        return [base / name for name in clip.frame_files]
    return [base]


def clip_fingerprint(clip: ClipRecord, root: str | Path | None = None, mode: str = "stat") -> str:
    """Fingerprint of ``clip`` as found under the dataset ``root`` (see the module docstring).

    Args:
        clip: the adapter's record.
        root: the dataset root (``--source``); paths are hashed relative to it.
        mode: ``stat`` (names, sizes, modification times) or ``content`` (sha256 of each file).
    """
    if mode not in MODES:
        raise ValueError(f"unknown fingerprint mode {mode!r}; use one of {MODES}")
    root_path = Path(root).resolve() if root is not None else None
    record = dataclasses.asdict(clip)
    record["source_path"] = _relative(clip.source_path, root_path)
    h = hashlib.sha256(json.dumps(record, sort_keys=True, default=list).encode())
    for path in source_files(clip):
        try:
            st = os.stat(path)
        except OSError as exc:
            h.update(f"\0{path.name}\0missing:{exc.errno}".encode())
            continue
        if mode == "content":
            try:
                h.update(f"\0{path.name}\0{st.st_size}\0{file_sha256(path)}".encode())
            except OSError as exc:
                h.update(f"\0{path.name}\0unreadable:{exc.errno}".encode())
        else:
            h.update(f"\0{path.name}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return f"{mode}:{h.hexdigest()}"
