"""workbench augment end to end: a real snapshot store, the real local OpenAI-compatible server, the real cache.

The responder plays a generator that is right most of the time: for a target emotion it answers with
REAL GoEmotions comments of that class taken from the dev / test files (the input snapshot holds only
the train file), lightly edited; one example per request is a light edit of a TRAIN comment (a near
duplicate of the input) and one is a comment the verifier will call another emotion. The verification
requests (the emotion task's own prompt) are answered from what the responder generated.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from curation.errors import WorkbenchError
from curation.ingest import ingest
from labeling.augment import TargetError, augment, distribution, load_targets, parse_targets

WRONG = "neutral"


def _comments(path: Path) -> list[tuple[str, list[str]]]:
    vocab = [line.strip() for line in (path.parent / "emotions.txt").read_text().splitlines() if line.strip()]
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        text, ids, _ = line.split("\t")
        out.append((text.strip('"'), [vocab[int(i)] for i in ids.split(",")]))
    return out


class GoEmotionsResponder:
    """Generation answers built from real comments of the target class; verification answers consistent with them."""

    def __init__(self, examples: Path) -> None:
        held_out = _comments(examples / "goemotions" / "dev.tsv") + _comments(examples / "goemotions" / "test.tsv")
        self.by_class: dict[str, list[str]] = {}
        for text, labels in held_out:
            if len(labels) == 1 and len(text.split()) >= 6:
                self.by_class.setdefault(labels[0], []).append(text)
        self.train = [t for t, _ in _comments(examples / "goemotions" / "train.tsv") if len(t.split()) >= 8]
        self.truth: dict[str, str] = {}  # generated text -> the class the verifier will answer
        self.generations = 0

    def __call__(self, messages, response_format) -> str:
        system, user = messages[0]["content"], messages[-1]["content"]
        if "training data for an emotion classifier" in system:
            return self.generate(user)
        text = re.search(r"<<<\n(.*)\n>>>", user, re.DOTALL).group(1)
        emotion = self.truth.get(text, WRONG)
        return json.dumps({"emotions": [{"label": emotion, "confidence": 0.9}]})

    def generate(self, user: str) -> str:
        target = re.search(r"\(label: (\w+)\)", user).group(1)
        batch = re.search(r"\(batch (\d+)\.(\d+)\)", user)
        k = int(batch.group(1)) * 10 + int(batch.group(2))
        pool = self.by_class[target]
        self.generations += 1
        good = [f"{pool[(2 * k + j) % len(pool)]} {['Honestly.', 'Really.', 'For real.'][j]}" for j in range(2)]
        near_dup = self.train[k % len(self.train)] + " lol"
        wrong = f"{self.by_class[WRONG][k % len(self.by_class[WRONG])]} Whatever, batch {k}."
        for text in good:
            self.truth[text] = target
        self.truth[near_dup] = target
        self.truth[wrong] = WRONG  # generated for the target, verified as another class
        examples = [{"text": t} for t in [*good, near_dup, wrong]]
        return json.dumps({"examples": examples})


TARGETS = """
[emotion]
sources = ["goemotions"]

