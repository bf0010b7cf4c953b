"""Label layers: a step that only changes labels writes just them, and reads back as the full copy would."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from curation import browse
from curation.errors import InputError, StoreError
from curation.ingest import ingest
from curation.record import label
from curation.store import LAYER_PATH, SnapshotStore
from labeling.corrections import Review, apply_reviews
from labeling.runner import write_labeled


@pytest.fixture(scope="module")
def base(tmp_path_factory, examples):
    """GoEmotions and DailyDialog slices in one flat snapshot, written in small shards and row groups."""
    store = SnapshotStore(str(tmp_path_factory.mktemp("layers") / "store"))
    ingest("goemotions", [examples / "goemotions"], store=store, tag="ge")
    ingest("dailydialog", [examples / "dailydialog" / "ijcnlp_dailydialog"], store=store, tag="dd")
    with store.writer(step={"kind": "test.merge", "config": {}}, parents=["ge", "dd"], shard_rows=700) as w:
        w.batch_rows = 300
        w.add_many(store.iter_records("ge"))
        w.add_many(store.iter_records("dd"))
        sid = w.commit()
    store.set_ref("base", sid)
    return store


def _labels_for(records, every=7):
    """A new machine label on every ``every``-th record."""
    return {
        r["id"]: [label("emotion", "joy", source="model", agent="test@1", score=0.5)]
        for i, r in enumerate(records)
        if i % every == 0
    }


def _full_copy(store, parent, new_labels, step):
    """What the step wrote before layers: every record, copied, with the new labels appended."""
    with store.writer(step=step, parents=[parent]) as w:
        for r in store.iter_records(parent):
            w.add({**r, "labels": [*r["labels"], *new_labels.get(r["id"], [])]})
        return w.commit(), w.manifest


def _bytes(store, sid):
    return sum(store.fs.size(p) for p in store.fs.find(store.snapshot_path(sid)))


def _norm(dist):
    """A label distribution with its value order dropped (ties are ordered by first appearance)."""
    return json.loads(json.dumps(dist, sort_keys=True))


def test_a_label_layer_reads_as_the_full_copy_and_writes_only_the_labels(base):
    records = list(base.iter_records("base"))
    new = _labels_for(records)
    step = {"kind": "label", "config": {"test": 1}}
    layer, _ = write_labeled(base, base.resolve("base"), new, step=step, tag="layer")
    flat, flat_manifest = _full_copy(base, base.resolve("base"), new, {"kind": "label", "config": {"test": 2}})
    assert base.is_layer(layer) and not base.is_layer(flat)
    assert list(base.iter_records(layer)) == list(base.iter_records(flat))
    m = base.manifest(layer)
    for key in ("rows", "counts", "turns"):
        assert m[key] == flat_manifest[key], key
    for key in ("label_distribution", "label_distribution_by_source"):
        assert _norm(m[key]) == _norm(flat_manifest[key]), key
    assert m["layer"]["labels"]["rows"] == len(new) and m["shards"] == []
    # what the layer costs on disk: the changed records' labels, not the snapshot
    assert _bytes(base, layer) < _bytes(base, flat) / 4
    # a column subset, and nested label fields (what agreement and audit read), merge too
    cols = ["id", "source", "split", "labels.list.element.task", "labels.list.element.value"]
    assert [r for r in browse.iter_label_records(base, layer, fields=("task", "value"))] == [
        r for b in base.iter_batches(flat, columns=cols) for r in b.to_pylist()
    ]
    assert [b.num_rows for b in base.iter_batches(layer, columns=["id"])]  # no labels asked: base only
    assert base.verify(layer)[0].problems == []
    # the layer's content id is the id the label step's full copy gets
    assert base.content_id(layer) == _full_copy(base, base.resolve("base"), new, step)[0] != layer


def test_random_access_and_lookup_by_id_through_a_chain(base):
    records = list(base.iter_records("base"))
    first, _ = write_labeled(
        base, base.resolve("base"), _labels_for(records, 5), step={"kind": "label", "config": {}}, tag=None
    )
    ge = [i for i, r in enumerate(records) if r["source"] == "goemotions"]
    picked = [records[i]["id"] for i in (ge[3], ge[-1], ge[100])]
    reviews = [Review.of(rid, "emotion", "sadness") for rid in picked[:2]]
    second = apply_reviews(base, first, reviews, reviewer="ann")
    assert base.chain(second) == [second, first, base.resolve("base")]
    found = base.find_records(second, [*picked, "no-such-id"])
    assert sorted(found) == sorted(picked)
    assert found[picked[1]][0] == ge[-1]
    merged = {r["id"]: r for r in base.iter_records(second)}
    for rid, (_pos, rec) in found.items():
        assert rec == merged[rid]
    human = [lab for lab in merged[picked[0]]["labels"] if lab["source"] == "human"]
    assert [(lab["value"], lab["agent"]) for lab in human] == [("sadness", "ann")]
    # browse reads pages by position through the layers, as the dashboard does
    rows = browse.read_rows(base, second, [ge[-1], len(records) - 1, 0, ge[3]])
    assert [r["id"] for r in rows] == [picked[1], records[-1]["id"], records[0]["id"], picked[0]]
    assert rows[0]["labels"] == merged[picked[1]]["labels"] and rows[0]["labels"] != records[ge[-1]]["labels"]
    # the review step's layer holds the two reviewed records only, and the counts say so
    assert base.manifest(second)["layer"]["labels"]["rows"] == 2
    human = base.manifest(second)["label_distribution"]["emotion"]["human"]
    assert sum((Counter(v) for v in human.values()), Counter()) == Counter(sadness=2)


def test_layer_writer_refuses_bad_positions_and_repeated_ids(base):
    rid = next(base.iter_records("base"))["id"]
    pos, rec = base.find_records("base", [rid])[rid]
    with base.writer(step={"kind": "t", "config": {}}, parents=["base"], layer=True) as w:
        w.set_labels(pos + 5, rec, [])
        with pytest.raises(StoreError, match="increasing"):
            w.set_labels(pos, rec, [])
    with base.writer(step={"kind": "t", "config": {}}, parents=["base"], layer=True) as w:
        w.add(rec)  # an appended record that repeats a base id
        with pytest.raises(InputError, match="already holds it"):
            w.commit()
    with pytest.raises(StoreError, match="exactly one parent"):
        base.writer(step={"kind": "t", "config": {}}, parents=["ge", "dd"], layer=True)


def test_appended_records_come_after_the_base(base):
    rec = next(base.iter_records("base"))
    extra = {**rec, "id": "synthetic:1", "labels": []}
    with base.writer(step={"kind": "augment", "config": {}}, parents=["base"], layer=True) as w:
        w.add(extra)
        sid = w.commit()
    m = base.manifest(sid)
    assert m["rows"] == base.manifest("base")["rows"] + 1
    assert list(base.iter_records(sid))[-1] == extra
    assert base.read_positions(sid, [m["rows"] - 1]).column("id").to_pylist() == ["synthetic:1"]


def test_a_tampered_layer_is_caught_and_engines_are_told_to_compact(base):
    records = list(base.iter_records("base"))
    sid, _ = write_labeled(
        base, base.resolve("base"), _labels_for(records, 3), step={"kind": "label", "config": {}}, tag=None
    )
    with pytest.raises(StoreError, match="snapshots compact"):
        base.shard_paths(sid)
    flat = base.compact(sid, tag="flat")
    assert not base.is_layer(flat) and base.manifest(flat)["compacted_from"] == sid
    assert list(base.iter_records(flat)) == list(base.iter_records(sid))
    assert base.shard_paths(flat)
    # rewriting the layer's file is found by the checksum (a fresh store object checks each file once)
    path = f"{base.snapshot_path(sid)}/{LAYER_PATH}"
    data = base.fs.cat(path)
    with base.fs.open(path, "wb") as f:
        f.write(data[:-20] + b"\0" * 20)
    fresh = SnapshotStore(base.url)
    with pytest.raises(StoreError):
        list(fresh.iter_records(sid))
    assert fresh.verify(sid)[0].problems


def test_snapshots_compact_command(base):
    import os
    import subprocess
    import sys

    records = list(base.iter_records("base"))
    sid, _ = write_labeled(
        base, base.resolve("base"), _labels_for(records, 11), step={"kind": "label", "config": {}}, tag=None
    )
    env = {**os.environ, "WORKBENCH_STORE": base.url, "COLUMNS": "200", "NO_COLOR": "1"}

    def wb(*args):
        return subprocess.run([sys.executable, "-m", "ui.cli", *args], capture_output=True, text=True, env=env)

    out = wb("snapshots", "compact", sid, "--tag", "flat-cli")
    assert out.returncode == 0, out.stderr
    flat = base.resolve("flat-cli")
    assert f"-> flat copy {flat}: {len(records):,} records" in out.stdout
    assert list(base.iter_records(flat)) == list(base.iter_records(sid))
    again = wb("snapshots", "compact", flat)
    assert again.returncode == 0 and "already flat" in again.stdout
    shown = wb("snapshots", "show", sid)
    assert shown.returncode == 0 and f"content id {flat}: the id of the same records written in full" in shown.stdout


def _hand_layer(store, parent, step, new_labels, appended=()):
    """A layer written through the writer's API: new labels by position, then appended records."""
    where = store.find_records(parent, list(new_labels))
    with store.writer(step=step, parents=[parent], layer=True) as w:
        for rid, (pos, rec) in sorted(where.items(), key=lambda kv: kv[1][0]):
            w.set_labels(pos, rec, [*rec["labels"], *new_labels[rid]])
        w.add_many(appended)
        return w.commit()


