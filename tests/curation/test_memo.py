"""Memoised stages: a derivation key -> the snapshot it produced, a miss whenever anything differs."""

from __future__ import annotations

from curation import memo
from curation.ingest import ingest


def test_key_changes_with_kind_parents_config_and_code(monkeypatch):
    key = memo.derivation_key("curate", parents=["a"], config={"x": 1})
    assert key == memo.derivation_key("curate", parents=["a"], config={"x": 1})
    assert key != memo.derivation_key("label", parents=["a"], config={"x": 1})
    assert key != memo.derivation_key("curate", parents=["b"], config={"x": 1})
    assert key != memo.derivation_key("curate", parents=["a"], config={"x": 2})
    monkeypatch.setattr(memo, "code_fingerprint", lambda: "edited")
    assert key != memo.derivation_key("curate", parents=["a"], config={"x": 1})


def test_code_fingerprint_covers_the_source():
    assert len(memo.code_fingerprint()) == 64 and memo.code_fingerprint() == memo.code_fingerprint()


def test_remember_then_lookup_and_a_vanished_output_is_a_miss(store, examples):
    sid = ingest("goemotions", [examples / "goemotions"], store=store).snapshot_id
    key = memo.derivation_key("ingest", config={"x": 1})
    assert memo.lookup(store, key) is None
    memo.remember(store, key, "ingest", sid)
    assert memo.lookup(store, key)["output"] == sid
    assert memo.lookup(store, memo.derivation_key("ingest", config={"x": 2})) is None
    memo.remember(store, key, "ingest", "0" * 16)  # a snapshot the store does not hold
    assert memo.lookup(store, key) is None
    store.fs.pipe(memo._path(store, key), b"{not json")
    assert memo.lookup(store, key) is None
