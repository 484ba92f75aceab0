"""The ``composite`` adapter: one build over several datasets (e.g. MEGC2019 = CASME II + SAMM + SMIC-HS).

It wraps the member adapters, so the pipeline schema and ``build_dataset`` stay unchanged::

    dataset:
      adapter: composite
      options:
        rule: megc2019            # manifests/composites/megc2019.yaml: members, scheme, exclusions, counts
        # datasets:               # optional: override the rule's members (or list members without a rule)
        #   - {adapter: casme2, source: CASME2, options: {}}
        check: warn               # warn | raise | off: compare the resolved clips with the rule's counts

``--source`` is the folder holding the member datasets; each member's ``source`` is relative to it
(or absolute). Clips keep their own dataset name (``casme2``, ``samm``, ``smic``), so keys are
``casme2/sub01/EP02_01f`` and subjects are keyed ``dataset/subject`` (``casme2/sub01``) everywhere.
Clips a rule leaves out become failed rows with reason ``excluded_by_composite`` and the rule's
reason (``label_conflict`` when the rule's clip list labels the clip otherwise than the scheme), so
every annotation row of every member is accounted for in the manifest.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mepipe.datasets.base import ADAPTERS, DatasetAdapter, ScanResult, get_adapter, register_adapter
from mepipe.errors import ConfigError
from mepipe.records import ClipIssue

if TYPE_CHECKING:
    from mepipe.composites import CompositeRule, Member


class CompositeMismatchWarning(UserWarning):
    """The clips a composite rule resolved to differ from the counts the rule expects."""


def _members(options: dict[str, Any], rule: CompositeRule | None) -> list[Member]:
    from mepipe.composites import Member

    listed = options.get("datasets")
    if listed is None:
        if rule is None:
            raise ConfigError(
                "composite: set dataset.options.rule (e.g. megc2019) or dataset.options.datasets "
                "(a list of {adapter, source, options})"
            )
        return list(rule.members)
    if not isinstance(listed, list) or not listed:
        raise ConfigError(
            "composite: dataset.options.datasets must be a non-empty list of {adapter, source, options}"
        )
    out = []
    for i, m in enumerate(listed, start=1):
        if not isinstance(m, dict) or "adapter" not in m:
            raise ConfigError(
                f"composite: dataset.options.datasets item {i} needs an 'adapter' key (got {m!r})"
            )
        bad = sorted(set(m) - {"adapter", "source", "options", "dataset"})
        if bad:
            raise ConfigError(
                f"composite: dataset.options.datasets item {i} has unknown key(s) {bad}; "
                "allowed: adapter, source, options"
            )
        adapter = str(m["adapter"])
        base = next((r for r in (rule.members if rule else ()) if r.adapter == adapter), None)
        out.append(
            Member(
                adapter,
                adapter,
                str(m.get("source", base.source if base else adapter)),
                dict(m.get("options") or (base.options if base else {})),
                base.match if base else {},
            )
        )
    return out


@register_adapter("composite")
class CompositeAdapter(DatasetAdapter):
    """Several datasets in one build, optionally selected by a composite rule.

    Options:
        rule: a composite name (``manifests/composites/<rule>.yaml``) or YAML path.
        datasets: member list ``[{adapter, source, options}]`` (default: the rule's members).
        check: ``warn`` (default), ``raise`` or ``off`` -- what to do when the resolved clips do not
            match the rule's expected counts.
    """

    option_names = ("rule", "datasets", "check")

    def scan(self) -> ScanResult:
        # imported here: mepipe.composites -> mepipe.labels -> mepipe.datasets (this package) is a cycle
        from mepipe.composites import check_composite, load_composite, resolve

        rule = load_composite(str(self.options["rule"])) if self.options.get("rule") else None
        check = str(self.options.get("check", "warn"))
        if check not in ("warn", "raise", "off"):
            raise ConfigError(f"composite: check {check!r} must be warn, raise or off")
        out = ScanResult()
        for member in _members(self.options, rule):
            if member.adapter == self.name or ADAPTERS.get(member.adapter) is CompositeAdapter:
                raise ConfigError("composite: a composite cannot contain another composite")
            src = Path(member.source).expanduser()
            root = src if src.is_absolute() else self.root / src
            out.extend(get_adapter(member.adapter, root, **member.options).scan())
        seen: dict[str, str] = {}
        for c in out.clips:
            if c.key in seen:
                raise ConfigError(
                    f"composite: two members produce the clip key {c.key}; list each dataset "
                    "(and each SMIC variant) once"
                )
            seen[c.key] = c.source_path
        if rule is None:
            return out
        res = resolve(rule, out.clips)
        out.clips = res.kept
        conflicts = {id(c) for c, _ in res.conflicts}
        for clip, why in res.excluded:
            reason = "label_conflict" if id(clip) in conflicts else "excluded_by_composite"
            issue = ClipIssue(clip.dataset, clip.clip_id, reason, why, clip.subject, rule.path)
            out.failures.append((clip, issue))
        problems = check_composite(rule, res.kept) if check != "off" else []
        if problems:
            text = (
                f"composite {rule.name} resolved to clips that do not match its expected counts "
                f"({rule.path}): "
                + "; ".join(problems)
                + ". Check the coding-file versions and the failed rows of the members"
            )
            if check == "raise":
                raise ConfigError(text)
            warnings.warn(text, CompositeMismatchWarning, stacklevel=2)
        return out
