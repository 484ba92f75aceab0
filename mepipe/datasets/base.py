"""The adapter interface: one adapter per dataset turns a distributed layout into ClipRecords.

An adapter only reads annotation files and lists frame files; it never decodes pixels. Every
annotation row that cannot become a buildable clip is returned as a :class:`ClipIssue` with a reason
code, so the build records it as a failed manifest row instead of dropping it silently.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from mepipe.records import ClipIssue, ClipRecord
from mepipe.registry import Registry

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


@dataclass
class ScanResult:
    """What an adapter found: buildable clips and the failures (with the clip when one was formed)."""

    clips: list[ClipRecord] = field(default_factory=list)
    failures: list[tuple[ClipRecord | None, ClipIssue]] = field(default_factory=list)

    def add(self, clip: ClipRecord, issue: ClipIssue | None) -> None:
        """Record a validated clip: buildable when ``issue`` is None, else a failure."""
        if issue is None:
            self.clips.append(clip)
        else:
            self.failures.append((clip, issue))

    def extend(self, other: ScanResult) -> None:
        self.clips.extend(other.clips)
        self.failures.extend(other.failures)


class DatasetAdapter(ABC):
    """Base class of all dataset adapters.

    Subclasses set ``name`` (the registry key) and implement :meth:`scan`. ``options`` come from the
    pipeline YAML's ``dataset.options`` mapping; unknown options raise in ``__init__``.
    """

    name: ClassVar[str]
    expression_type: ClassVar[str] = "micro"
    option_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, root: str | Path, **options: object) -> None:
        from mepipe.errors import ConfigError

        self.root = Path(root).expanduser().resolve()
        unknown = sorted(set(options) - set(self.option_names))
        if unknown:
            raise ConfigError(
                f"dataset {self.name!r} got unknown option(s) {unknown}; valid options: "
                f"{list(self.option_names) or 'none'} (fix dataset.options in the pipeline YAML)"
            )
        self.options = dict(options)
        if not self.root.is_dir():
            raise ConfigError(
                f"dataset root {self.root} does not exist or is not a folder; pass --source pointing at "
                f"the folder that holds the {self.name} files as distributed"
            )

    @abstractmethod
    def scan(self) -> ScanResult:
        """List every clip of the dataset with its annotations, validated against the disk."""


ADAPTERS: Registry[type[DatasetAdapter]] = Registry("dataset adapter")


def register_adapter(name: str):
    """Class decorator: register a :class:`DatasetAdapter` subclass under ``name``."""

    def deco(cls: type[DatasetAdapter]) -> type[DatasetAdapter]:
        cls.name = name
        return ADAPTERS.register(name)(cls)

    return deco


_DIGITS = re.compile(r"(\d+)")


def frame_number(filename: str) -> int:
    """The frame number in a file name: the last run of digits (``img46.jpg`` -> 46,
    ``006_05562.jpg`` -> 5562, ``S005_001_00000001.png`` -> 1).

    Raises:
        ValueError: when the name holds no digits.
    """
    runs = _DIGITS.findall(Path(filename).stem)
    if not runs:
        raise ValueError(f"frame file {filename!r} has no frame number in its name")
    return int(runs[-1])


def list_frames(folder: Path) -> tuple[list[str], list[int]]:
    """Image files of ``folder`` sorted **numerically** by frame number (``img9`` before ``img10``).

    Returns:
        (file names, frame numbers), same length, ascending frame numbers.
    """
    names = [p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    pairs = sorted((frame_number(n), n) for n in names)
    return [n for _, n in pairs], [k for k, _ in pairs]


def validate_image_clip(clip: ClipRecord, *, require_contiguous: bool = True) -> ClipIssue | None:
    """Check a frame-folder clip's annotations against the files on disk.

    Checks: the folder has frames; onset <= apex <= offset (when given); onset, apex and offset are
    inside the frames on disk; no frame number is missing between onset and offset (when
    ``require_contiguous``). Returns the first problem as a :class:`ClipIssue`, else ``None``.
    """

    def issue(reason: str, message: str) -> ClipIssue:
        return ClipIssue(clip.dataset, clip.clip_id, reason, message, clip.subject, clip.source_path)

    nums = clip.frame_numbers
    where = f"clip {clip.clip_id} ({clip.source_path})"
    if not nums:
        return issue("no_frames", f"{where}: no image frames found; check the folder name and contents")
    lo, hi = nums[0], nums[-1]
    on, ap, off = clip.onset, clip.apex, clip.offset
    if on is not None and off is not None and on > off:
        return issue("onset_after_offset", f"{where}: onset {on} > offset {off}; fix the annotation row")
    if ap is not None:
        if (on is not None and ap < on) or (off is not None and ap > off):
            return issue(
                "apex_outside_clip",
                f"{where}: apex {ap} is outside onset..offset {on}..{off}; add an annotation fix",
            )
        if not lo <= ap <= hi:
            return issue("apex_outside_clip", f"{where}: apex {ap} is outside the frames on disk {lo}..{hi}")
    for label, v in (("onset", on), ("offset", off)):
        if v is not None and not lo <= v <= hi:
            return issue(
                "keyframe_not_on_disk",
                f"{where}: {label} {v} is outside the frames on disk {lo}..{hi}; "
                "check the frame folder is complete or add an annotation fix",
            )
    if require_contiguous:
        a = on if on is not None else lo
        b = off if off is not None else hi
        have = set(nums)
        missing = [k for k in range(a, b + 1) if k not in have]
        if missing:
            shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
            return issue(
                "missing_frames",
                f"{where}: {len(missing)} frame(s) missing between {a} and {b} ({shown}); "
                "re-extract the clip from the original archive",
            )
    return None


def get_adapter(name: str, root: str | Path, **options: object) -> DatasetAdapter:
    """Instantiate the registered adapter ``name`` on ``root`` (imports all built-in adapters)."""
    import mepipe.datasets  # noqa: F401  (registers the built-in adapters)

    return ADAPTERS.get(name)(root, **options)
