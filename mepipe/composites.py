"""Composite datasets (e.g. MEGC2019) as checked-in *rules*, not as hard-coded clip lists.

A rule (``manifests/composites/<name>.yaml``) names its member datasets, a label scheme and a short
exclusion list; it resolves to a clip set on whatever the adapters found, and records the counts the
published list has, so a resolution on the real data can be checked::

    name: megc2019
    scheme: megc2019_3            # clips the scheme does not label are not in the composite
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

Rules work on anything with ``dataset``, ``subject``, ``clip_id``, ``emotion_raw`` and ``extra``
(adapter :class:`~mepipe.records.ClipRecord` s or manifest rows), so the same check runs before a
build (on the adapter scan) and after it (on the manifest's ``ok`` rows).
"""

from __future__ import annotations

import json
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


@dataclass(frozen=True)
class CompositeRule:
    name: str
    scheme: str | None
    members: tuple[Member, ...]
    exclude: dict[str, str]  # clip key -> reason
    expected: dict[str, Any]
    path: str = ""

    def label_scheme(self) -> LabelScheme | None:
        return load_scheme(self.scheme) if self.scheme else None

    def why_excluded(self, clip: ClipLike) -> str | None:
        """``None`` when ``clip`` belongs to the composite, else a sentence saying why not."""
        key = f"{clip.dataset}/{clip.clip_id}"
        member = next((m for m in self.members if m.dataset == clip.dataset), None)
        if member is None:
            return f"dataset {clip.dataset!r} is not a member of composite {self.name}"
        extra = _extra(clip)
        for k, v in member.match.items():
            if str(extra.get(k, "")) != str(v):
                return f"composite {self.name} keeps only {k}={v} clips of {clip.dataset} (this one: {extra.get(k)!r})"
        if key in self.exclude:
            return f"composite {self.name} excludes {key}: {self.exclude[key]}"
        scheme = self.label_scheme()
        if scheme is not None and scheme.label(clip.dataset, clip.emotion_raw) is None:
            return (
                f"emotion {clip.emotion_raw!r} of {clip.dataset} is not a class of label scheme {scheme.name}"
            )
        return None


def _extra(clip: object) -> dict[str, Any]:
    extra = getattr(clip, "extra", {})
    if isinstance(extra, str):  # manifest rows keep extra as JSON
        return json.loads(extra or "{}")
    return dict(extra or {})


def available_composites() -> list[str]:
    return resources.names("composites")


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
    rule = CompositeRule(
        str(doc.get("name", path.stem)),
        doc.get("scheme"),
        members,
        exclude,
        dict(doc.get("expected") or {}),
        str(path),
    )
    rule.label_scheme()  # fail early on an unknown scheme
    return rule


@dataclass
class Resolution:
    """The clips a rule keeps, and the others with the reason each was left out."""

    kept: list[Any]
    excluded: list[tuple[Any, str]]


def resolve(rule: CompositeRule, clips: Iterable[Any]) -> Resolution:
    """Split ``clips`` into the composite's members and the rest (with reasons)."""
    res = Resolution([], [])
    for c in clips:
        why = rule.why_excluded(c)
        if why is None:
            res.kept.append(c)
        else:
            res.excluded.append((c, why))
    return res


def composite_counts(rule: CompositeRule, clips: Sequence[ClipLike]) -> dict[str, Any]:
    """Counts in the shape of ``expected``: total, classes, per-dataset totals/classes/subjects, subjects."""
    scheme = rule.label_scheme()

    def cls(c: ClipLike) -> str:
        if scheme is None:
            return c.emotion_raw
        idx = scheme.label(c.dataset, c.emotion_raw)
        return "?" if idx is None else scheme.classes[idx]

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
        are checked.
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
    return problems
