"""The MA2MI / MIACNet trainer: pre-training on macro shards, leak-free LOSO fine-tuning on micro shards.

The names below are imported on first use (``import mepipe.train`` itself loads nothing heavy), so
``mepipe.train.config`` and the model registry can be read without importing torch.

Typical use::

    from mepipe.train import config_from_dict, pretrain, finetune_loso

    pre = pretrain(config_from_dict("pretrain", overrides={"data.shards": "macro_out", "run.out": "runs/pre"}))
    res = finetune_loso(config_from_dict("finetune", overrides={
        "data.shards": "micro_out", "data.labels": "casme2_5", "init": str(pre.checkpoint),
        "run.out": "runs/ft"}))
    print(res.metrics["uf1"], res.metrics["uar"])

Modules: ``config`` (schema), ``engine`` (the one epoch loop), ``pretrain`` (MA2MI objective),
``finetune`` (one fold's training), ``loso`` (LOSO/LODO runs and ``--protocol all``), ``evaluate``
(prediction, the sealed held-out evaluation), ``protocol`` (folds, ``HeldOut``), ``report`` and
``outputs`` (files), ``transfer`` (``--init``), ``deploy`` (``model.pt``), ``data`` / ``clips`` /
``frames`` (datasets over shards), ``flowdata`` (optical-flow inputs of flow models), ``models`` (registry).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FinetuneConfig": "mepipe.train.config",
    "PretrainConfig": "mepipe.train.config",
    "config_from_dict": "mepipe.train.config",
    "config_to_dict": "mepipe.train.config",
    "load_train_config": "mepipe.train.config",
    "EpochReport": "mepipe.train.finetune",
    "fit": "mepipe.train.finetune",
    "evaluate_held_out": "mepipe.train.evaluate",
    "LosoResult": "mepipe.train.loso",
    "DeployResult": "mepipe.train.loso",
    "finetune_loso": "mepipe.train.loso",
    "finetune_all": "mepipe.train.loso",
    "classification_metrics": "mepipe.train.metrics",
    "MODELS": "mepipe.train.models",
    "PRETRAINERS": "mepipe.train.models",
    "build_model": "mepipe.train.models",
    "PretrainResult": "mepipe.train.pretrain",
    "pretrain": "mepipe.train.pretrain",
    "PeekingError": "mepipe.train.protocol",
    "plan_folds": "mepipe.train.protocol",
    "ClipDataset": "mepipe.train.clips",
    "PairDataset": "mepipe.train.data",
    "FlowDataset": "mepipe.train.flowdata",
    "load_model": "mepipe.train.deploy",
    "loop_settings": "mepipe.train.engine",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mepipe.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
