"""The layout-writer interface: plan clips with dataset-native ids, save frames, write annotations.

A layout writer knows one dataset's on-disk layout (see ``shared/reference/datasets.md`` sections 2
and 3): folder and file names, frame numbering, frame format and the annotation files. It does not
render pixels; :func:`mepipe.synth.api.synthesize` renders each planned clip and hands the frames to
the sink returned by :meth:`LayoutWriter.open_clip`.
"""

from __future__ import annotations

import io
import re
import shutil
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
from openpyxl import Workbook

from mepipe.errors import ConfigError
from mepipe.registry import Registry
from mepipe.synth.expressions import EXPRESSION_SETS, AUSpec

LAYOUTS: Registry[type[LayoutWriter]] = Registry("synth layout")
"""Registered layout writers, by layout name (``casme2``, ``samm``, ``smic``, ``dfew``)."""

JPEG_QUALITY = 90


@dataclass
class ClipPlan:
    """Everything about one clip except its pixels.

    Frame numbers (``frame_numbers``, ``onset``, ``apex``, ``offset``) follow the layout's convention:
    the numbers in the frame file names for image layouts, 0-based decoded-frame indices for videos.

    Attributes:
        subject_index: 0-based generator subject index.
        clip_index: 0-based clip index within the subject.
        label: the class exactly as the dataset writes it (``"happiness"``, ``"Anger"``, ``"negative"``,
            or the DFEW label number as a string).
        emotion: a readable class name (same as ``label`` except for DFEW, where it is ``"happy"`` ...).
        aus: the action units rendered (and coded).
        frame_numbers: the number of every written frame, in temporal order.
        onset, apex, offset: true key frames (the rendered intensity is 0, 1, 0 there).
        native: dataset-native ids as written: at least ``subject``, ``clip_id`` and ``path`` (frame
            folder or video file, relative to the output root).
        written: annotation values that differ from the truth on purpose (``{"apex": "/"}``).
    """

    subject_index: int
    clip_index: int
    label: str
    emotion: str
    aus: tuple[AUSpec, ...]
    frame_numbers: tuple[int, ...]
    onset: int
    apex: int
    offset: int
    native: dict[str, Any]
    written: dict[str, Any] = field(default_factory=dict)


class FrameSink(ABC):
    """Receives the frames of one clip in order. ``path`` is relative to the output root."""

    path: str

    @abstractmethod
    def write(self, frame_number: int, image: np.ndarray) -> None:
        """Save one ``(H, W, 3)`` RGB or ``(H, W)`` grey uint8 frame."""

    def close(self) -> None:  # noqa: B027 -- optional hook
        """Finish the clip (flush a video)."""


class ImageFolderSink(FrameSink):
    """Writes ``folder/name_of(frame_number)`` image files with fixed encoder parameters.

    Args:
        root: the output root.
        folder: the clip folder relative to ``root``.
        name_of: frame number -> file name (e.g. ``lambda n: f"img{n}.jpg"``).
    """

    def __init__(self, root: Path, folder: str, name_of: Callable[[int], str]) -> None:
        self.path = folder
        self._dir = root / folder
        self._dir.mkdir(parents=True, exist_ok=True)
        self._name_of = name_of

    def write(self, frame_number: int, image: np.ndarray) -> None:
        name = self._name_of(frame_number)
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
        params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if name.lower().endswith((".jpg", ".jpeg")) else []
        ok, buf = cv2.imencode(Path(name).suffix, bgr, params)
        if not ok:
            raise OSError(f"cannot encode frame {frame_number} as {name}")
        (self._dir / name).write_bytes(buf.tobytes())


class VideoSink(FrameSink):
    """Writes one video file with ``cv2.VideoWriter`` (fourcc ``mp4v``)."""

    def __init__(self, root: Path, rel_path: str, fps: float, size: tuple[int, int]) -> None:
        self.path = rel_path
        self._target = target = root / rel_path
        target.parent.mkdir(parents=True, exist_ok=True)
        self._writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), size)
        if not self._writer.isOpened():
            raise OSError(
                f"cv2.VideoWriter cannot open {target} (mp4v): {_free_mb(target.parent):.0f} MB free there; "
                "free some disk space, or check that OpenCV was built with FFMPEG"
            )

    def write(self, frame_number: int, image: np.ndarray) -> None:
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR if image.ndim == 3 else cv2.COLOR_GRAY2BGR)
        self._writer.write(bgr)

    def close(self) -> None:
        """Finish the file; an empty or missing one (``cv2.VideoWriter`` drops frames without an error,
        e.g. on a full disk) raises ``OSError`` naming it."""
        self._writer.release()
        if not self._target.is_file() or self._target.stat().st_size == 0:
            raise OSError(
                f"{self._target} was not written ({_free_mb(self._target.parent):.0f} MB free there): "
                "free some disk space and run again"
            )


def _free_mb(folder: Path) -> float:
    return shutil.disk_usage(folder).free / 1e6