@pytest.mark.parametrize("block", [64, 2_000])
def test_a_layer_carries_the_id_its_full_copy_has_and_compact_arrives_at_it(base, monkeypatch, block):
    """Records are hashed in blocks: a layer rehashes the blocks it touches and gets, as its content id,
    the id the same step's full copy has; compacting it writes exactly that snapshot. Through a chain,
    with appended records, small blocks (many touched) and the default (one block)."""
    import curation.store as store_module

    monkeypatch.setattr(store_module, "RECORD_BLOCK", block)
    records = list(base.iter_records("base"))
    extra = [{**records[0], "id": f"synthetic:{block}:{i}", "labels": []} for i in range(3)]
    step1, step2 = {"kind": "label", "config": {"b": block}}, {"kind": "augment", "config": {"b": block}}
    first = _hand_layer(base, base.resolve("base"), step1, _labels_for(records, 11))
    second = _hand_layer(base, first, step2, _labels_for(records[5:], 97), appended=extra)
    full1, _ = _full_copy(base, base.resolve("base"), _labels_for(records, 11), step1)
    assert base.content_id(first) == full1 != first
    with base.writer(step=step2, parents=[first]) as w:  # the second step's full copy, over the first layer
        more = _labels_for(records[5:], 97)
        w.add_many({**r, "labels": [*r["labels"], *more.get(r["id"], [])]} for r in base.iter_records(first))
        w.add_many(extra)
        full2 = w.commit()
    assert base.content_id(second) == full2 != second
    assert base.compact(second) == full2 and base.compact(first) == full1
    assert base.content_id(full2) == full2  # a flat snapshot's content id is its id
    for sid in (first, second, full2):
        assert base.verify(sid)[0].problems == []


def test_a_base_without_block_digests_has_them_computed(base, tmp_path):
    """Snapshots written before block digests (no record_blocks in the manifest): a layer over one
    computes the base's blocks from its records and still arrives at the full copy's id."""
    from curation.integrity import seal_of

    records = list(base.iter_records("base"))
    with base.writer(step={"kind": "test.old", "config": {}}, parents=[]) as w:
        w.add_many(records)
        old = w.commit()
    path = base._path("snapshots", old, "manifest.json")
    m = json.loads(base.fs.cat(path))
    base.fs.rm(base._path("snapshots", old, m.pop("record_blocks")["path"]))
    m["seal"] = seal_of(m)
    base.fs.pipe(path, json.dumps(m).encode())
    step = {"kind": "label", "config": {"old": True}}
    layer = _hand_layer(base, old, step, _labels_for(records, 13))
    assert base.content_id(layer) == _full_copy(base, old, _labels_for(records, 13), step)[0]
