"""``workbench review serve``: the real argilla-server with the workbench's in-process search engine.

Everything goes through the server's HTTP API (the SDK, or plain REST as an annotator), so
what is asserted is what Argilla's web UI and any client see: text search, metadata /
suggestion / response-status filters, sorting, metadata metrics, progress, the job worker,
and that a restart or a kill loses nothing the database holds.
"""

from __future__ import annotations

import subprocess
import sys
import uuid

import argilla as rg
from argilla_local import ROOT

TEXTS = [
    "I lost my job today and I feel awful",
    "We won the match, what a great day",
    "My dog is sick and I am scared",
    "The exam went great, I am so relieved",
    "Nothing much happened, just a regular day",
    "My best friend moved away and I miss her",
]


def _dataset(server, name: str, *, min_submitted: int = 1):
    client = rg.Argilla(api_url=server.api_url, api_key=server.api_key)
    server.workspace_id("workbench")
    settings = rg.Settings(
        fields=[rg.ChatField(name="conversation"), rg.TextField(name="context")],
        questions=[
            rg.LabelQuestion(name="emotion", labels=["joy", "sadness", "fear", "neutral"]),
            rg.RatingQuestion(name="empathy", values=[1, 2, 3, 4, 5], required=False),
        ],
        metadata=[rg.TermsMetadataProperty(name="source"), rg.IntegerMetadataProperty(name="n")],
        distribution=rg.TaskDistribution(min_submitted=min_submitted),
    )
    ds = rg.Dataset(name=name, workspace="workbench", settings=settings, client=client).create()
    gold = ["sadness", "joy", "fear", "joy", "neutral", "sadness"]
    records = [
        rg.Record(
            id=f"ed:train:{i}",
            fields={
                "conversation": [{"role": "user", "content": text}, {"role": "assistant", "content": "I hear you."}],
                "context": "test",
            },
            metadata={"source": "ed" if i % 2 else "dd", "n": i},
            suggestions=[rg.Suggestion("emotion", gold[i], score=0.5 + i / 20, agent="gpt-4o-mini:emotion-v3")],
        )
        for i, text in enumerate(TEXTS)
    ]
    ds.records.log(records)
    return client, ds


def _search(server, ds_id: str, body: dict, api_key: str | None = None) -> list[str]:
    with server.client(api_key) as c:
        out = c.post(f"/me/datasets/{ds_id}/records/search", json=body, params={"limit": 50})
        out.raise_for_status()
        return [item["record"]["external_id"] for item in out.json()["items"]]


def _respond(server, api_key: str, server_id: str, value: str, status: str = "submitted") -> None:
    with server.client(api_key) as c:
        c.post(
            f"/records/{server_id}/responses", json={"values": {"emotion": {"value": value}}, "status": status}
        ).raise_for_status()


def _server_ids(ds) -> dict[str, str]:
    return {r.id: str(r._server_id) for r in ds.records}


def test_status_names_the_workbench_engine(argilla_server):
    with argilla_server.client() as c:
        status = c.get("/status").raise_for_status().json()
    assert status["version"] == "2.8.0"
    assert status["search_engine"]["name"] == "workbench"


def test_search_filters_sort_metrics_and_progress(argilla_server):
    name = f"engine-{uuid.uuid4().hex[:8]}"
    _client, ds = _dataset(argilla_server, name)
    ids = _server_ids(ds)
    _ann_id, ann_key = argilla_server.create_annotator("engine-ann")

    # text search: AND of terms, over the chat field's contents
    # (without a sort, /me/ searches come in a per-user random order, as Elasticsearch's random_score gives)
    assert sorted(_search(argilla_server, ds.id, {"query": {"text": {"q": "great"}}})) == ["ed:train:1", "ed:train:3"]
    assert _search(argilla_server, ds.id, {"query": {"text": {"q": "great exam"}}}) == ["ed:train:3"]
    assert _search(argilla_server, ds.id, {"query": {"text": {"q": "zebra"}}}) == []
    # metadata terms filter, suggestion filter, suggestion score range
    meta = {"type": "terms", "scope": {"entity": "metadata", "metadata_property": "source"}, "values": ["ed"]}
    assert sorted(_search(argilla_server, ds.id, {"filters": {"and": [meta]}})) == [
        "ed:train:1",
        "ed:train:3",
        "ed:train:5",
    ]
    sugg = {"type": "terms", "scope": {"entity": "suggestion", "question": "emotion"}, "values": ["sadness"]}
    assert sorted(_search(argilla_server, ds.id, {"filters": {"and": [sugg]}})) == ["ed:train:0", "ed:train:5"]
    score = {
        "type": "range",
        "scope": {"entity": "suggestion", "question": "emotion", "property": "score"},
        "ge": 0.6,  # scores are 0.5 + i/20: 0.6, 0.65, 0.7 (bounds inclusive)
        "le": 0.7,
    }
    in_range = sorted(_search(argilla_server, ds.id, {"filters": {"and": [score]}}))
    assert in_range == ["ed:train:2", "ed:train:3", "ed:train:4"]
    # sort by metadata, descending
    order = [{"scope": {"entity": "metadata", "metadata_property": "n"}, "order": "desc"}]
    assert _search(argilla_server, ds.id, {"sort": order}) == [f"ed:train:{i}" for i in range(5, -1, -1)]

    # responses: the annotator submits two, drafts one
    _respond(argilla_server, ann_key, ids["ed:train:0"], "sadness")
    _respond(argilla_server, ann_key, ids["ed:train:1"], "joy")
    _respond(argilla_server, ann_key, ids["ed:train:2"], "fear", status="draft")

    def by_status(status: str) -> list[str]:
        body = {
            "filters": {
                "and": [{"type": "terms", "scope": {"entity": "response", "property": "status"}, "values": [status]}]
            }
        }
        return sorted(_search(argilla_server, ds.id, body, api_key=ann_key))

    assert by_status("submitted") == ["ed:train:0", "ed:train:1"]
    assert by_status("draft") == ["ed:train:2"]
    assert by_status("pending") == ["ed:train:3", "ed:train:4", "ed:train:5"]
    # response value filter
    value = {"type": "terms", "scope": {"entity": "response", "question": "emotion"}, "values": ["joy"]}
    assert _search(argilla_server, ds.id, {"filters": {"and": [value]}}, api_key=ann_key) == ["ed:train:1"]

    with argilla_server.client() as c:
        progress = c.get(f"/datasets/{ds.id}/progress").raise_for_status().json()
        assert (progress["total"], progress["completed"], progress["pending"]) == (6, 2, 4)
        mine = c.get(f"/me/datasets/{ds.id}/metrics", headers={"X-Argilla-Api-Key": ann_key}).json()["responses"]
        assert (mine["submitted"], mine["draft"], mine["pending"]) == (2, 1, 3)
        props = {p["name"]: p["id"] for p in c.get(f"/me/datasets/{ds.id}/metadata-properties").json()["items"]}
        terms = c.get(f"/metadata-properties/{props['source']}/metrics").json()
        assert terms["total"] == 6
        assert {v["term"]: v["count"] for v in terms["values"]} == {"dd": 3, "ed": 3}
        numeric = c.get(f"/metadata-properties/{props['n']}/metrics").json()
        assert (numeric["min"], numeric["max"]) == (0, 5)