class LayoutWriter(ABC):
    """Base class of the layout writers.

    Class attributes:
        name: registry name.
        fps: frame rate the timings are planned for.
        canvas: frame size ``(W, H)``.
        face_width_px: range of the jaw width (landmark 0 to 16) on the canvas, pixels.
        grayscale: frames are single-channel.
        uses_jpeg: frames are JPEG-compressed (quality :data:`JPEG_QUALITY`).
        default_amplitude: ``"micro"`` or ``"macro"``.
        frame_convention: how frame numbers are defined (copied into the ground truth).
        roots: top-level names this layout creates under the output root (cleared on re-runs).
        default_clip_frames: range ``(min, max)`` of frames per clip, both included, unless
            :func:`mepipe.synth.synthesize` is given ``clip_frames``.
        classes: class name -> the AU combinations a clip of that class renders (one drawn per clip).
        varied_classes: the same for ``expressions="varied"`` (several combinations per class that
            overlap between classes, as in real coding sheets); None when the layout has none.
    """

    name: ClassVar[str]
    fps: ClassVar[float]
    canvas: ClassVar[tuple[int, int]] = (640, 480)
    face_width_px: ClassVar[tuple[float, float]] = (190.0, 240.0)
    grayscale: ClassVar[bool] = False
    uses_jpeg: ClassVar[bool] = True
    default_amplitude: ClassVar[str] = "micro"
    frame_convention: ClassVar[str] = "source frame numbers, as in the frame file names"
    roots: ClassVar[tuple[str, ...]] = ()
    default_clip_frames: ClassVar[tuple[int, int]]
    classes: ClassVar[dict[str, tuple[tuple[int, ...], ...]]]
    varied_classes: ClassVar[dict[str, tuple[tuple[int, ...], ...]] | None] = None

    def __init__(
        self, out: Path, clip_frames: tuple[int, int] | None = None, expressions: str = "canonical"
    ) -> None:
        if expressions not in EXPRESSION_SETS:
            raise ConfigError(f"expressions {expressions!r} is not one of {', '.join(EXPRESSION_SETS)}")
        if expressions == "varied" and self.varied_classes is None:
            raise ConfigError(
                f"the {self.name} layout has no varied expression table; use expressions='canonical' "
                f"or one of the layouts {', '.join(n for n in LAYOUTS.names() if LAYOUTS.get(n).varied_classes)}"
            )
        self.out = out
        self.clip_frames = clip_frames or self.default_clip_frames
        self.expressions = expressions

    def au_options(self, label: str) -> tuple[tuple[int, ...], ...]:
        """The AU combinations a clip of class ``label`` may render under this writer's expression set."""
        table = self.varied_classes if self.expressions == "varied" else self.classes
        return table[label]  # type: ignore[index]

    def draw_length(self, rng: np.random.Generator) -> int:
        """Frames of the next clip: uniform over ``clip_frames`` (both ends included)."""
        lo, hi = self.clip_frames
        return int(rng.integers(lo, hi + 1))

    @abstractmethod
    def plan(self, n_subjects: int, clips_per_subject: int, rng: np.random.Generator) -> list[ClipPlan]:
        """Plan every clip (ids, labels, AUs, timings), ordered by subject then clip."""

    @abstractmethod
    def open_clip(self, plan: ClipPlan) -> FrameSink:
        """A sink that saves the clip's frames in the native layout."""

    @abstractmethod
    def finish(self, plans: list[ClipPlan]) -> list[Path]:
        """Write the annotation files; return their paths."""

    @abstractmethod
    def subject_id(self, subject_index: int) -> Any:
        """The subject id as the dataset writes it (``1`` for CASME II, ``6`` for SAMM, ``"s1"`` ...)."""

    def subject_folder(self, subject_index: int) -> str | None:
        """The subject's folder relative to the output root, or None when the layout has none."""
        return None


def balanced_labels(main: list[str], rare: list[str], n: int, rng: np.random.Generator) -> list[str]:
    """``n`` class labels: the ``main`` classes in near-equal numbers, about 1 in 12 ``rare``, shuffled."""
    labels = [main[i % len(main)] for i in range(n)]
    if rare and n >= 10:
        n_rare = -(-n // 12)
        for j in range(n_rare):
            labels[n - 1 - j] = rare[j % len(rare)]
    order = rng.permutation(n)
    return [labels[i] for i in order]


def key_frames(
    rng: np.random.Generator, first: int, n_frames: int, apex_frac: tuple[float, float] = (0.3, 0.6)
) -> tuple[int, int, int]:
    """``(onset, apex, offset)`` for a clip whose written frames are ``first .. first + n_frames - 1``.

    Micro clips are cut onset..offset, so onset is the first and offset the last written frame.
    """
    onset, offset = first, first + n_frames - 1
    apex = onset + int(round(float(rng.uniform(*apex_frac)) * (n_frames - 1)))
    return onset, apex, offset


def au_cell(code: str) -> str | int:
    """An AU string as a spreadsheet cell: plain numbers become ints (as in the real coding files)."""
    return int(code) if code.isdigit() else code


_FIXED_ZIP_TIME = (2014, 5, 8, 0, 0, 0)
_FIXED_DOC_TIME = "2014-05-08T00:00:00Z"


def save_workbook(wb: Workbook, path: Path) -> None:
    """Save ``wb`` as ``.xlsx`` with fixed timestamps, so equal content gives byte-identical files.

    openpyxl stamps the save time into ``docProps/core.xml`` and the zip entries; both are replaced.
    """
    raw = io.BytesIO()
    wb.save(raw)
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(raw.getvalue())) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                text = data.decode("utf-8")
                for tag in ("created", "modified"):
                    text = re.sub(
                        rf"(<dcterms:{tag}[^>]*>)[^<]*(</dcterms:{tag}>)",
                        rf"\g<1>{_FIXED_DOC_TIME}\g<2>",
                        text,
                    )
                data = text.encode("utf-8")
            entry = zipfile.ZipInfo(info.filename, date_time=_FIXED_ZIP_TIME)
            entry.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(entry, data)
    path.write_bytes(out.getvalue())
