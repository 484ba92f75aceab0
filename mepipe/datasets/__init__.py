"""Dataset adapters. Importing this package registers every built-in adapter in ``ADAPTERS``."""

from mepipe.datasets import (  # noqa: F401
    casme2,
    casme3,
    casme_sq,
    ckplus,
    composite,
    dfew,
    ferv39k,
    folder,
    fourdme,
    mafw,
    mmew,
    samm,
    samm_lv,
    smic,
)
from mepipe.datasets.base import ADAPTERS, DatasetAdapter, ScanResult, get_adapter, register_adapter

__all__ = ["ADAPTERS", "DatasetAdapter", "ScanResult", "get_adapter", "register_adapter"]
