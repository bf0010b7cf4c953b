"""The dashboard as a user opens it: `workbench dashboard` (streamlit run, headless, 127.0.0.1) driven by Chromium.

Needs Debian's Chromium (/usr/bin/chromium) and Playwright; skips without them. Screenshots go to the
test's tmp folder and are copied to /tmp/dashboard-shots/ for people to look at.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from curation import browse
from curation.store import SnapshotStore
from labeling.audit import audit

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
SHOTS = Path("/tmp/dashboard-shots")
#: How long any wait may last (ms). Every wait is for a condition and returns as soon as it holds: generous
#: limits cost nothing on an idle machine and keep a loaded one (a busy core, a slow first import) from failing.
WAIT = 60_000

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Debian's Chromium at {CHROMIUM}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sample_runs(runs: Path) -> None:
    """A training log and an evaluation report in the documented formats (evaluate/results.py)."""
    (runs / "qlora-tiny").mkdir(parents=True)
    lines = [{"step": s, "loss": round(2.4 * 0.93**s + 0.6, 4)} for s in range(1, 61)]
    lines += [{"step": s, "eval_loss": round(2.5 * 0.94**s + 0.7, 4)} for s in range(10, 61, 10)]
    (runs / "qlora-tiny" / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    (runs / "qlora-tiny" / "run.json").write_text(json.dumps({"base_model": "tiny-test-model", "snapshot": "example"}))
    report = {
        "name": "qlora-tiny vs base (test data, not a real evaluation)",
        "models": {"base": "tiny-test-model", "finetuned": "runs/qlora-tiny"},
        "metrics": [
            {"metric": "empathy_judge", "model": "base", "value": 2.9, "ci_low": 2.6, "ci_high": 3.2, "n": 30},
            {"metric": "empathy_judge", "model": "finetuned", "value": 3.5, "ci_low": 3.2, "ci_high": 3.8, "n": 30},
            {"metric": "json_validity", "model": "base", "value": 0.81, "ci_low": 0.72, "ci_high": 0.88, "n": 200},
            {"metric": "json_validity", "model": "finetuned", "value": 0.97, "ci_low": 0.94, "ci_high": 0.99, "n": 200},
        ],
    }
    (runs / "qlora-tiny" / "eval.json").write_text(json.dumps(report))


@pytest.fixture(scope="module")
def server(example_store, tmp_path_factory):
    """`workbench dashboard --port P` on a copy of the example store, until the module's tests end."""
    pytest.importorskip("playwright")
    tmp = tmp_path_factory.mktemp("dashboard-e2e")
    store = tmp / "store"
    shutil.copytree(example_store, store)
    _sample_runs(tmp / "runs")
    port = _free_port()
    env = {**os.environ, "WORKBENCH_STORE": str(store), "NO_COLOR": "1"}
    log = (tmp / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ui.cli", "dashboard", "--port", str(port), "--runs", str(tmp / "runs")],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read() == b"ok":
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the dashboard did not start:\n{(tmp / 'server.log').read_text()}")
        time.sleep(0.3)
    try:
        yield {"url": url, "store": SnapshotStore(str(store)), "tmp": tmp, "port": port}
    finally:
        proc.terminate()  # the CLI forwards it to Streamlit
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def tab(browser):
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT)  # every expect(...) below waits this long unless it says otherwise
    page = browser.new_page(viewport={"width": 1400, "height": 2200})
    page.set_default_timeout(WAIT)  # clicks, fills and waits for an element
    try:
        yield page
    finally:
        page.close()


TIMINGS: dict[str, float] = {}


def _open(tab, server, path: str, heading: str, ready: str) -> None:
    """Open a page and wait until its heading and a piece of its data are on screen; record how long it took."""
    from playwright.sync_api import expect

    start = time.monotonic()
    tab.goto(f"{server['url']}/{path}")
    expect(tab.get_by_role("heading", name=heading, exact=True)).to_be_visible(timeout=2 * WAIT)
    expect(tab.get_by_text(ready).first).to_be_visible(timeout=2 * WAIT)
    TIMINGS[heading] = round(time.monotonic() - start, 2)


def _idle(tab) -> None:
    """Wait until no script run is in progress (Streamlit's "Running..." widget is gone)."""
    from playwright.sync_api import expect

    expect(tab.get_by_test_id("stStatusWidget")).to_have_count(0)


