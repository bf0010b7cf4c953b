"""The ingest driver on the example slices: validation, quarantine, ids, refs, atomicity."""

from __future__ import annotations

import shutil
from typing import ClassVar

import pytest

from curation.adapters import Adapter, Rejected
from curation.adapters.base import _REGISTRY
from curation.errors import InputError
from curation.ingest import ingest
from curation.record import make_id, provenance, turn
from curation.store import SnapshotStore

EXAMPLE_INPUTS = {
    "dailydialog": ["dailydialog/ijcnlp_dailydialog"],
    "empatheticdialogues": ["empatheticdialogues/train.csv"],
    "esconv": ["esconv/hf"],
    "goemotions": ["goemotions"],
    "openwebtext": ["openwebtext/urlsf_subset00-1_data.xz"],
}


@pytest.mark.parametrize("source", sorted(EXAMPLE_INPUTS))
def test_every_example_source_ingests_cleanly(source, examples, store):
    result = ingest(source, [examples / p for p in EXAMPLE_INPUTS[source]], store=store, tag=f"{source}-raw")
    assert result.kept > 0 and result.rejected == 0
    m = store.manifest(f"{source}-raw")
    assert m["rows"] == result.kept == sum(m["counts"][source].values())
    step = m["steps"][0]
    assert step["config"]["source"] == source and step["counters"]["kept"] == result.kept
    assert all(len(i["sha256"]) == 64 and i["bytes"] > 0 for i in step["inputs"])
    ids = [r["id"] for r in store.iter_records(result.snapshot_id)]
    assert len(ids) == len(set(ids)) and all(i.startswith(f"{source}:") for i in ids)
    assert store.resolve("latest") == result.snapshot_id


def test_same_input_from_another_location_gives_same_snapshot(examples, store, tmp_path):
    a = ingest("goemotions", [examples / "goemotions"], store=store)
    copy = tmp_path / "elsewhere" / "goemotions"
    shutil.copytree(examples / "goemotions", copy)
    b = ingest("goemotions", [copy], store=store)
    assert a.snapshot_id == b.snapshot_id and b.reused
    assert len(store.snapshot_ids()) == 1


class _Planted(Adapter):
    """Yields two real GoEmotions texts, then whatever the test planted."""

    name = "planted-test"
    version = "1"
    tail: ClassVar[list] = []

    def read(self, paths):
        for i, text in enumerate(["My favourite food is anything I didn't have to cook myself.", "WHY THE FUCK"]):
            yield {
                "id": make_id(self.name, "train", i),
                "source": self.name,
                "split": "train",
                "context": {},
                "turns": [turn("author", text)],
                "labels": [],
                "provenance": provenance("train.tsv", line=i + 1, adapter=self.name, adapter_version="1"),
            }
        yield from self.tail


@pytest.fixture
def planted():
    _REGISTRY[_Planted.name] = _Planted
    yield _Planted
    _REGISTRY.pop(_Planted.name)
    _Planted.tail = []


def test_record_that_breaks_the_schema_is_rejected_with_field_and_line(planted, store, tmp_path):
    bad = {
        "id": "planted-test:train:9",
        "source": "planted-test",
        "split": "train",
        "context": {},
        "turns": [turn("author", "x")],
        "labels": [{"task": "emotion", "value": "happiness", "source": "gold", "agent": "x"}],
        "provenance": provenance("train.tsv", line=9, adapter="planted-test", adapter_version="1"),
    }
    planted.tail = [bad]
    with pytest.raises(InputError, match=r"train.tsv, line 9.*labels\[0\]"):
        ingest("planted-test", [tmp_path], store=store, tag="p")
    assert store.snapshot_ids() == [] and store.refs() == {}

    result = ingest("planted-test", [tmp_path], store=store, tag="p", on_error="skip")
    assert (result.kept, result.rejected) == (2, 1)
    (row,) = store.iter_quarantine("p")
    assert row["line"] == 9 and "happiness" in row["reason"]


def test_duplicate_ids_stop_the_ingest(planted, store, tmp_path):
    planted.tail = [next(iter(_Planted().read([])))]
    with pytest.raises(InputError, match="duplicate record id 'planted-test:train:0'"):
        ingest("planted-test", [tmp_path], store=store, on_error="skip")
    assert store.snapshot_ids() == []


def test_rejected_row_raises_input_error_by_default(planted, store, tmp_path):
    planted.tail = [Rejected(file="train.tsv", line=3, reason="expected 3 tab-separated fields, got 2")]
    with pytest.raises(InputError) as info:
        ingest("planted-test", [tmp_path], store=store)
    assert str(info.value) == "train.tsv, line 3: expected 3 tab-separated fields, got 2"


def test_input_with_no_records_is_an_error(planted, store, tmp_path, monkeypatch):
    monkeypatch.setattr(_Planted, "read", lambda self, paths: iter(()))
    with pytest.raises(InputError, match="no planted-test records"):
        ingest("planted-test", [tmp_path], store=store)


def test_interrupted_ingest_publishes_nothing(planted, store, tmp_path, monkeypatch):
    original = _Planted.read

    def interrupted(self, paths):
        yield from original(self, paths)
        raise KeyboardInterrupt

    monkeypatch.setattr(_Planted, "read", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ingest("planted-test", [tmp_path], store=store, tag="p")
    assert store.snapshot_ids() == [] and store.refs() == {}
    assert not (tmp_path / "store" / "tmp").exists() or not any((tmp_path / "store" / "tmp").iterdir())


def test_memory_filesystem_store(examples):
    s = SnapshotStore("memory://ingest-test")
    r = ingest("esconv", [examples / "esconv" / "hf"], store=s, tag="e")
    assert s.manifest("e")["counts"]["esconv"] == r.counts["esconv"]
    assert sum(1 for _ in s.iter_records("e")) == r.kept
    s.fs.rm("/ingest-test", recursive=True)


def test_an_unreadable_input_file_is_one_error_naming_it(tmp_path, monkeypatch):
    """Permissions cannot be denied to root (the tests' user), so the OS error is injected at open()."""
    import builtins

    from curation.errors import InputError
    from curation.ingest import describe_inputs

    locked = tmp_path / "train.tsv"
    locked.write_text("x\n")
    real_open = builtins.open

    def deny(file, *args, **kwargs):
        if str(file) == str(locked):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", deny)
    with pytest.raises(InputError, match=r"train\.tsv: cannot read this input file: Permission denied"):
        describe_inputs([tmp_path])
