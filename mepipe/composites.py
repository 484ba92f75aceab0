"""Composite datasets (e.g. MEGC2019) as checked-in *rules*, optionally pinned to a published clip list.

A rule (``manifests/composites/<name>.yaml``) names its member datasets, a label scheme, an optional
clip list and a short exclusion list; it resolves to a clip set on whatever the adapters found, and
records the counts the published set has, so a resolution on the real data can be checked::

    name: megc2019
    scheme: megc2019_3            # clips the scheme does not label are not in the composite
    list: megc2019                # manifests/lists/megc2019.csv: exactly these clips, with these labels
    list_classes: [negative, positive, surprise]   # the list's label 0, 1, 2
    members:                      # what the composite adapter builds (sources relative to --source)
      - {dataset: casme2, adapter: casme2, source: CASME2}
      - {dataset: smic, adapter: smic, source: SMIC, options: {variant: HS}, match: {variant: HS}}
    exclude:                      # clip keys (<dataset>/<clip_id>) left out, each with a reason
      - {key: casme2/sub04/EP12_01f, reason: ...}
    expected:
      total: 442
      classes: {negative: 250, positive: 109, surprise: 83}
      datasets: {casme2: {total: 145, negative: 88, ...}, ...}
      subjects: 68

With a ``list`` (CSV ``dataset,subject,filename,label``) a clip belongs only when the list names it,
and its label must be the list's: a clip the scheme labels otherwise is a *conflict* (the composite
adapter fails it as ``label_conflict``), and every listed clip no member produced is reported by
:func:`check_composite`. Lists and adapters spell ids differently (MEGC2019: SAMM ``6`` for ``006``,
SMIC ``s01_ne_01`` for the folder ``s1_ne_01``), so they are compared by :func:`list_key`: the
subject by its number, the clip name with the number of its first part unpadded, both
case-insensitive.

Rules work on anything with ``dataset``, ``subject``, ``clip_id``, ``emotion_raw`` and ``extra``
(adapter :class:`~mepipe.records.ClipRecord` s or manifest rows), so the same check runs before a
build (on the adapter scan) and after it (on the manifest's ``ok`` rows).
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol

import yaml

from mepipe import resources
from mepipe.errors import ConfigError
from mepipe.labels import LabelScheme, load_scheme


class ClipLike(Protocol):
    dataset: str
    subject: str
    clip_id: str
    emotion_raw: str


@dataclass(frozen=True)
class Member:
    """One dataset of a composite: how to build it and which of its clips belong."""

    dataset: str
    adapter: str
    source: str
    options: dict[str, Any] = field(default_factory=dict)
    match: dict[str, str] = field(default_factory=dict)  # required ``extra`` values (e.g. variant: HS)


_FIRST_NUMBER = re.compile(r"^([^\d_]*)0*(\d+)")


def list_key(dataset: str, subject: str, filename: str) -> tuple[str, str, str]:
    """How a clip list and an adapter are matched: ``(dataset, subject number, clip name)``.

    The subject is compared by its number when it has one (``sub01``, ``006``/``6``, ``s01``/``s1``
    are 1, 6, 6, 1, 1), else as written; the clip name case-insensitively with the number of its
    first part unpadded (``s01_ne_01`` and ``s1_ne_01`` match, ``EP02_01f`` only itself).
    """
    digits = "".join(ch for ch in subject if ch.isdigit())
    subj = str(int(digits)) if digits else subject.strip().lower()
    name = _FIRST_NUMBER.sub(lambda m: f"{m.group(1)}{int(m.group(2))}", filename.strip()).lower()
    return dataset.strip().lower(), subj, name


def clip_list_key(clip: ClipLike) -> tuple[str, str, str]:
    """:func:`list_key` of a clip record or manifest row (the clip name is the last part of its id)."""
    return list_key(clip.dataset, clip.subject, clip.clip_id.rsplit("/", 1)[-1])


@dataclass(frozen=True)
class ListedClip:
    """One line of a published clip list."""

    dataset: str
    subject: str
    filename: str
    label: str  # the class name (via the rule's ``list_classes``)
    line: int

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.subject}/{self.filename}"


@dataclass(frozen=True)
class CompositeRule:
    name: str
    scheme: str | None
    members: tuple[Member, ...]
    exclude: dict[str, str]  # clip key -> reason
    expected: dict[str, Any]
    path: str = ""
    clip_list: dict[tuple[str, str, str], ListedClip] = field(default_factory=dict)
    list_path: str = ""

    def label_scheme(self) -> LabelScheme | None:
        return load_scheme(self.scheme) if self.scheme else None

    def class_of(self, clip: ClipLike) -> str | None:
        """The clip's class under the rule's scheme (its raw emotion without a scheme)."""
        scheme = self.label_scheme()
        if scheme is None:
            return clip.emotion_raw
        idx = scheme.label(clip.dataset, clip.emotion_raw)
        return None if idx is None else scheme.classes[idx]

    def verdict(self, clip: ClipLike) -> tuple[str, str] | None:
        """``None`` when ``clip`` belongs to the composite, else ``(reason code, sentence)``: the code
        is ``label_conflict`` when the clip list labels it otherwise, else ``excluded_by_composite``."""
        key = f"{clip.dataset}/{clip.clip_id}"
        member = next((m for m in self.members if m.dataset == clip.dataset), None)
        out = "excluded_by_composite"
        if member is None:
            return out, f"dataset {clip.dataset!r} is not a member of composite {self.name}"
        extra = _extra(clip)
        for k, v in member.match.items():
            if str(extra.get(k, "")) != str(v):
                return (
                    out,
                    f"composite {self.name} keeps only {k}={v} clips of {clip.dataset} "
                    f"(this one: {extra.get(k)!r})",
                )
        if key in self.exclude:
            return out, f"composite {self.name} excludes {key}: {self.exclude[key]}"
        if self.clip_list:
            listed = self.clip_list.get(clip_list_key(clip))
            if listed is None:
                return out, f"{key} is not in the {self.name} clip list ({self.list_path})"
            cls = self.class_of(clip)
            if cls != listed.label:
                return "label_conflict", (
                    f"the {self.name} list ({self.list_path} line {listed.line}) labels {key} "
                    f"{listed.label}, but its emotion {clip.emotion_raw!r} is "
                    + (f"{cls}" if cls else "no class")
                    + f" under {self.scheme}; fix the emotion with a fix table entry, or check the "
                    "coding file"
                )
            return None
        if self.class_of(clip) is None:
            return (
                out,
                f"emotion {clip.emotion_raw!r} of {clip.dataset} is not a class of label scheme "
                f"{self.scheme}",
            )
        return None

    def why_excluded(self, clip: ClipLike) -> str | None:
        """``None`` when ``clip`` belongs to the composite, else a sentence saying why not."""
        v = self.verdict(clip)
        return None if v is None else v[1]

    def missing_from(self, clips: Iterable[ClipLike]) -> list[ListedClip]:
        """The listed clips none of ``clips`` is (in list order)."""
        have = {clip_list_key(c) for c in clips}
        return sorted((c for k, c in self.clip_list.items() if k not in have), key=lambda c: c.line)


def _extra(clip: object) -> dict[str, Any]:
    extra = getattr(clip, "extra", {})
    if isinstance(extra, str):  # manifest rows keep extra as JSON
        return json.loads(extra or "{}")
    return dict(extra or {})


def available_composites() -> list[str]:
    return resources.names("composites")


def load_clip_list(
    name_or_path: str, classes: Sequence[str]
) -> tuple[str, dict[tuple[str, str, str], ListedClip]]:
    """Read a clip list (``manifests/lists/<name>.csv``, header ``dataset,subject,filename,label``).

    ``label`` is an index into ``classes`` (MEGC2019: 0 negative, 1 positive, 2 surprise) or a class
    name. Returns the file and the clips by :func:`list_key`.

    Raises:
        ConfigError: a malformed or repeated line, naming the file and the line.
    """
    path = resources.resolve("lists", name_or_path)
    out: dict[tuple[str, str, str], ListedClip] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [c.strip().lower() for c in next(reader, [])]
        if header[:4] != ["dataset", "subject", "filename", "label"]:
            raise ConfigError(
                f"{path}: the first line must be dataset,subject,filename,label (found {header})"
            )
        for line, cells in enumerate(reader, start=2):
            if not any(c.strip() for c in cells):
                continue
            try:
                dataset, subject, filename, label = (c.strip() for c in cells[:4])
                cls = classes[int(label)] if label.isdigit() else label
                if cls not in classes:
                    raise ValueError(f"label {label!r} is not one of {list(classes)} or their index")
            except (ValueError, IndexError) as exc:
                raise ConfigError(
                    f"{path} line {line}: {cells} is not dataset,subject,filename,label ({exc})"
                ) from None
            key = list_key(dataset, subject, filename)
            if key in out:
                raise ConfigError(
                    f"{path} line {line}: {dataset}/{subject}/{filename} is listed twice "
                    f"(line {out[key].line})"
                )
            out[key] = ListedClip(dataset, subject, filename, cls, line)
    return str(path), out


@cache
def load_composite(name_or_path: str) -> CompositeRule:
    """Load ``manifests/composites/<name>.yaml`` (or a YAML path); unknown names list the available ones."""
    path = resources.resolve("composites", name_or_path)
    doc = yaml.safe_load(path.read_text()) or {}
    try:
        members = tuple(
            Member(
                str(m["dataset"]),
                str(m.get("adapter", m["dataset"])),
                str(m.get("source", m["dataset"])),
                dict(m.get("options") or {}),
                {str(k): str(v) for k, v in (m.get("match") or {}).items()},
            )
            for m in doc["members"]
        )
        exclude = {str(e["key"]): str(e["reason"]) for e in doc.get("exclude") or []}
    except (KeyError, TypeError) as exc:
        raise ConfigError(
            f"{path}: malformed composite ({exc!r}); every member needs dataset (adapter, source "
            "optional) and every exclude entry needs key and reason"
        ) from None
    list_path, clip_list = "", {}
    if doc.get("list"):
        classes = doc.get("list_classes") or (load_scheme(doc["scheme"]).classes if doc.get("scheme") else ())
        list_path, clip_list = load_clip_list(str(doc["list"]), [str(c) for c in classes])
    rule = CompositeRule(
        str(doc.get("name", path.stem)),
        doc.get("scheme"),
        members,
        exclude,
        dict(doc.get("expected") or {}),
        str(path),
        clip_list,
        list_path,
    )
    rule.label_scheme()  # fail early on an unknown scheme
    return rule


@dataclass
class Resolution:
    """The clips a rule keeps, the others with the reason each was left out, and -- with a clip list --
    the listed clips whose label disagrees (``conflicts``, also in ``excluded``)."""

    kept: list[Any]
    excluded: list[tuple[Any, str]]
    conflicts: list[tuple[Any, str]] = field(default_factory=list)


def resolve(rule: CompositeRule, clips: Iterable[Any]) -> Resolution:
    """Split ``clips`` into the composite's members and the rest (with reasons)."""
    res = Resolution([], [])
    for c in clips:
        v = rule.verdict(c)
        if v is None:
            res.kept.append(c)
            continue
        res.excluded.append((c, v[1]))
        if v[0] == "label_conflict":
            res.conflicts.append((c, v[1]))
    return res


