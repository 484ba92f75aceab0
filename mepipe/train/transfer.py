"""Weight transfer into a classifier (``finetune --init FILE``).

``FILE`` is an MA2MI pre-training checkpoint (``RUN/last.pt`` of ``mepipe train pretrain``), or a
classifier trained with labels: ``RUN/model.pt`` of ``mepipe train finetune --protocol all`` (or that
run's ``RUN/last.pt``), e.g. MIACNet trained on a macro-expression build's emotion labels, the
*supervised* macro pre-training that MA2MI is compared with. Either way ``E_act`` / ``E_pos``
(state-dict prefixes ``act.`` and ``pos.``) load by name into models that declare which prefixes they
take (``pretrained_prefixes()``, e.g. MIACNet); everything else (MA2MI's decoder, bottleneck, pixel head
and EMA target; a classifier's head and fusion scale) is dropped. The architecture keys that shape those
tensors must match between the two runs; :func:`check_init_config` says which differ before anything is
trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from mepipe.errors import ConfigError
from mepipe.train.checkpoint import load_checkpoint, safe_load
from mepipe.train.deploy import MODEL_FORMAT
from mepipe.train.models.ma2mi import transfer_state

INIT_PARTS: dict[str, tuple[str, ...]] = {"all": ("act.", "pos."), "action": ("act.",)}
"""``init_parts`` -> the state-dict prefixes transferred (``action``: the position branch starts fresh)."""

SHAPING_KEYS = ("input_size", "width", "action_input", "pos_layers", "pos_heads", "pos_input")
"""``model.*`` keys that must be equal in pre-training and fine-tuning for the weights to load."""


def load_init_state(path: str | Path, parts: str = "all") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``E_act``/``E_pos`` weights (``parts``: a key of :data:`INIT_PARTS`) and the run's config (at
    least its ``model`` section) of an MA2MI checkpoint, a fine-tuning checkpoint or a ``model.pt``.

    Raises:
        ConfigError: missing file, not loadable with ``weights_only``, or none of the three kinds.
    """
    p = Path(path)
    if p.is_file():
        data = safe_load(p)
        if isinstance(data, dict) and data.get("format") == MODEL_FORMAT:  # RUN/model.pt
            return transfer_state(data["model"], INIT_PARTS[parts]), {"model": data.get("model_config", {})}
    ckpt = load_checkpoint(p)
    if ckpt.get("kind") not in ("pretrain", "finetune"):
        raise ConfigError(f"--init {p}: a {ckpt.get('kind')!r} checkpoint holds no E_act/E_pos weights")
    return transfer_state(ckpt["model"], INIT_PARTS[parts]), ckpt.get("config", {})


def check_init_config(init: str, init_cfg: dict[str, Any], model: dict[str, Any]) -> None:
    """Raise if a :data:`SHAPING_KEYS` value of ``model`` (``model`` section, as a dict) differs from the
    pre-training run's ``init_cfg``.

    Raises:
        ConfigError: naming each differing key as ``{key: (pre-training, here)}`` and the fix.
    """
    saved = init_cfg.get("model", {})
    diffs = {
        k: (saved.get(k), model.get(k)) for k in SHAPING_KEYS if saved.get(k) not in (None, model.get(k))
    }
    if diffs:
        raise ConfigError(
            f"--init {init}: model settings differ from pre-training (pre-training, here): {diffs}; "
            "set them equal with --set model.KEY=VALUE"
        )


def apply_init(model: nn.Module, state: dict[str, torch.Tensor]) -> int:
    """Copy pre-trained ``act.*``/``pos.*`` tensors into ``model``; returns how many were loaded.

    Raises:
        ConfigError: the model takes no pre-trained weights, a tensor's shape differs (width, input size
            or action input do not match), or nothing matched.
    """
    prefixes_of = getattr(model, "pretrained_prefixes", None)
    if prefixes_of is None:
        raise ConfigError(
            f"--init: model {type(model).__name__} takes no MA2MI weights (only the MIACNet models do); "
            "train it from scratch (drop --init)"
        )
    own = model.state_dict()
    prefixes = prefixes_of()
    load = {}
    for k, v in state.items():
        if not k.startswith(prefixes) or k not in own:
            continue
        if own[k].shape != v.shape:
            raise ConfigError(
                f"--init: {k} has shape {tuple(v.shape)} in the checkpoint but {tuple(own[k].shape)} "
                "here; use the same model.width / model.input_size / model.action_input as in "
                "pre-training"
            )
        load[k] = v
    if not load:
        raise ConfigError(
            "--init: no pre-trained tensor matches this model (is it an MA2MI checkpoint or a MIACNet model?)"
        )
    model.load_state_dict(load, strict=False)
    return len(load)
