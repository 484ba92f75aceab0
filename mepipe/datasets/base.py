"""The adapter interface: one adapter per dataset turns a distributed layout into ClipRecords.

An adapter only reads annotation files and lists frame files; it never decodes pixels. Every
annotation row that cannot become a buildable clip is returned as a :class:`ClipIssue` with a reason
code, so the build records it as a failed manifest row instead of dropping it silently.

Two checks every adapter gets from :class:`ScanResult` and :class:`FrameLister` (so a bad row fails
alone and the rest of the build goes on):

* ``duplicate_clip``: a second row (or list line) giving a clip key already listed fails, naming
  both places; the first is kept. Failed rows take the key ``<clip_id>@row<N>`` so that manifest
  keys stay unique.
* ``path_outside_source``: a clip whose frame folder or video -- after following symlinks -- is not
  inside the dataset root (``--source``) is refused before anything is listed or read there (a
  ``Filename`` of ``../../x`` or ``/abs/path``; a symlink leaving the tree).
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from mepipe.records import ClipIssue, ClipRecord
from mepipe.registry import Registry

if TYPE_CHECKING:
    from mepipe.datasets.anchors import FixOutcome

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


def inside(path: str | Path, roots: tuple[Path, ...]) -> bool:
    """True when ``path``, symlinks resolved, lies inside one of ``roots`` (always when there are none)."""
    if not roots:
        return True
    real = Path(os.path.realpath(path))
    return any(real == r or r in real.parents for r in roots)


def outside_text(path: str | Path, roots: tuple[Path, ...]) -> str:
    """The sentence saying that ``path`` leaves the dataset root, and what to do."""
    return (
        f"{path} resolves to {os.path.realpath(path)}, outside the dataset root {roots[0]}; nothing "
        "outside --source is read. Fix the path in the annotation, or put the files themselves (not "
        "a symlink to them) under --source"
    )


@dataclass
class ScanResult:
    """What an adapter found: buildable clips, the failures (with the clip when one was formed) and
    the outcome of every row-anchored annotation fix.

    Attributes:
        clips: buildable clips, in annotation order.
        failures: ``(clip or None, issue)`` for every row that cannot be built.
        fix_report: one :class:`~mepipe.datasets.anchors.FixOutcome` per row-anchored fix of the fix
            table (applied, or why not: another file version, a mismatching row ...) and per keyed fix
            that matched no row. The build writes it to ``build-info.json``.
        roots: folders every clip source must lie in (the dataset root, a configured frame folder);
            empty: not checked.
    """

    clips: list[ClipRecord] = field(default_factory=list)
    failures: list[tuple[ClipRecord | None, ClipIssue]] = field(default_factory=list)
    fix_report: list[FixOutcome] = field(default_factory=list)
    roots: tuple[Path, ...] = ()
    _seen: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.roots = tuple(Path(os.path.realpath(r)) for r in self.roots)

    def add(
        self,
        clip: ClipRecord,
        issue: ClipIssue | None = None,
        *,
        file: str | Path = "",
        row: int | None = None,
    ) -> None:
        """Record a clip: buildable when ``issue`` is None, else a failure.

        ``file``/``row`` say where the clip is listed (annotation file and row or line), for the
        ``duplicate_clip`` message. A repeated key becomes a ``duplicate_clip`` failure, a source
        outside :attr:`roots` a ``path_outside_source`` failure.
        """
        where = f"{file} row {row}" if file and row is not None else str(file or clip.source_path)
        dup = self._duplicate(clip.key, clip.dataset, clip.clip_id, clip.subject, where, str(file), row)
        if dup is not None:
            self.failures.append((None, dup))
            return
        if issue is None and not inside(clip.source_path, self.roots):
            prefix = f"{file} row {row}: " if file and row is not None else ""
            text = f"{prefix}clip {clip.clip_id}: {outside_text(clip.source_path, self.roots)}"
            issue = ClipIssue(
                clip.dataset, clip.clip_id, "path_outside_source", text, clip.subject, str(file), row
            )
        if issue is None:
            self.clips.append(clip)
        else:
            self.failures.append((clip, issue))

    def fail(self, issue: ClipIssue, clip: ClipRecord | None = None) -> None:
        """Record a row that cannot be built (a repeated key still becomes ``duplicate_clip``)."""
        where = f"{issue.file} row {issue.row}" if issue.file and issue.row is not None else issue.file
        key = clip.key if clip is not None else f"{issue.dataset}/{issue.clip_id}"
        dup = self._duplicate(key, issue.dataset, issue.clip_id, issue.subject, where, issue.file, issue.row)
        self.failures.append((None, dup) if dup is not None else (clip, issue))

    def _duplicate(
        self, key: str, dataset: str, clip_id: str, subject: str, where: str, file: str, row: int | None
    ) -> ClipIssue | None:
        first = self._seen.get(key)
        if first is None:
            self._seen[key] = where or key
            return None
        tag = f"@row{row}" if row is not None else f"@{sum(k.startswith(key + '@') for k in self._seen) + 2}"
        self._seen[key + tag] = where
        return ClipIssue(
            dataset,
            clip_id + tag,
            "duplicate_clip",
            f"{where}: clip {key} is listed again (first at {first}); the first is kept. Remove the "
            "repeated row, or correct it if it is a different clip",
            subject,
            file,
            row,
        )

    def extend(self, other: ScanResult) -> None:
        self.clips.extend(other.clips)
        self.failures.extend(other.failures)
        self.fix_report.extend(other.fix_report)
        for k, v in other._seen.items():
            self._seen.setdefault(k, v)


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

    def new_result(self, *more_roots: Path) -> ScanResult:
        """An empty :class:`ScanResult` whose clips must lie under the root (or ``more_roots``:
        folders the user configured explicitly, e.g. an absolute ``frames_dir``)."""
        return ScanResult(roots=(self.root, *more_roots))


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


class FrameListError(ValueError):
    """A frame folder that cannot be listed as a clip; ``reason`` is the failure code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def list_frames(folder: Path, roots: tuple[Path, ...] = ()) -> tuple[list[str], list[int]]:
    """Image files of ``folder`` sorted **numerically** by frame number (``img9`` before ``img10``).

    Args:
        folder: the frame folder.
        roots: when given, a frame file that is a symlink must resolve inside one of them.

    Returns:
        (file names, frame numbers), same length, ascending frame numbers.

    Raises:
        FrameListError: ``bad_frame_name`` (an image file with no number in its name),
            ``duplicate_frame_number`` (two files with one number, e.g. ``img0100.jpg`` and
            ``img100.jpg``; both named), ``path_outside_source`` (a frame symlinked from outside).
    """
    with os.scandir(folder) as it:
        entries = sorted(
            (e for e in it if os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES and e.is_file()),
            key=lambda e: e.name,
        )
    by_number: dict[int, str] = {}
    for e in entries:
        try:
            k = frame_number(e.name)
        except ValueError as exc:
            raise FrameListError(
                "bad_frame_name", f"{folder}: {exc}; move non-frame images out of the clip folder"
            ) from None
        if k in by_number:
            raise FrameListError(
                "duplicate_frame_number",
                f"{folder}: {by_number[k]} and {e.name} both give frame number {k}; keep one of them "
                "(two extractions mixed in one folder?)",
            )
        if roots and e.is_symlink() and not inside(e.path, roots):
            raise FrameListError("path_outside_source", f"{folder}: frame {outside_text(e.path, roots)}")
        by_number[k] = e.name
    numbers = sorted(by_number)
    return [by_number[k] for k in numbers], numbers


