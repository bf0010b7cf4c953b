"""workbench label end to end: a real snapshot store, the real local OpenAI-compatible server, the real cache."""

from __future__ import annotations

from collections import Counter

import pytest

from curation.ingest import ingest
from labeling.runner import audit_snapshot, label_llm, label_local
from labeling.tasks.base import get_tasks


@pytest.fixture
def esconv(store, examples):
    ingest("esconv", [examples / "esconv" / "hf"], store=store, tag="esconv-raw")
    return store


def test_llm_labels_land_in_a_new_snapshot_beside_gold(esconv, openai_server, fake_key):
    store = esconv
    r = label_llm(
        "esconv-raw",
        store=store,
        tasks=get_tasks(["strategy"]),
        model="test-model",
        base_url=openai_server.base_url,
        tag="labeled",
        concurrency=16,
    )
    assert r.snapshot_id != store.resolve("esconv-raw")
    m = store.manifest("labeled")
    assert m["parents"] == [store.resolve("esconv-raw")]
    step = m["steps"][0]
    assert step["config"]["model"] == "test-model" and step["config"]["tasks"] == {"strategy": "strategy-v1"}
    assert step["counters"]["requests_sent"] == openai_server.request_count == step["counters"]["items"]
    gold = m["label_distribution"]["strategy"]["gold"]
    assert gold == store.manifest("esconv-raw")["label_distribution"]["strategy"]["gold"]  # gold untouched
    llm = Counter()
    for rec in store.iter_records("labeled"):
        for lab in rec["labels"]:
            if lab["source"] == "llm":
                llm[lab["task"]] += 1
                assert lab["agent"] == "test-model@strategy-v1"
                assert lab["turn"] is not None and rec["turns"][lab["turn"]]["speaker"] == "supporter"
                assert len(lab["attrs"]["cache_key"]) == 64 and lab["created_at"] is not None
    assert llm["strategy"] == step["counters"]["items_labeled"] > 0


def test_rerun_sends_nothing_and_the_key_is_written_nowhere(esconv, openai_server, fake_key, tmp_path):
    tasks = get_tasks(["strategy", "empathy"])
    kw = {"store": esconv, "tasks": tasks, "model": "test-model", "base_url": openai_server.base_url}
    label_llm("esconv-raw", **kw)
    sent = openai_server.request_count
    again = label_llm("esconv-raw", **kw)
    assert openai_server.request_count == sent  # 0 new requests
    assert again.counters["cache_hits"] == again.counters["items"] and again.counters["requests_sent"] == 0
    assert fake_key.encode() not in b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())


def test_dry_run_estimates_and_sends_nothing(esconv, openai_server, fake_key):
    r = label_llm(
        "esconv-raw",
        store=esconv,
        tasks=get_tasks(["traits"]),
        model="gpt-4o-mini",
        base_url=openai_server.base_url,
        dry_run=True,
    )
    assert openai_server.request_count == 0 and r.snapshot_id is None
    assert r.estimate["requests"] == r.counters["items"] > 0 and r.estimate["prompt_tokens"] > 0


def test_local_labeler_labels_and_audit_measures_it(store, examples):
    ingest("goemotions", [examples / "goemotions"], store=store, tag="ge-raw")
    ingest("esconv", [examples / "esconv" / "hf"], store=store, tag="es-raw")
    from curation.curate import build_steps, curate

    curate(["ge-raw", "es-raw"], store=store, steps=build_steps([{"name": "normalize"}]), tag="both")
    r = label_local("both", store=store, tasks=get_tasks(["emotion", "strategy"]), tag="local")
    assert r.counters["labels.strategy"] > 0 and r.counters["labels.emotion"] > 0
    report = audit_snapshot(store, "local", task="strategy", split="test")
    assert report["n"] > 0
    # Held-out: above the always-"Question" baseline of the test slice.
    gold = Counter(
        lab["value"]
        for rec in store.iter_records("local")
        if rec["split"] == "test"
        for lab in rec["labels"]
        if lab["task"] == "strategy" and lab["source"] == "gold"
    )
    assert report["metrics"]["accuracy"] > max(gold.values()) / sum(gold.values())
    ci = report["ci"]["accuracy"]
    assert ci["ci_low"] <= report["metrics"]["accuracy"] <= ci["ci_high"] and ci["n"] == report["n"]
    assert report["computed_on"]["split"] == "test" and report["excluded"] == 0  # test records were never fitted

    # never scored on what it learnt from: over every split, the train split's items are left out and counted
    train_items = sum(
        1
        for rec in store.iter_records("local")
        if rec["split"] == "train"
        for lab in rec["labels"]
        if lab["task"] == "strategy" and lab["source"] == "model"
    )
    every = audit_snapshot(store, "local", task="strategy")
    assert every["excluded"] == train_items > 0 and every["computed_on"]["fitted_records_left_out"] == train_items
    assert every["n"] == report["n"] + audit_snapshot(store, "local", task="strategy", split="validation")["n"]
    on_train = audit_snapshot(store, "local", task="strategy", split="train")
    assert on_train["n"] == 0 and on_train["metrics"] is None
    memorised = audit_snapshot(store, "local", task="strategy", split="train", include_fitted=True)
    assert memorised["n"] > 0 and "memorised" in memorised["warning_fitted"]
    assert memorised["metrics"]["accuracy"] > report["metrics"]["accuracy"]  # what the old default reported


