"""The one config machinery behind pipelines (``mepipe.config``) and training (``mepipe.train.config``).

* :class:`Strict`: the pydantic base of every config section (unknown keys are errors, values frozen).
* :func:`parse_value` / :func:`parse_set`: ``--set KEY=VALUE`` values, parsed as YAML the same way for
  every command. The one difference from plain PyYAML: YAML 1.1 reads ``1:4`` as the base-60 integer 64
  and ``1e-3`` as a string; here ``1:4`` stays the string ``"1:4"`` and ``1e-3`` is the number 0.001.
* :func:`apply_overrides`: dotted keys (``optim.lr``) applied to a nested mapping.
* :func:`load_yaml`: a YAML file as a mapping, with the same value rules.
* :func:`validate`: a mapping -> a config object, or one :class:`~mepipe.errors.ConfigError` listing
  every bad key with its value and what is allowed.
* :func:`reference_table`: the markdown reference rows (``docs/pipelines.md``, ``docs/training.md``).

Only pydantic and PyYAML are needed (both are dependencies of mepipe).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from mepipe.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Base of every config section: unknown keys are rejected, a parsed config cannot be changed."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- YAML values ------------------------------------------------------------------------------------

_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"


class _Loader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1's base-60 numbers, with YAML 1.2's exponent floats."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _INT,
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+"
        r"|[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def parse_value(text: str) -> Any:
    """One ``--set`` value: a YAML scalar or flow collection (``112``, ``true``, ``[1, 8]``, ``1e-3``).

    Examples: ``"112"`` -> 112, ``"1e-3"`` -> 0.001, ``"1:4"`` -> ``"1:4"``, ``"[casme2, samm]"`` ->
    ``["casme2", "samm"]``, ``"null"`` -> None, ``"cuda:0"`` -> ``"cuda:0"``.

    Raises:
        ConfigError: the text is not valid YAML.
    """
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506  (_Loader is a SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"value {text!r} is not valid YAML ({exc}); quote it or fix the brackets") from None


def write_resolved(cfg: BaseModel, out_dir: str | Path, *, name: str) -> Path:
    """Write ``OUT_DIR/NAME``: the config with every default filled in, as YAML in schema order (the
    one writer of ``pipeline.resolved.yaml`` and ``train.resolved.yaml``). Creates ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    p = out / name
    p.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return p


def parse_range(text: str) -> tuple[float, float]:
    """``"1:4"`` -> ``(1.0, 4.0)``, ``"30"`` -> ``(30.0, 30.0)``: the one parser of the ``A:B`` ranges
    (``--delta``). Raises ``ValueError`` when a side is not a number."""
    a, _, b = str(text).partition(":")
    return float(a), float(b if b.strip() else a)


def parse_set(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["align.crop_size=112", "optim.lr=1e-3"]`` -> ``{"align.crop_size": 112, "optim.lr": 0.001}``.

    Raises:
        ConfigError: an item has no ``=`` or an empty key.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"--set {item!r}: expected KEY=VALUE, e.g. align.crop_size=112 or optim.lr=1e-3"
            )
        out[key.strip()] = parse_value(value)
    return out


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """A deep copy of ``data`` with dotted-key ``overrides`` set (``{"optim.lr": 0.001}``).

    Missing sections are created; whether a key exists is checked later, by :func:`validate`.

    Raises:
        ConfigError: a dotted key goes through a value that is not a section (``optim.lr.x``).
    """
    out = copy.deepcopy(data)
    for dotted, value in (overrides or {}).items():
        node = out
        *parents, leaf = dotted.split(".")
        for i, p in enumerate(parents):
            child = node.setdefault(p, {})
            if child is None:
                child = node[p] = {}
            if not isinstance(child, dict):
                where = ".".join(parents[: i + 1])
                raise ConfigError(f"--set {dotted}: {where} is a value ({child!r}), not a section")
            node = child
        node[leaf] = value
    return out


