"""Typed records that flow between stages: adapter clips, adapter issues and manifest rows.

Frame-number convention used everywhere in mepipe:

* **source frame numbers** are the dataset's own numbers (e.g. CASME II ``img46.jpg`` is frame 46; a
  video's first decoded frame is 0). Annotations (onset/apex/offset) are given in these numbers.
* **shard-local indices** are 0-based positions in the stored ``(T, H, W, 3)`` array.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

SourceKind = Literal["images", "video"]
ExpressionType = Literal["micro", "macro"]


def subject_key(clip: Any) -> str:
    """Subject keyed by dataset (``"casme2/sub01"``), unique across composite builds: the one key of a
    subject for anything with ``dataset`` and ``subject`` (clip records, manifest rows, training clips)."""
    return f"{clip.dataset}/{clip.subject}"


@dataclass(frozen=True)
class ClipRecord:
    """One clip as an adapter found it on disk, before any face processing.

    Attributes:
        dataset: registry name of the adapter that produced it (``"casme2"``).
        subject: the dataset's subject id, canonicalised (``"sub01"``, ``"006"``).
        clip_id: unique id within the dataset (``"sub01/EP02_01f"``).
        source_kind: ``"images"`` (a folder of frame files) or ``"video"`` (one video file).
        source_path: the frame folder or the video file, absolute.
        frame_files: for ``images``: the frame files (relative to ``source_path``) in temporal order.
        frame_numbers: the source frame number of each frame (same length as ``frame_files``; for
            videos filled by the frame source when the file is opened, else empty).
        onset, apex, offset: source frame numbers, or ``None`` when not annotated.
        keyframe_source: where onset/apex/offset come from (``annotated``, ``fixed``, ``midpoint`` ...).
        emotion_raw: the emotion string exactly as the annotation gives it (labels are mapped late).
        aus_raw: the action-unit string as annotated (``"4+R12"``).
        fps: frame rate of the source.
        expression_type: ``micro`` or ``macro``.
        fixes: ids of the annotation fixes applied to this clip (see ``manifests/fixes``).
        extra: other per-dataset fields kept as strings (objective class, split, ...).
    """

    dataset: str
    subject: str
    clip_id: str
    source_kind: SourceKind
    source_path: str
    frame_files: tuple[str, ...] = ()
    frame_numbers: tuple[int, ...] = ()
    onset: int | None = None
    apex: int | None = None
    offset: int | None = None
    keyframe_source: str = "annotated"
    emotion_raw: str = ""
    aus_raw: str = ""
    fps: float = 30.0
    expression_type: ExpressionType = "micro"
    fixes: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)

    subject_key = property(subject_key)

    @property
    def key(self) -> str:
        """Globally unique clip key (``"casme2/sub01/EP02_01f"``), used as the HDF5 group path."""
        return f"{self.dataset}/{self.clip_id}"


@dataclass(frozen=True)
class ClipIssue:
    """A clip (or annotation row) that cannot be built, with a typed reason.

    Attributes:
        dataset: adapter name.
        clip_id: the clip id if it could be formed, else ``"row<N>"``.
        reason: short machine-readable code (``missing_frames``, ``apex_outside_clip`` ...).
        message: a sentence naming the file/row and what to do.
        subject: subject id if known.
        file: the annotation file or frame folder concerned.
        row: 1-based spreadsheet row (as Excel shows it), if the issue comes from a row.
    """

    dataset: str
    clip_id: str
    reason: str
    message: str
    subject: str = ""
    file: str = ""
    row: int | None = None


@dataclass
class ManifestRow:
    """One row of ``manifest.csv``: the outcome of building one clip.

    ``status`` is ``ok``, ``failed`` or ``pending`` (listed, not built yet: an unfinished build);
    failed rows carry ``reason`` (code) and ``message``. For ok rows ``shard``/``key`` locate the
    clip's HDF5 group and ``*_idx`` are shard-local indices. Face quality (ok rows; ``-1`` = not
    measured): ``face_score`` detector confidence, ``fit_error`` landmark residual against the
    template (% of the inter-ocular distance), ``stability`` residual head motion inside the aligned
    clip (% IOD), ``qa`` flags separated by ``;`` (empty when clean), ``face_span`` the source frames
    kept when the clip was trimmed to the frames showing the face (empty: not trimmed).
    ``fingerprint`` identifies the clip's source files as they were when it was built (resume).
    The columns and their types are documented in ``docs/shard-format.md``.
    """

    key: str
    dataset: str
    subject: str
    clip_id: str
    status: str
    reason: str = ""
    message: str = ""
    shard: str = ""
    n_frames: int = 0
    onset: int = -1
    apex: int = -1
    offset: int = -1
    onset_idx: int = -1
    apex_idx: int = -1
    offset_idx: int = -1
    keyframe_source: str = ""
    emotion_raw: str = ""
    aus_raw: str = ""
    fps: float = 0.0
    expression_type: str = ""
    fixes: str = ""
    reference_frame: int = -1
    faces_found: int = 0
    face_note: str = ""
    face_score: float = -1.0
    fit_error: float = -1.0
    stability: float = -1.0
    qa: str = ""
    face_span: str = ""
    frames_sha256: str = ""
    source_path: str = ""
    extra: str = "{}"
    fingerprint: str = ""

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ManifestRow:
        """Build from a CSV row (strings), casting each field to its declared type."""
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = row.get(f.name, "")
            if raw is None or (isinstance(raw, float) and raw != raw):  # NaN from pandas
                raw = ""
            if f.type in ("int",):
                kwargs[f.name] = int(float(raw)) if str(raw) != "" else -1
            elif f.type in ("float",):
                kwargs[f.name] = float(raw) if str(raw) != "" else 0.0
            else:
                kwargs[f.name] = str(raw)
        return cls(**kwargs)


def failed_row(clip: ClipRecord | None, issue: ClipIssue) -> ManifestRow:
    """The manifest row recording why a clip (or an unusable annotation row) was not built."""
    if clip is not None:
        return ManifestRow(
            key=clip.key,
            dataset=clip.dataset,
            subject=clip.subject,
            clip_id=clip.clip_id,
            status="failed",
            reason=issue.reason,
            message=issue.message,
            onset=_num(clip.onset),
            apex=_num(clip.apex),
            offset=_num(clip.offset),
            keyframe_source=clip.keyframe_source,
            emotion_raw=clip.emotion_raw,
            aus_raw=clip.aus_raw,
            fps=clip.fps,
            expression_type=clip.expression_type,
            fixes=";".join(clip.fixes),
            source_path=clip.source_path,
            extra=json.dumps(clip.extra, sort_keys=True),
        )
    return ManifestRow(
        key=f"{issue.dataset}/{issue.clip_id}",
        dataset=issue.dataset,
        subject=issue.subject,
        clip_id=issue.clip_id,
        status="failed",
        reason=issue.reason,
        message=issue.message,
        source_path=issue.file,
    )


def _num(v: int | None) -> int:
    return -1 if v is None else int(v)
