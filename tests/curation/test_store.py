"""The snapshot store, on real records from the GoEmotions example slice, on two filesystems."""

from __future__ import annotations

import json
import uuid

import pytest

from curation.adapters import get_adapter
from curation.errors import StoreError
from curation.store import SnapshotStore

STEP = {"kind": "ingest", "config": {"source": "goemotions", "adapter_version": "1"}}


@pytest.fixture(scope="module")
def records(examples):
    return [r for r in get_adapter("goemotions").read([examples / "goemotions"]) if isinstance(r, dict)]


@pytest.fixture(params=["local", "memory"])
def any_store(request, tmp_path):
    if request.param == "local":
        yield SnapshotStore(str(tmp_path / "store"))
        return
    url = f"memory://wb-{uuid.uuid4().hex}"
    yield SnapshotStore(url)
    SnapshotStore(url).fs.rm(url.removeprefix("memory://"), recursive=True)


def _write(store, records, step=STEP, parents=(), **kw):
    with store.writer(step=step, parents=parents, **kw) as w:
        w.add_many(records)
        return w.commit(), w


def test_write_read_round_trip_with_counts(any_store, records):
    sid, _ = _write(any_store, records, shard_rows=150, batch_rows=50)
    m = any_store.manifest(sid)
    assert m["id"] == sid and m["status"] == "draft" and m["schema_version"] == 1
    assert m["rows"] == len(records) > 300
    assert len(m["shards"]) > 1, "shard_rows=150 must roll shards"
    assert sum(s["rows"] for s in m["shards"]) == len(records)
    by_split = {}
    for r in records:
        by_split[r["split"]] = by_split.get(r["split"], 0) + 1
    assert m["counts"] == {"goemotions": by_split}
    gold = m["label_distribution"]["emotion"]["gold"]
    assert sum(gold["train"].values()) == sum(len(r["labels"]) for r in records if r["split"] == "train")
    back = list(any_store.iter_records(sid))
    assert back == records


def test_same_data_twice_gives_same_id_and_no_second_copy(any_store, records):
    a, _ = _write(any_store, records)
    b, w = _write(any_store, records)
    assert a == b and w.reused
    assert any_store.snapshot_ids() == [a]
    assert not any_store.fs.exists(any_store._path("tmp")) or not any_store.fs.ls(any_store._path("tmp"))


def test_id_depends_on_data_config_and_parents(any_store, records):
    base, _ = _write(any_store, records)
    changed = [dict(r) for r in records]
    changed[0] = {**changed[0], "split": "test" if changed[0]["split"] != "test" else "train"}
    assert _write(any_store, changed)[0] != base
    assert _write(any_store, records, step={"kind": "ingest", "config": {"v": 2}})[0] != base
    assert _write(any_store, records, parents=[base])[0] != base


def test_failed_write_leaves_nothing(any_store, records):
    with pytest.raises(RuntimeError), any_store.writer(step=STEP) as w:
        w.add_many(records[:10])
        raise RuntimeError("boom")
    assert any_store.snapshot_ids() == []
    tmp = any_store._path("tmp")
    assert not any_store.fs.exists(tmp) or any_store.fs.ls(tmp) == []


def test_refs_resolve_by_name_id_and_prefix(any_store, records):
    sid, _ = _write(any_store, records)
    any_store.set_ref("ge-raw", sid)
    assert any_store.resolve("ge-raw") == sid
    assert any_store.resolve(sid) == sid
    assert any_store.resolve(sid[:8]) == sid
    other, _ = _write(any_store, records[:5])
    any_store.set_ref("ge-raw", other)  # a ref moves; the snapshot it left is untouched
    assert any_store.resolve("ge-raw") == other
    assert any_store.manifest(sid)["rows"] == len(records)
    assert any_store.refs() == {"ge-raw": other}
    with pytest.raises(StoreError, match="no snapshot or ref named 'nope'"):
        any_store.resolve("nope")
    with pytest.raises(StoreError, match="invalid ref name"):
        any_store.set_ref("../evil", sid)


def test_manifest_is_never_rewritten(tmp_path, records):
    store = SnapshotStore(str(tmp_path / "s"))
    sid, _ = _write(store, records)
    path = tmp_path / "s" / "snapshots" / sid / "manifest.json"
    before = path.read_bytes()
    _write(store, records)
    assert path.read_bytes() == before
    assert json.loads(before)["created_at"]


def test_reads_stream_by_shard_with_bounded_batches(any_store, records):
    sid, _ = _write(any_store, records, shard_rows=100, batch_rows=100)
    sizes = [b.num_rows for b in any_store.iter_batches(sid, batch_size=32)]
    assert max(sizes) <= 32 and sum(sizes) == len(records)
    texts = [b.num_columns for b in any_store.iter_batches(sid, columns=["id", "split"])]
    assert set(texts) == {2}


def test_quarantine_kept_beside_snapshot(any_store, records):
    with any_store.writer(step=STEP) as w:
        w.add_many(records[:3])
        w.quarantine({"file": "train.tsv", "line": 7, "reason": "label id 28 out of range"})
        sid = w.commit()
    q = any_store.manifest(sid)["quarantine"]
    assert {k: q[k] for k in ("path", "rows")} == {"path": "quarantine.jsonl", "rows": 1}
    assert q["bytes"] > 0 and len(q["sha256"]) == 64
    assert list(any_store.iter_quarantine(sid)) == [
        {"file": "train.tsv", "line": 7, "reason": "label id 28 out of range"}
    ]


def test_shards_are_plain_parquet_readable_by_other_engines(tmp_path, records):
    import pyarrow.parquet as pq

    store = SnapshotStore(str(tmp_path / "s"))
    sid, _ = _write(store, records)
    table = pq.read_table(store.shard_paths(sid))
    assert table.num_rows == len(records)
    assert table.schema.metadata[b"workbench.schema_version"] == b"1"


def test_every_ref_move_is_logged(store, tmp_path):
    from curation.record import provenance

    ids = []
    for n in range(2):
        with store.writer(step={"kind": "test", "config": {"n": n}}) as w:
            w.add(
                {
                    "id": f"goemotions:train:{n}",
                    "source": "goemotions",
                    "split": "train",
                    "context": {},
                    "turns": [{"speaker": "writer", "text": f"text {n}"}],
                    "labels": [],
                    "provenance": provenance("x.tsv", adapter="goemotions", adapter_version="1"),
                }
            )
            ids.append(w.commit())
    store.set_ref("mine", ids[0])
    store.set_ref("mine", ids[0])  # no move: nothing logged
    store.set_ref("mine", ids[1])
    store.delete_ref("mine")
    log = store.ref_log("mine")
    assert [(e["old"], e["new"]) for e in log] == [(None, ids[0]), (ids[0], ids[1]), (ids[1], None)]
    assert all(e["at"] and "command" in e for e in log)
    assert store.ref_log("never") == []
