"""The MA2MI / MIACNet trainer: pre-training on macro shards, leak-free LOSO fine-tuning on micro shards.

Needs only torch, numpy, h5py and pandas at import time (OpenCV is imported lazily for pictures,
PyYAML only to read a YAML config or a label scheme).

Typical use::

    from mepipe.train import config_from_dict, pretrain, finetune_loso

    pre = pretrain(config_from_dict("pretrain", overrides={"data.shards": "macro_out", "run.out": "runs/pre"}))
    res = finetune_loso(config_from_dict("finetune", overrides={
        "data.shards": "micro_out", "data.labels": "casme2_5", "init": str(pre.checkpoint),
        "run.out": "runs/ft"}))
    print(res.metrics["uf1"], res.metrics["uar"])
"""

from mepipe.train.config import (
    FinetuneConfig,
    PretrainConfig,
    config_from_dict,
    config_to_dict,
    load_train_config,
)
from mepipe.train.finetune import EpochReport, LosoResult, evaluate_held_out, finetune_loso, fit
from mepipe.train.metrics import classification_metrics
from mepipe.train.models import MODELS, PRETRAINERS, build_model
from mepipe.train.pretrain import PretrainResult, pretrain
from mepipe.train.protocol import PeekingError, plan_folds

__all__ = [
    "MODELS",
    "PRETRAINERS",
    "EpochReport",
    "FinetuneConfig",
    "LosoResult",
    "PeekingError",
    "PretrainConfig",
    "PretrainResult",
    "build_model",
    "classification_metrics",
    "config_from_dict",
    "config_to_dict",
    "evaluate_held_out",
    "finetune_loso",
    "fit",
    "load_train_config",
    "plan_folds",
    "pretrain",
]