def composite_counts(rule: CompositeRule, clips: Sequence[ClipLike]) -> dict[str, Any]:
    """Counts in the shape of ``expected``: total, classes, per-dataset totals/classes/subjects, subjects."""

    def cls(c: ClipLike) -> str:
        return rule.class_of(c) or "?"

    out: dict[str, Any] = {
        "total": len(clips),
        "classes": dict(Counter(cls(c) for c in clips)),
        "subjects": len({(c.dataset, c.subject) for c in clips}),
        "datasets": {},
    }
    for ds in sorted({c.dataset for c in clips}):
        part = [c for c in clips if c.dataset == ds]
        entry: dict[str, int] = {"total": len(part), "subjects": len({c.subject for c in part})}
        entry.update(Counter(cls(c) for c in part))
        out["datasets"][ds] = entry
    return out


def check_composite(rule: CompositeRule, clips: Sequence[ClipLike]) -> list[str]:
    """Compare the clips a rule resolved to with the counts it expects.

    Returns:
        One sentence per mismatch (empty when everything matches), e.g.
        ``"megc2019: casme2 negative is 87, expected 88"``. Only the counts present in ``expected``
        are checked; with a clip list, the listed clips missing from ``clips`` are named too.
    """
    got = composite_counts(rule, clips)
    exp = rule.expected
    problems: list[str] = []

    def cmp(label: str, have: int, want: Any) -> None:
        if want is not None and int(have) != int(want):
            problems.append(f"{rule.name}: {label} is {have}, expected {want}")

    cmp("total", got["total"], exp.get("total"))
    cmp("subjects", got["subjects"], exp.get("subjects"))
    for c, n in (exp.get("classes") or {}).items():
        cmp(f"class {c}", got["classes"].get(c, 0), n)
    for ds, want in (exp.get("datasets") or {}).items():
        have = got["datasets"].get(ds, {})
        for k, n in want.items():
            cmp(f"{ds} {k}", have.get(k, 0), n)
    missing = rule.missing_from(clips)
    if missing:
        shown = ", ".join(c.name for c in missing[:10]) + (" ..." if len(missing) > 10 else "")
        problems.append(
            f"{rule.name}: {len(missing)} clip(s) of {rule.list_path} are not among the resolved "
            f"clips (not on disk, failed, or labelled otherwise): {shown}"
        )
    return problems
