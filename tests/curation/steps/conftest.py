"""Real records from the bundled example slices, read with the adapters (shared by the step tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from curation.adapters import get_adapter
from curation.adapters.base import collect

_PATHS = {
    "dailydialog": "dailydialog/ijcnlp_dailydialog",
    "empatheticdialogues": "empatheticdialogues/train.csv",
    "esconv": "esconv/hf",
    "goemotions": "goemotions",
    "openwebtext": "openwebtext/urlsf_subset00-1_data.xz",
}


@pytest.fixture(scope="session")
def real_records(examples: Path):
    """source -> list of records, as the adapters build them."""
    out = {}
    for source, rel in _PATHS.items():
        records, rejected = collect(get_adapter(source), [examples / rel])
        assert not rejected
        out[source] = records
    return out


@pytest.fixture(scope="session")
def by_id(real_records):
    return {r["id"]: r for records in real_records.values() for r in records}
