"""Leak-free splits and group-aware re-splitting, on the real example slices."""

from __future__ import annotations

import shutil
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from curation.adapters import get_adapter
from curation.adapters.base import collect, hash_split
from curation.curate import build_steps, curate
from curation.ingest import ingest
from curation.record import text_of, validate_record
from curation.steps.base import ConfigError, Dropped, Verdict
from curation.steps.splits import LEAK_REASON, LeakFreeSplits, LeakFreeSplitsConfig, Resplit, ResplitConfig

DD = "dailydialog/ijcnlp_dailydialog"
SPLIT_FILES = {
    "train": ("dialogues_train.txt", "dialogues_act_train.txt", "dialogues_emotion_train.txt"),
    "validation": ("dialogues_validation.txt", "dialogues_act_validation.txt", "dialogues_emotion_validation.txt"),
    "test": ("dialogues_test.txt", "dialogues_act_test.txt", "dialogues_emotion_test.txt"),
}


def _dd_records(root: Path) -> list[dict]:
    records, rejected = collect(get_adapter("dailydialog"), [root / s for s in SPLIT_FILES])
    assert not rejected
    return records


def _run(step, records):
    """The step's three phases as the runner drives them: signatures, decide once, apply."""
    decisions = step.decide(step.signatures_batch(records))
    out = [step.apply(r, decisions.verdicts.get(r["id"])) for r in records]
    return decisions, [o for o in out if not isinstance(o, Dropped)], [o for o in out if isinstance(o, Dropped)]


def _plant(root: Path, line: int, split: str, edit=None) -> None:
    """Append train dialogue ``line`` (text, acts, emotions) to ``split``'s files, its text edited by ``edit``."""
    for i, (src, dst) in enumerate(zip(SPLIT_FILES["train"], SPLIT_FILES[split], strict=True)):
        text = (root / "train" / src).read_text(encoding="utf-8").splitlines(keepends=True)[line - 1]
        with (root / split / dst).open("a", encoding="utf-8") as f:
            f.write(edit(text) if edit and i == 0 else text)


def _split_copy(examples: Path, root: Path) -> Path:
    for split in SPLIT_FILES:
        shutil.copytree(examples / DD / split, root / split)
    return root


@pytest.fixture
def leaky_dd(examples: Path, tmp_path: Path) -> Path:
    """The slice's split files, with real train dialogues copied into the other splits.

    Appended lines (the slice has 40 validation and 40 test dialogues):
    train line 5 -> test line 41 and validation line 41 (one text in all three splits),
    train line 9 -> test line 42, train line 12 -> validation line 42 with its casing changed.
    """
    root = _split_copy(examples, tmp_path / "dd")
    _plant(root, 5, "test")
    _plant(root, 5, "validation")
    _plant(root, 9, "test")
    _plant(root, 12, "validation", lambda s: s.upper().replace("__EOU__", "__eou__"))
    return root


# ------------------------------------------------------------------ the slice as it is


def test_slice_has_no_cross_split_duplicates_only_one_within_train(examples):
    records = _dd_records(examples / DD)
    assert Counter(r["split"] for r in records) == {"train": 160, "validation": 40, "test": 40}
    decisions, kept, dropped = _run(LeakFreeSplits(), records)
    assert decisions.verdicts == {} and not dropped and len(kept) == 240
    assert decisions.counters == {}
    assert decisions.artifacts["leaks"].num_rows == 0
    # The slice's one repeated text is inside train: dedup's business, not a leak.
    texts = Counter((text_of(r), r["split"]) for r in records)
    assert [(split, n) for (_, split), n in texts.items() if n > 1] == [("train", 2)]


# ------------------------------------------------------------------ planted real copies


def test_keep_in_test_drop_from_train(leaky_dd):
    records = _dd_records(leaky_dd)
    decisions, kept, dropped = _run(LeakFreeSplits(), records)

    assert {d.record["id"]: (d.reason, d.detail) for d in dropped} == {
        "dailydialog:train:5": (LEAK_REASON, "identical to dailydialog:test:41 in test"),
        "dailydialog:validation:41": (LEAK_REASON, "identical to dailydialog:test:41 in test"),
        "dailydialog:train:9": (LEAK_REASON, "identical to dailydialog:test:42 in test"),
        "dailydialog:train:12": (LEAK_REASON, "identical to dailydialog:validation:42 in validation"),
    }
    assert len(kept) == len(records) - 4
    assert decisions.counters == {
        "groups": 3,
        "train∩test": 2,
        "train∩validation": 2,
        "validation∩test": 1,
        "drop:train->test": 2,
        "drop:validation->test": 1,
        "drop:train->validation": 1,
    }
    leaks = decisions.artifacts["leaks"].to_pylist()
    assert len(leaks) == 7  # every member of the three groups, kept ones included
    by_id = {row["id"]: row for row in leaks}
    assert by_id["dailydialog:test:41"]["action"] == "keep"
    assert by_id["dailydialog:train:5"] | {"group_id": None} == {
        "group_id": None,
        "id": "dailydialog:train:5",
        "source": "dailydialog",
        "split": "train",
        "kept_split": "test",
        "action": "drop",
        "kept_id": "dailydialog:test:41",
    }
    assert len({row["group_id"] for row in leaks}) == 3
    # After the step no text sits in two splits.
    splits_of = defaultdict(set)
    for r in kept:
        splits_of[text_of(r).casefold()].add(r["split"])
    assert all(len(s) == 1 for s in splits_of.values())


