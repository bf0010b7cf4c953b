"""The GoEmotions adapter on the full simplified TSVs: every published count.

Runs when WORKBENCH_DATA points at the full raw data (../shared/data). Expected figures are
those of shared/data/PROVENANCE.md, section 4 (which match the paper and HF's go_emotions).
The rater-level CSVs are not part of the shared data (see the unit tests for those).
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from curation.adapters import get_adapter
from curation.adapters.base import Rejected, collect

pytestmark = pytest.mark.fulldata

SPLIT_FILES = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}


@pytest.fixture(scope="module")
def goemotions(full_data: Path) -> tuple[Path, list[dict], list[Rejected], Counter]:
    folder = full_data / "goemotions"
    adapter = get_adapter("goemotions")
    records, rejected = collect(adapter, [folder])
    return folder, records, rejected, adapter.stats


def test_rows_per_split(goemotions) -> None:
    _, records, rejected, stats = goemotions
    assert rejected == []
    assert Counter(r["split"] for r in records) == {"train": 43_410, "validation": 5_426, "test": 5_427}
    assert stats["rows"] == stats["lines"] == 54_263


def test_multi_label_and_neutral_counts(goemotions) -> None:
    _, records, _, _ = goemotions
    multi = Counter(r["split"] for r in records if len(r["labels"]) > 1)
    assert multi == {"train": 7_102, "validation": 878, "test": 837}
    neutral = Counter(r["split"] for r in records for lab in r["labels"] if lab["value"] == "neutral")
    assert neutral == {"train": 14_219, "validation": 1_766, "test": 1_787}
    assert {lab["source"] for r in records for lab in r["labels"]} == {"gold"}


def test_quoted_rows_are_unquoted_like_the_csv_module(goemotions) -> None:
    folder, records, _, stats = goemotions
    assert stats["quoted_rows"] == 1_097 + 137 + 149
    for split, name in SPLIT_FILES.items():
        lines = (folder / name).read_text(encoding="utf-8").splitlines()
        assert sum(line.startswith('"') for line in lines) == {"train": 1_097, "validation": 137, "test": 149}[split]
        with (folder / name).open(encoding="utf-8", newline="") as f:
            expected = [(row[2], row[0]) for row in csv.reader(f, delimiter="\t")]
        got = [(r["id"].split(":", 2)[2], r["turns"][0]["text"]) for r in records if r["split"] == split]
        assert got == expected


def test_ids_unique(goemotions) -> None:
    _, records, _, _ = goemotions
    assert len({r["id"] for r in records}) == len(records)
