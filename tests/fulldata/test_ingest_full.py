"""Full raw data through the real ingest into a real store: the published counts and distributions.

Runs when WORKBENCH_DATA points at the full raw data (../shared/data; `.ci/run` sets it).
Expected figures are the published ones, re-verified in shared/data/PROVENANCE.md.
"""

from __future__ import annotations

from collections import Counter

import pytest

from curation import vocabularies
from curation.ingest import ingest
from curation.store import SnapshotStore

pytestmark = pytest.mark.fulldata


@pytest.fixture(scope="module")
def full_store(tmp_path_factory):
    return SnapshotStore(str(tmp_path_factory.mktemp("full") / "store"))


def _totals(manifest, task, source="gold"):
    out: Counter[str] = Counter()
    for counts in manifest["label_distribution"][task][source].values():
        out.update(counts)
    return out


def test_dailydialog(full_data, full_store):
    r = ingest("dailydialog", [full_data / "dailydialog" / "ijcnlp_dailydialog"], store=full_store, tag="dd-raw")
    m = full_store.manifest("dd-raw")
    assert r.rejected == 0
    assert m["counts"]["dailydialog"] == {"train": 11_118, "validation": 1_000, "test": 1_000}
    assert m["turns"]["dailydialog"] == {"train": 87_170, "validation": 8_069, "test": 7_740}
    acts = _totals(m, "act")
    assert [acts[a] for a in ("inform", "question", "directive", "commissive")] == [46_532, 29_428, 17_295, 9_724]
    emotions = _totals(m, "emotion")
    # DailyDialog ids 0..6 = no emotion, anger, disgust, fear, happiness, sadness, surprise, mapped onto GoEmotions.
    assert [emotions[e] for e in ("neutral", "anger", "disgust", "fear", "joy", "sadness", "surprise")] == [
        85_572,
        1_022,
        353,
        174,
        12_885,
        1_150,
        1_823,
    ]
    topics = _totals(m, "topic")
    expected = [3_646, 487, 55, 667, 4_391, 1_065, 267, 1_924, 131, 485]
    names = vocabularies.load("topic").labels  # in id order 1..10, as PROVENANCE.md lists them
    assert [topics[t] for t in names] == expected


def test_goemotions(full_data, full_store):
    ingest("goemotions", [full_data / "goemotions"], store=full_store, tag="ge-raw")
    m = full_store.manifest("ge-raw")
    assert m["counts"]["goemotions"] == {"train": 43_410, "validation": 5_426, "test": 5_427}
    neutral = {split: c["neutral"] for split, c in m["label_distribution"]["emotion"]["gold"].items()}
    assert neutral == {"train": 14_219, "validation": 1_766, "test": 1_787}
    multi = Counter()
    for batch in full_store.iter_batches("ge-raw", columns=["split", "labels"]):
        for split, labels in zip(batch.column("split").to_pylist(), batch.column("labels").to_pylist(), strict=True):
            multi[split] += len(labels) > 1
    assert multi == {"train": 7_102, "validation": 878, "test": 837}


def test_esconv(full_data, full_store):
    ingest("esconv", [full_data / "esconv" / "hf_thu-coai_esconv"], store=full_store, tag="esconv-raw")
    m = full_store.manifest("esconv-raw")
    assert m["counts"]["esconv"] == {"train": 910, "validation": 195, "test": 195}
    assert sum(m["turns"]["esconv"].values()) == 38_365
    assert _totals(m, "strategy") == {
        "Question": 3_801,
        "Others": 3_341,
        "Providing Suggestions": 2_954,
        "Affirmation and Reassurance": 2_827,
        "Self-disclosure": 1_713,
        "Reflection of feelings": 1_436,
        "Information": 1_215,
        "Restatement or Paraphrasing": 1_089,
    }
    problems = _totals(m, "problem_type")
    assert problems["issues with parents"] == 18 and problems["ongoing depression"] == 351
    assert sum(problems.values()) == 1_300
    speakers = Counter()
    for rec in full_store.iter_records("esconv-raw"):
        speakers.update(t["speaker"] for t in rec["turns"])
    assert speakers == {"seeker": 19_989, "supporter": 18_376}


def test_esconv_failed_conversations(full_data, full_store):
    r = ingest("esconv", [full_data / "esconv" / "github_thu-coai" / "FailedESConv.json"], store=full_store)
    assert r.kept == 196 and r.rejected == 0
    assert sum(r.manifest["turns"]["esconv"].values()) == 5_230


def test_empatheticdialogues_slice(full_data, full_store):
    r = ingest(
        "empatheticdialogues",
        [full_data / "empatheticdialogues" / "slices" / "train_head.csv"],
        store=full_store,
        tag="ed-raw",
    )
    assert r.counts["empatheticdialogues"] == {"train": 95}
    assert sum(r.manifest["turns"]["empatheticdialogues"].values()) == 439
    raw = Counter()
    for rec in full_store.iter_records("ed-raw"):
        raw.update(lab["raw"] for lab in rec["labels"] if lab["task"] == "emotion")
    assert len(raw) == 30 and "apprehensive" not in raw and "devastated" not in raw


def test_openwebtext_documents(full_data, full_store):
    r = ingest("openwebtext", [full_data / "openwebtext" / "hf_datasets_dummy" / "dummy_data"], store=full_store)
    assert r.kept == 4
    names = sorted(rec["id"].rsplit(":", 1)[1] for rec in full_store.iter_records(r.snapshot_id))
    assert names[0] == "0000005-93544d279b4a2417d2201864e28639b1"