def test_move_relabels_the_split_and_keeps_the_id(leaky_dd):
    records = _dd_records(leaky_dd)
    decisions, kept, dropped = _run(LeakFreeSplits(LeakFreeSplitsConfig(action="move")), records)
    assert not dropped and len(kept) == len(records)
    moved = {r["id"]: r["split"] for r in kept if r["split"] != r["id"].split(":")[1]}
    assert moved == {
        "dailydialog:train:5": "test",
        "dailydialog:validation:41": "test",
        "dailydialog:train:9": "test",
        "dailydialog:train:12": "validation",
    }
    for r in kept:
        validate_record(r)
    assert decisions.counters["move:train->test"] == 2
    assert decisions.verdicts["dailydialog:train:9"] == Verdict(
        split="test", detail="identical to dailydialog:test:42 in test"
    )


def test_priority_and_casefold_are_configurable(leaky_dd):
    records = _dd_records(leaky_dd)
    config = LeakFreeSplitsConfig(priority=("train", "validation", "test"), casefold=False)
    decisions, _, dropped = _run(LeakFreeSplits(config), records)
    # Case-sensitive: the upper-cased copy of train line 12 is a different text.
    assert sorted(d.record["id"] for d in dropped) == [
        "dailydialog:test:41",
        "dailydialog:test:42",
        "dailydialog:validation:41",
    ]
    assert {d.detail for d in dropped} == {
        "identical to dailydialog:train:5 in train",
        "identical to dailydialog:train:9 in train",
    }
    assert decisions.counters["groups"] == 2


def test_strip_punctuation_groups_texts_that_differ_only_in_punctuation(examples, tmp_path):
    root = _split_copy(examples, tmp_path / "dd")
    # A real train dialogue in test with its question marks and full stops gone.
    _plant(root, 3, "test", lambda s: s.replace(" ?", "").replace(" .", ""))
    records = _dd_records(root)
    assert _run(LeakFreeSplits(), records)[0].counters["groups"] == 0
    _, _, dropped = _run(LeakFreeSplits(LeakFreeSplitsConfig(strip_punctuation=True)), records)
    assert [d.record["id"] for d in dropped] == ["dailydialog:train:3"]


def test_scope_source_keeps_sources_apart(leaky_dd):
    records = _dd_records(leaky_dd)
    # The same real dialogue under another source name: a copy only when scope = "global".
    twin = next(r for r in records if r["id"] == "dailydialog:train:20")
    other = {**twin, "id": "esconv:test:dd-20", "source": "esconv", "split": "test"}
    records = [*records, other]
    _, _, dropped = _run(LeakFreeSplits(), records)
    assert "dailydialog:train:20" not in {d.record["id"] for d in dropped}
    _, _, dropped = _run(LeakFreeSplits(LeakFreeSplitsConfig(scope="global")), records)
    assert {d.record["id"]: d.detail for d in dropped}[
        "dailydialog:train:20"
    ] == "identical to esconv:test:dd-20 in test"


def test_decisions_do_not_depend_on_record_order(leaky_dd):
    records = _dd_records(leaky_dd)
    first = _run(LeakFreeSplits(), records)[0]
    again = _run(LeakFreeSplits(), list(reversed(records)))[0]
    assert first.verdicts == again.verdicts
    assert first.counters == again.counters
    assert sorted(first.artifacts["leaks"].to_pylist(), key=str) == sorted(
        again.artifacts["leaks"].to_pylist(), key=str
    )


def test_curate_writes_leaks_artifact_and_dropped_rows_deterministically(leaky_dd, store):
    raw = ingest("dailydialog", [str(leaky_dd / s) for s in SPLIT_FILES], store=store).snapshot_id
    steps = build_steps([{"name": "leak_free_splits"}])
    result = curate([raw], store=store, steps=steps)
    again = curate([raw], store=store, steps=build_steps([{"name": "leak_free_splits"}]))
    assert again.snapshot_id == result.snapshot_id and again.reused
    report = result.steps[0]
    assert report.dropped == {LEAK_REASON: 4} and report.kept == report.read - 4
    assert store.read_artifact(result.snapshot_id, "leak_free_splits.leaks").num_rows == 7
    dropped = [row for b in store.iter_dropped(result.snapshot_id) for row in b.to_pylist()]
    assert {(d["id"], d["step"], d["reason"]) for d in dropped} >= {
        ("dailydialog:train:5", "leak_free_splits", LEAK_REASON)
    }
    manifest = store.manifest(result.snapshot_id)
    assert manifest["counts"]["dailydialog"] == {"train": 157, "validation": 41, "test": 42}


