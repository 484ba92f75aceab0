"""Every shipped pipeline validates and names a registered adapter; the reference doc is current."""

from pathlib import Path

import pytest

from mepipe.config import load_config, reference_markdown
from mepipe.datasets import ADAPTERS

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = sorted((ROOT / "pipelines").glob("*.yaml"))


def test_there_is_a_pipeline_per_dataset():
    names = {p.stem for p in PIPELINES}
    assert {
        "casme2",
        "samm",
        "smic",
        "mmew",
        "casme_sq",
        "casme3_a",
        "dfew",
        "ferv39k",
        "mafw",
        "ckplus",
        "demo-micro",
        "demo-macro",
        "megc2019",
    } <= names


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.stem)
def test_pipeline_validates(path: Path):
    cfg = load_config(path)
    assert cfg.dataset.adapter in ADAPTERS
    assert len(cfg.hash()) == 64


def test_pipeline_reference_doc_is_generated_from_the_schema():
    doc = (ROOT / "docs" / "pipelines.md").read_text()
    assert doc == reference_markdown(), "regenerate: python -m mepipe.config > docs/pipelines.md"
