"""Dataset adapters. Importing this package registers every built-in adapter in ``ADAPTERS``."""

from mepipe.datasets import casme2  # noqa: F401
from mepipe.datasets.base import ADAPTERS, DatasetAdapter, ScanResult, get_adapter, register_adapter

__all__ = ["ADAPTERS", "DatasetAdapter", "ScanResult", "get_adapter", "register_adapter"]