def test_near_duplicates_use_the_dedup_minhash(leaky_dd):
    dedup = pytest.importorskip("curation.steps.dedup")
    if not all(hasattr(dedup, f) for f in ("minhash_signatures", "lsh_clusters")):
        pytest.skip("curation.steps.dedup has no minhash_signatures / lsh_clusters yet")
    # A real train dialogue in test with one word changed: not identical, but near.
    _plant(leaky_dd, 30, "test", lambda s: s.replace("classical", "jazz", 1))
    records = _dd_records(leaky_dd)
    exact = {d.record["id"] for d in _run(LeakFreeSplits(), records)[2]}
    near = {d.record["id"] for d in _run(LeakFreeSplits(LeakFreeSplitsConfig(near=True, threshold=0.7)), records)[2]}
    assert "dailydialog:train:30" not in exact
    assert near >= exact | {"dailydialog:train:30"}


# ------------------------------------------------------------------ config validation


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"priority": ["test", "test", "train"]}, "'priority'"),
        ({"priority": ["test", "dev", "train"]}, "'priority'"),
        ({"action": "delete"}, "'action'"),
        ({"scope": "all"}, "'scope'"),
        ({"threshold": 1.5}, "'threshold'"),
        ({"bogus": 1}, "'bogus'"),
    ],
)
def test_leak_config_errors_name_the_key(options, key):
    with pytest.raises(ConfigError, match=key) as err:
        build_steps([{"name": "leak_free_splits", **options}])
    assert "leak_free_splits" in str(err.value)


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"key": "speaker"}, "'key'"),
        ({"ratios": [0.5, 0.5]}, "'ratios'"),
        ({"ratios": [0.8, 0.1, 0.2]}, "'ratios'"),
        ({"ratios": [1.2, -0.1, -0.1]}, "'ratios'"),
        ({"sources": []}, "'sources'"),
    ],
)
def test_resplit_config_errors_name_the_key(options, key):
    with pytest.raises(ConfigError, match=key):
        build_steps([{"name": "resplit", **options}])


# ------------------------------------------------------------------ resplit


def test_resplit_document_reproduces_the_openwebtext_hash_split(examples):
    records, _ = collect(get_adapter("openwebtext"), [examples / "openwebtext" / "urlsf_subset00-1_data.xz"])
    step = Resplit(ResplitConfig(sources=("openwebtext",), key="document", ratios=(0.98, 0.01, 0.01)))
    results, counters = step.process_batch(records)
    assert [r["split"] for r in results] == [r["split"] for r in records] == ["train", "validation", "train", "train"]
    assert [r["id"] for r in results] == [r["id"] for r in records]
    assert counters == {"train->train": 3, "validation->validation": 1}
    assert all(r["context"]["split_assigned"] == "hash:document" for r in results)


def test_resplit_by_context_field_keeps_each_group_in_one_split(examples):
    records, _ = collect(get_adapter("empatheticdialogues"), [examples / "empatheticdialogues" / "train.csv"])
    step = Resplit(ResplitConfig(sources=("empatheticdialogues",), key="context:emotion", ratios=(0.6, 0.2, 0.2)))
    results, counters = step.process_batch(records)
    splits_of = defaultdict(set)
    for r in results:
        validate_record(r)
        splits_of[r["context"]["emotion"]].add(r["split"])
        assert r["split"] == hash_split(r["context"]["emotion"], (0.6, 0.2, 0.2))
    assert all(len(s) == 1 for s in splits_of.values())
    assert len({s for ss in splits_of.values() for s in ss}) == 3  # 30-odd emotions reach every split
    assert sum(counters.values()) == len(records) == 95
    assert set(counters) <= {"train->train", "train->validation", "train->test"}
    # Per record, so the same record always gets the same split.
    assert [r["split"] for r in step.process_batch(list(reversed(records)))[0]] == [
        r["split"] for r in reversed(results)
    ]


def test_resplit_leaves_other_sources_alone_and_counts_missing_keys(examples):
    records = _dd_records(examples / DD)[:10]
    step = Resplit(ResplitConfig(sources=("openwebtext",)))
    results, counters = step.process_batch(records)
    assert results == records and counters == {"other_source": 10}
    step = Resplit(ResplitConfig(sources=("dailydialog",), key="context:prompt"))
    results, counters = step.process_batch(records)
    assert counters["missing_key"] == 10
    assert [r["split"] for r in results] == [hash_split(r["id"].split(":", 2)[2], (0.8, 0.1, 0.1)) for r in records]
