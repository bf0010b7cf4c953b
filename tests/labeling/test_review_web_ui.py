"""The review round trip with a human in Argilla's real web UI: push -> click in Chromium -> pull.

Playwright drives Debian's Chromium (``playwright install`` cannot download browsers here):
an annotator signs in, opens the dataset, picks a strategy other than the suggested one,
submits; ``workbench review pull`` then brings the answer back as a ``human`` label.
Screenshots land in the test's tmp folder (and in $WORKBENCH_SCREENSHOTS when set).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from curation.curate import build_steps, curate
from curation.ingest import ingest
from curation.store import SnapshotStore
from labeling.review.sync import Credentials, push
from labeling.runner import label_local
from labeling.tasks.base import get_tasks

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def esconv_labeled(tmp_path_factory, examples) -> SnapshotStore:
    store = SnapshotStore(str(tmp_path_factory.mktemp("webui") / "store"))
    ingest("esconv", [examples / "esconv" / "hf"], store=store, tag="es-raw")
    curate(["es-raw"], store=store, steps=build_steps([{"name": "normalize"}]), tag="clean")
    label_local("clean", store=store, tasks=get_tasks(["strategy"]), tag="labeled")
    return store


def _shot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    keep = os.environ.get("WORKBENCH_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / path.name)
    return path


def test_annotator_clicks_in_the_web_ui_and_pull_brings_the_answer_back(argilla_server, esconv_labeled, tmp_path):
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")

    store = esconv_labeled
    # a unit with a confident machine label: only those are pre-filled (--min-suggestion-score, default 0.5)
    first, supporter_turn = next(
        (rec, lab["turn"])
        for rec in store.iter_records("labeled")
        for lab in rec["labels"]
        if lab["task"] == "strategy" and lab["source"] == "model" and lab["score"] >= 0.5
    )
    unit = f"{first['id']}#t{supporter_turn}"
    name = f"webui-{uuid.uuid4().hex[:8]}"
    creds = Credentials(argilla_server.api_url, argilla_server.api_key)
    result = push(
        "labeled", store=store, tasks=["strategy"], name=name, credentials=creds, units=[unit], workspace="workbench"
    )
    assert result.records == 1

    # what the annotator will see: the suggestion, and the strategy we will pick instead
    with argilla_server.client() as c:
        ds = next(d for d in c.get("/me/datasets").json()["items"] if d["name"] == name)
        (question,) = [q for q in c.get(f"/datasets/{ds['id']}/questions").json()["items"] if q["name"] == "strategy"]
        (record,) = c.get(f"/datasets/{ds['id']}/records", params={"include": ["suggestions"]}).json()["items"]
    suggested = next(s["value"] for s in record["suggestions"] if s["question_id"] == question["id"])
    options = question["settings"]["options"]
    pick = next(o for o in options if o["value"] != suggested)

    annotator = f"carol-{uuid.uuid4().hex[:6]}"  # a fresh user: the session's server has others' annotators
    _user_id, _key = argilla_server.create_annotator(annotator, password="carol-pass-123")
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{argilla_server.api_url}/sign-in", timeout=60_000)
        page.get_by_label("Username").fill(annotator)
        page.get_by_label("Password").fill("carol-pass-123")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{argilla_server.api_url}/", timeout=60_000)
        page.locator("a[href*='/annotation-mode']", has_text=name).click()
        label_button = page.get_by_text(pick["text"], exact=True)
        label_button.wait_for(timeout=60_000)
        _shot(page, tmp_path, "argilla-annotate-before")
        label_button.click()
        page.get_by_role("button", name=re.compile("Submit")).click()
        # the click reaches the server as carol's submitted response
        deadline = time.monotonic() + 30
        while True:
            with argilla_server.client() as c:
                (rec,) = c.get(f"/datasets/{ds['id']}/records", params={"include": ["responses"]}).json()["items"]
            if rec["responses"]:
                break
            assert time.monotonic() < deadline, "no response arrived from the web UI"
            time.sleep(0.5)
        _shot(page, tmp_path, "argilla-annotate-after")
        browser.close()

    (resp,) = rec["responses"]
    assert resp["status"] == "submitted"
    assert resp["values"]["strategy"]["value"] == pick["value"]

    # and pull brings it back as a human label in a new snapshot
    env = {**os.environ, "ARGILLA_API_URL": argilla_server.api_url, "ARGILLA_API_KEY": argilla_server.api_key}
    out = subprocess.run(
        [sys.executable, "-m", "ui.cli", "--store", store.url, "review", "pull", name, "--tag", "reviewed"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert f"from 1 annotators ({annotator})" in out.stdout
    reviewed = {r["id"]: r for r in store.iter_records("reviewed")}
    human = [lab for lab in reviewed[first["id"]]["labels"] if lab["source"] == "human"]
    assert [(h["task"], h["turn"], h["value"], h["agent"], h["attrs"]["status"]) for h in human] == [
        ("strategy", supporter_turn, pick["value"], annotator, "submitted")
    ]
    assert store.manifest("reviewed")["parents"] == [store.resolve("labeled")]
