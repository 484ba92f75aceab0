"""Label schemes: raw emotion strings -> class indices, mapped late (the manifest keeps the raw string).

Schemes live in ``manifests/labels/<scheme>.yaml``::

    name: casme2_5
    classes: [happiness, disgust, repression, surprise, others]   # index = position
    map:                       # per dataset: raw string (case-insensitive) -> class name
      casme2: {happiness: happiness, disgust: disgust, ...}
    # raw strings not listed are excluded from the scheme (e.g. fear, sadness in casme2_5)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import yaml

from mepipe import resources
from mepipe.errors import ConfigError


@dataclass(frozen=True)
class LabelScheme:
    name: str
    classes: tuple[str, ...]
    mapping: dict[str, dict[str, str]]  # dataset -> lower-case raw string -> class name

    def label(self, dataset: str, emotion_raw: str) -> int | None:
        """Class index of a clip, or ``None`` when the scheme excludes it."""
        table = self.mapping.get(dataset)
        if table is None:
            return None
        cls = table.get(emotion_raw.strip().lower())
        return None if cls is None else self.classes.index(cls)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def available_schemes() -> list[str]:
    return resources.names("labels")


@cache
def load_scheme(name: str) -> LabelScheme:
    """Load ``manifests/labels/<name>.yaml``; unknown names raise listing the available schemes."""
    path = resources.find("labels", name)
    doc = yaml.safe_load(path.read_text())
    classes = tuple(str(c) for c in doc["classes"])
    mapping: dict[str, dict[str, str]] = {}
    for dataset, table in (doc.get("map") or {}).items():
        mapping[str(dataset)] = {}
        for raw, cls in table.items():
            if cls not in classes:
                raise ConfigError(f"{path}: {dataset}.{raw} maps to {cls!r}, which is not one of {classes}")
            mapping[str(dataset)][str(raw).strip().lower()] = str(cls)
    return LabelScheme(str(doc.get("name", name)), classes, mapping)
