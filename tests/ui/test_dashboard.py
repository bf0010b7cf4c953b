"""Each dashboard page through Streamlit's AppTest: its numbers against the library, and its controls.

The store is the one `workbench run` builds from the bundled examples (see conftest.py); pages read it
through WORKBENCH_STORE, as `workbench dashboard --store` passes it.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from curation import browse
from curation.report import build_report
from curation.store import SnapshotStore
from labeling.agreement import agreement
from labeling.audit import audit
from labeling.corrections import review_queue
from ui.dashboard import components as ui

PAGES = Path(__file__).resolve().parents[2] / "ui" / "dashboard" / "views"


@pytest.fixture
def store_env(example_store, monkeypatch, tmp_path) -> SnapshotStore:
    monkeypatch.setenv("WORKBENCH_STORE", str(example_store))
    monkeypatch.setenv("WORKBENCH_RUNS", str(tmp_path / "no-runs"))
    return SnapshotStore(str(example_store))


@pytest.fixture
def writable_store(example_store, monkeypatch, tmp_path) -> SnapshotStore:
    """A copy of the example store that a test may write to."""
    copy = tmp_path / "store"
    shutil.copytree(example_store, copy)
    monkeypatch.setenv("WORKBENCH_STORE", str(copy))
    return SnapshotStore(str(copy))


def page(name: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=120)
    return at


def run(target: Any) -> AppTest:
    """Run the app (an AppTest, or a widget after set_value / click) and check that no page raised."""
    at = target.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def pick(at: AppTest, store: SnapshotStore, ref: str) -> AppTest:
    return run(at.selectbox(key="snapshot_picker").set_value(store.resolve(ref)))


def texts(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown]


def _chart_rows(chart: Any) -> list[dict[str, Any]]:
    """The rows a Vega-Lite chart was given, as sent to the browser (Arrow streams beside the spec)."""
    proto = chart.proto
    streams = [proto.data.data] if proto.data.data else []
    streams += [d.data.data for d in proto.datasets]
    return [row for data in streams for row in pa.ipc.open_stream(data).read_all().to_pylist()]


def _wrapped_columns(table: Any) -> set[str]:
    """The columns of a page table that wrap long text over several lines (a width and rows taller than one line)."""
    config = json.loads(table.proto.columns or "{}")
    if table.proto.row_height <= 35:
        return set()
    return {name for name, c in config.items() if c.get("width")}


def headings(at: AppTest) -> list[str]:
    return [h.value for h in (*at.header, *at.subheader)] + [
        t.split("**")[1] for t in texts(at) if t.startswith("**") and t.count("**") >= 2
    ]


def matched(at: AppTest) -> int:
    line = next(t for t in texts(at) if "records match" in t)
    return int(line.split("**")[1].split()[0].replace(",", ""))


# ------------------------------------------------------------------ Snapshots


def test_snapshots_page_shows_lineage_counts_and_records(store_env):
    store = store_env
    at = run(page("snapshots"))
    sid = store.resolve("latest")  # the default: what `latest` points at
    assert at.selectbox(key="snapshot_picker").value == sid
    assert at.header[0].value == "Snapshots"
    dot = at.get("graphviz_chart")[0].proto.spec
    for info in store.list():
        assert f'"{info.id}"' in dot
    for parent in store.manifest(sid)["parents"]:
        assert f'"{parent}" -> "{sid}"' in dot
    assert at.metric[0].value == f"{store.manifest(sid)['rows']:,}"
    counts = at.dataframe[1].value
    assert int(counts["records"].sum()) == store.manifest(sid)["rows"]
    assert matched(at) == store.manifest(sid)["rows"]
    first = browse.read_page(store, sid, page=0, page_size=10)
    assert [e.label.split(" · ")[0] for e in at.expander if e.label.count(" · ") == 2] == [
        r["id"] for r in first.records
    ]
    # the first record is rendered as a chat, turn by turn
    assert len(at.chat_message) >= len(first.records[0]["turns"])


def test_snapshots_page_filters_and_pages(store_env):
    store = store_env
    at = pick(run(page("snapshots")), store, "labeled")
    sid = store.resolve("labeled")
    at = run(at.selectbox(key="rec_source").set_value("esconv"))
    assert matched(at) == len(browse.matching_rows(store, sid, browse.RecordFilter(source="esconv")))
    at = run(at.selectbox(key="rec_task").set_value("strategy"))
    at = run(at.selectbox(key="rec_value").set_value("Question"))
    at = run(at.selectbox(key="rec_label_source").set_value("model"))
    flt = browse.RecordFilter(source="esconv", task="strategy", value="Question", label_source="model")
    rows = browse.matching_rows(store, sid, flt)
    assert matched(at) == len(rows) > 20
    at = run(at.number_input(key="rec_page").set_value(3))
    third = browse.read_page(store, sid, flt, page=2, page_size=10)
    assert [e.label.split(" · ")[0] for e in at.expander if e.label.count(" · ") == 2] == [
        r["id"] for r in third.records
    ]
    # a new filter goes back to page 1
    at = run(at.text_input(key="rec_text").set_value("holiday"))
    assert at.number_input(key="rec_page").value == 1
    flt = browse.RecordFilter(source="esconv", task="strategy", value="Question", label_source="model", text="holiday")
    assert matched(at) == len(browse.matching_rows(store, sid, flt)) > 0
    at = run(at.text_input(key="rec_text").set_value("no record says this, surely"))
    assert matched(at) == 0 and any("No record matches" in i.value for i in at.info)


def test_snapshots_page_on_an_empty_store(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_STORE", str(tmp_path / "empty"))
    at = run(page("snapshots"))
    assert "No snapshots in" in at.info[0].value and "workbench run" in at.info[0].value


def test_snapshots_page_leaves_out_a_corrupt_snapshot_and_says_so(writable_store):
    bad = writable_store.resolve("dd-raw")
    Path(writable_store.snapshot_path(bad), "manifest.json").write_text("{not json")
    (Path(writable_store.root) / "refs" / "junk.json").write_bytes(b"\xff\xfe garbage")
    at = run(page("snapshots"))
    errors = [e.value for e in at.error]
    assert any(f"snapshot {bad}: corrupt JSON" in e for e in errors)
    assert any("ref junk:" in e for e in errors)
    assert bad not in at.selectbox(key="snapshot_picker").options


# ------------------------------------------------------------------ Distributions


def test_distributions_page_compares_with_the_parents(store_env):
    store = store_env
    at = pick(run(page("distributions")), store, "clean")
    at = run(at.selectbox(key="dist_task").set_value("emotion"))
    at = run(at.selectbox(key="dist_label_source").set_value("gold"))
    clean = store.manifest("clean")
    expected = browse.distribution_change(
        [store.manifest(p) for p in clean["parents"]], clean, task="emotion", label_source="gold"
    )
    change = at.dataframe[0].value
    assert change["value"].tolist() == [r["value"] for r in expected]
    assert change["before"].tolist() == [r["before"] for r in expected]
    assert change["after"].tolist() == [r["after"] for r in expected]
    assert (change["before"] >= change["after"]).all() and (change["before"] > change["after"]).any()
    balance = at.dataframe[1].value
    assert set(balance["task"]) == {"emotion"} and set(balance["label_source"]) == {"gold"}
    assert len(at.get("vega_lite_chart")) >= 2
    # against one ancestor only: the DailyDialog snapshot
    at = run(at.selectbox(key="dist_against").set_value(store.resolve("dd-raw")))
    expected = browse.distribution_change([store.manifest("dd-raw")], clean, task="emotion", label_source="gold")
    assert at.dataframe[0].value["before"].sum() == sum(r["before"] for r in expected)


def test_distributions_page_score_histograms(store_env):
    store = store_env
    at = pick(run(page("distributions")), store, "labeled")
    chart = at.get("vega_lite_chart")[-1].proto
    assert json.loads(chart.spec)["facet"]["field"] == "task"
    shown = pa.ipc.open_stream(chart.data.data).read_all().to_pylist()  # the chart's data, as sent to the browser
    assert shown == browse.score_histograms(store, store.resolve("labeled"))
    at = run(at.selectbox(key="dist_hist_source").set_value("dailydialog"))
    assert not any("No score labels" in i.value for i in at.info)  # the labeler scored DailyDialog's traits


# ------------------------------------------------------------------ Disagreements


def test_disagreements_page_shows_agreement_audit_and_worst_units(store_env):
    store = store_env
    at = pick(run(page("disagreements")), store, "labeled")
    at = run(at.selectbox(key="dis_task").set_value("strategy"))
    records = list(store.iter_records("labeled"))
    # a labeler is never scored on what it learnt from: the local labeler's train-split records are left out
    from labeling.runner import fitted_on

    fitted = fitted_on(store, "labeled")["agents"]
    full = agreement(records, task="strategy", top=50, exclude=fitted)
    rep = full["tasks"]["strategy"]
    assert full["excluded_labels"] > 0
    assert any("left out of every figure on this page" in i.value for i in at.info)
    summary = at.dataframe[0].value
    row = summary[summary["comparison"] == "machine vs gold"].iloc[0]
    assert row["alpha"] == f"{rep['llm_gold']['alpha']:.3f}" and row["units"] == rep["llm_gold"]["units"]
    assert rep["llm_gold"]["units"] < agreement(records, task="strategy")["tasks"]["strategy"]["llm_gold"]["units"]
    audited = audit(records, "strategy", exclude=fitted)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["accuracy"] == f"{audited['metrics']['accuracy']:.3f}"
    assert metrics["kappa"] == f"{audited['metrics']['kappa']:.3f}"
    assert audited["metrics"]["accuracy"] < audit(records, "strategy")["metrics"]["accuracy"]  # memorised: higher
    assert any("fitted ones left out" in c.value and "95 % CI" in c.value for c in at.caption)
    assert "dis_agent_strategy" not in [w.key for w in at.selectbox]
    assert not any("agent" in w.value for w in at.warning)  # one machine coder: nothing to choose
    worst = at.dataframe[-1].value
    first = rep["llm_gold"]["disagreements"][0]
    assert worst["unit"].iloc[0] == f"{first['record_id']}#t{first['turn']}"
    assert len(worst) == len(rep["llm_gold"]["disagreements"])
    # the confusion between a chosen pair of coders (rows coder a, columns coder b)
    (pair,) = rep["llm_gold"]["pairs"]
    options = at.selectbox(key="dis_pair").options
    assert options == [f"{pair['a']} (rows) vs {pair['b']} (columns): {pair['n']:,} units"]
    assert sum(map(sum, pair["confusion"]["matrix"])) == pair["n"]
    # the heatmaps write every label in full ("Restatement or Paraphrasing", not "Restatement or P…")
    heatmaps = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    assert len(heatmaps) == 2  # coder pair, and the audit's confusion
    for spec in heatmaps:
        (layer, _) = spec["layer"]
        for axis in ("x", "y"):
            assert layer["encoding"][axis]["axis"]["labelLimit"] == 0
    labels_shown = {c["col"] for c in _chart_rows(at.get("vega_lite_chart")[0])}
    assert "Restatement or Paraphrasing" in labels_shown
    # the worst units: their text and unit ids wrap over lines instead of being cut
    assert _wrapped_columns(at.dataframe[-1]) >= {"unit", "text"}
    assert not at.exception
    # narrowing to one source recomputes on that source only
    at = run(at.selectbox(key="dis_source").set_value("esconv"))
    assert at.dataframe[0].value.iloc[0]["units"] == rep["llm_gold"]["units"]  # strategy is ESConv's only


def _with_a_second_machine_coder(store: SnapshotStore) -> str:
    """A child of ``labeled`` where an LLM labeled strategy too (another agent beside the local labeler); its id."""
    parent = store.resolve("labeled")
    with store.writer(step={"kind": "label", "config": {"test": "second coder"}}, parents=[parent]) as writer:
        for record in store.iter_records(parent):
            extra = [
                {**lab, "source": "llm", "agent": "gpt-test@strategy-v1", "value": "Question", "score": 0.9}
                for lab in record["labels"]
                if lab["task"] == "strategy" and lab["source"] == "model"
            ]
            writer.add({**record, "labels": [*record["labels"], *extra]})
        sid = writer.commit()
    store.set_ref("two-coders", sid)
    return sid


def test_disagreements_page_audits_one_machine_coder_at_a_time(writable_store):
    """Two machine coders labeled strategy: the page offers a choice of coder, not a note to pass agent=."""
    store = writable_store
    sid = _with_a_second_machine_coder(store)
    at = pick(run(page("disagreements")), store, "two-coders")
    at = run(at.selectbox(key="dis_task").set_value("strategy"))
    chooser = at.selectbox(key="dis_agent_strategy")
    assert chooser.label == "Machine coder"
    assert len(chooser.options) == 2 and any("gpt-test@strategy-v1" in o for o in chooser.options)
    assert not [w.value for w in at.warning if "agent" in w.value]
    from labeling.runner import fitted_on

    fitted = fitted_on(store, sid)["agents"]
    for option in chooser.options:
        at = run(at.selectbox(key="dis_agent_strategy").set_value(option))
        agent = option.split(":", 1)[1]
        expected = audit(store.iter_records(sid), "strategy", agent=agent, exclude=fitted)
        metrics = {m.label: m.value for m in at.metric}
        assert metrics["accuracy"] == f"{expected['metrics']['accuracy']:.3f}"
        assert metrics["pairs"] == f"{expected['n']:,}"


def test_pages_speak_to_users_not_developers(store_env):
    """No page tells the user to pass an argument or an option, and no heading is an internal name."""
    store = store_env
    runs = [
        pick(run(page("snapshots")), store, "labeled"),
        pick(run(page("distributions")), store, "clean"),
        run(pick(run(page("disagreements")), store, "labeled").selectbox(key="dis_task").set_value("strategy")),
        pick(run(page("review")), store, "labeled"),
        pick(run(page("curation_report")), store, "clean"),
        run(page("results")),
    ]
    for at in runs:
        shown = [
            *texts(at),
            *(c.value for c in at.caption),
            *(e.value for kind in (at.info, at.warning, at.error, at.success) for e in kind),
            *(e.label for e in at.expander),
        ]
        assert not [t for t in shown if re.search(r"\bpass (--|\w+=)|\bagent=", t)], shown
        assert not [h for h in headings(at) if re.search(r"[a-z]_[a-z]|[a-z]\.[a-z]", h)], headings(at)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sending_to_argilla_says_clearly_when_no_server_answers(store_env, monkeypatch, tmp_path):
    store = store_env
    url = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("ARGILLA_API_URL", url)
    monkeypatch.setenv("ARGILLA_API_KEY", "not-a-real-key")
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    at = pick(run(page("disagreements")), store, "labeled")
    at = run(at.selectbox(key="dis_task").set_value("emotion"))
    sid = store.resolve("labeled")
    assert at.text_input(key=f"dis_dataset_emotion_{sid[:8]}").value == f"emotion-{sid[:8]}-disagreements"
    at = run(at.selectbox(key="dis_task").set_value("strategy"))  # the name follows the task
    assert at.text_input(key=f"dis_dataset_strategy_{sid[:8]}").value == f"strategy-{sid[:8]}-disagreements"
    assert at.button(key="dis_send").label == "Send 10 units to Argilla"
    at = run(at.button(key="dis_send").click())
    assert at.error and "Could not send to Argilla" in at.error[0].value and url in at.error[0].value
    assert "workbench review serve" in at.error[0].value
    assert "--" not in at.error[0].value  # the page says what to do from the page, not a command-line option
    assert not at.success


def test_sending_to_argilla_with_no_server_configured(store_env, monkeypatch, tmp_path):
    store = store_env
    for var in ("ARGILLA_API_URL", "ARGILLA_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    at = pick(run(page("disagreements")), store, "labeled")
    at = run(at.selectbox(key="dis_task").set_value("strategy"))
    at = run(at.button(key="dis_send").click())
    assert "no Argilla server configured" in at.error[0].value
    assert "workbench review serve" in at.error[0].value and "--api-url" not in at.error[0].value


def test_review_page_pull_says_where_it_looked_when_no_server_answers(writable_store, monkeypatch, tmp_path):
    store = writable_store
    url = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("ARGILLA_API_URL", url)
    monkeypatch.setenv("ARGILLA_API_KEY", "not-a-real-key")
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    before = set(store.snapshot_ids())
    at = pick(run(page("review")), store, "labeled")
    sid = store.resolve("labeled")
    at = run(at.selectbox(key="rev_task").set_value("strategy"))
    assert at.text_input(key=f"rev_pull_dataset_strategy_{sid[:8]}").value == f"strategy-{sid[:8]}-disagreements"
    at = run(at.button(key="rev_pull").click())
    (error,) = at.error
    assert error.value.startswith("Could not pull the answers of 'strategy-")
    assert f"No Argilla server answered at {url}" in error.value and "workbench review serve" in error.value
    assert "--" not in error.value
    assert set(store.snapshot_ids()) == before and not at.success
    assert at.selectbox(key="snapshot_picker").value == sid  # still here


def test_review_page_pull_with_no_server_configured(writable_store, monkeypatch, tmp_path):
    for var in ("ARGILLA_API_URL", "ARGILLA_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    at = run(page("review"))
    assert not at.error  # no server set up yet is no failure: the page says how to start one
    (note,) = [i.value for i in at.info if "Argilla" in i.value]
    assert note.startswith("Could not find an Argilla server: no Argilla server configured")
    assert "`workbench review serve` starts a local Argilla server" in note and "--" not in note
    assert "rev_pull" not in [b.key for b in at.button]


# ------------------------------------------------------------------ Review


def test_review_page_saves_corrections_as_a_new_snapshot(writable_store):
    store = writable_store
    parent = store.resolve("labeled")
    before = set(store.snapshot_ids())
    at = pick(run(page("review")), store, "labeled")
    at = run(at.text_input(key="reviewer_input").set_value("tester"))
    at = run(at.selectbox(key="rev_task").set_value("strategy"))
    assert at.radio(key="rev_only").value == "disagreements"
    queue = review_queue(browse.iter_label_records(store, parent), "strategy", only="disagreements")
    assert any(t.startswith(f"**{queue[0].key}**") for t in texts(at))
    assert f"(of {len(queue):,})" in at.number_input(key="rev_pos").label
    # unit 1: correct it to the gold label
    answer = at.selectbox(key=f"rev_answer|{parent}|strategy|{queue[0].key}")
    assert answer.value == queue[0].machine[0]  # the suggestion is preselected
    at = run(answer.set_value(queue[0].gold[0]))
    at = run(at.button(key="rev_correct").click())
    assert at.number_input(key="rev_pos").value == 2  # on to the next unit
    # unit 2: accept the machine label
    at = run(at.button(key="rev_accept").click())
    assert at.subheader[-1].value == "Answers not saved yet: 2"
    pending = at.dataframe[-1].value
    assert pending["unit"].tolist() == [queue[0].key, queue[1].key]
    assert pending["action"].tolist() == ["correct", "accept"]
    assert set(store.snapshot_ids()) == before  # nothing written until saved
    at = run(at.text_input(key="rev_tag").set_value("reviewed"))
    at = run(at.button(key="rev_save").click())
    new = store.resolve("reviewed")
    assert set(store.snapshot_ids()) == before | {new}
    assert at.success and new in at.success[0].value
    assert at.selectbox(key="snapshot_picker").value == new  # the page moves to the new snapshot
    assert at.subheader[-1].value == "Answers not saved yet: 0"
    m = store.manifest(new)
    assert m["parents"] == [parent] and m["steps"][-1]["kind"] == "review"
    human = {
        (r["id"], lab["turn"]): lab for r in store.iter_records(new) for lab in r["labels"] if lab["source"] == "human"
    }
    assert set(human) == {(queue[0].record_id, queue[0].turn), (queue[1].record_id, queue[1].turn)}
    first = human[(queue[0].record_id, queue[0].turn)]
    assert first["value"] == queue[0].gold[0] and first["agent"] == "tester"
    assert first["attrs"]["status"] == "submitted" and first["attrs"]["action"] == "correct"
    assert human[(queue[1].record_id, queue[1].turn)]["value"] == queue[1].machine[0]
    # a fresh session: the label pages open on the reviewed child, the newest of labeled's review lineage
    fresh = run(page("disagreements"))
    assert fresh.selectbox(key="snapshot_picker").value == new


def test_review_page_needs_a_name_to_save(writable_store):
    store = writable_store
    at = pick(run(page("review")), store, "labeled")
    at = run(at.selectbox(key="rev_task").set_value("strategy"))
    at = run(at.button(key="rev_accept").click())
    assert at.button(key="rev_save").disabled
    assert any("Enter your name" in c.value for c in at.caption)
    at = run(at.radio(key="rev_only").set_value("unreviewed"))
    assert any("Enter your name" in w.value for w in at.warning)


# ------------------------------------------------------------------ Curation


def test_curation_page_shows_drops_and_clusters(store_env):
    store = store_env
    at = pick(run(page("curation_report")), store, "clean")
    rep = build_report(store, "clean", examples=5)
    labels = [e.label for e in at.expander]
    assert labels == [
        f"{ui.step_title(d['step'])} · {d['reason'].replace('_', ' ')} · {d['count']:,} records" for d in rep["drops"]
    ]
    assert labels[0].startswith("Exact duplicates · exact duplicate · ")
    # what was dropped, as a chart: one bar segment per step and reason
    (chart,) = at.get("vega_lite_chart")
    bars = _chart_rows(chart)
    assert sorted((b["step"], b["reason"], b["records"]) for b in bars) == sorted(
        (ui.step_title(d["step"]), d["reason"].replace("_", " "), d["count"]) for d in rep["drops"]
    )
    assert json.loads(chart.proto.spec)["encoding"]["y"]["axis"]["labelLimit"] == 0
    steps = at.dataframe[0].value
    assert steps["step"].tolist() == [ui.step_title(s["name"]) for s in rep["steps"]]
    assert steps["dropped"].sum() == sum(d["count"] for d in rep["drops"])
    assert "other counts" in _wrapped_columns(at.dataframe[0])
    exact = next(c for c in rep["clusters"] if c["name"] == "exact_dedup.clusters")
    assert any(f"**Exact duplicates: clusters**: {exact['clusters']:,} clusters" in t for t in texts(at))
    kept = [t for t in texts(at) if t.startswith(":green[kept]")]
    assert len(kept) == len(exact["largest"])
    # headings in words: no internal name (exact_dedup.clusters, leak_free_splits.leaks) as a heading
    assert "Split leaks" in headings(at)
    assert not [h for h in headings(at) if re.search(r"[a-z]_[a-z]|[a-z]\.[a-z]", h)], headings(at)


def test_curation_page_on_a_snapshot_curate_did_not_make(store_env):
    store = store_env
    at = pick(run(page("curation_report")), store, "validated")
    assert "was not made by `workbench curate`" in at.info[0].value and "clean" in at.info[0].value


# ------------------------------------------------------------------ Results


def test_results_page_says_how_to_get_results(store_env):
    at = run(page("results"))
    assert "No evaluation reports or training runs yet" in at.info[0].value
    assert "metrics.jsonl" in at.info[0].value and "eval*.json" in at.info[0].value


def test_results_page_shows_reports_and_loss_curves(store_env, monkeypatch, tmp_path):
    runs = tmp_path / "runs"
    (runs / "qlora").mkdir(parents=True)
    (runs / "qlora" / "metrics.jsonl").write_text(
        "\n".join(json.dumps({"step": s, "loss": 3 / s, "eval_loss": 3.5 / s}) for s in range(1, 21))
    )
    report = {
        "models": {"base": "tiny", "finetuned": "tiny+lora"},
        "metrics": [
            {"metric": "empathy_judge", "model": "base", "value": 2.9, "ci_low": 2.6, "ci_high": 3.2, "n": 30},
            {"metric": "empathy_judge", "model": "finetuned", "value": 3.6, "ci_low": 3.3, "ci_high": 3.9, "n": 30},
        ],
    }
    report["comparisons"] = [
        {"metric": "empathy_judge", "model": "finetuned", "against": "base", "delta": 0.7, "delta_ci_low": 0.3,
         "delta_ci_high": 1.1, "test": "wilcoxon signed-rank", "p_adjusted": 0.004, "verdict": "improved",
         "mde": 0.35, "n_needed": 18, "n": 30}
    ]  # fmt: skip
    (runs / "qlora" / "eval.json").write_text(json.dumps(report))
    (runs / "eval-bad.json").write_text("{}")
    monkeypatch.setenv("WORKBENCH_RUNS", str(runs))
    at = run(page("results"))
    table = at.dataframe[0].value
    assert table.iloc[0]["metric"] == "empathy_judge" and table.iloc[0]["finetuned"] == 3.6
    assert table.iloc[0]["finetuned CI"] == "[3.3, 3.9]"
    verdicts = at.dataframe[1].value
    assert verdicts.iloc[0]["verdict"] == "improved" and verdicts.iloc[0]["delta CI"] == "[0.3, 1.1]"
    assert "eval-bad.json" in at.warning[0].value
    assert at.multiselect(key="res_runs").value == ["qlora"]
    assert at.multiselect(key="res_series").value == ["loss", "eval_loss"]
    assert len(at.get("vega_lite_chart")) == 2


def test_after_the_example_run_alone_pages_open_on_its_snapshots(writable_store):
    """A store with only the example run's refs (no user names): label pages open on example-labeled, the
    curation page on example-clean, not on `latest` (the validated snapshot, which is not a curate step)."""
    for name in ("dd-raw", "ed-raw", "esconv-raw", "ge-raw", "owt-raw", "clean", "labeled", "validated"):
        writable_store.delete_ref(name)
    at = run(page("curation_report"))
    assert at.selectbox(key="snapshot_picker").value == writable_store.resolve("example-clean")
    at = run(page("disagreements"))
    assert at.selectbox(key="snapshot_picker").value == writable_store.resolve("example-labeled")
