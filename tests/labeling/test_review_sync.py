"""The Argilla round trip on real example slices: units -> records with suggestions, push, responses, pull.

The offline tests check the conversion both ways on a snapshot labeled by the local labeler.
The others run against a real argilla-server (the session fixture ``argilla_server``): what
is asserted is what the server holds and what a pull writes, with annotators answering
through the REST API as Argilla's web UI does.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from curation import vocabularies
from curation.curate import build_steps, curate
from curation.ingest import ingest
from curation.record import label
from labeling.review.settings import build_settings
from labeling.review.sync import (
    Credentials,
    Retry,
    ReviewError,
    connect,
    merge_pulled_labels,
    pull,
    push,
    resolve_credentials,
    responses_to_labels,
    review_units,
    select_units,
    suggestion_for,
    to_argilla_records,
)
from labeling.runner import label_local
from labeling.tasks.base import get_tasks

ROOT = Path(__file__).resolve().parents[2]
FAST = Retry(attempts=2, backoff=0.01)


@pytest.fixture(scope="module")
def labeled(tmp_path_factory, examples):
    """GoEmotions + ESConv example slices, labeled by the local labeler (emotion, strategy, empathy)."""
    from curation.store import SnapshotStore

    store = SnapshotStore(str(tmp_path_factory.mktemp("review") / "store"))
    ingest("goemotions", [examples / "goemotions"], store=store, tag="ge-raw")
    ingest("esconv", [examples / "esconv" / "hf"], store=store, tag="es-raw")
    curate(["ge-raw", "es-raw"], store=store, steps=build_steps([{"name": "normalize"}]), tag="clean")
    label_local("clean", store=store, tasks=get_tasks(["emotion", "strategy", "empathy"]), tag="labeled")
    return store


def _records(store, source: str | None = None):
    return [r for r in store.iter_records("labeled") if source is None or r["source"] == source]


def _machine(rec, task, turn):
    return [lab for lab in rec["labels"] if lab["task"] == task and lab["turn"] == turn and lab["source"] == "model"]


def _gold(rec, task, turn):
    return sorted(
        lab["value"] for lab in rec["labels"] if lab["task"] == task and lab["turn"] == turn and lab["source"] == "gold"
    )


# ------------------------------------------------------------------ offline: records -> Argilla


def test_units_become_records_with_fields_metadata_gold_and_suggestions(labeled):
    sid = labeled.resolve("labeled")
    records = _records(labeled)
    out = {r.id: r for r in to_argilla_records(records, ["emotion", "strategy"], snapshot=sid)}
    es = [r for r in records if r["source"] == "esconv"]
    ge = [r for r in records if r["source"] == "goemotions"]
    supporter_turns = {f"{r['id']}#t{i}" for r in es for i, t in enumerate(r["turns"]) if t["speaker"] == "supporter"}
    # emotion: one unit per record (GoEmotions comments, ESConv's seeker emotion); strategy: per supporter turn
    assert set(out) == {r["id"] for r in records} | supporter_turns

    def confident(r, i):
        return t_is_supporter(r, i) and _machine(r, "strategy", i)[0]["score"] >= 0.5

    def t_is_supporter(r, i):
        return r["turns"][i]["speaker"] == "supporter" and bool(_machine(r, "strategy", i))

    rec, turn = next((r, i) for r in es for i in range(3, len(r["turns"])) if confident(r, i))
    unit = out[f"{rec['id']}#t{turn}"]
    conv = unit.fields["conversation"]
    assert len(conv) == turn + 1 and conv[-1]["content"] == rec["turns"][turn]["text"]
    roles = {t["speaker"]: m["role"] for t, m in zip(rec["turns"], conv, strict=False)}
    assert roles == {"supporter": "assistant", "seeker": "user"}
    assert unit.fields["context"].startswith("Situation: ") and "supporter" in unit.fields["instructions"]
    assert unit.metadata["record_id"] == rec["id"] and unit.metadata["turn"] == turn
    assert unit.metadata["tasks"] == ["strategy"] and unit.metadata["snapshot"] == sid
    assert unit.metadata["source"] == "esconv" and unit.metadata["split"] == rec["split"]
    assert [unit.metadata["gold_strategy"]] == _gold(rec, "strategy", turn)
    (model,) = _machine(rec, "strategy", turn)
    s = unit.suggestions["strategy"]
    assert (s.value, s.score) == (model["value"], pytest.approx(model["score"]))
    assert s.agent == model["agent"].replace("@", ":").replace("+", "-") == "local-linear:strategy-v1-hashed"
    # below the default confidence of 0.5 nothing is pre-filled: annotators are not anchored on noise
    low_rec, low = next(
        (r, i) for r in es for i in range(len(r["turns"])) if t_is_supporter(r, i) and not confident(r, i)
    )
    assert "strategy" not in out[f"{low_rec['id']}#t{low}"].suggestions
    assert "confidence is at least 0.5" in build_settings(["strategy"]).guidelines
    whole = out[rec["id"]]
    assert whole.metadata["gold_emotion"] == _gold(rec, "emotion", None) and "turn" not in whole.metadata
    assert (
        len(whole.fields["conversation"]) == len(rec["turns"]) and "whole conversation" in whole.fields["instructions"]
    )

    comment = next(r for r in ge if sum(lab["score"] >= 0.5 for lab in _machine(r, "emotion", None)) >= 1)
    unit = out[comment["id"]]
    assert unit.fields["text"] == comment["turns"][0]["text"] and "conversation" not in unit.fields
    s = unit.suggestions["emotion"]
    ranked = sorted(
        (lab for lab in _machine(comment, "emotion", None) if lab["score"] >= 0.5), key=lambda lab: -lab["score"]
    )
    assert s.value == [lab["value"] for lab in ranked] and s.score == pytest.approx([lab["score"] for lab in ranked])
    assert all(v >= 0.5 for v in s.score)
    assert unit.metadata["gold_emotion"] == _gold(comment, "emotion", None)


def test_llm_label_is_the_suggestion_over_the_local_labelers(labeled):
    rec = copy.deepcopy(_records(labeled, "esconv")[0])
    q = build_settings(["strategy"]).question("strategy")
    turn = next(i for i, t in enumerate(rec["turns"]) if t["speaker"] == "supporter" and i > 0)
    assert suggestion_for(rec, q, turn)["agent"] == "local-linear:strategy-v1-hashed"  # only a model label
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rec["labels"] += [
        label(
            "strategy", "Question", source="llm", agent="gpt-4o-mini@strategy-v1", score=0.8, turn=turn, created_at=t0
        ),
        label(
            "strategy",
            "Information",
            source="llm",
            agent="gpt-4o@strategy-v2",
            score=0.6,
            turn=turn,
            created_at=t0 + timedelta(days=1),
        ),
    ]
    # the newest LLM label wins; gold never becomes a suggestion
    assert suggestion_for(rec, q, turn) == {
        "question_name": "strategy",
        "value": "Information",
        "score": 0.6,
        "agent": "gpt-4o:strategy-v2",
    }
    empathy = build_settings(["empathy"]).question("empathy")
    rated = suggestion_for(rec, empathy, turn)
    assert isinstance(rated["value"], int) and 1 <= rated["value"] <= 5 and rated["score"] is None


def test_sample_is_seeded_deterministic_and_nested(labeled):
    tasks = get_tasks(["emotion", "strategy"])
    units = [u for r in _records(labeled) for u in review_units(r, tasks)]
    a = [u.id for u in select_units(units, sample=50, seed=7)]
    assert a == [u.id for u in select_units(reversed(units), sample=50, seed=7)] and len(set(a)) == 50
    assert set(a) != {u.id for u in select_units(units, sample=50, seed=8)}
    assert {u.id for u in select_units(units, sample=20, seed=7)} <= set(a)  # a bigger sample keeps the smaller
    assert len(select_units(units)) == len(units)
    # only units with something to review: no strategy units on GoEmotions comments
    strategy = [u for r in _records(labeled, "goemotions") for u in review_units(r, get_tasks(["strategy"]))]
    assert strategy == []


# ------------------------------------------------------------------ offline: responses -> labels


def _response(user, status, values, at="2026-03-01T10:00:00.000001"):
    return {
        "id": str(uuid.uuid4()),
        "user_id": user,
        "status": status,
        "values": values,
        "inserted_at": at,
        "updated_at": at,
    }


def test_responses_become_human_labels_with_status_and_annotator():
    records = [
        {
            "id": "srv-1",
            "external_id": "esconv:train:1#t2",
            "metadata": {"record_id": "esconv:train:1", "turn": 2, "snapshot": "s"},
            "responses": [
                _response(
                    "u1",
                    "submitted",
                    {"strategy": {"value": "Question"}, "empathy": {"value": 4}, "confidence": {"value": "sure"}},
                ),
                _response("u2", "discarded", None),
                _response("u3", "draft", {"strategy": {"value": "Not a strategy"}, "empathy": {"value": 9}}),
            ],
        },
        {
            "id": "srv-2",
            "external_id": "goemotions:test:abc",
            "metadata": {"record_id": "goemotions:test:abc"},
            "responses": [_response("u2", "submitted", {"emotion": {"value": ["joy", "gratitude"]}})],
        },
        {"id": "srv-3", "external_id": "goemotions:test:def", "metadata": {}, "responses": []},
    ]
    out = responses_to_labels(records, dataset="ds", users={"u1": "alice", "u2": "bob"})
    assert out.counters["responses"] == 4 and out.counters["records"] == 3
    assert out.counters["invalid_values"] == 2 and out.counters["responses_without_labels"] == 2
    assert out.annotators == {"alice", "bob", "u3"}  # an unknown user keeps its id
    turn_labels = out.labels["esconv:train:1"]
    assert [(lab["task"], lab["value"], lab["score"], lab["turn"]) for lab in turn_labels] == [
        ("empathy", "4", 4.0, 2),
        ("strategy", "Question", None, 2),
    ]
    lab = turn_labels[1]
    assert lab["source"] == "human" and lab["agent"] == "alice"
    assert lab["created_at"] == datetime(2026, 3, 1, 10, 0, 0, 1, tzinfo=UTC)
    assert lab["attrs"] == {
        "status": "submitted",
        "argilla_user_id": "u1",
        "argilla_dataset": "ds",
        "argilla_record_id": "esconv:train:1#t2",
        "confidence": "sure",
    }
    assert sorted(lab["value"] for lab in out.labels["goemotions:test:abc"]) == ["gratitude", "joy"]
    assert [r["status"] for r in out.rows] == ["submitted", "discarded", "draft", "submitted"]  # every response kept


def _pulled(value, status, at, agent="alice", turn=3):
    return label(
        "strategy",
        value,
        source="human",
        agent=agent,
        turn=turn,
        created_at=at,
        attrs={"status": status, "argilla_user_id": "u-" + agent, "argilla_dataset": "ds"},
    )


def test_merge_newest_wins_and_a_submission_is_never_lost():
    t = datetime(2026, 1, 1, tzinfo=UTC)
    gold = label("strategy", "Question", source="gold", agent="esconv", turn=3)
    rater = label("strategy", "Others", source="human", agent="alice", turn=3)  # a human label from elsewhere
    first = [gold, rater, _pulled("Question", "submitted", t)]
    # the same response pulled again: nothing duplicated
    assert merge_pulled_labels(first, [_pulled("Question", "submitted", t)]) == first
    # a newer submitted answer replaces the earlier one
    newer = merge_pulled_labels(first, [_pulled("Information", "submitted", t + timedelta(hours=1))])
    assert [lab["value"] for lab in newer] == ["Question", "Others", "Information"]
    # a newer draft does not replace the submission: both kept, each with its status
    draft = merge_pulled_labels(first, [_pulled("Others", "draft", t + timedelta(hours=2))])
    assert sorted((lab["value"], lab["attrs"]["status"]) for lab in draft[2:]) == [
        ("Others", "draft"),
        ("Question", "submitted"),
    ]
    # an older answer than the one already there loses; another annotator's is added
    older = merge_pulled_labels(
        newer, [_pulled("Others", "submitted", t - timedelta(days=1)), _pulled("Others", "submitted", t, agent="bob")]
    )
    assert [(lab["agent"], lab["value"]) for lab in older[2:]] == [("alice", "Information"), ("bob", "Others")]


# ------------------------------------------------------------------ offline: credentials, errors


def test_credentials_come_from_arguments_environment_or_the_local_servers_file(tmp_path):
    env = {"WORKBENCH_HOME": str(tmp_path)}
    with pytest.raises(ReviewError, match=r"run `workbench review serve`.*ARGILLA_API_URL"):
        resolve_credentials(environ=env)
    path = tmp_path / "argilla" / "credentials.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"api_url": "http://127.0.0.1:6901", "api_key": "local-key", "password": "p"}))
    c = resolve_credentials(environ=env)
    assert (c.api_url, c.api_key) == ("http://127.0.0.1:6901", "local-key") and "credentials.json" in c.origin
    assert "local-key" not in repr(c)
    env_c = resolve_credentials(environ={**env, "ARGILLA_API_URL": "https://hf.space/", "ARGILLA_API_KEY": "k"})
    assert (env_c.api_url, env_c.api_key) == ("https://hf.space", "k")
    flags = resolve_credentials("http://other:6900", "flag-key", environ={**env, "ARGILLA_API_KEY": "k"})
    assert flags.api_key == "flag-key"
    # the local key is never sent to another server
    with pytest.raises(ReviewError, match="no API key for the Argilla server at https://remote"):
        resolve_credentials("https://remote", environ=env)


def test_an_unreachable_server_is_retried_then_one_clear_error():
    slept = []
    with pytest.raises(ReviewError) as err:
        connect(Credentials("http://127.0.0.1:9", "k"), retry=Retry(attempts=3, backoff=0.2), sleep=slept.append)
    msg = str(err.value)
    assert msg.startswith("Argilla at http://127.0.0.1:9: login failed after 3 attempts: ConnectError")
    assert len(slept) == 2 and all(0 <= s <= 0.4 for s in slept)


# ------------------------------------------------------------------ against a real argilla-server


def _creds(server) -> Credentials:
    return Credentials(server.api_url, server.api_key)


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _dataset(server, name: str) -> dict:
    with server.client() as c:
        (ds,) = [d for d in c.get("/me/datasets").raise_for_status().json()["items"] if d["name"] == name]
        return ds


def _server_records(server, name: str) -> list[dict]:
    ds = _dataset(server, name)
    with server.client() as c:
        page = c.get(f"/datasets/{ds['id']}/records", params={"include": ["suggestions", "responses"], "limit": 1000})
        body = page.raise_for_status().json()
    assert body["total"] == len(body["items"])
    return body["items"]


def test_push_twice_creates_no_duplicates_and_carries_settings_and_suggestions(argilla_server, labeled):
    name = _name("push")
    kw = {
        "store": labeled,
        "tasks": ["emotion", "strategy"],
        "name": name,
        "credentials": _creds(argilla_server),
        "workspace": "workbench",
        "sample": 40,
        "overlap": 2,
        "batch_size": 15,
        "retry": FAST,
    }
    pushed = []
    first = push("labeled", progress=lambda done, total: pushed.append((done, total)), **kw)
    assert first.created and first.records == 40 and pushed == [(15, 40), (30, 40), (40, 40)]
    ds = _dataset(argilla_server, name)
    assert ds["distribution"] == {"strategy": "overlap", "min_submitted": 2}
    assert labeled.resolve("labeled") in ds["guidelines"]
    with argilla_server.client() as c:
        questions = {q["name"]: q for q in c.get(f"/datasets/{ds['id']}/questions").json()["items"]}
    emotion_options = [o["value"] for o in questions["emotion"]["settings"]["options"]]
    assert emotion_options == list(vocabularies.load("emotion").labels)
    assert [o["value"] for o in questions["strategy"]["settings"]["options"]] == list(
        vocabularies.load("strategy").labels
    )
    # the sample mixes whole records (emotion) and turns (strategy): neither question can be required
    assert {n: q["required"] for n, q in questions.items()} == {
        "emotion": False,
        "strategy": False,
        "confidence": True,
    }

    items = _server_records(argilla_server, name)
    assert len(items) == 40
    expected = {r.id: r for r in to_argilla_records(_records(labeled), ["emotion", "strategy"])}
    qname = {q["id"]: name for name, q in questions.items()}
    for item in items:
        exp = expected[item["external_id"]]
        assert item["metadata"]["snapshot"] == labeled.resolve("labeled")
        got = {qname[s["question_id"]]: (s["value"], s["score"], s["agent"]) for s in item["suggestions"]}
        assert got == {s.question_name: (s.value, s.score, s.agent) for s in exp.suggestions}
    assert sum(len(i["suggestions"]) for i in items) == first.counters["suggestions"] > 0

    again = push("labeled", **{**kw, "overlap": 3})
    assert not again.created and again.records == 40
    assert len(_server_records(argilla_server, name)) == 40  # upserted by id: no duplicates
    assert _dataset(argilla_server, name)["distribution"]["min_submitted"] == 3


def test_push_a_selection_of_units(argilla_server, labeled):
    rec = _records(labeled, "esconv")[1]
    chosen = [rec["id"], f"{rec['id']}#t2"]  # the whole conversation (emotion) and a supporter turn (strategy)
    name = _name("units")
    kw = {
        "store": labeled,
        "tasks": ["emotion", "strategy"],
        "name": name,
        "credentials": _creds(argilla_server),
        "workspace": "workbench",
        "retry": FAST,
    }
    with pytest.raises(ReviewError, match=r"1 of the units asked for are not units of emotion, strategy.*#t1"):
        push("labeled", units=[*chosen, f"{rec['id']}#t1"], **kw)  # turn 1 is the seeker's
    assert push("labeled", units=chosen, **kw).records == 2
    assert sorted(i["external_id"] for i in _server_records(argilla_server, name)) == sorted(chosen)


def _respond(server, key: str, record_id: str, status: str, values: dict | None) -> dict:
    body = {"status": status, "values": {q: {"value": v} for q, v in (values or {}).items()}}
    with server.client(key) as c:
        return c.post(f"/records/{record_id}/responses", json=body).raise_for_status().json()


def _wb(*args: str, store, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "WORKBENCH_STORE": store.url, "COLUMNS": "200", "NO_COLOR": "1", **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "ui.cli", *args], capture_output=True, text=True, env=full_env, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def test_pull_writes_human_labels_in_a_new_snapshot_and_agreement_counts_submitted(argilla_server, labeled):
    name = _name("pull")
    creds = _creds(argilla_server)
    res = push(
        "labeled",
        store=labeled,
        tasks=["strategy"],
        name=name,
        credentials=creds,
        workspace="workbench",
        sample=6,
        seed=3,
        overlap=2,
        retry=FAST,
    )
    assert res.records == 6 and res.settings.question("strategy").required
    _, alice = argilla_server.create_annotator("alice")
    _, bob = argilla_server.create_annotator("bob")
    items = sorted(_server_records(argilla_server, name), key=lambda i: i["external_id"])
    ids = [i["id"] for i in items]
    a_values = ["Question", "Question", "Others", "Information", "Question", "Others"]
    b_values = ["Question", "Question", "Others", "Question"]
    for rid, v in zip(ids, a_values, strict=True):
        _respond(argilla_server, alice, rid, "submitted", {"strategy": v})
    for rid, v in zip(ids, b_values, strict=False):
        _respond(argilla_server, bob, rid, "submitted", {"strategy": v})
    draft = _respond(argilla_server, bob, ids[4], "draft", {"strategy": "Information"})
    _respond(argilla_server, bob, ids[5], "discarded", {"strategy": "Self-disclosure"})

    before = {s.id for s in labeled.list()}
    out = pull(name, store=labeled, credentials=creds, tag="reviewed-1", retry=FAST)
    assert out.parent == labeled.resolve("labeled") and out.snapshot_id not in before
    assert labeled.manifest(out.snapshot_id)["parents"] == [out.parent]
    assert out.responses == 12 and out.annotators == ["alice", "bob"] and out.labels == 12
    assert (
        out.counters["responses.submitted"],
        out.counters["responses.draft"],
        out.counters["responses.discarded"],
    ) == (10, 1, 1)
    humans = [
        (rec["id"], lab)
        for rec in labeled.iter_records(out.snapshot_id)
        for lab in rec["labels"]
        if lab["source"] == "human"
    ]
    assert Counter((lab["agent"], lab["attrs"]["status"]) for _, lab in humans) == {
        ("alice", "submitted"): 6,
        ("bob", "submitted"): 4,
        ("bob", "draft"): 1,
        ("bob", "discarded"): 1,
    }
    by_unit = {(lab["attrs"]["argilla_record_id"], lab["agent"]): lab for _, lab in humans}
    unit4 = items[4]["external_id"]
    rid, turn = unit4.rsplit("#t", 1)
    lab = by_unit[(unit4, "bob")]
    assert (lab["value"], lab["turn"], lab["attrs"]["argilla_dataset"]) == ("Information", int(turn), name)
    assert lab["created_at"] == datetime.fromisoformat(draft["updated_at"]).replace(tzinfo=UTC)
    assert all(r == lab_["attrs"]["argilla_record_id"].split("#t")[0] for r, lab_ in humans)
    assert labeled.read_artifact(out.snapshot_id, "review.responses").num_rows == 12

    # human-human over submitted answers only: units 0-3, alice Q Q O I, bob Q Q O Q.
    # n = 8 values (Q 5, O 2, I 1); one disagreeing pair: alpha = 1 - 7 * 2 / (64 - 30) = 20/34;
    # kappa = (3/4 - 7/16) / (1 - 7/16) = 5/9. (Counting bob's draft or discard would change both.)
    report = json.loads(
        _wb("review", "agreement", out.snapshot_id, "--task", "strategy", "--json", store=labeled).stdout
    )
    hh = report["tasks"]["strategy"]["human_human"]
    assert hh["coders"] == ["human:alice", "human:bob"] and hh["units"] == 4
    assert hh["alpha"] == pytest.approx(20 / 34) and hh["pairs"][0]["kappa"] == pytest.approx(5 / 9)

    # pulling twice adds nothing: the same snapshot, or -- from the pulled one -- no duplicate labels
    assert pull(name, store=labeled, credentials=creds, retry=FAST).snapshot_id == out.snapshot_id
    again = pull(name, store=labeled, credentials=creds, parent=out.snapshot_id, tag="reviewed-2", retry=FAST)
    assert again.parent == out.snapshot_id
    assert sum(len(r["labels"]) for r in labeled.iter_records(again.snapshot_id)) == sum(
        len(r["labels"]) for r in labeled.iter_records(out.snapshot_id)
    )

    # bob submits his draft with another value: the newest answer replaces the draft
    with argilla_server.client(bob) as c:
        c.put(
            f"/responses/{draft['id']}", json={"status": "submitted", "values": {"strategy": {"value": "Question"}}}
        ).raise_for_status()
    third = pull(name, store=labeled, credentials=creds, parent=again.snapshot_id, retry=FAST)
    bob4 = [
        lab
        for rec in labeled.iter_records(third.snapshot_id)
        for lab in rec["labels"]
        if lab["source"] == "human" and lab["agent"] == "bob" and lab["attrs"]["argilla_record_id"] == unit4
    ]
    assert [(lab["value"], lab["attrs"]["status"]) for lab in bob4] == [("Question", "submitted")]


def test_cli_push_and_pull_with_the_local_servers_credentials_file(argilla_server, labeled, tmp_path):
    home = tmp_path / "home"
    (home / "argilla").mkdir(parents=True)
    (home / "argilla" / "credentials.json").write_text(
        json.dumps({"api_url": argilla_server.api_url, "api_key": argilla_server.api_key})
    )
    env = {"WORKBENCH_HOME": str(home), "ARGILLA_API_URL": "", "ARGILLA_API_KEY": ""}
    name = _name("cli")
    args = (
        "review",
        "push",
        "labeled",
        "--task",
        "empathy",
        "--sample",
        "5",
        "--name",
        name,
        "--workspace",
        "workbench",
    )
    out = _wb(*args, store=labeled, env=env).stdout
    assert "pushed 5 records" in out and name in out and argilla_server.api_url in out
    out = _wb("review", "pull", name, "--tag", "cli-reviewed", store=labeled, env=env).stdout
    assert "pulled 0 responses" in out and labeled.resolve("cli-reviewed") in out


def test_a_server_that_dies_mid_push_or_mid_pull_loses_nothing_and_a_rerun_finishes(argilla_server, labeled):
    name = _name("crash")
    creds = _creds(argilla_server)
    kw = {
        "store": labeled,
        "tasks": ["strategy"],
        "name": name,
        "credentials": creds,
        "workspace": "workbench",
        "sample": 30,
        "batch_size": 10,
        "retry": FAST,
    }

    def kill_after_first(done, total):
        if done == 10:
            argilla_server.kill()

    try:
        with pytest.raises(ReviewError) as err:
            push("labeled", progress=kill_after_first, **kw)
        msg = str(err.value)
        assert msg.startswith(f"Argilla at {argilla_server.api_url}: pushing records 11-20 of 30 to dataset")
        assert "after 2 attempts" in msg and "re-run" in msg
    finally:
        argilla_server.start()
    assert len(_server_records(argilla_server, name)) == 10
    assert push("labeled", **kw).records == 30
    assert len(_server_records(argilla_server, name)) == 30  # the re-run re-logged the first 10: no duplicates

    _, alice = argilla_server.create_annotator("alice")
    for item in _server_records(argilla_server, name)[:3]:
        _respond(argilla_server, alice, item["id"], "submitted", {"strategy": "Question"})
    before = sorted(s.id for s in labeled.list())

    def kill_on_first_page(done, total):
        argilla_server.kill()

    try:
        with pytest.raises(ReviewError, match=f"Argilla at {argilla_server.api_url}: reading records 11-20"):
            pull(name, store=labeled, credentials=creds, page_size=10, retry=FAST, progress=kill_on_first_page)
    finally:
        argilla_server.start()
    assert sorted(s.id for s in labeled.list()) == before  # nothing half-written
    out = pull(name, store=labeled, credentials=creds, page_size=10, retry=FAST)
    assert out.responses == 3 and out.labels == 3


def test_a_wrong_key_a_missing_dataset_or_an_annotators_key_is_one_clear_error(argilla_server, labeled):
    with pytest.raises(ReviewError, match="rejected the API key"):
        connect(Credentials(argilla_server.api_url, "not-a-key"), retry=FAST)
    with pytest.raises(ReviewError, match="no dataset 'does-not-exist'"):
        pull("does-not-exist", store=labeled, credentials=_creds(argilla_server), retry=FAST)
    name = _name("perm")
    push(
        "labeled",
        store=labeled,
        tasks=["strategy"],
        name=name,
        credentials=_creds(argilla_server),
        workspace="workbench",
        sample=1,
        retry=FAST,
    )
    _, key = argilla_server.create_annotator("carol")
    with pytest.raises(ReviewError, match=r"reading records 1-500 .* HTTP 403.*owner or admin API key"):
        pull(name, store=labeled, credentials=Credentials(argilla_server.api_url, key), retry=FAST)
    httpx.get(f"{argilla_server.api_url}/api/v1/status").raise_for_status()


def test_restart_between_push_and_pull_loses_nothing(argilla_server, labeled):
    """Responses given before a restart of the server all come back in the pull after it."""
    name = _name("restart")
    creds = _creds(argilla_server)
    push("labeled", store=labeled, tasks=["strategy"], name=name, credentials=creds, workspace="workbench", sample=6)
    _, dave = argilla_server.create_annotator("dave")
    items = _server_records(argilla_server, name)
    for item, status in zip(items, ["submitted", "submitted", "draft", "discarded"], strict=False):
        _respond(argilla_server, dave, item["id"], status, {"strategy": "Information"})

    argilla_server.restart()

    assert len(_server_records(argilla_server, name)) == 6
    out = pull(name, store=labeled, credentials=creds, retry=FAST)
    assert out.responses == 4 and out.annotators == ["dave"]
    got = Counter(
        lab["attrs"]["status"]
        for rec in labeled.iter_records(out.snapshot_id)
        for lab in rec["labels"]
        if lab["source"] == "human" and lab["attrs"]["argilla_dataset"] == name
    )
    assert got == {"submitted": 2, "draft": 1, "discarded": 1}


def test_review_status_and_review_list_show_progress_per_annotator(argilla_server, labeled):
    from labeling.review.sync import review_status

    name = _name("status")
    creds = _creds(argilla_server)
    push(
        "labeled",
        store=labeled,
        tasks=["strategy"],
        name=name,
        credentials=creds,
        workspace="workbench",
        sample=5,
        overlap=2,
    )
    _, erin = argilla_server.create_annotator("erin")
    _, finn = argilla_server.create_annotator("finn")
    items = _server_records(argilla_server, name)
    for item in items[:2]:  # two records get both answers they need (overlap 2): completed
        _respond(argilla_server, erin, item["id"], "submitted", {"strategy": "Question"})
        _respond(argilla_server, finn, item["id"], "submitted", {"strategy": "Others"})
    _respond(argilla_server, erin, items[2]["id"], "draft", {"strategy": "Information"})
    _respond(argilla_server, finn, items[3]["id"], "discarded", {"strategy": "Information"})

    (status,) = [d for d in review_status(creds, workspace="workbench") if d.name == name]
    assert (status.records, status.completed, status.pending, status.min_submitted) == (5, 2, 3, 2)
    assert status.annotators == {
        "erin": {"submitted": 2, "draft": 1, "discarded": 0},
        "finn": {"submitted": 2, "draft": 0, "discarded": 1},
    }
    assert status.responses == 6 and status.snapshots == [labeled.resolve("labeled")]

    env = {"ARGILLA_API_URL": argilla_server.api_url, "ARGILLA_API_KEY": argilla_server.api_key}
    listed = json.loads(_wb("review", "list", "--json", "--workspace", "workbench", store=labeled, env=env).stdout)
    assert next(d for d in listed if d["name"] == name) == status.to_dict()
    table = _wb("review", "list", store=labeled, env=env).stdout
    assert name in table and "erin 2/1/0, finn 2/0/1" in table
