"""The OpenWebText adapter on the shared sample: HF's dummy data, 4 real documents.

Runs when WORKBENCH_DATA points at the full raw data (../shared/data); see
shared/data/PROVENANCE.md, section 5 (the corpus itself, 12.9 GB, is not there).
The bundled chunk examples/data/openwebtext/urlsf_subset00-1_data.xz holds the same
4 documents in the distributed format: both readings must agree.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from curation.adapters import get_adapter
from curation.adapters.base import Rejected
from curation.record import validate_record

pytestmark = pytest.mark.fulldata

REPO = Path(__file__).resolve().parents[2]


def read(paths: list[Path]) -> list[dict]:
    records = []
    for item in get_adapter("openwebtext").read(paths):
        assert not isinstance(item, Rejected), item
        validate_record(item)
        records.append(item)
    return records


def test_the_four_real_documents(full_data: Path) -> None:
    dummy = full_data / "openwebtext" / "hf_datasets_dummy"
    records = read([dummy])  # walks dummy_data/openwebtext/fake_subset-*/; dummy_data.zip is skipped
    assert [r["id"].split(":", 2)[2][:7] for r in records] == ["0000005", "0000031", "0000036", "0000068"]
    assert [r["context"]["subset"] for r in records] == ["fake_subset-1_data-dirxz"] * 2 + [
        "fake_subset-2_data-dirxz"
    ] * 2
    for r in records:
        source = dummy.parent / r["provenance"]["file"]
        assert r["turns"][0]["text"] == source.read_text(encoding="utf-8")
    assert records[0]["turns"][0]["text"].startswith("A magazine supplement with an image of Adolf Hitler")
    bundled = read([REPO / "examples" / "data" / "openwebtext" / "urlsf_subset00-1_data.xz"])
    assert [(r["id"], r["turns"][0]["text"]) for r in bundled] == [(r["id"], r["turns"][0]["text"]) for r in records]
