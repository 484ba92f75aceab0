"""Training configuration: the pydantic schema of ``mepipe train pretrain`` / ``mepipe train finetune``.

Two top-level configs exist, :class:`PretrainConfig` (MA2MI on macro shards) and :class:`FinetuneConfig`
(LOSO fine-tuning on micro shards). They share the section classes but not every default (e.g. the batch
size): a section given in part is completed from its own config's defaults. Types, ranges and choices
are validated by the same machinery as the pipelines (:mod:`mepipe.schema`), so ``--set`` behaves the
same for ``build-dataset`` and ``train``, and every bad key is reported with its value and what is
allowed. Model names, label schemes and devices are checked at parse time against what is registered.

The resolved config (every default filled in) is written to ``RUN/train.resolved.yaml`` and stored in
every checkpoint under ``"config"``. ``docs/training.md`` is generated from this schema
(``python -m mepipe.train.config > docs/training.md``; a test keeps it in sync).

Example::

    cfg = load_train_config("pretrain", "train-pretrain", {"data.delta": [1, 8], "optim.epochs": 3})
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator, model_validator

from mepipe import schema
from mepipe.errors import ConfigError
from mepipe.schema import Strict
from mepipe.train.sections import (
    DEVICES,
    PROTOCOLS,
    AugmentConfig,
    DataConfig,
    MA2MIConfig,
    ModelConfig,
    OptimConfig,
    PathText,
    ProtocolConfig,
    RunConfig,
)

TRAIN_CONFIG_VERSION = 1
RESOLVED_NAME = "train.resolved.yaml"
REFERENCE_DOC = "docs/training.md"


class _TrainConfig(Strict):
    """Shared top level: a section given in part is completed from this config's own defaults."""

    version: int = Field(default=TRAIN_CONFIG_VERSION, description="training config schema version")

    @model_validator(mode="before")
    @classmethod
    def _complete_sections(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        merged = dict(data)
        for name, field in cls.model_fields.items():
            given = merged.get(name)
            if isinstance(given, dict) and field.default_factory is not None:
                default = field.get_default(call_default_factory=True)
                merged[name] = {**default.model_dump(), **given}
        return merged

    @field_validator("version")
    @classmethod
    def _supported(cls, v: int) -> int:
        if v != TRAIN_CONFIG_VERSION:
            raise ValueError(
                f"version {v} is not supported; this mepipe reads version {TRAIN_CONFIG_VERSION}"
            )
        return v


class PretrainConfig(_TrainConfig):
    """MA2MI pre-training (`mepipe train pretrain`)."""

    kind: Literal["pretrain"] = Field(default="pretrain", description="which command this config is for")
    data: DataConfig = Field(default_factory=lambda: DataConfig(batch_size=32))
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    ma2mi: MA2MIConfig = Field(default_factory=MA2MIConfig)
    optim: OptimConfig = Field(
        default_factory=lambda: OptimConfig(
            epochs=10, lr=2e-3, weight_decay=0.05, schedule="cosine", warmup_epochs=1
        )
    )
    run: RunConfig = Field(default_factory=RunConfig)


class FinetuneConfig(_TrainConfig):
    """MIACNet fine-tuning under LOSO / LODO, or on every subject (`mepipe train finetune`)."""

    kind: Literal["finetune"] = Field(default="finetune", description="which command this config is for")
    init: PathText = Field(
        default="",
        description="initialises E_pos/E_act: an MA2MI checkpoint (pre-training RUN/last.pt) or a MIACNet "
        "trained with labels (RUN/model.pt of --protocol all, e.g. on a macro build); empty: scratch",
    )
    init_parts: Literal["all", "action"] = Field(
        default="all",
        description="with `init`: transfer E_act and E_pos (`all`) or E_act only (`action`: the position "
        "branch starts fresh)",
    )
    data: DataConfig = Field(default_factory=lambda: DataConfig(batch_size=16, jitter=0))
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(
        default_factory=lambda: OptimConfig(epochs=40, lr=8e-4, weight_decay=0.05, gamma=0.97)
    )
    protocol: ProtocolConfig = Field(default_factory=ProtocolConfig)
    run: RunConfig = Field(default_factory=RunConfig)


__all__ = [
    "DEVICES",
    "PROTOCOLS",
    "AugmentConfig",
    "DataConfig",
    "FinetuneConfig",
    "MA2MIConfig",
    "ModelConfig",
    "OptimConfig",
    "PretrainConfig",
    "ProtocolConfig",
    "RunConfig",
    "config_from_dict",
    "config_to_dict",
    "dump_config",
    "load_train_config",
    "reference_markdown",
    "write_resolved",
]

AnyConfig = PretrainConfig | FinetuneConfig
KINDS: dict[str, type[PretrainConfig] | type[FinetuneConfig]] = {
    "pretrain": PretrainConfig,
    "finetune": FinetuneConfig,
}


def config_to_dict(cfg: AnyConfig) -> dict[str, Any]:
    """The config as plain JSON-able data (tuples become lists)."""
    return cfg.model_dump(mode="json")


def config_from_dict(
    kind: Literal["pretrain", "finetune"],
    data: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
    origin: str = "training config",
) -> AnyConfig:
    """Build a validated config from a (partial) nested mapping plus dotted-key overrides.

    Args:
        kind: ``pretrain`` or ``finetune``.
        data: nested mapping as read from YAML; missing keys take the kind's defaults.
        overrides: ``{"optim.epochs": 3, "data.delta": "1:8"}``; applied after ``data``.
        origin: where ``data`` came from (for messages).

    Raises:
        ConfigError: listing every bad key with its value and what is allowed.
    """
    if kind not in KINDS:
        raise ConfigError(f"kind {kind!r}: use pretrain or finetune")
    merged = schema.apply_overrides(data or {}, overrides)
    given = merged.get("kind", kind)
    if given != kind:
        raise ConfigError(f"{origin}: kind is {given!r} but `mepipe train {kind}` needs a {kind!r} config")
    if overrides:
        origin = f"{origin} + overrides"
    return schema.validate(KINDS[kind], merged, origin, what=f"{kind} config", doc=REFERENCE_DOC)


def load_train_config(
    kind: Literal["pretrain", "finetune"],
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> AnyConfig:
    """Read a training YAML (optional) and apply dotted ``overrides`` (the CLI's ``--set`` and flags).

    Args:
        kind: ``pretrain`` or ``finetune``.
        path: a YAML file, or the name of a bundled/user training config (``train-finetune``; see
            ``mepipe.resources``); ``None``: the defaults.
        overrides: dotted keys, applied after the file.
    """
    data: dict[str, Any] = {}
    origin = "defaults"
    if path is not None:
        from mepipe import resources

        p = resources.resolve("configs", path)
        data, origin = schema.load_yaml(p, "training config"), str(p)
    return config_from_dict(kind, data, overrides, origin)


def dump_config(cfg: AnyConfig) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


write_resolved = functools.partial(schema.write_resolved, name=RESOLVED_NAME)
"""``write_resolved(cfg, out_dir)``: ``RUN/train.resolved.yaml`` (:func:`mepipe.schema.write_resolved`)."""


def reference_markdown() -> str:
    """``docs/training.md``: every training key with its type, default and meaning, from the schema."""
    lines = [
        "# Training config reference",
        "",
        "Generated from `mepipe/train/config.py` by `python -m mepipe.train.config > docs/training.md` (a test",
        "keeps it in sync). A training YAML (`configs/*.yaml`; pass a file or a bundled name such as",
        "`--config train-finetune`) sets any of these keys; omitted keys take the defaults below, unknown keys",
        "and values out of range are errors naming the key, the value and what is allowed.",
        "`--set KEY=VALUE` overrides any key (values are YAML: `--set optim.lr=1e-3`,",
        "`--set data.delta=[1,8]`), exactly as for `mepipe build-dataset`; the command's flags (`--epochs`,",
        "`--delta` ...) win over both. The run writes the resolved config to `RUN/train.resolved.yaml` and",
        "into every checkpoint.",
    ]
    for kind, cls in KINDS.items():
        lines += [
            "",
            f"## `mepipe train {kind}`",
            "",
            (cls.__doc__ or "").strip(),
            "",
            *schema.reference_table(cls),
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(reference_markdown(), end="")
