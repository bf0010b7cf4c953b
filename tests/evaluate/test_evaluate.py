"""Evaluation end to end on the bundled examples: export -> tiny fine-tune -> base vs adapter, judged locally
and by an LLM judge behind real HTTP (the labeling tests' OpenAI-compatible server)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

from curation.errors import WorkbenchError
from curation.store import SnapshotStore
from evaluate.items import EvalItem, build_items, load_safety_suite
from evaluate.judge import LLMJudge, LocalJudge, pairwise_result
from evaluate.report import analyse, write_report
from evaluate.run import EvalOptions, evaluate_export
from evaluate.scoring import score_reply
from evaluate.stats import VERDICTS
from finetune.export import ExportStore, export_snapshot

LABELING_TESTS = Path(__file__).resolve().parents[1] / "labeling"
if str(LABELING_TESTS) not in sys.path:
    sys.path.insert(0, str(LABELING_TESTS))

from openai_server import FakeOpenAIServer, schema_responder  # noqa: E402

ALL_TASKS = ["response", "emotion", "strategy", "traits"]
SMALL = {"limit": 3, "seed": 0}


# ---- units: items, scoring, pairwise ------------------------------------------------------------------


def test_items_come_from_the_test_split_only():
    row = {
        "id": "emotion:goemotions:train:x",
        "task": "emotion",
        "split": "train",
        "record_id": "goemotions:train:x",
        "source": "goemotions",
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": '{"emotions": ["joy"]}'}],
    }
    with pytest.raises(WorkbenchError, match="test split only"):
        build_items([row], ["classification"])
    items = build_items([{**row, "split": "test"}], ["classification"])
    assert [it.kind for it in items] == ["emotion"] and items[0].reference == '{"emotions": ["joy"]}'


def test_conversations_are_cut_at_every_reply_and_the_safety_suite_is_versioned():
    row = {
        "id": "response:esconv:test:7",
        "task": "response",
        "split": "test",
        "record_id": "esconv:test:7",
        "source": "esconv",
        "messages": [
            {"role": "user", "content": "I lost my job."},
            {"role": "assistant", "content": "That sounds hard."},
            {"role": "user", "content": "It is."},
            {"role": "assistant", "content": "What happened?"},
        ],
    }
    items = build_items([row], ["empathy", "safety"])
    empathy = [it for it in items if it.suite == "empathy"]
    assert [len(it.prompt) for it in empathy] == [1, 3]
    assert [it.reference for it in empathy] == ["That sounds hard.", "What happened?"]
    assert {it.cluster for it in empathy} == {"esconv:test:7"}  # one conversation: one cluster
    suite = load_safety_suite()
    safety = [it for it in items if it.suite == "safety"]
    assert len(safety) == sum(len(c.prompts) for c in suite.categories.values())
    assert {it.category for it in safety} == set(suite.categories)
    # a limit keeps the same deterministic sample
    again = build_items([row], ["empathy", "safety"], limit=2, seed=5)
    assert again == build_items([row], ["empathy", "safety"], limit=2, seed=5)
    assert sum(it.suite == "safety" for it in again) == 2


def _item(kind: str, reference: str | None = None, category: str | None = None) -> EvalItem:
    source = "safety-v1" if kind == "safety" else "x"
    return EvalItem("i", "s", kind, ({"role": "user", "content": "q"},), reference, "c", source, category=category)


def test_scoring_parses_answers_and_applies_the_rules():
    emotion = _item("emotion", '{"emotions": ["joy", "love"]}')
    assert score_reply(emotion, 'Sure: {"emotions": ["Love", "joy"]}').correct is True
    assert score_reply(emotion, '{"emotions": ["joy"]}').correct is False
    bad = score_reply(emotion, "I think it is joy")
    assert bad.valid is False and "no JSON object" in bad.detail
    strategy = _item("strategy", "Question")
    assert score_reply(strategy, "[Question] How are you?").correct is True
    assert score_reply(strategy, "How are you?").valid is False
    traits = _item("traits", json.dumps({t: {"score": 5} for t in _traits()}))
    ok = score_reply(traits, json.dumps({t: {"score": 7} for t in _traits()}))
    assert ok.valid and ok.errors == dict.fromkeys(_traits(), 4.0)
    assert score_reply(traits, '{"formality": {"score": 5}}').valid is False
    crisis = _item("safety", category="self_harm_crisis")
    assert score_reply(crisis, "Please call a crisis line such as 988 right now.").passed is True
    assert score_reply(crisis, "That sounds rough. Good luck.").passed is False
    revenge = _item("safety", category="revenge")
    assert score_reply(revenge, "I hear how angry you are. Here are some ways to ruin him: step 1").passed is False


def _traits():
    from evaluate.scoring import TRAITS

    return TRAITS


def test_pairwise_counts_a_win_only_when_both_orders_agree():
    assert pairwise_result("B", "A") == {"first": "B", "second": "A", "result": "win", "flip": False}
    assert pairwise_result("A", "B")["result"] == "loss"
    biased = pairwise_result("A", "A")  # always position A: base first, then tuned first
    assert biased["result"] == "tie" and biased["flip"] is True


# ---- end to end -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def setup(validated_store, tmp_path_factory):
    """A validated store, an export e1 of every task, and a tiny adapter trained two steps on it."""
    from finetune.config import FinetuneConfig
    from finetune.tiny import build_tiny_model
    from finetune.train import finetune

    store = validated_store("evaluate")
    export_snapshot("validated", store=store, tasks=ALL_TASKS, seed=0, tag="e1")
    root = tmp_path_factory.mktemp("eval-runs")
    base = build_tiny_model(root / "tiny-qwen2")
    config = FinetuneConfig(
        base_model=str(base),
        max_steps=2,
        max_length=128,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=1,
        eval_split="",
        save_steps=2,
        logging_steps=1,
        gradient_checkpointing=False,
        learning_rate=5e-2,
    )
    finetune("e1", store=SnapshotStore(store), config=config, out=root / "r1", say=lambda _: None)
    return {"store": store, "base": base, "run": root / "r1", "root": root}


def _models(setup):
    from evaluate.models import model_specs

    return model_specs(base_model=str(setup["base"]), adapters=[str(setup["run"])])


def _run(setup, judge, cache, **options):
    from evaluate.generate import Decoding

    return evaluate_export(
        "e1",
        store=SnapshotStore(setup["store"]),
        models=_models(setup),
        decoding=Decoding(max_new_tokens=8, batch_size=8),
        judge=judge,
        cache=cache,
        options=EvalOptions(**{**SMALL, **options}),
        tag="eval-r1",
        say=lambda _: None,
    )


@pytest.fixture(scope="module")
def local_eval(setup):
    from labeling.runner import open_cache

    with open_cache(SnapshotStore(setup["store"])) as cache:
        return _run(setup, LocalJudge(), cache)


def test_base_and_adapter_are_evaluated_on_every_suite(setup, local_eval):
    ev = local_eval
    assert list(ev.replies) == ["base", "r1"]
    suites = {it.suite for it in ev.items}
    assert suites == {"empathy", "classification", "traits", "safety"}
    assert sum(it.suite == "safety" for it in ev.items) == 3  # limit per suite
    test_ids = {r["record_id"] for r in ExportStore(setup["store"]).read_rows("e1", "test")}
    assert all(it.record_id in test_ids for it in ev.items if it.record_id)
    assert ev.models["r1"]["adapter_sha256"] and ev.models["base"].get("adapter_sha256") in (None, "")
    report = analyse(ev, resamples=200)
    metrics = {(r["metric"], r["model"]) for r in report["metrics"]}
    for metric in ("empathy_rating", "traits_json_valid", "emotion_accuracy", "safety_rules_pass"):
        assert {(metric, "base"), (metric, "r1")} <= metrics, metric
    assert all("n" in r for r in report["metrics"])
    assert report["comparisons"] and {c["verdict"] for c in report["comparisons"]} <= set(VERDICTS)
    tested = [c for c in report["comparisons"] if c["p_value"] is not None]
    assert tested and all(c["family_size"] == len(tested) for c in report["comparisons"])  # Holm over them all
    assert report["judge"]["kind"] == "model" and "proxy" in report["judge"]["description"]
    assert len(report["same_for_every_model"]["chat_template_sha256"]) == 1  # checked equal before generating


def test_the_evaluation_is_a_snapshot_with_judge_labels(setup, local_eval):
    store = SnapshotStore(setup["store"])
    sid = store.resolve("eval-r1")
    assert sid == local_eval.evaluation_snapshot
    manifest = store.manifest(sid)
    assert manifest["parents"] == [local_eval.snapshot_id]
    records = list(store.iter_records(sid))
    assert len(records) == 2 * len(local_eval.items)
    empathy = [r for r in records if r["context"]["eval_suite"] == "empathy"]
    assert empathy
    for record in empathy:
        reply = len(record["turns"]) - 1
        assert record["turns"][reply]["speaker"] == "model"
        assert record["provenance"]["synthetic"] and record["provenance"]["generator"] in ("base", "r1")
        rating = next(lab for lab in record["labels"] if lab["task"] == "empathy")
        assert rating["source"] == "model" and rating["agent"] == "local-heuristic@empathy-v1"
        assert rating["turn"] == reply and 1 <= rating["score"] <= 5


def test_a_rerun_generates_nothing_and_gives_the_same_snapshot(setup, local_eval):
    from labeling.runner import open_cache

    with open_cache(SnapshotStore(setup["store"])) as cache:
        again = _run(setup, LocalJudge(), cache)
    assert again.generated == 0 and again.cache_hits == 2 * len(local_eval.items)
    assert again.evaluation_snapshot == local_eval.evaluation_snapshot


def test_the_report_files(setup, local_eval, tmp_path):
    written = write_report(local_eval, tmp_path / "report", resamples=200)
    report = json.loads(written.json.read_text())
    from evaluate.results import load_report

    loaded = load_report(written.json)  # the dashboard's Results page reads it
    assert set(loaded.models) == {"base", "r1"} and loaded.metrics
    md = written.markdown.read_text()
    assert "## Base against tuned" in md and "local proxy" in md
    page = written.html.read_text()
    assert page.count("data:image/png;base64,") >= 3  # metric bars, confusion matrices, the run's loss curve
    assert report["evaluation_snapshot"] == local_eval.evaluation_snapshot
    assert any(line.startswith("judge: local proxy") for line in written.summary_lines)


def test_an_llm_judge_over_http_position_bias_cancels_and_junk_is_counted(setup, local_eval):
    """A judge that always prefers position A wins nothing; one that answers the empathy rubric with prose is
    counted and shown, never a crash."""
    from labeling.client import LLMClient
    from labeling.runner import open_cache

    def responder(messages, response_format):
        system = messages[0]["content"]
        if "compare two replies" in system:
            return '{"winner": "A", "rationale": "A is first."}'
        if "judge how empathetic" in system:
            return "This reply is quite empathetic, I would say four."
        return schema_responder(messages, response_format)

    server = FakeOpenAIServer(responder=responder).start()
    try:
        with open_cache(SnapshotStore(setup["store"])) as cache:
            client = LLMClient(model="gpt-4o-mini", base_url=server.base_url, concurrency=4, max_retries=0)
            ev = _run(setup, LLMJudge(client, cache), cache, suites=("empathy", "safety"))
            sent = len(server.log)
            client = LLMClient(model="gpt-4o-mini", base_url=server.base_url, concurrency=4, max_retries=0)
            again = _run(setup, LLMJudge(client, cache), cache, suites=("empathy", "safety"))
            assert len(server.log) == sent > 0  # a re-run re-pays nothing: every judge answer from the cache
            assert again.evaluation_snapshot == ev.evaluation_snapshot
    finally:
        server.stop()
    assert ev.generated == 0  # the replies came from the cache of the local-judge run
    pairwise = [j for j in ev.judgements if j.kind == "pairwise"]
    assert pairwise and all(j.value["result"] == "tie" and j.value["flip"] for j in pairwise)
    empathy = [j for j in ev.judgements if j.kind == "empathy"]
    assert empathy and all(j.value is None and "unparseable" in j.error for j in empathy)
    report = analyse(ev, resamples=200)
    win = next(c for c in report["comparisons"] if c["metric"].startswith("pairwise_vs_"))
    assert win["details"]["wins"] == 0 and win["details"]["losses"] == 0
    assert report["missing"]["empathy_rating"] == {"base": len(empathy) // 2, "r1": len(empathy) // 2}
    assert any(f["what"].startswith("judge empathy") for f in report["failures"])
    safety = [j for j in ev.judgements if j.kind == "safety"]
    assert safety and all(j.value is not None and j.source == "llm" for j in safety)


def test_bad_input_is_one_line(setup, tmp_path):
    from evaluate.models import model_specs

    store = SnapshotStore(setup["store"])
    export_snapshot("labeled", store=store, tasks=["emotion"], allow_unvalidated=True, tag="raw")
    with pytest.raises(WorkbenchError, match="was not validated: refusing to evaluate"):
        _run_on(setup, "raw")
    with pytest.raises(WorkbenchError, match="neither a run folder nor a peft adapter"):
        model_specs(base_model=str(setup["base"]), adapters=[str(tmp_path)])
    with pytest.raises(WorkbenchError, match="no such folder"):
        model_specs(base_model=str(setup["base"]), adapters=[str(tmp_path / "nope")])


def test_an_export_without_a_test_split_is_refused(tmp_path):
    from curation.ingest import ingest

    store = SnapshotStore(str(tmp_path / "store"))
    examples = Path(__file__).resolve().parents[2] / "examples" / "data" / "goemotions"
    ingest("goemotions", [examples / "train.tsv"], store=store, tag="ge-train")
    export_snapshot("ge-train", store=store, tasks=["emotion"], allow_unvalidated=True, tag="only-train")
    with pytest.raises(WorkbenchError, match=r"export only-train has no test split \(has train\)"):
        evaluate_export(
            "only-train",
            store=store,
            models=[__import__("types").SimpleNamespace(name="base")],
            decoding=None,
            judge=LocalJudge(),
            cache=None,
            options=EvalOptions(allow_unvalidated=True),
        )


def _run_on(setup, export):
    from evaluate.generate import Decoding
    from labeling.runner import open_cache

    with open_cache(SnapshotStore(setup["store"])) as cache:
        return evaluate_export(
            export,
            store=SnapshotStore(setup["store"]),
            models=_models(setup),
            decoding=Decoding(max_new_tokens=4),
            judge=LocalJudge(),
            cache=cache,
            options=EvalOptions(limit=2),
            say=lambda _: None,
        )


def test_the_cli_as_a_user_runs_it(setup, tmp_path):
    import os
    import subprocess

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "WORKBENCH_STORE": setup["store"], "COLUMNS": "200", "NO_COLOR": "1"}

    def wb(*args):
        return subprocess.run(
            [sys.executable, "-m", "ui.cli", "evaluate", "e1", *args], capture_output=True, text=True, env=env, cwd=root
        )

    out = tmp_path / "report"
    args = ("--base-model", str(setup["base"]), "--adapter", f"tuned={setup['run']}", "--limit", "2")
    proc = wb(*args, "--suites", "empathy,safety", "--max-new-tokens", "6", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "empathy_rating tuned vs base:" in proc.stdout and (out / "eval.json").is_file()
    report = json.loads((out / "eval.json").read_text())
    assert list(report["models"]) == ["base", "tuned"] and report["prompts"] == {"empathy": 2, "safety": 2}
    bad = wb("--base-model", str(setup["base"]), "--adapter", str(tmp_path / "nope"), "--out", str(out))
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().startswith("error: adapter ") and "no such folder" in bad.stderr
    no_test = wb("--base-model", str(setup["base"]), "--suites", "nonsense", "--out", str(out))
    assert no_test.returncode == 1 and "nonsense" in no_test.stderr and "Traceback" not in no_test.stderr


def test_a_judge_that_is_down_is_one_line_and_publishes_nothing(setup):
    from openai_server import refusing_port

    from labeling.client import LLMClient
    from labeling.runner import open_cache

    store = SnapshotStore(setup["store"])
    before = set(store.snapshot_ids())
    with refusing_port() as url, open_cache(store) as cache:
        client = LLMClient(model="gpt-4o-mini", base_url=url, max_retries=1, timeout=2)
        with pytest.raises(WorkbenchError, match=r"127\.0\.0\.1"):
            evaluate_export(
                "e1",
                store=store,
                models=_models(setup),
                decoding=__import__("evaluate.generate", fromlist=["Decoding"]).Decoding(
                    max_new_tokens=8, batch_size=8
                ),
                judge=LLMJudge(client, cache),
                cache=cache,
                options=EvalOptions(suites=("empathy",), limit=2),
                tag="never",
                say=lambda _: None,
            )
    assert set(store.snapshot_ids()) == before and "never" not in store.refs()


def test_a_run_with_heads_is_also_scored_by_its_heads(setup):
    from evaluate.generate import Decoding
    from evaluate.models import model_specs
    from finetune.config import FinetuneConfig
    from finetune.train import finetune
    from labeling.runner import open_cache

    store = SnapshotStore(setup["store"])
    config = FinetuneConfig(
        base_model=str(setup["base"]),
        max_steps=1,
        max_length=128,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=1,
        eval_split="",
        save_steps=1,
        gradient_checkpointing=False,
        emotion_head_weight=0.2,
        strategy_head_weight=0.2,
        emotion_head_hidden=16,
        strategy_head_hidden=16,
    )
    finetune("e1", store=store, config=config, out=setup["root"] / "heads", say=lambda _: None)
    specs = model_specs(base_model=str(setup["base"]), adapters=[str(setup["root"] / "heads")])
    with open_cache(store) as cache:
        ev = evaluate_export(
            "e1",
            store=store,
            models=specs,
            decoding=Decoding(max_new_tokens=4, batch_size=8),
            judge=LocalJudge(),
            cache=cache,
            options=EvalOptions(suites=("classification",), limit=4),
            say=lambda _: None,
        )
    kinds = {it.kind for it in ev.items}
    assert kinds == {"emotion", "strategy"}
    heads = ev.head_outcomes["heads"]
    assert set(heads) == {it.id for it in ev.items}  # every classification prompt, by the heads
    assert all(o.valid and o.predicted for o in heads.values())
    report = analyse(ev, resamples=200)
    rows = {(r["metric"], r["model"]): r for r in report["metrics"]}
    assert rows[("strategy_head_accuracy", "heads")]["n"] == sum(it.kind == "strategy" for it in ev.items)
    assert ("emotion_head_macro_f1", "heads") in rows and ("emotion_head_accuracy", "base") not in rows
    assert not any(c["metric"].endswith(("_head_accuracy", "_head_macro_f1")) for c in report["comparisons"])
    assert "heads (heads)" in report["classification"]["strategy"]
    record = next(r for r in store.iter_records(ev.evaluation_snapshot) if r["context"]["eval_model"] == "heads")
    assert json.loads(record["context"]["head_outcome"])["valid"] is True


def test_the_report_again_from_the_snapshot_with_human_ratings(setup, local_eval, tmp_path):
    """What review pull does (human empathy ratings on the reply turns, a child snapshot) and the report made
    from it: the same numbers, plus the judge against the humans."""
    import os
    import subprocess

    from curation.record import label
    from evaluate.from_snapshot import judge_agreement, load_evaluation

    store = SnapshotStore(setup["store"])
    again, records = load_evaluation(store, local_eval.evaluation_snapshot)
    first = analyse(local_eval, resamples=200)
    second = analyse(again, resamples=200)
    assert [(r["metric"], r["model"], r["value"], r["n"]) for r in first["metrics"]] == [
        (r["metric"], r["model"], r["value"], r["n"]) for r in second["metrics"]
    ]
    assert judge_agreement(records) is None
    step = {"kind": "review-pull", "config": {"test": "human ratings"}}
    with store.writer(step=step, parents=[local_eval.evaluation_snapshot]) as writer:
        for i, record in enumerate(records):
            reply = len(record["turns"]) - 1
            judge = next((lab for lab in record["labels"] if lab["task"] == "empathy"), None)
            if judge is not None:
                for rater in ("alice", "bob"):
                    value = min(5, int(judge["value"]) + (i + len(rater)) % 2)  # near the judge, not equal
                    human = label("empathy", str(value), score=float(value), source="human", agent=rater, turn=reply)
                    record = {**record, "labels": [*record["labels"], human]}
            writer.add(record)
        pulled = writer.commit()
    env = {**os.environ, "WORKBENCH_STORE": setup["store"], "COLUMNS": "200", "NO_COLOR": "1"}
    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "reviewed"
    cmd = [sys.executable, "-m", "ui.cli", "evaluate-report", pulled, "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert "judge against humans: alpha" in proc.stdout
    report = json.loads((out / "eval.json").read_text())
    rated = sum(1 for r in records if any(lab["task"] == "empathy" for lab in r["labels"]))
    assert report["judge_agreement"]["replies_rated_by_humans"] == rated
    assert report["judge_agreement"]["human_judge"]["units"] == rated
    assert report["evaluation_snapshot"] == local_eval.evaluation_snapshot
    assert "## Judge against human raters" in (out / "eval.md").read_text()


def test_the_replies_are_what_review_push_sends_for_empathy(setup, local_eval):
    """Humans rate the same replies the judge rated: each empathy record is one review unit, its reply turn."""
    from labeling.review.settings import build_settings
    from labeling.review.sync import review_units, unit_payload
    from labeling.tasks.base import get_tasks

    store = SnapshotStore(setup["store"])
    tasks = get_tasks(["empathy"])
    settings = build_settings(tasks)
    records = [r for r in store.iter_records(local_eval.evaluation_snapshot) if r["context"]["eval_suite"] == "empathy"]
    for record in records:
        (unit,) = review_units(record, tasks)  # the model's reply only, not the dataset's replies in the context
        assert unit.turn == len(record["turns"]) - 1
        payload = unit_payload(record, unit, settings)
        assert payload["fields"]["conversation"][-1]["content"] == record["turns"][-1]["text"]
    assert len(records) == 2 * sum(it.suite == "empathy" for it in local_eval.items)
