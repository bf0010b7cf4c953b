"""The EmpatheticDialogues adapter on the full raw data's slice of train.csv.

Runs when WORKBENCH_DATA points at the full raw data (../shared/data). The official CSVs
were not obtainable; the slice is the verbatim head of train.csv (shared/data/PROVENANCE.md,
"Slices"), and the figures are the ones recorded there.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from curation.adapters import get_adapter
from curation.adapters.base import collect

pytestmark = pytest.mark.fulldata

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def slice_records(full_data):
    adapter = get_adapter("empatheticdialogues")
    records, rejected = collect(adapter, [full_data / "empatheticdialogues" / "slices" / "train_head.csv"])
    return records, rejected, adapter


def test_slice_counts(slice_records):
    records, rejected, adapter = slice_records
    assert rejected == []
    assert adapter.stats["rows"] == 439 == sum(len(r["turns"]) for r in records)
    assert len(records) == 95
    assert records[0]["id"] == "empatheticdialogues:train:hit:0_conv:1"
    assert records[-1]["id"] == "empatheticdialogues:train:hit:55_conv:111"
    assert {r["split"] for r in records} == {"train"}


def test_slice_emotions(slice_records):
    records, _, _ = slice_records
    emotions = Counter(r["context"]["emotion"] for r in records)
    assert len(emotions) == 30
    assert "apprehensive" not in emotions and "devastated" not in emotions
    assert all(r["labels"][0]["raw"] == r["context"]["emotion"] for r in records)


def test_slice_speakers_alternate_between_two_authors(slice_records):
    records, _, _ = slice_records
    for r in records:
        assert len({t["attrs"]["speaker_idx"] for t in r["turns"]}) <= 2
        assert [t["speaker"] for t in r["turns"]] == ["speaker", "listener"] * (len(r["turns"]) // 2) + ["speaker"] * (
            len(r["turns"]) % 2
        )


def test_example_is_the_slice(full_data):
    slice_bytes = (full_data / "empatheticdialogues" / "slices" / "train_head.csv").read_bytes()
    assert (REPO / "examples" / "data" / "empatheticdialogues" / "train.csv").read_bytes() == slice_bytes
