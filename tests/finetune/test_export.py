"""Export on real data: the bundled examples ingested, curated, labeled locally and validated (as `workbench run`)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from curation.errors import StoreError, WorkbenchError
from curation.store import SnapshotStore
from finetune.export import ExportStore, export_snapshot, mixed_counts, parse_mix, temperature_shares
from finetune.tasks.base import choose

ROOT = Path(__file__).resolve().parents[2]
ALL_TASKS = ["response", "emotion", "strategy", "traits"]


@pytest.fixture(scope="module")
def store_url(validated_store) -> str:
    """dd/ed/esconv/ge/owt-raw -> clean -> labeled -> validated (tests/conftest.py), a copy of our own."""
    return validated_store("export")


@pytest.fixture(scope="module")
def mixed(store_url):
    return export_snapshot("validated", store=store_url, tasks=ALL_TASKS, mix_alpha=0.5, seed=3, tag="e1")


def _files(root: str) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in Path(root, "exports").rglob("*") if p.is_file()}


def test_refuses_an_unvalidated_snapshot_and_writes_nothing(store_url):
    with pytest.raises(WorkbenchError, match=r"refusing to export snapshot \w+ \(labeled\).*--allow-unvalidated"):
        export_snapshot("labeled", store=store_url, tasks=["response"], tag="never")
    assert not Path(store_url, "export-refs", "never.json").exists()
    assert not Path(store_url, "exports").exists()  # the first export of this store: nothing was written
    result = export_snapshot("labeled", store=store_url, tasks=["response"], allow_unvalidated=True)
    assert result.manifest["snapshot"]["status"] == "draft"
    assert result.manifest["snapshot"]["allow_unvalidated"] is True


def test_same_inputs_same_id_and_nothing_new_written(store_url, mixed):
    before = _files(store_url)
    again = export_snapshot("validated", store=store_url, tasks=ALL_TASKS, mix_alpha=0.5, seed=3)
    assert again.export_id == mixed.export_id and again.reused
    assert _files(store_url) == before
    other_seed = export_snapshot("validated", store=store_url, tasks=ALL_TASKS, mix_alpha=0.5, seed=4)
    assert other_seed.export_id != mixed.export_id
    with_prompt = export_snapshot("validated", store=store_url, tasks=["response"], system_prompt="Be kind.")
    without = export_snapshot("validated", store=store_url, tasks=["response"])
    assert with_prompt.export_id != without.export_id
    assert ExportStore(store_url).resolve("e1") == mixed.export_id
    assert ExportStore(store_url).resolve(mixed.export_id[:8]) == mixed.export_id


def test_mixing_follows_temperature_shares():
    sizes = {("emotion", "goemotions"): 900, ("response", "esconv"): 100, ("traits", "openwebtext"): 4}
    for alpha in (0.0, 0.3, 0.5, 1.0):
        counts = mixed_counts(sizes, alpha)
        total = sum(sizes.values())
        assert sum(counts.values()) == total
        weights = {k: n**alpha for k, n in sizes.items()}
        for k, n in counts.items():
            assert abs(n - total * weights[k] / sum(weights.values())) < 1.0
    assert mixed_counts(sizes, 1.0) == sizes
    assert temperature_shares(sizes, 0.0) == pytest.approx({k: 1 / 3 for k in sizes})
    assert parse_mix("temperature:0.5") == 0.5 and parse_mix(None) is None
    for bad in ("temperature:2", "temp:0.5", "temperature:x"):
        with pytest.raises(WorkbenchError):
            parse_mix(bad)


def test_mixing_on_real_data_touches_only_train(store_url, mixed):
    m = mixed.manifest
    before, after = m["counts"]["before_mix"], m["counts"]["after_mix"]
    assert before["validation"] == after["validation"] and before["test"] == after["test"]
    sizes = {(t, s): n for t, by in before["train"].items() for s, n in by.items()}
    got = {(t, s): n for t, by in after["train"].items() for s, n in by.items()}
    assert got == mixed_counts(sizes, 0.5)
    total, weights = sum(sizes.values()), {k: n**0.5 for k, n in sizes.items()}
    for k, n in got.items():
        assert abs(n / total - weights[k] / sum(weights.values())) <= 1 / total
    assert m["mix"]["resampled_splits"] == ["train"]
    rows = ExportStore(store_url).read_rows("e1", "train")
    assert len(rows) == total == sum(got.values())
    assert len({r["id"] for r in rows}) == len(rows)  # upsampled copies get ~k ids
    assert Counter((r["task"], r["source"]) for r in rows) == Counter(got)


def test_response_examples_are_multi_turn_with_every_listener_turn_a_target(store_url):
    result = export_snapshot("validated", store=store_url, tasks=["response"], system_prompt="You listen with care.")
    exports, snapshots = ExportStore(store_url), SnapshotStore(store_url)
    records = {r["id"]: r for r in snapshots.iter_records("validated")}
    listener = {"esconv": "supporter", "empatheticdialogues": "listener", "dailydialog": "B"}
    seen = Counter()
    for split in result.manifest["files"]:
        for row in exports.read_rows(result.export_id, split):
            seen[row["source"]] += 1
            messages = row["messages"]
            assert messages[0] == {"role": "system", "content": "You listen with care."}
            roles = [m["role"] for m in messages[1:]]
            assert roles[0] == "user" and roles[-1] == "assistant"
            assert all(a != b for a, b in itertools.pairwise(roles))  # strictly alternating
            record = records[row["record_id"]]
            turns = record["turns"]
            first_user = next(i for i, t in enumerate(turns) if t["speaker"] != listener[row["source"]])
            wanted = [t["text"] for t in turns[first_user:] if t["speaker"] == listener[row["source"]]]
            assistant_text = "\n".join(m["content"] for m in messages if m["role"] == "assistant")
            assert assistant_text == "\n".join(wanted)  # every listener turn after the first user turn, in order
            assert row["target_source"] == "gold" and row["template"] == "response@v1"
            assert row["id"] == f"response:{row['record_id']}" and row["split"] == record["split"]
    assert set(seen) == {"esconv", "empatheticdialogues", "dailydialog"}
    counters = result.manifest["task_counters"]["response"]
    assert counters["turns: leading listener turns dropped"] > 0  # ESConv supporters greet first
    assert counters["turns: consecutive listener turns merged"] > 0


def test_label_precedence():
    def lab(value, source, agent="a", turn=None):
        return {"task": "emotion", "value": value, "source": source, "agent": agent, "turn": turn}

    labels = [lab("joy", "model"), lab("anger", "llm"), lab("fear", "human", "ann1"), lab("fear", "human", "ann2")]
    assert choose(labels, "emotion", turn=None).source == "human"
    assert choose(labels, "emotion", turn=None).values == ["fear"]
    assert choose([*labels, lab("love", "gold")], "emotion", turn=None).values == ["love"]
    assert choose(labels[:2], "emotion", turn=None).values == ["anger"]
    assert choose(labels, "emotion", turn=0) is None
    split_vote = [lab("fear", "human", "ann1"), lab("joy", "human", "ann2"), lab("joy", "human", "ann3")]
    assert choose(split_vote, "emotion", turn=None).values == ["joy"]


def test_targets_and_manifest_counts_follow_precedence(store_url, mixed):
    exports = ExportStore(store_url)
    m = mixed.manifest
    rows = [r for split in m["files"] for r in exports.read_rows("e1", split)]
    by_task = Counter(r["task"] for r in rows)
    assert by_task.keys() == set(ALL_TASKS)
    traits = [r for r in rows if r["task"] == "traits"]
    assert {r["target_source"] for r in traits} == {"model"}  # only the local heuristics rated traits: marked
    target = json.loads(traits[0]["messages"][-1]["content"])
    assert list(target) == ["formality", "persuasiveness", "enthusiasm", "empathy", "filler_words", "transition_logic"]
    assert all(1 <= v["score"] <= 10 and v["explanation"] for v in target.values())
    emotion = {r["id"]: r for r in rows if r["task"] == "emotion"}
    ge = next(r for r in emotion.values() if r["source"] == "goemotions")
    assert ge["target_source"] == "gold"  # the comment's own label, not the local model's
    owt = next(r for r in emotion.values() if r["source"] == "openwebtext")
    assert owt["target_source"] == "model"  # no gold there: the model's label, marked
    assert json.loads(owt["messages"][-1]["content"])["emotions"]
    strategy = next(r for r in rows if r["task"] == "strategy")
    assert all(m_["content"].startswith("[") for m_ in strategy["messages"] if m_["role"] == "assistant")
    # label-source counts: one per target, matching the rows written
    for task, by_split in m["label_sources"]["after_mix"].items():
        for split, counts in by_split.items():
            task_rows = [r for r in rows if r["task"] == task and r["split"] == split]
            if task == "traits":
                assert sum(counts.values()) == 6 * len(task_rows)
            if task == "emotion":
                assert counts == dict(Counter(r["target_source"] for r in task_rows))


def test_loads_with_datasets_in_one_line(store_url, mixed):
    from datasets import load_dataset

    exports = ExportStore(store_url)
    parquet = load_dataset("parquet", data_files=exports.data_files("e1"))
    jsonl = load_dataset("json", data_files=exports.data_files("e1", "jsonl"))
    assert set(parquet) == set(mixed.manifest["files"]) == set(jsonl)
    for split, desc in mixed.manifest["files"].items():
        assert len(parquet[split]) == desc["parquet"]["rows"] == len(jsonl[split])
        assert parquet[split][0]["id"] == jsonl[split][0]["id"]
        assert parquet[split][0]["messages"] == jsonl[split][0]["messages"]
    assert set(parquet["train"].column_names) == {
        "id",
        "task",
        "messages",
        "record_id",
        "source",
        "split",
        "target_source",
        "template",
        "heads",
    }


def test_head_labels_one_per_assistant_message_from_the_context_it_answers(store_url, mixed):
    from curation import vocabularies

    exports = ExportStore(store_url)
    snapshots = SnapshotStore(store_url)
    records = {r["id"]: r for r in snapshots.iter_records("validated")}
    rows = [r for split in mixed.manifest["files"] for r in exports.read_rows("e1", split)]
    strategies = set(vocabularies.load("strategy").labels)
    for row in rows:
        assistants = [m for m in row["messages"] if m["role"] == "assistant"]
        if row["task"] == "traits":
            assert row["heads"] == []
            continue
        assert len(row["heads"]) == len(assistants), row["id"]
    # emotion task: the head learns the target itself (the JSON answer)
    emotion = next(r for r in rows if r["task"] == "emotion" and r["source"] == "goemotions")
    answer = json.loads(emotion["messages"][-1]["content"])["emotions"]
    assert emotion["heads"] == [{"emotions": answer, "strategy": None}]
    # strategy task on ESConv: every supporter message has its first turn's strategy, the tag the reply starts with
    strategy = next(r for r in rows if r["task"] == "strategy")
    tags = [m["content"][1:].split("]", 1)[0] for m in strategy["messages"] if m["role"] == "assistant"]
    assert [h["strategy"] for h in strategy["heads"]] == tags and set(tags) <= strategies
    seeker = choose(records[strategy["record_id"]]["labels"], "emotion", turn=None)
    assert all(h["emotions"] == seeker.values for h in strategy["heads"])  # ESConv: the seeker's emotion
    # DailyDialog responses: the emotion of the turn each reply answers (per-turn gold labels)
    dd = next(r for r in rows if r["task"] == "response" and r["source"] == "dailydialog" and len(r["heads"]) > 1)
    record = records[dd["record_id"]]
    answered = [i for i, t in enumerate(record["turns"]) if t["speaker"] == "A" and i + 1 < len(record["turns"])]
    expected = [choose(record["labels"], "emotion", turn=i).values for i in answered][: len(dd["heads"])]
    assert [h["emotions"] for h in dd["heads"]] == expected
    counts = mixed.manifest["head_labels"]["train"]
    train = [r for r in rows if r["split"] == "train"]
    assert counts["strategy"] == sum(h["strategy"] is not None for r in train for h in r["heads"]) > 0
    assert counts["emotion"] == sum(bool(h["emotions"]) for r in train for h in r["heads"]) > 0


def test_token_lengths_named(store_url, mixed):
    lengths = mixed.manifest["token_lengths"]
    assert lengths["unit"].startswith("whitespace words (proxy")
    stats = lengths["by_split"]["train"]["response"]
    assert stats["n"] > 0 and stats["p50"] <= stats["p95"] <= stats["max"]
    tokens = export_snapshot("validated", store=store_url, tasks=["response"], tokenizer="qwen2.5")
    assert tokens.manifest["token_lengths"]["tokenizer"] == "qwen2.5"
    assert tokens.manifest["token_lengths"]["unit"] == "tokens"


def test_exported_rows_pass_the_mask_check(store_url, mixed):
    from finetune.masking import check_masks
    from finetune.tokenizer import load_tokenizer

    rows = ExportStore(store_url).read_rows("e1", "validation")
    share = check_masks(load_tokenizer("qwen2.5"), rows)
    assert 0.02 < share < 0.9


def test_a_tampered_file_is_refused(store_url):
    result = export_snapshot("validated", store=store_url, tasks=["emotion"], seed=11, mix_alpha=1.0)
    exports = ExportStore(store_url)
    path = Path(exports.data_files(result.export_id)["train"])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"train\.parquet has changed since it was written \(sha256"):
        ExportStore(store_url).data_files(result.export_id)
    path.write_bytes(b"short")
    with pytest.raises(StoreError, match=r"truncated or replaced"):
        ExportStore(store_url).data_files(result.export_id)
    manifest = Path(exports.export_path(result.export_id), "manifest.json")
    edited = json.loads(manifest.read_text())
    edited["rows"] += 1
    manifest.write_text(json.dumps(edited))
    with pytest.raises(StoreError, match="seal does not match"):
        ExportStore(store_url).manifest(result.export_id)


def _cli(store_url, *args):
    env = {**os.environ, "WORKBENCH_STORE": store_url, "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "ui.cli", *args], capture_output=True, text=True, env=env, cwd=ROOT)


def test_cli_export_list_show_and_preview(store_url, mixed):
    proc = _cli(
        store_url, "export", "validated", "--tasks", "response,strategy", "--mix", "temperature:0.5", "--tag", "cli"
    )
    assert proc.returncode == 0, proc.stderr
    assert "export ref cli ->" in proc.stdout
    listed = _cli(store_url, "export", "list")
    assert listed.returncode == 0 and "cli" in listed.stdout and mixed.export_id in listed.stdout
    preview = _cli(store_url, "export", "show", "cli", "--preview", "2", "--task", "response", "--tokenizer", "qwen2.5")
    assert preview.returncode == 0, preview.stderr
    out = preview.stdout
    assert "<|im_start|>user\n" in out and "<|im_start|>assistant[[\n" in out
    assert "<|im_end|>\n]]" in out  # the end-of-turn token (and its newline) inside the trained span
    assert "[[<|im_start|>" not in out  # headers never trained
    assert "mask check passed on 2 example(s)" in out and "trained-token share" in out
    shown = _cli(store_url, "export", "show", "cli", "--json")
    assert json.loads(shown.stdout)["id"] == ExportStore(store_url).resolve("cli")
    bad = _cli(store_url, "export", "labeled", "--tasks", "response")
    assert bad.returncode == 1 and bad.stderr.startswith("error: refusing to export snapshot")
    assert len(bad.stderr.strip().splitlines()) == 1
    unknown = _cli(store_url, "export", "validated", "--tasks", "response,poetry")
    assert unknown.returncode == 1 and "unknown export task 'poetry'" in unknown.stderr