def test_budget_stop_leaves_a_consistent_snapshot_and_a_rerun_finishes(esconv, openai_server, fake_key):
    tasks = get_tasks(["strategy"])
    kw = {"store": esconv, "tasks": tasks, "model": "gpt-4o-mini", "base_url": openai_server.base_url, "free": False}
    first = label_llm("esconv-raw", max_cost=0.01, tag="partial", concurrency=4, **kw)
    c = first.counters
    assert c["unlabeled_budget"] > 0 and c["items_labeled"] > 0
    assert c["items_labeled"] + c["unlabeled_budget"] + c.get("parse_failures", 0) == c["items"]
    m = esconv.manifest("partial")
    assert m["rows"] == esconv.manifest("esconv-raw")["rows"]  # every record there, some without llm labels
    assert m["steps"][0]["budget_usd"] == 0.01 and 0 < m["steps"][0]["cost_usd"] <= 0.01 + 0.005
    sent = openai_server.request_count
    rest = label_llm("esconv-raw", max_cost=100.0, tag="full", **kw)
    assert rest.counters["unlabeled_budget"] == 0
    assert openai_server.request_count - sent == rest.counters["requests_sent"] == c["unlabeled_budget"]


def test_a_missing_api_key_stops_before_any_record_is_read(esconv, monkeypatch, tmp_path):
    """label and augment check the key (and the ref) first: no pass over the data for a run that cannot start."""
    from curation.errors import WorkbenchError
    from labeling.augment import augment

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)

    def no_reading(*args, **kwargs):
        raise AssertionError("records were read before the key was checked")

    monkeypatch.setattr(esconv, "iter_records", no_reading)
    monkeypatch.setattr(esconv, "iter_batches", no_reading)
    with pytest.raises(WorkbenchError, match="OPENAI_API_KEY is not set"):
        label_llm("esconv-raw", store=esconv, tasks=get_tasks(["strategy"]), model="gpt-4o-mini")
    targets = tmp_path / "t.toml"
    targets.write_text("[strategy]\nQuestion = 10\n")
    with pytest.raises(WorkbenchError, match="OPENAI_API_KEY is not set"):
        augment("esconv-raw", store=esconv, task="strategy", targets=targets, model="gpt-4o-mini")
    with pytest.raises(WorkbenchError, match="nope"):
        augment("nope", store=esconv, task="strategy", targets=targets, model="gpt-4o-mini")


def test_agreement_and_audit_of_record_level_gold_agree(store, examples):
    """ESConv's empathy gold is one survey rating per conversation; the local labeler rates turns. The audit pairs
    them (mean of the turns), and the agreement must too, not report 0 units beside the audit's pairs."""
    from labeling.agreement import agreement
    from labeling.audit import audit
    from labeling.runner import fitted_on

    ingest("esconv", [examples / "esconv" / "hf"], store=store, tag="es-raw")
    label_local("es-raw", store=store, tasks=get_tasks(["empathy", "strategy"]), tag="local")
    records = list(store.iter_records("local"))
    fitted = fitted_on(store, "local")["agents"]
    assert set(fitted) == {a for a in fitted if a.startswith("local-linear@strategy")}  # heuristics learn nothing
    rep = agreement(records, task="empathy", exclude=fitted)["tasks"]["empathy"]
    audited = audit(records, "empathy", exclude=fitted)
    assert rep["llm_gold"]["units"] == audited["n"] > 0
    assert rep["aggregated_units"] == audited["aggregated"]
