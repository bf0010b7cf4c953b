"""curation.browse on real example slices: filters and pages against a plain scan, projections, distributions."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from curation import browse
from curation.browse import BrowseError, RecordFilter
from curation.curate import curate, load_steps
from curation.ingest import ingest
from curation.store import SnapshotStore

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(tmp_path_factory, examples):
    """Three sources ingested, curated with the example config, and a copy of the result in small shards."""
    store = SnapshotStore(str(tmp_path_factory.mktemp("browse") / "store"))
    ingest("dailydialog", [examples / "dailydialog" / "ijcnlp_dailydialog"], store=store, tag="dd-raw")
    ingest("esconv", [examples / "esconv" / "hf"], store=store, tag="esconv-raw")
    ingest("goemotions", [examples / "goemotions"], store=store, tag="ge-raw")
    curate(
        ["dd-raw", "esconv-raw", "ge-raw"],
        store=store,
        steps=load_steps(ROOT / "examples" / "curate.toml"),
        tag="clean",
    )
    # the same records in many shards of many row groups: shards of 160 rows, row groups of 40
    with store.writer(
        step={"kind": "test.reshard", "config": {}}, parents=[store.resolve("clean")], shard_rows=150, batch_rows=40
    ) as writer:
        writer.add_many(store.iter_records("clean"))
        sid = writer.commit()
    store.set_ref("sharded", sid)
    return store


@pytest.fixture(scope="module")
def records(built):
    return list(built.iter_records("sharded"))


def _expected(records, flt: RecordFilter) -> list[int]:
    """The filter's meaning, written as a plain loop over whole records."""
    out = []
    for i, r in enumerate(records):
        if flt.source and r["source"] != flt.source:
            continue
        if flt.split and r["split"] != flt.split:
            continue
        if (flt.task or flt.value or flt.label_source) and not any(
            (flt.task is None or lab["task"] == flt.task)
            and (flt.value is None or lab["value"] == flt.value)
            and (flt.label_source is None or lab["source"] == flt.label_source)
            for lab in r["labels"]
        ):
            continue
        if flt.text:
            needle = flt.text.lower()
            if needle not in r["id"].lower() and not any(needle in t["text"].lower() for t in r["turns"]):
                continue
        out.append(i)
    return out


FILTERS = [
    RecordFilter(),
    RecordFilter(source="esconv"),
    RecordFilter(split="test"),
    RecordFilter(source="goemotions", split="validation"),
    RecordFilter(task="strategy"),
    RecordFilter(task="emotion", value="joy"),
    RecordFilter(task="emotion", value="joy", label_source="gold", source="dailydialog"),
    RecordFilter(label_source="model"),  # curation's safety flags
    RecordFilter(text="Holiday"),
    RecordFilter(text="dailydialog:test:"),
    RecordFilter(source="esconv", task="strategy", value="Question", text="feel"),
]


def test_the_example_store_is_big_enough_to_mean_something(built, records):
    m = built.manifest("sharded")
    assert len(m["shards"]) >= 4 and m["rows"] == len(records) > 400
    assert set(m["counts"]) == {"dailydialog", "esconv", "goemotions"}


@pytest.mark.parametrize("flt", FILTERS, ids=lambda f: repr({k: v for k, v in vars(f).items() if v}))
def test_matching_rows_equals_a_plain_scan(built, records, flt):
    got = browse.matching_rows(built, "sharded", flt)
    assert got.tolist() == _expected(records, flt)
    assert flt.is_empty or len(got) < len(records)


def test_matching_rows_reads_only_the_columns_a_filter_needs(built, monkeypatch):
    asked = []
    original = SnapshotStore.iter_batches

    def spy(self, ref, *, columns=None, batch_size=1024):
        asked.append(list(columns or []))
        return original(self, ref, columns=columns, batch_size=batch_size)

    monkeypatch.setattr(SnapshotStore, "iter_batches", spy)
    browse.matching_rows(built, "sharded", RecordFilter(source="esconv"))
    browse.matching_rows(built, "sharded", RecordFilter(task="emotion", value="joy"))
    browse.matching_rows(built, "sharded", RecordFilter(text="hello"))
    assert asked[0] == ["id", "source", "split"]
    assert asked[1] == ["id", "source", "split", "labels.list.element.task", "labels.list.element.value"]
    assert asked[2] == ["id", "source", "split", "turns.list.element.text"]


def test_read_rows_across_shards_and_row_groups_in_the_order_asked(built, records):
    rows = [len(records) - 1, 0, 161, 40, 39, 200, 161 + 160]
    got = browse.read_rows(built, "sharded", rows)
    assert [r["id"] for r in got] == [records[i]["id"] for i in rows]
    assert got[0] == records[-1] and got[3] == records[40]  # whole records, maps as dicts
    ids_only = browse.read_rows(built, "sharded", rows, columns=["id", "split"])
    assert ids_only == [{"id": records[i]["id"], "split": records[i]["split"]} for i in rows]


def test_read_rows_rejects_rows_and_columns_that_do_not_exist(built, records):
    with pytest.raises(BrowseError, match="outside"):
        browse.read_rows(built, "sharded", [len(records)])
    with pytest.raises(BrowseError, match="unknown column 'nope'"):
        browse.read_rows(built, "sharded", [0], columns=["nope"])
    assert browse.read_rows(built, "sharded", []) == []