def load_yaml(path: str | Path, what: str = "config") -> dict[str, Any]:
    """Read a YAML mapping (an empty file is ``{}``) with the value rules of :func:`parse_value`.

    Raises:
        ConfigError: the file is missing, not valid YAML, or not a mapping.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} file {p} not found")
    try:
        data = yaml.load(p.read_text(), Loader=_Loader)  # noqa: S506  (_Loader is a SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a {what} must be a YAML mapping of keys, got {type(data).__name__}")
    return data


# --- validation ---------------------------------------------------------------------------------------


def _section_at(cls: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    node: Any = cls
    for part in loc:
        field = getattr(node, "model_fields", {}).get(part)
        if field is None:
            return None
        node = field.annotation
    return node if isinstance(node, type) and issubclass(node, BaseModel) else None


def format_errors(cls: type[BaseModel], origin: str, err: ValidationError, what: str, doc: str) -> str:
    """One line per bad key: ``optim.lr: should be greater than 0 (got -1)``."""
    lines = [f"{origin}: invalid {what}"]
    for e in err.errors():
        loc = tuple(e["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            section = _section_at(cls, loc[:-1])
            valid = f"; valid keys here: {', '.join(section.model_fields)}" if section is not None else ""
            lines.append(f"  - {key}: unknown key; remove it or check its spelling (see {doc}){valid}")
        elif e["type"] == "missing":
            lines.append(f"  - {key}: required key is missing; add it")
        else:
            msg = str(e["msg"]).removeprefix("Value error, ").replace("Input should", "should")
            got = e.get("input")
            lines.append(f"  - {key}: {msg}" + ("" if isinstance(got, dict) else f" (got {got!r})"))
    return "\n".join(lines)


def validate(cls: type[M], data: Any, origin: str, *, what: str, doc: str) -> M:
    """Validate a mapping into ``cls``.

    Args:
        cls: the top-level config model.
        data: nested mapping (from YAML plus overrides).
        origin: where the data came from (a file name, ``--set``), first word of the message.
        what: what is validated, for the message (``pipeline config``).
        doc: the reference to point at for unknown keys (``docs/pipelines.md``).

    Raises:
        ConfigError: naming every bad key, its value and what is allowed.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: a {what} must be a mapping of keys, got {type(data).__name__}")
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_errors(cls, origin, err, what, doc)) from None


# --- reference documentation -------------------------------------------------------------------------


def type_name(tp: Any) -> str:
    """Markdown cell for an annotation: `` `int` ``, `` `Literal['sum', 'gate']` `` ..."""
    text = getattr(tp, "__name__", None) if not getattr(tp, "__args__", None) else None
    return f"`{text or str(tp).replace('typing.', '')}`".replace("|", "\\|")


def range_text(field: Any) -> str:
    """`` (>= 0, < 1)`` from a field's numeric bounds (``Field(ge=0, lt=1)``), or ``""``."""
    ops = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    parts = [
        f"{sym} {getattr(m, name)}" for m in field.metadata for name, sym in ops.items() if hasattr(m, name)
    ]
    return f" ({', '.join(parts)})" if parts else ""


def _json_cell(value: Any) -> str:
    return f"`{json.dumps(value.model_dump() if isinstance(value, BaseModel) else value)}`".replace(
        "|", "\\|"
    )


def reference_table(cls: type[BaseModel]) -> list[str]:
    """Markdown table rows (header included): one per key of ``cls``, sections expanded one level.

    A section's keys show the defaults of the section's default value in ``cls`` (so two configs sharing
    a section class but with different defaults get the right numbers each).
    """
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, field in cls.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            lines.append(f"| **`{name}`** | section | | {(ann.__doc__ or '').strip().splitlines()[0]} |")
            section = None if field.is_required() else field.get_default(call_default_factory=True)
            for sub, f in ann.model_fields.items():
                if section is not None:
                    default = _json_cell(getattr(section, sub))
                else:
                    default = (
                        "required"
                        if f.is_required()
                        else _json_cell(f.get_default(call_default_factory=True))
                    )
                lines.append(
                    f"| `{name}.{sub}` | {type_name(f.annotation)}{range_text(f)} | {default} | {f.description or ''} |"
                )
        else:
            default = (
                "required"
                if field.is_required()
                else _json_cell(field.get_default(call_default_factory=True))
            )
            lines.append(
                f"| `{name}` | {type_name(ann)}{range_text(field)} | {default} | {field.description or ''} |"
            )
    return lines
