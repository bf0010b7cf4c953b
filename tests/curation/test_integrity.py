"""The store checks what it reads: a real store on disk, built from the example slices, then tampered with.

Each case is one a tester reproduced against the store before it recorded checksums: a shard
copied over another snapshot's, a truncated or bit-flipped or deleted shard, a manifest edited to
say ``validated`` with 999 rows, garbage refs, a corrupt manifest, identical concurrent writers,
and the temporaries of a killed run.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from curation.adapters import get_adapter
from curation.errors import StoreError
from curation.ingest import ingest
from curation.store import SnapshotStore

ROOT = Path(__file__).resolve().parents[2]


def wb(*args: str, store: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WORKBENCH_STORE": str(store), "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "ui.cli", *args], capture_output=True, text=True, env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, examples) -> Path:
    """A store holding the GoEmotions and DailyDialog example slices and their curated child."""
    root = tmp_path_factory.mktemp("pristine") / "store"
    store = SnapshotStore(str(root))
    ingest("goemotions", [examples / "goemotions"], store=store, tag="ge-raw")
    ingest("dailydialog", [examples / "dailydialog" / "ijcnlp_dailydialog"], store=store, tag="dd-raw")
    from curation.curate import curate, load_steps

    curate(["ge-raw", "dd-raw"], store=store, steps=load_steps(ROOT / "examples" / "curate.toml"), tag="clean")
    return root


@pytest.fixture
def root(pristine, tmp_path) -> Path:
    """A private copy of the pristine store, to tamper with."""
    dest = tmp_path / "store"
    shutil.copytree(pristine, dest)
    return dest


def _sid(root: Path, ref: str) -> str:
    return json.loads((root / "refs" / f"{ref}.json").read_text())["id"]


def _shard(root: Path, ref: str) -> Path:
    return root / "snapshots" / _sid(root, ref) / "data" / "part-00000.parquet"


def _snapshot_dirs(root: Path) -> set[str]:
    return {p.name for p in (root / "snapshots").iterdir()}


def test_manifest_records_checksums_row_counts_digests_and_a_seal(root):
    store = SnapshotStore(str(root))
    m = store.manifest("clean")
    for entry in [*m["shards"], m["dropped"], *m["artifacts"].values()]:
        assert entry["bytes"] == (root / "snapshots" / m["id"] / entry["path"]).stat().st_size
        assert len(entry["sha256"]) == 64
    assert set(m["digests"]) == {"config", "records", "dropped", "quarantine", "artifacts"}
    assert m["seal"] and m["integrity"] == 1


def test_a_shard_copied_over_another_snapshots_shard_is_refused_and_nothing_is_derived(root):
    shutil.copyfile(_shard(root, "dd-raw"), _shard(root, "ge-raw"))
    before = _snapshot_dirs(root)
    proc = wb("curate", "ge-raw", "--config", str(ROOT / "examples" / "curate.toml"), "--tag", "again", store=root)
    assert proc.returncode == 1
    err = proc.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert str(_shard(root, "ge-raw")) in err and "changed since it was written" in err
    assert _snapshot_dirs(root) == before
    assert not (root / "refs" / "again.json").exists()


def test_a_same_size_swap_or_bit_flip_is_caught_by_the_checksum_before_any_row_is_yielded(root):
    store = SnapshotStore(str(root))
    shard = _shard(root, "ge-raw")
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, size unchanged
    shard.write_bytes(bytes(data))
    batches = store.iter_batches("ge-raw")
    with pytest.raises(StoreError, match=r"part-00000\.parquet has changed since it was written \(sha256"):
        next(batches)
    # without checksums on read, the footer still opens: the checksum is what catches it
    assert SnapshotStore(str(root), check_sums=False).manifest("ge-raw")["rows"] > 0


def test_truncated_shard_names_the_file_for_every_reader(root):
    store = SnapshotStore(str(root))
    shard = _shard(root, "clean")
    shard.write_bytes(shard.read_bytes()[:1000])
    for read in (
        lambda: list(store.iter_batches("clean", columns=["id"])),
        lambda: store.shard_paths("clean"),
        lambda: list(store.iter_records("clean")),
    ):
        with pytest.raises(StoreError, match=str(shard)):
            read()
    # and an old-style manifest (no checksums) still gets the path, not pyarrow's bare message
    m_path = root / "snapshots" / _sid(root, "clean") / "manifest.json"
    m = json.loads(m_path.read_text())
    for key in ("seal", "digests", "integrity"):
        m.pop(key)
    for s in m["shards"]:
        s.pop("sha256"), s.pop("bytes")
    m_path.write_text(json.dumps(m))
    with pytest.raises(StoreError, match=rf"{shard} is not a readable Parquet file"):
        list(SnapshotStore(str(root)).iter_batches("clean"))


def test_deleted_shard_show_says_damaged_and_verify_lists_it(root):
    _shard(root, "dd-raw").unlink()
    proc = wb("snapshots", "show", "dd-raw", store=root)
    assert proc.returncode == 1
    assert f"damaged {_shard(root, 'dd-raw')}: missing" in proc.stdout.replace("\n", "")
    proc = wb("snapshots", "verify", "--all", store=root)
    assert proc.returncode == 1
    assert f"{_sid(root, 'dd-raw')} {_shard(root, 'dd-raw')}: missing" in proc.stdout
    assert "1 damaged" in proc.stdout


def test_manifest_edited_to_validated_with_999_rows_is_refused(root):
    from curation.validate import require_validated

    path = root / "snapshots" / _sid(root, "ge-raw") / "manifest.json"
    m = json.loads(path.read_text())
    m["status"], m["rows"] = "validated", 999
    path.write_text(json.dumps(m))
    store = SnapshotStore(str(root))
    with pytest.raises(StoreError, match="the manifest was changed after it was written"):
        require_validated(store, "ge-raw")
    # the same edit with the seal removed is still caught: rows against the shards, status against the steps
    m.pop("seal")
    path.write_text(json.dumps(m))
    with pytest.raises(StoreError, match="999 rows but its shards list"):
        store.manifest("ge-raw")
    m["rows"] = sum(s["rows"] for s in m["shards"])
    path.write_text(json.dumps(m))
    with pytest.raises(StoreError, match="status 'validated' but the last step is not a validation"):
        store.manifest("ge-raw")


def test_a_consistent_forgery_is_caught_by_recomputing_the_id(root):
    """Replace a shard and update its checksum, size and the seal: only the recomputed id can tell."""
    import pyarrow.parquet as pq

    from curation.integrity import file_sha256, seal_of

    sid = _sid(root, "ge-raw")
    shard = _shard(root, "ge-raw")
    table = pq.read_table(shard)
    texts = table.column("id").to_pylist()
    pq.write_table(table.sort_by([("id", "descending")]), shard, compression="zstd")
    assert pq.read_table(shard).column("id").to_pylist() != texts
    path = root / "snapshots" / sid / "manifest.json"
    m = json.loads(path.read_text())
    m["shards"][0]["bytes"], m["shards"][0]["sha256"] = file_sha256(SnapshotStore(str(root)).fs, str(shard))
    m["seal"] = seal_of(m)
    path.write_text(json.dumps(m))
    store = SnapshotStore(str(root))
    assert list(store.iter_records("ge-raw"))  # checksums agree now
    [quick] = store.verify("ge-raw", recompute_id=False)
    assert quick.ok
    [deep] = store.verify("ge-raw")
    assert not deep.ok and deep.id_recomputed
    assert any("content and id disagree" in p for p in deep.problems)
    assert any("records digest" in p for p in deep.problems)


def test_verify_recomputes_every_id_of_a_clean_store_and_of_an_old_one(root):
    store = SnapshotStore(str(root))
    reports = store.verify()
    assert len(reports) == 3 and all(r.ok and r.id_recomputed for r in reports), [r.problems for r in reports]
    assert sum(r.rows for r in reports) == sum(store.manifest(r.id)["rows"] for r in reports)
    # a snapshot written before checksums: the id is still recomputed from the data, with a note
    path = root / "snapshots" / _sid(root, "clean") / "manifest.json"
    m = json.loads(path.read_text())
    for key in ("seal", "digests", "integrity"):
        m.pop(key)
    path.write_text(json.dumps(m))
    [old] = SnapshotStore(str(root)).verify("clean")
    assert old.ok and old.id_recomputed and old.notes


def test_garbage_refs_give_one_line_and_the_rest_of_the_store_still_lists(root):
    (root / "refs" / "junk.json").write_bytes(os.urandom(64) + b"\xff")
    (root / "refs" / "empty.json").write_text("{}")
    (root / "refs" / "gone.json").write_text(json.dumps({"id": "0123456789abcdef"}))
    for ref, expected in (
        ("junk", "ref 'junk': corrupt JSON in"),
        ("empty", "is corrupt: expected"),
        ("gone", "points at snapshot 0123456789abcdef, which is not in store"),
    ):
        proc = wb("snapshots", "show", ref, store=root)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert expected in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = wb("snapshots", "list", store=root)
    assert proc.returncode == 0
    assert "bad ref junk" in proc.stdout and "bad ref empty" in proc.stdout
    assert _sid(root, "ge-raw") in proc.stdout
    proc = wb("snapshots", "verify", "--all", "--quick", store=root)
    assert proc.returncode == 1 and "3 bad ref(s)" in proc.stdout


def test_one_corrupt_manifest_does_not_hide_the_rest(root):
    bad = _sid(root, "dd-raw")
    (root / "snapshots" / bad / "manifest.json").write_text("{not json")
    listed = json.loads(wb("snapshots", "list", "--json", store=root).stdout)
    by_id = {i["id"]: i for i in listed}
    assert by_id[bad]["status"] == "corrupt" and "corrupt JSON" in by_id[bad]["problem"]
    assert by_id[_sid(root, "ge-raw")]["problem"] is None and by_id[_sid(root, "ge-raw")]["rows"] > 0
    proc = wb("snapshots", "list", store=root)
    assert proc.returncode == 0 and f"corrupt snapshot {bad}" in proc.stdout


def test_snapshots_show_prints_a_curated_snapshot(root):
    proc = wb("snapshots", "show", "clean", store=root)
    assert proc.returncode == 0, proc.stderr
    assert "step curate.exact_dedup" in proc.stdout and "dropped_by_reason={" in proc.stdout


# ------------------------------------------------------------------ concurrent writers


def _write_identical(url: str, paths: list[str], barrier, out) -> None:
    store = SnapshotStore(url)
    records = [r for r in get_adapter("goemotions").read([Path(p) for p in paths]) if isinstance(r, dict)]
    with store.writer(step={"kind": "ingest", "config": {"source": "goemotions"}}) as w:
        w.add_many(records)
        publish = w._publish

        def publish_together(sid: str) -> bool:  # every writer has found the id free; now all publish at once
            barrier.wait()
            return publish(sid)

        w._publish = publish_together
        sid = w.commit()
        out.put((sid, w.reused))


def test_identical_concurrent_writers_publish_one_snapshot_and_nothing_nested(tmp_path, examples):
    url = str(tmp_path / "store")
    ctx = multiprocessing.get_context("spawn")
    for _trial in range(3):
        barrier, out = ctx.Barrier(4), ctx.Queue()
        procs = [
            ctx.Process(target=_write_identical, args=(url, [str(examples / "goemotions")], barrier, out))
            for _ in range(4)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
            assert p.exitcode == 0
        results = [out.get(timeout=5) for _ in procs]
        assert len({sid for sid, _ in results}) == 1
        assert sorted(reused for _, reused in results) == [False, True, True, True]
        sid = results[0][0]
        folder = tmp_path / "store" / "snapshots" / sid
        assert sorted(p.name for p in folder.iterdir()) == ["data", "manifest.json", "record-blocks.bin"]
        assert sorted(p.name for p in (folder / "data").iterdir()) == ["part-00000.parquet"]
        assert not any((tmp_path / "store" / "tmp").iterdir())
        assert SnapshotStore(url).verify(sid)[0].ok
        shutil.rmtree(folder)


# ------------------------------------------------------------------ temporaries of killed runs


def test_temporaries_of_a_killed_run_are_cleaned_by_the_next_write_and_a_live_one_is_kept(tmp_path, examples, caplog):
    url = str(tmp_path / "store")
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from curation.store import SnapshotStore
        from curation.adapters import get_adapter
        from pathlib import Path
        store = SnapshotStore({url!r})
        folder = Path({str(examples / "goemotions")!r})
        recs = [r for r in get_adapter("goemotions").read([folder]) if isinstance(r, dict)]
        w = store.writer(step={{"kind": "ingest", "config": {{}}}}, batch_rows=50)
        w.add_many(recs)
        with store.scratch_dir() as scratch:
            open(os.path.join(scratch, "spill.parquet"), "wb").write(os.urandom(300_000))
            print(scratch, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL
    scratch = Path(proc.stdout.strip())
    leftovers = list((tmp_path / "store" / "tmp").iterdir())
    assert len(leftovers) == 1 and scratch.is_dir()

    store = SnapshotStore(url)
    live = store.writer(step={"kind": "ingest", "config": {"live": True}})  # cleans first, then is live itself
    assert store.last_cleanup[0] == 2 and store.last_cleanup[1] > 300_000
    assert not leftovers[0].exists() and not scratch.exists()
    assert "stale temporaries of interrupted runs" in caplog.text
    other = SnapshotStore(url)
    with other.writer(step={"kind": "ingest", "config": {"other": True}}) as w2:
        w2.commit()
    assert other.last_cleanup == (0, 0)
    assert Path(live.tmp).is_dir()  # a live writer's folder is never touched
    live.abort()


def test_a_folder_without_owner_is_only_removed_when_old(tmp_path):
    store = SnapshotStore(str(tmp_path / "store"))
    debris = tmp_path / "store" / "tmp" / "legacy"
    debris.mkdir(parents=True)
    (debris / "part.parquet").write_bytes(b"x" * 1000)
    assert store.clean_stale_tmp() == (0, 0)
    old = time.time() - 7200
    os.utime(debris, (old, old))
    assert store.clean_stale_tmp() == (1, 1000)
