"""Dashboard review: the queue of units, and answers saved as human labels in a new snapshot."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from curation import browse
from curation.ingest import ingest
from curation.store import SnapshotStore
from labeling.agreement import agreement
from labeling.corrections import Review, ReviewInputError, apply_reviews, review_queue
from labeling.runner import label_local
from labeling.tasks.base import get_tasks

WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def labeled(tmp_path_factory, examples):
    """ESConv and GoEmotions slices labeled by the local labeler (emotion, strategy, empathy)."""
    store = SnapshotStore(str(tmp_path_factory.mktemp("corrections") / "store"))
    ingest("esconv", [examples / "esconv" / "hf"], store=store, tag="esconv-raw")
    ingest("goemotions", [examples / "goemotions"], store=store, tag="ge-raw")
    with store.writer(step={"kind": "test.merge", "config": {}}, parents=[store.resolve("esconv-raw")]) as w:
        w.add_many(store.iter_records("esconv-raw"))
        w.add_many(store.iter_records("ge-raw"))
        sid = w.commit()
    store.set_ref("raw", sid)
    label_local("raw", store=store, tasks=get_tasks(["emotion", "strategy", "empathy"]), tag="labeled")
    return store


def _queue(store, ref, task, **kw):
    return review_queue(browse.iter_label_records(store, ref), task, **kw)


def _snapshot_files(store):
    return sorted(p for p in (store.root + "/snapshots",) for p in store.fs.find(p))


def test_queue_lists_units_with_gold_and_machine_values(labeled):
    units = _queue(labeled, "labeled", "strategy")
    assert units and all(u.turn is not None for u in units)  # strategy labels supporter turns
    records = {r["id"]: r for r in labeled.iter_records("labeled")}
    u = units[0]
    gold = [
        lab["value"]
        for lab in records[u.record_id]["labels"]
        if lab["task"] == "strategy" and lab["turn"] == u.turn and lab["source"] == "gold"
    ]
    assert list(u.gold) == gold and u.machine and u.machine_agents == ("local-linear@strategy-v1+hashed",)
    assert u.key == f"{u.record_id}#t{u.turn}"
    wrong = _queue(labeled, "labeled", "strategy", only="disagreements")
    assert 0 < len(wrong) < len(units) and all(w.disagrees for w in wrong)
    assert [w.key for w in wrong] == [x.key for x in units if x.disagrees]
    emotion = _queue(labeled, "labeled", "emotion")
    assert any(u.turn is None and u.source == "goemotions" for u in emotion)


def test_queue_arguments_are_checked(labeled):
    with pytest.raises(ReviewInputError, match="reviewer"):
        _queue(labeled, "labeled", "strategy", only="unreviewed")
    with pytest.raises(ReviewInputError, match="expected one of"):
        _queue(labeled, "labeled", "strategy", only="some")
    with pytest.raises(Exception, match="unknown task"):
        _queue(labeled, "labeled", "nonsense")


def test_apply_reviews_writes_a_new_snapshot_with_human_labels(labeled):
    parent = labeled.resolve("labeled")
    parent_manifest = labeled.manifest(parent)
    before = _snapshot_files(labeled)
    wrong = _queue(labeled, "labeled", "strategy", only="disagreements")
    fix, keep = wrong[0], wrong[1]
    ge = next(u for u in _queue(labeled, "labeled", "emotion") if u.source == "goemotions")
    es = next(u for u in _queue(labeled, "labeled", "empathy") if u.turn is not None)
    reviews = [
        Review.of(fix.record_id, "strategy", fix.gold[0], turn=fix.turn),  # corrected to gold
        Review.of(keep.record_id, "strategy", keep.machine[0], turn=keep.turn, action="accept"),
        Review.of(ge.record_id, "emotion", ["joy", "gratitude"]),
        Review.of(es.record_id, "empathy", 4.0, turn=es.turn),
    ]
    sid = apply_reviews(labeled, "labeled", reviews, reviewer=" alice ", tag="reviewed", now=WHEN)
    assert sid != parent and labeled.resolve("reviewed") == sid and labeled.resolve("latest") == sid
    # the reviewed snapshot is untouched: same manifest, every old file still there
    assert labeled.manifest(parent) == parent_manifest
    assert set(before) <= set(_snapshot_files(labeled))
    m = labeled.manifest(sid)
    assert m["parents"] == [parent] and m["rows"] == parent_manifest["rows"]
    step = m["steps"][-1]
    assert step["kind"] == "review" and step["config"]["reviewer"] == "alice"
    touched = {fix.record_id, keep.record_id, ge.record_id, es.record_id}
    assert step["counters"] == {"accept": 1, "correct": 3, "records": len(touched), "reviews": 4}
    assert m["label_distribution"]["strategy"]["human"]
    new = {r["id"]: r for r in labeled.iter_records(sid)}
    old = {r["id"]: r for r in labeled.iter_records(parent)}
    human = {
        (rid, lab["task"], lab["turn"]): lab
        for rid, r in new.items()
        for lab in r["labels"]
        if lab["source"] == "human"
    }
    fixed = human[(fix.record_id, "strategy", fix.turn)]
    assert fixed["value"] == fix.gold[0] and fixed["agent"] == "alice" and fixed["created_at"] == WHEN
    assert fixed["attrs"] == {"status": "submitted", "action": "correct", "via": "dashboard"}
    assert human[(keep.record_id, "strategy", keep.turn)]["attrs"]["action"] == "accept"
    assert sorted(lab["value"] for lab in new[ge.record_id]["labels"] if lab["source"] == "human") == [
        "gratitude",
        "joy",
    ]
    rating = human[(es.record_id, "empathy", es.turn)]
    assert rating["value"] == "4" and rating["score"] == 4.0
    # gold and machine labels kept; other records identical
    for rid, r in old.items():
        kept = [lab for lab in new[rid]["labels"] if lab["source"] != "human"]
        assert kept == r["labels"]
    untouched = set(old) - touched
    assert all(new[rid] == old[rid] for rid in untouched)
    # agreement now sees a human coder beside the labeler
    rep = agreement(new.values(), task="strategy")["tasks"]["strategy"]
    assert rep["coders"]["human"] == ["human:alice"] and rep["human_llm"]["units"] == 2
    # the reviewer's queue of units not reviewed yet no longer has them
    left = _queue(labeled, sid, "strategy", only="unreviewed", reviewer="alice")
    assert fix.key not in {u.key for u in left} and len(left) == len(_queue(labeled, sid, "strategy")) - 2


def test_a_second_answer_replaces_the_reviewers_own_earlier_one(labeled):
    unit = _queue(labeled, "labeled", "strategy")[3]
    first = apply_reviews(
        labeled, "labeled", [Review.of(unit.record_id, "strategy", "Question", turn=unit.turn)], reviewer="bob"
    )
    second = apply_reviews(
        labeled, first, [Review.of(unit.record_id, "strategy", "Self-disclosure", turn=unit.turn)], reviewer="bob"
    )
    third = apply_reviews(
        labeled, second, [Review.of(unit.record_id, "strategy", "Question", turn=unit.turn)], reviewer="carol"
    )
    labels = next(r for r in labeled.iter_records(third) if r["id"] == unit.record_id)["labels"]
    human = sorted(
        (lab["agent"], lab["value"]) for lab in labels if lab["source"] == "human" and lab["turn"] == unit.turn
    )
    assert human == [("bob", "Self-disclosure"), ("carol", "Question")]
    assert labeled.manifest(second)["steps"][-1]["counters"]["replaced"] == 1
    # the first answer is still in the first snapshot
    labels = next(r for r in labeled.iter_records(first) if r["id"] == unit.record_id)["labels"]
    assert [lab["value"] for lab in labels if lab["source"] == "human"] == ["Question"]


@pytest.mark.parametrize(
    ("review", "reviewer", "match"),
    [
        (Review.of("esconv:train:1", "strategy", "Shouting", turn=0), "alice", "'Shouting' is not in vocabulary"),
        (Review.of("esconv:train:1", "strategy", ["Question", "Others"], turn=0), "alice", "takes one label"),
        (Review.of("esconv:train:1", "empathy", 7, turn=0), "alice", r"expected a number on 1\.\.5"),
        (Review.of("esconv:train:1", "empathy", "kind", turn=0), "alice", "expected a number"),
        (Review.of("esconv:train:1", "nonsense", "x"), "alice", "unknown task"),
        (Review.of("esconv:train:1", "strategy", "Question", turn=0, action="maybe"), "alice", "action"),  # type: ignore[arg-type]
        (Review.of("esconv:train:1", "strategy", []), "alice", "no value"),
        (Review.of("esconv:train:1", "strategy", "Question", turn=0), "", "reviewer name"),
        (Review.of("esconv:train:1", "strategy", "Question", turn=0), "alice\nbob", "reviewer name"),
        (
            Review.of("esconv:nowhere:9", "strategy", "Question", turn=0),
            "alice",
            "'esconv:nowhere:9' is not in snapshot",
        ),
        (Review.of("esconv:train:1", "strategy", "Question", turn=999), "alice", "turn 999 outside"),
    ],
)
def test_bad_reviews_are_refused_and_nothing_is_written(labeled, review, reviewer, match):
    before = labeled.snapshot_ids()
    refs = labeled.refs()
    with pytest.raises(ReviewInputError, match=match):
        apply_reviews(labeled, "labeled", [review], reviewer=reviewer)
    assert labeled.snapshot_ids() == before and labeled.refs() == refs
    assert not labeled.fs.exists(labeled.root + "/tmp") or not labeled.fs.ls(labeled.root + "/tmp")


def test_one_answer_per_unit_and_batch(labeled):
    r = Review.of("esconv:train:1", "strategy", "Question", turn=0)
    with pytest.raises(ReviewInputError, match="reviewed twice"):
        apply_reviews(labeled, "labeled", [r, r], reviewer="alice")
    with pytest.raises(ReviewInputError, match="no reviews"):
        apply_reviews(labeled, "labeled", [], reviewer="alice")
