"""Dashboard speed on the full data: each page's data functions, then real page loads in Chromium.

Builds (or reuses) a store of all five sources of the full raw data, ingested, curated with
``examples/curate.toml`` and labeled offline (emotion, strategy, traits, empathy), then

1. times the library calls behind each page, cold (what the first visitor of a snapshot waits for;
   the dashboard caches them on the snapshot id afterwards);
2. starts ``workbench dashboard`` on the store and times, in Debian's Chromium, how long each page
   takes from navigation until its data is on screen: the first visit (cold caches) and a second one.

::

    python bench/dashboard.py [--data ../shared/data] [--store DIR] [--no-browser]

The store is kept (default ``$TMPDIR/workbench-bench-dashboard``): a second run skips the build.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"


def build(store: Any, data: Path) -> None:
    from curation.curate import curate, load_steps
    from curation.ingest import ingest
    from labeling.runner import label_local
    from labeling.tasks.base import get_tasks

    if "labeled" in store.refs():
        print(f"reusing {store.url} (labeled -> {store.resolve('labeled')})")
        return
    inputs = {
        "dailydialog": ([data / "dailydialog" / "ijcnlp_dailydialog"], "dd-raw"),
        "empatheticdialogues": ([data / "empatheticdialogues" / "slices" / "train_head.csv"], "ed-raw"),
        "esconv": ([data / "esconv" / "hf_thu-coai_esconv"], "esconv-raw"),
        "goemotions": ([data / "goemotions"], "ge-raw"),
        "openwebtext": ([data / "openwebtext" / "hf_datasets_dummy" / "dummy_data"], "owt-raw"),
    }
    for source, (paths, tag) in inputs.items():
        t = time.perf_counter()
        r = ingest(source, paths, store=store, tag=tag)
        print(f"ingest {source:<20} {r.kept:>8,} records  {time.perf_counter() - t:6.1f} s")
    t = time.perf_counter()
    tags = [tag for _, tag in inputs.values()]
    c = curate(tags, store=store, steps=load_steps(ROOT / "examples" / "curate.toml"), tag="clean")
    print(f"curate {'(five sources)':<20} {c.rows:>8,} records  {time.perf_counter() - t:6.1f} s")
    t = time.perf_counter()
    label_local("clean", store=store, tasks=get_tasks(["emotion", "strategy", "traits", "empathy"]), tag="labeled")
    print(f"label  {'(local labeler)':<20} {'':>8}          {time.perf_counter() - t:6.1f} s")


def timed(rows: list[dict[str, Any]], page: str, what: str, fn: Callable[[], Any]) -> Any:
    t = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t
    rows.append({"page": page, "call": what, "seconds": round(seconds, 3)})
    print(f"  {page:<14} {what:<58} {seconds:7.3f} s")
    return out


def data_functions(store: Any) -> list[dict[str, Any]]:
    from curation import browse
    from curation.balance import compare
    from curation.report import build_report
    from labeling.agreement import agreement
    from labeling.audit import audit
    from labeling.corrections import Review, apply_reviews, review_queue

    rows: list[dict[str, Any]] = []
    sid = store.resolve("labeled")
    m = store.manifest(sid)
    print(f"data functions on {sid}: {m['rows']:,} records")
    timed(rows, "all", "lineage (store.list)", lambda: browse.lineage(store))
    timed(rows, "all", "manifest", lambda: store.manifest(sid))
    everything = timed(rows, "Snapshots", "matching_rows, no filter", lambda: browse.matching_rows(store, sid))
    timed(rows, "Snapshots", "read_page, page 1 of 20", lambda: browse.read_page(store, sid, rows=everything))
    timed(
        rows,
        "Snapshots",
        "read_page, page 3,000 of 20",
        lambda: browse.read_page(store, sid, page=2999, rows=everything),
    )
    for name, flt in {
        "source=goemotions": browse.RecordFilter(source="goemotions"),
        "emotion=joy (gold)": browse.RecordFilter(task="emotion", value="joy", label_source="gold"),
        "text 'holiday'": browse.RecordFilter(text="holiday"),
        "esconv + strategy=Question (model) + text 'feel'": browse.RecordFilter(
            source="esconv", task="strategy", value="Question", label_source="model", text="feel"
        ),
    }.items():
        timed(rows, "Snapshots", f"matching_rows, {name}", lambda flt=flt: browse.matching_rows(store, sid, flt))
    parents = [store.manifest(p) for p in m["parents"]]
    timed(rows, "Distributions", "label_counts (manifest)", lambda: browse.label_counts(m, task="emotion"))
    timed(
        rows,
        "Distributions",
        "distribution_change vs parent",
        lambda: browse.distribution_change(parents, m, task="emotion"),
    )
    timed(rows, "Distributions", "balance compare (imbalance)", lambda: compare(parents, m))
    timed(rows, "Distributions", "score_histograms (traits, empathy)", lambda: browse.score_histograms(store, sid))
    for task in ("empathy", "strategy", "emotion"):
        timed(
            rows,
            "Disagreements",
            f"agreement {task} (projected labels)",
            lambda task=task: agreement(browse.iter_label_records(store, sid), task=task, top=50),
        )
        timed(
            rows, "Disagreements", f"audit {task}", lambda task=task: audit(browse.iter_label_records(store, sid), task)
        )
    timed(
        rows,
        "Disagreements",
        "agreement emotion, goemotions only",
        lambda: agreement(
            (r for r in browse.iter_label_records(store, sid) if r["source"] == "goemotions"), task="emotion", top=50
        ),
    )
    queue = timed(
        rows,
        "Review",
        "review_queue strategy, disagreements",
        lambda: review_queue(browse.iter_label_records(store, sid), "strategy", only="disagreements"),
    )
    timed(
        rows,
        "Review",
        "review_queue emotion, all",
        lambda: review_queue(browse.iter_label_records(store, sid), "emotion"),
    )
    timed(
        rows,
        "Review",
        "records_by_id (one unit's record)",
        lambda: browse.records_by_id(store, sid, [queue[0].record_id]),
    )
    reviews = [Review.of(u.record_id, "strategy", u.gold[0], turn=u.turn) for u in queue[:10]]
    when = datetime(2026, 1, 1, tzinfo=UTC)  # fixed: a rerun writes the same snapshot, not another one
    timed(
        rows,
        "Review",
        "apply_reviews, 10 answers -> new snapshot",
        lambda: apply_reviews(store, sid, reviews, reviewer="bench", now=when),
    )
    timed(rows, "Curation", "build_report(clean)", lambda: build_report(store, "clean", examples=5))
    return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PAGES = [
    # (path, heading, text that means the page's data is on screen)
    ("", "Snapshots", "records match"),
    ("distributions", "Distributions", "Score histograms (traits, empathy)"),
    ("disagreements", "Disagreements", "Units that disagree most"),
    ("review", "Review", "Answers not saved yet"),
    ("curation", "Curation", "Duplicate clusters"),
    ("results", "Results", "runs folder"),
]


def page_loads(store_url: str) -> list[dict[str, Any]]:
    from playwright.sync_api import expect, sync_playwright

    port = _free_port()
    env = {**os.environ, "WORKBENCH_STORE": store_url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ui.cli", "dashboard", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    rows: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read() == b"ok":
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            tab = browser.new_page(viewport={"width": 1400, "height": 1600})
            print(f"page loads in Chromium ({url}), store {store_url}")
            for visit in ("first (cold caches)", "second (cached)"):
                for path, heading, ready in PAGES:
                    t = time.perf_counter()
                    tab.goto(f"{url}/{path}")
                    expect(tab.get_by_role("heading", name=heading, exact=True)).to_be_visible(timeout=300_000)
                    expect(tab.get_by_text(ready).first).to_be_visible(timeout=300_000)
                    expect(tab.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=300_000)
                    seconds = time.perf_counter() - t
                    rows.append({"page": heading, "visit": visit, "seconds": round(seconds, 2)})
                    print(f"  {heading:<14} {visit:<20} {seconds:6.2f} s")
            # the costliest choice on purpose: emotion agreement (28 labels per unit) on all records
            tab.goto(f"{url}/disagreements")
            expect(tab.get_by_text("Units that disagree most")).to_be_visible(timeout=300_000)
            t = time.perf_counter()
            tab.get_by_test_id("stSelectbox").filter(has=tab.get_by_text("Task", exact=True)).click()
            tab.get_by_role("option", name="emotion (", exact=False).click()
            expect(tab.get_by_text("multi_label, nominal alpha", exact=False)).to_be_visible(timeout=300_000)
            expect(tab.get_by_text("Units that disagree most")).to_be_visible(timeout=300_000)
            seconds = time.perf_counter() - t
            rows.append(
                {"page": "Disagreements: task emotion", "visit": "first (cold caches)", "seconds": round(seconds, 2)}
            )
            print(f"  {'Disagreements, choosing emotion':<35} {seconds:6.2f} s")
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("WORKBENCH_DATA") or str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--store", default=str(Path(tempfile.gettempdir()) / "workbench-bench-dashboard"))
    ap.add_argument("--no-browser", action="store_true", help="Skip the Chromium page loads.")
    ap.add_argument("--json", help="Also write the timings here.")
    args = ap.parse_args()
    data = Path(args.data)
    if not data.is_dir():
        raise SystemExit(f"raw data not found at {data}: pass --data or set WORKBENCH_DATA")

    from curation.store import SnapshotStore

    store = SnapshotStore(args.store)
    build(store, data)
    out = {"store": store.url, "records": store.manifest("labeled")["rows"], "data_functions": data_functions(store)}
    if not args.no_browser:
        if not Path(CHROMIUM).exists():
            raise SystemExit(f"no Chromium at {CHROMIUM}: pass --no-browser")
        out["page_loads"] = page_loads(store.url)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
