"""Dedup on the full DailyDialog data: the 742 exact duplicate dialogues of PROVENANCE.md, section 1.

Runs when WORKBENCH_DATA points at the full raw data (../shared/data).
"""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pytest

from curation.adapters import get_adapter
from curation.adapters.base import collect
from curation.steps.dedup import ExactDedup, NearDedup

pytestmark = pytest.mark.fulldata


@pytest.fixture(scope="module")
def dialogues(full_data):
    root = full_data / "dailydialog" / "ijcnlp_dailydialog"
    records, rejected = collect(get_adapter("dailydialog"), [root / "train", root / "validation", root / "test"])
    assert not rejected and len(records) == 13_118
    return records


def decide(step, records):
    tables = [step.signatures_batch(records[i : i + 1000]) for i in range(0, len(records), 1000)]
    return step.decide(pa.concat_tables(tables))


def test_exact_finds_the_742_duplicate_dialogues(dialogues):
    # Verbatim comparison (no casefolding or whitespace collapsing): 13,118 lines, 12,376 distinct.
    step = ExactDedup(ExactDedup.Config(casefold=False, collapse_whitespace=False))
    d = decide(step, dialogues)
    assert d.counters["duplicates"] == 742
    assert 13_118 - d.counters["duplicates"] == 12_376
    clusters = d.artifacts["clusters"]
    assert clusters.num_rows == d.counters["clusters"] + 742
    # Duplicates across splits: the eval copy is kept, the train copy dropped.
    by_cluster: dict[int, set[str]] = {}
    for row in clusters.to_pylist():
        by_cluster.setdefault(row["cluster_id"], set()).add(row["split"])
    pairs = Counter(
        pair
        for splits in by_cluster.values()
        for pair in (("train", "test"), ("train", "validation"), ("validation", "test"))
        if set(pair) <= splits
    )
    # PROVENANCE.md counts distinct dialogues shared by two splits: 92 train∩test, 68 train∩validation,
    # 4 validation∩test.
    assert pairs == {("train", "test"): 92, ("train", "validation"): 68, ("validation", "test"): 4}
    kept_splits = {
        row["split"]
        for row in clusters.to_pylist()
        if row["kept"] and by_cluster[row["cluster_id"]] >= {"test", "train"}
    }
    assert kept_splits == {"test"}


def test_default_normalisation_merges_case_and_spacing_variants(dialogues):
    d = decide(ExactDedup(), dialogues)
    assert d.counters["duplicates"] >= 742


def test_near_dedup_finds_every_exact_duplicate(dialogues):
    exact = decide(ExactDedup(ExactDedup.Config(casefold=False, collapse_whitespace=False)), dialogues)
    near = decide(NearDedup(), dialogues)
    assert set(exact.verdicts) <= set(near.verdicts) | {
        row["kept_id"] for row in near.artifacts["clusters"].to_pylist()
    }
    assert near.counters["duplicates"] >= 742