def test_distribution_change_runs_the_job_worker(argilla_server):
    """Raising min_submitted enqueues a job on Redis; the in-process worker re-computes record statuses."""
    import time

    _client, ds = _dataset(argilla_server, f"dist-{uuid.uuid4().hex[:8]}")
    _id, key = argilla_server.create_annotator("dist-ann")
    _respond(argilla_server, key, _server_ids(ds)["ed:train:0"], "sadness")
    with argilla_server.client() as c:
        assert c.get(f"/datasets/{ds.id}/progress").json()["completed"] == 1
        ds.settings.distribution = rg.TaskDistribution(min_submitted=2)
        ds.update()
        deadline = time.monotonic() + 20
        while c.get(f"/datasets/{ds.id}/progress").json()["completed"] != 0:
            assert time.monotonic() < deadline, "the distribution job never ran"
            time.sleep(0.2)


def test_restart_and_kill_lose_nothing(argilla_server):
    """The index is rebuilt from the database at start-up: after a restart, and after SIGKILL."""
    _client, ds = _dataset(argilla_server, f"restart-{uuid.uuid4().hex[:8]}")
    ids = _server_ids(ds)
    _id, key = argilla_server.create_annotator("restart-ann")
    _respond(argilla_server, key, ids["ed:train:4"], "neutral")
    submitted = {
        "filters": {
            "and": [{"type": "terms", "scope": {"entity": "response", "property": "status"}, "values": ["submitted"]}]
        }
    }
    before = (
        _search(argilla_server, ds.id, {"query": {"text": {"q": "scared"}}}),
        _search(argilla_server, ds.id, submitted, api_key=key),
    )
    assert before == (["ed:train:2"], ["ed:train:4"])

    argilla_server.restart()
    assert (
        _search(argilla_server, ds.id, {"query": {"text": {"q": "scared"}}}),
        _search(argilla_server, ds.id, submitted, api_key=key),
    ) == before

    argilla_server.kill()
    argilla_server.start()
    assert _search(argilla_server, ds.id, submitted, api_key=key) == ["ed:train:4"]
    with argilla_server.client() as c:
        assert c.get(f"/datasets/{ds.id}/progress").json()["completed"] == 1
    log = (argilla_server.home / "server.log").read_text()
    assert "search index rebuilt from the database" in log


def test_serve_refuses_a_second_server_on_the_same_home(argilla_server):
    proc = subprocess.run(
        [sys.executable, "-m", "ui.cli", "review", "serve", "--detach", "--home", str(argilla_server.home)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "already running" in proc.stderr + proc.stdout
    status = subprocess.run(
        [sys.executable, "-m", "ui.cli", "review", "status", "--home", str(argilla_server.home)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert status.returncode == 0, status.stderr
    assert f"{argilla_server.api_url} pid" in status.stdout and "up" in status.stdout


def test_a_busy_port_is_one_clear_error_and_leaves_nothing_running(argilla_server, tmp_path):
    from argilla_local import LocalArgilla

    other = LocalArgilla(tmp_path / "home")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ui.cli",
            "review",
            "serve",
            "--detach",
            "--home",
            str(other.home),
            "--port",
            str(argilla_server.port),  # taken by the session's server
            "--redis-url",
            other.redis_url,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "address already in use" in proc.stderr and "Traceback" not in proc.stderr
    # the Redis this serve started is stopped again, and no server state is left
    assert not (other.home / "redis.json").exists() and not (other.home / "server.json").exists()
    from labeling.review.server.manager import redis_ping

    assert not redis_ping(other.redis_url)