class FrameLister:
    """Lists each frame folder once (long-video datasets annotate many clips in one folder) and
    refuses folders outside ``roots`` before listing them (``path_outside_source``).

    Calling it raises :class:`FrameListError` as :func:`list_frames` does.
    """

    def __init__(self, roots: tuple[Path, ...] = ()) -> None:
        self.roots = tuple(Path(os.path.realpath(r)) for r in roots)
        self._cache: dict[Path, tuple[list[str], list[int]] | FrameListError] = {}

    def allows(self, folder: str | Path) -> bool:
        """True when ``folder`` (symlinks resolved) lies inside the roots."""
        return inside(folder, self.roots)

    def refusal(self, folder: str | Path) -> str:
        """Why ``folder`` is refused (for a ``path_outside_source`` message)."""
        return outside_text(folder, self.roots)

    def __call__(self, folder: Path) -> tuple[list[str], list[int]]:
        if folder not in self._cache:
            if not self.allows(folder):
                self._cache[folder] = FrameListError("path_outside_source", self.refusal(folder))
            else:
                try:
                    self._cache[folder] = list_frames(folder, self.roots)
                except FrameListError as exc:
                    self._cache[folder] = exc
        hit = self._cache[folder]
        if isinstance(hit, FrameListError):
            raise hit
        return hit


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
    """Instantiate the registered adapter ``name`` on ``root``.

    Every built-in adapter is registered: importing this module imports the ``mepipe.datasets``
    package first, whose ``__init__`` imports them all.
    """
    return ADAPTERS.get(name)(root, **options)