def test_read_page_pages_through_a_filter(built, records):
    flt = RecordFilter(source="dailydialog")
    expected = _expected(records, flt)
    first = browse.read_page(built, "sharded", flt, page=0, page_size=7)
    assert first.total == len(expected) and first.pages == math.ceil(len(expected) / 7)
    assert [r["id"] for r in first.records] == [records[i]["id"] for i in expected[:7]]
    last = browse.read_page(built, "sharded", flt, page=first.pages - 1, page_size=7)
    assert [r["id"] for r in last.records] == [records[i]["id"] for i in expected[(first.pages - 1) * 7 :]]
    assert last.rows == expected[(first.pages - 1) * 7 :]
    with pytest.raises(BrowseError, match="outside"):
        browse.read_page(built, "sharded", flt, page=first.pages, page_size=7)
    empty = browse.read_page(built, "sharded", RecordFilter(text="no such text anywhere, surely"))
    assert empty.total == 0 and empty.records == [] and empty.pages == 1


def test_records_by_id(built, records):
    wanted = [records[5]["id"], records[300]["id"], "dailydialog:train:does-not-exist"]
    got = browse.records_by_id(built, "sharded", wanted, columns=["turns"])
    assert set(got) == set(wanted[:2])
    assert got[wanted[1]]["turns"] == records[300]["turns"]


def test_filter_arguments_are_checked():
    with pytest.raises(BrowseError, match="split"):
        RecordFilter(split="dev")
    with pytest.raises(BrowseError, match="label_source"):
        RecordFilter(label_source="crowd")
    with pytest.raises(BrowseError, match="name the task"):
        RecordFilter(value="joy")
    assert RecordFilter(text="   ").is_empty


def test_iter_label_records_has_the_labels_without_their_attrs(built, records):
    light = list(browse.iter_label_records(built, "sharded"))
    assert [r["id"] for r in light] == [r["id"] for r in records]
    for lr, r in zip(light[::37], records[::37], strict=True):
        assert lr["labels"] == [{f: lab[f] for f in browse.LABEL_FIELDS} for lab in r["labels"]]


def test_label_counts_and_values_come_from_the_manifest(built, records):
    m = built.manifest("sharded")
    rows = browse.label_counts(m, task="emotion", label_source="gold")
    counted = Counter()
    for r in records:
        for lab in r["labels"]:
            if lab["task"] == "emotion" and lab["source"] == "gold":
                counted[(r["source"], r["split"], lab["value"])] += 1
    assert {(x["source"], x["split"], x["value"]): x["count"] for x in rows} == dict(counted)
    totals = Counter()
    for (_, _, v), n in counted.items():
        totals[v] += n
    values = browse.label_values(m, "emotion")
    assert set(values) >= set(totals) and totals[values[0]] == max(totals.values())
    assert browse.label_tasks(m)["strategy"] == ["gold"]
    assert browse.label_counts(m, task="emotion", source="esconv", split="test")


def test_distribution_change_against_the_parents(built):
    clean = built.manifest("clean")
    parents = [built.manifest(p) for p in clean["parents"]]
    change = browse.distribution_change(parents, clean, task="emotion", label_source="gold")
    by_value = {r["value"]: r for r in change}
    before = Counter()
    for p in parents:
        for x in browse.label_counts(p, task="emotion", label_source="gold"):
            before[x["value"]] += x["count"]
    assert {v: r["before"] for v, r in by_value.items() if r["before"]} == dict(before)
    assert sum(r["after"] for r in change) == sum(
        x["count"] for x in browse.label_counts(clean, task="emotion", label_source="gold")
    )
    assert sum(r["before"] for r in change) > sum(r["after"] for r in change)  # dedup dropped labeled records
    assert math.isclose(sum(r["after_share"] for r in change), 1.0)
    assert [r["after"] for r in change] == sorted((r["after"] for r in change), reverse=True)


def test_lineage_and_ancestors(built):
    lin = browse.lineage(built)
    ids = {n["id"] for n in lin["nodes"]}
    clean, sharded = built.resolve("clean"), built.resolve("sharded")
    assert (clean, sharded) in lin["edges"]
    assert {(p, clean) for p in built.manifest("clean")["parents"]} <= set(lin["edges"])
    assert all(a in ids and b in ids for a, b in lin["edges"])
    node = next(n for n in lin["nodes"] if n["id"] == sharded)
    assert node["refs"] == ["sharded"] and node["step"] == "test.reshard"
    assert browse.ancestors(built, "sharded") == [clean, *built.manifest("clean")["parents"]]
    assert browse.ancestors(built, "dd-raw") == []


def test_counts_table(built):
    m = built.manifest("clean")
    rows = browse.counts_table(m)
    assert sum(r["records"] for r in rows) == m["rows"]
    assert {(r["source"], r["split"]): r["turns"] for r in rows}[("esconv", "test")] == m["turns"]["esconv"]["test"]


def test_score_histograms_count_every_score_label_on_its_scale(built, records):
    rows = browse.score_histograms(built, "sharded")
    expected = Counter()
    for r in records:
        for lab in r["labels"]:
            if lab["task"] == "empathy":
                number = lab["score"] if lab["score"] is not None else float(lab["value"])
                expected[(lab["source"], int(np.clip(np.floor(number + 0.5), 1, 5)))] += 1
    empathy = [x for x in rows if x["task"] == "empathy"]
    assert [x["bucket"] for x in empathy if x["label_source"] == "gold"] == [1, 2, 3, 4, 5]
    assert {(x["label_source"], x["bucket"]): x["count"] for x in empathy if x["count"]} == dict(expected)
    assert sum(expected.values()) > 100  # ESConv's seeker survey
    only_dd = browse.score_histograms(built, "sharded", source="dailydialog")
    assert only_dd == []  # DailyDialog has no score labels
    assert browse.score_histograms(built, "sharded", tasks=["trait.formality"]) == []
    assert browse.score_scale("trait.formality") == (1, 10) and browse.score_scale("emotion") is None