[emotion.classes]
remorse = 6
fear = 8
"""


@pytest.fixture
def ge_train(store, examples):
    ingest("goemotions", [examples / "goemotions" / "train.tsv"], store=store, tag="ge-train")
    return store


@pytest.fixture
def targets_file(tmp_path) -> Path:
    path = tmp_path / "targets.toml"
    path.write_text(TARGETS)
    return path


def _run(store, server, targets, **kw):
    return augment(
        "ge-train",
        store=store,
        task="emotion",
        targets=targets,
        model=kw.pop("model", "test-model"),
        base_url=server.base_url,
        tag="augmented",
        per_request=4,
        **kw,
    )


def test_deficit_is_counted_on_train_gold(ge_train, targets_file):
    spec = load_targets(targets_file, "emotion")
    before, pools = distribution(spec, ge_train.iter_records("ge-train"))
    assert before["remorse"] == 2 and before["fear"] == 4 and before["neutral"] == 114
    wanted = spec.resolve(before)
    assert wanted["remorse"] == 6 and wanted["fear"] == 8 and wanted["neutral"] == 0
    assert len(pools["remorse"]) == 2 and all(s.source == "goemotions" for s in pools["fear"])


def test_augment_keeps_verified_unique_synthetic_train_records(
    ge_train, openai_server, fake_key, targets_file, tmp_path
):
    responder = GoEmotionsResponder(Path(__file__).resolve().parents[2] / "examples" / "data")
    openai_server.responder = responder
    r = _run(ge_train, openai_server, targets_file)
    assert r.classes["remorse"].kept == 4 and r.classes["fear"].kept == 4
    assert r.classes["remorse"].after == 6 and r.classes["fear"].after == 8
    assert r.counters["rejected_duplicate"] > 0 and r.counters["rejected_label"] > 0
    assert not r.budget_stopped

    m = ge_train.manifest("augmented")
    assert m["parents"] == [ge_train.resolve("ge-train")]
    step = m["steps"][0]
    assert step["kind"] == "augment"
    assert step["config"]["prompt_versions"] == {"generate": "augment-emotion-v1", "verify": "test-model@emotion-v1"}
    assert step["distribution_before"]["remorse"] == 2 and step["distribution_after"]["remorse"] == 6
    assert step["classes"]["fear"]["kept"] == 4 and step["counters"]["budget_stopped"] == 0
    assert m["rows"] == ge_train.manifest("ge-train")["rows"] + 8

    synthetic = [rec for rec in ge_train.iter_records("augmented") if rec["provenance"]["synthetic"]]
    assert len(synthetic) == 8 and len({rec["id"] for rec in synthetic}) == 8
    for rec in synthetic:
        assert rec["split"] == "train" and re.fullmatch(r"goemotions:train:syn-[0-9a-f]{12}", rec["id"])
        assert rec["provenance"]["generator"] == "test-model@augment-emotion-v1"
        generated = [lab for lab in rec["labels"] if lab["attrs"].get("augment") == "generated"]
        verification = [lab for lab in rec["labels"] if lab["attrs"].get("augment") == "verification"]
        assert len(generated) == 1 and generated[0]["source"] == "llm"
        assert generated[0]["value"] in {v["value"] for v in verification}  # the verified label matches
        assert not any(lab["source"] == "gold" for lab in rec["labels"])
        text = rec["turns"][0]["text"]
        assert not text.endswith(" lol") and "Whatever" not in text  # duplicates and wrong classes dropped
    assert fake_key.encode() not in b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())


def test_budget_stop_is_consistent_and_a_rerun_continues_from_the_cache(
    ge_train, openai_server, fake_key, targets_file
):
    openai_server.responder = GoEmotionsResponder(Path(__file__).resolve().parents[2] / "examples" / "data")
    first = _run(ge_train, openai_server, targets_file, model="gpt-4o-mini", free=False, max_cost=0.0004)
    assert first.budget_stopped and first.counters["budget_stopped"] == 1
    assert openai_server.request_count > 0
    m = ge_train.manifest("augmented")
    synthetic = [rec for rec in ge_train.iter_records("augmented") if rec["provenance"]["synthetic"]]
    assert len(synthetic) == first.counters["kept"] < 8
    assert m["rows"] == ge_train.manifest("ge-train")["rows"] + len(synthetic)

    openai_server.wait_idle()
    second = _run(ge_train, openai_server, targets_file, model="gpt-4o-mini", free=False)
    assert not second.budget_stopped and second.counters["kept"] == 8
    assert second.counters["cache_hits"] > 0
    assert max(openai_server.counts_by_hash().values()) == 1  # nothing sent twice

    openai_server.reset_counts()
    third = _run(ge_train, openai_server, targets_file, model="gpt-4o-mini", free=False)
    assert openai_server.request_count == 0 and third.counters["requests_sent"] == 0
    assert third.counters["kept"] == 8


def test_local_verification(ge_train, openai_server, targets_file):
    openai_server.responder = GoEmotionsResponder(Path(__file__).resolve().parents[2] / "examples" / "data")
    r = _run(ge_train, openai_server, targets_file, verify="local", rounds=1)
    step = ge_train.manifest("augmented")["steps"][0]
    assert step["config"]["prompt_versions"]["verify"].startswith("local-linear@emotion")
    assert (
        r.counters["verified"] + r.counters["rejected_label"]
        == r.counters["generated"] - r.counters["rejected_duplicate"]
    )
    for rec in ge_train.iter_records("augmented"):
        if rec["provenance"]["synthetic"]:
            verification = [lab for lab in rec["labels"] if lab["attrs"].get("augment") == "verification"]
            assert verification and verification[0]["source"] == "model"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[emotion.classes]\ngrif = 3\n", "emotion.classes.grif"),
        ("[emotion]\nmin_count = -1\n", "emotion.min_count"),
        ("[emotion]\nmin_count = 2\nmin_shar = 0.1\n", "emotion.min_shar"),
        ("[emotion]\nmin_share = 1.5\n", "emotion.min_share"),
        ("[emotion]\nsources = 'goemotions'\n", "emotion.sources"),
        ("[emotion]\n", "emotion.min_count"),
        ("[emotions]\nmin_count = 2\n", "'emotions'"),
        ("[traits]\nmin_per_bucket = 3\n", "traits.buckets"),
        ("[traits]\nbuckets = [[1, 3], [3, 7]]\nmin_per_bucket = 3\n", "traits.buckets[1]"),
        ("[traits]\nbuckets = [[0, 3]]\nmin_per_bucket = 3\n", "traits.buckets[0]"),
        ("[traits]\nbuckets = [[1, 3]]\ntraits = ['charm']\nmin_per_bucket = 3\n", "traits.traits"),
    ],
)
def test_target_errors_name_the_key(tmp_path, text, key):
    path = tmp_path / "t.toml"
    path.write_text(text)
    task = "traits" if "traits" in text else "emotion"
    with pytest.raises(TargetError, match=re.escape(key)) as err:
        load_targets(path, task)
    assert str(path) in str(err.value)


def test_traits_buckets_and_shares():
    spec = parse_targets(
        {"traits": {"buckets": [[1, 3], [4, 7], [8, 10]], "min_per_bucket": 5, "classes": {"formality:8-10": 0.5}}},
        "traits",
    )
    assert len(spec.classes) == 18 and "filler_words:4-7" in spec.classes
    wanted = spec.resolve(Counter({"formality:1-3": 10, "formality:4-7": 10}))
    assert wanted["formality:8-10"] == 10 and wanted["empathy:1-3"] == 5


def test_the_example_targets_file_is_valid():
    root = Path(__file__).resolve().parents[2]
    for task in ("emotion", "strategy", "traits", "empathy"):
        assert load_targets(root / "examples" / "targets.toml", task).classes


def test_traits_need_labels_first(ge_train, openai_server):
    spec = parse_targets({"traits": {"buckets": [[8, 10]], "min_per_bucket": 3}}, "traits")
    with pytest.raises(WorkbenchError, match="label it first"):
        augment("ge-train", store=ge_train, task="traits", targets=spec, model="m", base_url=openai_server.base_url)


FILLERS = ("um", "like", "you know", "I mean", "uh", "basically", "sort of")


class FillerResponder:
    """A generator for the `filler_words:8-10` bucket: real GoEmotions comments stuffed with filler words."""

    def __init__(self, examples: Path) -> None:
        self.texts = [t for t, _ in _comments(examples / "goemotions" / "test.tsv") if len(t.split()) >= 8]

    def __call__(self, messages, response_format) -> str:
        user = messages[-1]["content"]
        batch = re.search(r"\(batch (\d+)\.(\d+)\)", user)
        k = int(batch.group(1)) * 10 + int(batch.group(2)) if batch else 0
        out = []
        for j in range(4):
            words = self.texts[(k * 4 + j) % len(self.texts)].split()
            stuffed = []
            for i, w in enumerate(words):
                stuffed.append(w + ",")
                stuffed.append(FILLERS[(i + j) % len(FILLERS)] + ",")
            out.append({"text": "Um, so, " + " ".join(stuffed), "score": 9})
        return json.dumps({"examples": out})


def test_traits_augmentation_fills_a_score_bucket_verified_by_the_local_heuristics(ge_train, openai_server, tmp_path):
    from labeling.runner import label_local
    from labeling.tasks.base import get_tasks

    label_local("ge-train", store=ge_train, tasks=get_tasks(["traits"]), tag="traits-labeled")
    targets = tmp_path / "t.toml"
    targets.write_text(
        '[traits]\nbuckets = [[1, 7], [8, 10]]\ntraits = ["filler_words"]\n[traits.classes]\n"filler_words:8-10" = 30\n'
    )
    openai_server.responder = FillerResponder(Path(__file__).resolve().parents[2] / "examples" / "data")
    r0 = augment(
        "traits-labeled",
        store=ge_train,
        task="traits",
        targets=targets,
        model="test-model",
        base_url=openai_server.base_url,
        verify="local",
        tag="aug",
        per_request=4,
    )
    before = r0.classes["filler_words:8-10"].before
    assert r0.classes["filler_words:8-10"].kept > 0
    assert r0.classes["filler_words:8-10"].after == before + r0.classes["filler_words:8-10"].kept
    synthetic = [r for r in ge_train.iter_records("aug") if r["provenance"]["synthetic"]]
    assert len(synthetic) == r0.classes["filler_words:8-10"].kept
    for rec in synthetic:
        assert rec["split"] == "train" and ":train:syn-" in rec["id"]
        scores = [
            float(lab["value"])
            for lab in rec["labels"]
            if lab["task"] == "trait.filler_words" and lab["source"] == "model"
        ]
        assert scores and all(8 <= s <= 10 for s in scores)  # verified into the target bucket
