"""The dashboard against a real local Argilla server (workbench review serve): the Disagreements page's "send to
Argilla", the Review page's progress panel and its pull of the answers.

Needs Debian's redis-server (`.ci/run` installs it) and argilla-server's virtualenv
(`workbench review serve --install-only`, which `make test` runs).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from streamlit.testing.v1 import AppTest

from curation.store import SnapshotStore

VIEWS = Path(__file__).resolve().parents[2] / "ui" / "dashboard" / "views"


def test_send_a_selection_of_disagreements_to_argilla(example_store, argilla_server, monkeypatch):
    monkeypatch.setenv("WORKBENCH_STORE", str(example_store))
    monkeypatch.setenv("ARGILLA_API_URL", argilla_server.api_url)
    monkeypatch.setenv("ARGILLA_API_KEY", argilla_server.api_key)
    store = SnapshotStore(str(example_store))
    at = AppTest.from_file(str(VIEWS / "disagreements.py"), default_timeout=180).run()
    at = at.selectbox(key="snapshot_picker").set_value(store.resolve("labeled")).run()
    at = at.selectbox(key="dis_task").set_value("strategy").run()
    units = at.dataframe[-1].value["unit"].tolist()[:3]
    at = at.multiselect(key="dis_units_llm_gold_strategy").set_value(units).run()
    sid = store.resolve("labeled")
    at = at.text_input(key=f"dis_dataset_strategy_{sid[:8]}").set_value("dashboard-selection").run()
    at = at.button(key="dis_send").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.success[0].value.startswith("Sent 3 units to dataset 'dashboard-selection'")
    with argilla_server.client() as c:
        (ds,) = [
            d for d in c.get("/me/datasets").raise_for_status().json()["items"] if d["name"] == "dashboard-selection"
        ]
        body = c.get(f"/datasets/{ds['id']}/records", params={"limit": 100}).raise_for_status().json()
    assert sorted(item["external_id"] for item in body["items"]) == sorted(units)
    # sending again upserts: still three records
    at = at.button(key="dis_send").click().run()
    assert at.success
    with argilla_server.client() as c:
        body = c.get(f"/datasets/{ds['id']}/records", params={"limit": 100}).raise_for_status().json()
    assert body["total"] == 3


def test_review_page_shows_argilla_progress(example_store, argilla_server, monkeypatch):
    """The Review page's Argilla panel: the datasets and each annotator's answers, as `review list` gives them."""
    from labeling.review.sync import Credentials, push

    store = SnapshotStore(str(example_store))
    creds = Credentials(argilla_server.api_url, argilla_server.api_key)
    push(
        "labeled",
        store=store,
        tasks=["strategy"],
        name="progress-panel",
        credentials=creds,
        sample=4,
        workspace="workbench",
    )
    _, key = argilla_server.create_annotator("panel-ann")
    with argilla_server.client() as c:
        (ds,) = [d for d in c.get("/me/datasets").json()["items"] if d["name"] == "progress-panel"]
        items = c.get(f"/datasets/{ds['id']}/records", params={"limit": 10}).json()["items"]
    with argilla_server.client(key) as c:
        for item, status in zip(items, ["submitted", "submitted", "draft"], strict=False):
            body = {"values": {"strategy": {"value": "Question"}}, "status": status}
            c.post(f"/records/{item['id']}/responses", json=body).raise_for_status()

    monkeypatch.setenv("WORKBENCH_STORE", str(example_store))
    monkeypatch.setenv("ARGILLA_API_URL", argilla_server.api_url)
    monkeypatch.setenv("ARGILLA_API_KEY", argilla_server.api_key)
    at = AppTest.from_file(str(VIEWS / "review.py"), default_timeout=180).run()
    at = at.button(key="rev_argilla").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = at.dataframe[0].value  # the panel sits above the review form
    row = table[table["dataset"] == "progress-panel"].iloc[0]
    assert (row["records"], row["completed"], row["pending"]) == (4, 2, 2)
    assert row["annotators (submitted/draft/discarded)"] == "panel-ann 2/1/0"
    assert row["from snapshot"] == store.resolve("labeled")[:12]


def test_review_page_pulls_the_answers_and_shows_their_agreement(example_store, argilla_server, monkeypatch, tmp_path):
    """Push units, annotators answer in Argilla, a click on the Review page brings the answers back as human
    labels in a new snapshot (as `workbench review pull`), which the page opens on with the agreement they bring."""
    from labeling.agreement import agreement
    from labeling.review.sync import Credentials, push
    from labeling.runner import fitted_on

    copy = tmp_path / "store"
    shutil.copytree(example_store, copy)  # the pull writes a snapshot
    store = SnapshotStore(str(copy))
    labeled = store.resolve("labeled")
    fitted = fitted_on(store, labeled)["agents"]
    worst = agreement(store.iter_records(labeled), task="strategy", top=4, exclude=fitted)["tasks"]["strategy"]
    units = [f"{w['record_id']}#t{w['turn']}" for w in worst["llm_gold"]["disagreements"]]
    assert len(units) == 4
    name = f"strategy-{labeled[:8]}-disagreements"  # as the Disagreements page names it
    creds = Credentials(argilla_server.api_url, argilla_server.api_key)
    push("labeled", store=store, tasks=["strategy"], name=name, credentials=creds, units=units, workspace="workbench")
    answers = {"pull-ann-1": "Question", "pull-ann-2": "Self-disclosure"}
    with argilla_server.client() as c:
        (ds,) = [d for d in c.get("/me/datasets").raise_for_status().json()["items"] if d["name"] == name]
        items = c.get(f"/datasets/{ds['id']}/records", params={"limit": 10}).raise_for_status().json()["items"]
    for username, value in answers.items():  # each annotator answers three of the four, as in Argilla's UI
        _, key = argilla_server.create_annotator(username)
        with argilla_server.client(key) as c:
            for item in items[:3]:
                body = {"values": {"strategy": {"value": value}}, "status": "submitted"}
                c.post(f"/records/{item['id']}/responses", json=body).raise_for_status()

    monkeypatch.setenv("WORKBENCH_STORE", str(copy))
    monkeypatch.setenv("ARGILLA_API_URL", argilla_server.api_url)
    monkeypatch.setenv("ARGILLA_API_KEY", argilla_server.api_key)
    before = set(store.snapshot_ids())
    at = AppTest.from_file(str(VIEWS / "review.py"), default_timeout=180).run()
    assert at.selectbox(key="snapshot_picker").value == labeled
    at = at.selectbox(key="rev_task").set_value("strategy").run()
    box = at.text_input(key=f"rev_pull_dataset_strategy_{labeled[:8]}")
    assert box.value == name  # the default: the dataset the Disagreements page sends strategy's units to
    at = at.text_input(key="rev_pull_tag").set_value("from-argilla").run()
    at = at.button(key="rev_pull").click().run()
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]

    new = store.resolve("from-argilla")
    assert set(store.snapshot_ids()) == before | {new}
    assert store.manifest(new)["parents"] == [labeled] and store.manifest(new)["steps"][-1]["kind"] == "review"
    assert at.selectbox(key="snapshot_picker").value == new  # the page moved to the new snapshot
    (done,) = at.success
    assert done.value.startswith("Pulled 6 answers (6 submitted) by 2 annotators (pull-ann-1, pull-ann-2)")
    assert f"6 human labels in snapshot {new} (from-argilla), child of {labeled[:12]}" in done.value
    human = {
        (r["id"], lab["turn"], lab["agent"]): lab["value"]
        for r in store.iter_records(new)
        for lab in r["labels"]
        if lab["source"] == "human" and lab["task"] == "strategy"
    }
    answered = {(i["metadata"]["record_id"], i["metadata"]["turn"]) for i in items[:3]}
    assert human == {(rid, turn, who): value for rid, turn in answered for who, value in answers.items()}

    # the agreement the answers bring, computed on the new snapshot as the Disagreements page computes it
    assert at.subheader[0].value == f"Agreement after pulling {name!r}"
    expected = agreement(store.iter_records(new), task="strategy", exclude=fitted_on(store, new)["agents"])
    rep = expected["tasks"]["strategy"]
    table = at.dataframe[0].value
    rows = {(r["task"], r["comparison"]): r for r in table.to_dict("records")}
    assert rows[("strategy", "human vs machine")]["units"] == rep["human_llm"]["units"] == 3
    assert rows[("strategy", "human vs human")]["units"] == rep["human_human"]["units"] == 3
    assert rows[("strategy", "human vs human")]["alpha"] == f"{rep['human_human']['alpha']:.3f}"
    assert rows[("strategy", "machine vs gold")]["alpha"] == f"{rep['llm_gold']['alpha']:.3f}"
    # with the server's datasets listed, the pull offers them, those pushed from this snapshot's lineage first
    at = at.button(key="rev_argilla").click().run()
    pick = at.selectbox(key="rev_pull_pick")
    assert pick.value == name and pick.format_func(name).endswith("pushed from this snapshot")
    # a fresh session opens the label pages on the pulled answers, the newest review of labeled
    assert (
        AppTest.from_file(str(VIEWS / "disagreements.py"), default_timeout=180)
        .run()
        .selectbox(key="snapshot_picker")
        .value
        == new
    )
