"""The Disagreements page's "send to Argilla" against a real local Argilla server (workbench review serve).

Needs Debian's redis-server (`.ci/run` installs it) and argilla-server's virtualenv
(`workbench review serve --install-only`, which `make test` runs).
"""

from __future__ import annotations

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