def _pick(tab, box, option: str, *, exact: bool = True) -> None:
    """Open the selectbox ``box`` and choose ``option``.

    A rerun that redraws the box closes its list (on a loaded machine the page may still be running when the
    box first shows): then the list is opened again, until WAIT has passed.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    wanted = tab.get_by_role("option", name=option, exact=exact)
    deadline = time.monotonic() + WAIT / 1000
    while True:
        _idle(tab)
        box.click()
        try:
            wanted.click(timeout=10_000)  # one try: returns as soon as the option shows
            return
        except PlaywrightTimeout:
            if time.monotonic() > deadline:
                raise
            tab.keyboard.press("Escape")


def _choose(tab, label: str, option: str, *, exact: bool = True) -> None:
    _pick(tab, tab.get_by_test_id("stSelectbox").filter(has=tab.get_by_text(label, exact=True)), option, exact=exact)


#: True once every chart on the page has drawn (Vega-Lite into a canvas or SVG, Graphviz into SVG).
_CHARTS_DRAWN = """() =>
    [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')].every(c => c.querySelector('.marks'))
    && [...document.querySelectorAll('[data-testid="stGraphVizChart"]')].every(c => c.querySelector('svg'))"""


def _shoot(tab, server, name: str) -> Path:
    from playwright.sync_api import expect

    expect(tab.get_by_test_id("stStatusWidget")).to_have_count(0)  # nothing running
    tab.wait_for_function(_CHARTS_DRAWN)  # charts draw after the data arrives
    path = server["tmp"] / f"{name}.png"
    tab.screenshot(path=str(path), full_page=True)
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SHOTS / path.name)
    return path


def test_a_first_visit_to_a_deep_link_runs_inside_the_app(tab, server):
    """A fresh server's first request for /review gets the app's navigation, not a bare page script."""
    from playwright.sync_api import expect

    _open(tab, server, "review", "Review", "Answers not saved yet")
    nav = tab.get_by_test_id("stSidebarNav")
    for title in ("Snapshots", "Distributions", "Disagreements", "Review", "Curation", "Results"):
        expect(nav.get_by_text(title, exact=True)).to_be_visible()
    nav.get_by_text("Curation", exact=True).click()
    expect(tab.get_by_role("heading", name="Curation", exact=True)).to_be_visible()
    assert tab.url.endswith("/curation")


def test_snapshots_page_filters_records(tab, server):
    from playwright.sync_api import expect

    store = server["store"]
    sid = store.resolve("latest")
    _open(tab, server, "", "Snapshots", f"{store.manifest(sid)['rows']:,} records match")
    expect(tab.get_by_text("dd-raw").first).to_be_visible()  # the lineage graph names the refs
    _choose(tab, "Source", "esconv")
    n = len(browse.matching_rows(store, sid, browse.RecordFilter(source="esconv")))
    expect(tab.get_by_text(f"{n:,} records match")).to_be_visible()
    expect(tab.get_by_test_id("stChatMessage").first).to_be_visible()
    assert _shoot(tab, server, "1-snapshots").stat().st_size > 10_000


def test_distributions_page_compares_before_and_after(tab, server):
    from playwright.sync_api import expect

    _open(tab, server, "distributions", "Distributions", "Before → after")
    _choose(tab, "Task", "emotion")
    expect(tab.get_by_role("heading", name="emotion (gold)", exact=False)).to_be_visible()
    expect(tab.get_by_text("Score histograms (traits, empathy)")).to_be_visible()
    _shoot(tab, server, "2-distributions")


def test_disagreements_page_shows_agreement_and_the_audit(tab, server):
    from playwright.sync_api import expect

    store = server["store"]
    _open(tab, server, "disagreements", "Disagreements", "Units that disagree most")
    _choose(tab, "Task", "strategy (", exact=False)  # shown with its label count
    from labeling.runner import fitted_on

    fitted = fitted_on(store, "labeled")["agents"]  # the page never scores a labeler on what it learnt from
    accuracy = audit(store.iter_records("labeled"), "strategy", exclude=fitted)["metrics"]["accuracy"]
    expect(tab.get_by_test_id("stMetric").filter(has_text="accuracy")).to_contain_text(f"{accuracy:.3f}")
    expect(tab.get_by_role("button", name="Send 10 units to Argilla")).to_be_visible()
    _shoot(tab, server, "3-disagreements")


def test_review_page_takes_an_answer(tab, server):
    from playwright.sync_api import expect

    _open(tab, server, "review", "Review", "Answers not saved yet: 0")
    tab.get_by_label("Reviewer (your name)").fill("e2e-tester")
    tab.get_by_label("Reviewer (your name)").press("Enter")
    _idle(tab)  # the name is in before the answer is saved
    tab.get_by_role("button", name="Save my answer").click()
    expect(tab.get_by_text("Answers not saved yet: 1")).to_be_visible()
    expect(tab.get_by_role("button", name="Save 1 answers as a new snapshot")).to_be_enabled()
    _shoot(tab, server, "4-review")


def test_curation_page_shows_drops_and_clusters(tab, server):
    from playwright.sync_api import expect

    _open(tab, server, "curation", "Curation", "What each step dropped")
    # the page opens on the curated snapshot; choosing it in the sidebar keeps it there
    _pick(tab, tab.get_by_test_id("stSidebar").get_by_test_id("stSelectbox"), "clean", exact=False)
    expect(tab.get_by_text("Exact duplicates: clusters").first).to_be_visible()
    expect(tab.get_by_text("kept", exact=True).first).to_be_visible()
    expect(tab.get_by_role("heading", name="What each step dropped")).to_be_visible()
    expect(tab.get_by_test_id("stVegaLiteChart")).to_have_count(1)  # the drops, as a chart
    _shoot(tab, server, "5-curation")


def test_results_page_shows_reports_and_loss_curves(tab, server):
    from playwright.sync_api import expect

    _open(tab, server, "results", "Results", "Evaluation reports")
    expect(tab.get_by_text("Training runs")).to_be_visible()
    tab.get_by_text("qlora-tiny: run.json").click()
    expect(tab.get_by_text("tiny-test-model").first).to_be_visible()
    _shoot(tab, server, "6-results")


def test_page_load_times_are_recorded(server):
    """Not a benchmark (see bench/dashboard.py for the full data): the example pages open in seconds."""
    assert set(TIMINGS) >= {"Snapshots", "Distributions", "Disagreements", "Review", "Curation", "Results"}
    (SHOTS / "timings-examples.json").write_text(json.dumps(TIMINGS, indent=1))
    assert max(TIMINGS.values()) < 60
