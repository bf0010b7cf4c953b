"""The DailyDialog adapter on the full raw data: every published count, the real defects, zips and CSV.

Runs when WORKBENCH_DATA points at the full raw data (../shared/data). Expected figures are
those of shared/data/PROVENANCE.md, section 1.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pytest

from curation.adapters import get_adapter
from curation.adapters.base import collect

pytestmark = pytest.mark.fulldata

ACTS = ("inform", "question", "directive", "commissive")
EMOTIONS = ("neutral", "anger", "disgust", "fear", "joy", "sadness", "surprise")  # ids 0..6, mapped
TOPICS = (
    "ordinary life",
    "school life",
    "culture & education",
    "attitude & emotion",
    "relationship",
    "tourism",
    "health",
    "work",
    "politics",
    "finance",
)


def read(paths):
    adapter = get_adapter("dailydialog")
    records, rejected = collect(adapter, paths)
    return records, rejected, adapter.stats


def distribution(records, task):
    return Counter(
        lab["value"] for r in records for lab in r["labels"] if lab["task"] == task and lab["source"] == "gold"
    )


@pytest.fixture(scope="module")
def original(full_data):
    return full_data / "dailydialog" / "ijcnlp_dailydialog"


@pytest.fixture(scope="module")
def splits(original):
    return read([original])


def test_split_counts(splits):
    records, rejected, _ = splits
    assert rejected == []
    assert len(records) == 13_118
    assert Counter(r["split"] for r in records) == {"train": 11_118, "validation": 1_000, "test": 1_000}
    turns = Counter()
    for r in records:
        turns[r["split"]] += len(r["turns"])
    assert turns == {"train": 87_170, "validation": 8_069, "test": 7_740}
    assert len({r["id"] for r in records}) == 13_118


def test_label_distributions(splits):
    # PROVENANCE gives acts and emotions over the full files' 102,979 labels; the splits hold
    # exactly the same labels (the one differing dialogue differs in text only).
    records, _, _ = splits
    acts = distribution(records, "act")
    assert [acts[a] for a in ACTS] == [46_532, 29_428, 17_295, 9_724]
    emotions = distribution(records, "emotion")
    assert [emotions[e] for e in EMOTIONS] == [85_572, 1_022, 353, 174, 12_885, 1_150, 1_823]
    raw = Counter(t["attrs"]["emotion_raw"] for r in records for t in r["turns"])
    assert raw["happiness"] == 12_885 and raw["no emotion"] == 85_572


def test_topics_joined_for_every_split_dialogue(splits):
    records, _, stats = splits
    topics = distribution(records, "topic")
    assert [topics[t] for t in TOPICS] == [3_646, 487, 55, 667, 4_391, 1_065, 267, 1_924, 131, 485]
    assert stats["topic_matched_exact"] == 13_117
    assert stats["topic_matched_resegmented"] == 1 and stats["topic_unmatched"] == 0
    (fixed,) = [r for r in records if r["id"] == "dailydialog:train:7852"]
    (topic,) = [lab for lab in fixed["labels"] if lab["task"] == "topic"]
    assert topic["attrs"] == {"full_line": "673", "match": "resegmented"}


def test_zips_read_like_the_folders(original, splits):
    records, _, _ = splits
    zipped, rejected, _ = read([original / f"{split}.zip" for split in ("train", "validation", "test")])
    assert rejected == []
    assert [(r["id"], r["turns"]) for r in zipped] == [(r["id"], r["turns"]) for r in records]
    assert zipped[0]["provenance"]["file"] == "ijcnlp_dailydialog/train.zip!train/dialogues_train.txt"


def test_full_files_alone(original):
    records, rejected, _ = read([original / "dialogues_text.txt"])
    (bad,) = rejected
    assert (bad.file, bad.line) == ("ijcnlp_dailydialog/dialogues_text.txt", 673)
    assert "12 utterances but 11 act labels" in bad.reason
    assert len(records) == 13_117
    shares = Counter(r["split"] for r in records)
    assert abs(shares["train"] / 13_117 - 0.85) < 0.01
    assert abs(shares["validation"] / 13_117 - 0.075) < 0.01
    by_text = {}
    for r in records:
        key = hashlib.sha256(repr([t["text"] for t in r["turns"]]).encode()).digest()
        assert by_text.setdefault(key, r["split"]) == r["split"]  # identical dialogues, one split
    assert len(by_text) < len(records)  # the 742 duplicate dialogues exist
    topics = distribution(records, "topic")
    assert sum(topics.values()) == 13_117 and topics["ordinary life"] == 3_646 - 1  # line 673 is topic 1


def test_april_2017_train_zip_rejects_line_7852(full_data):
    records, rejected, _ = read([full_data / "dailydialog" / "variant_2017-04" / "train.zip"])
    (bad,) = rejected
    assert (bad.file, bad.line) == ("variant_2017-04/train.zip!train/dialogues_train.txt", 7852)
    assert bad.reason.startswith(
        "12 utterances but 11 act labels and 11 emotion labels (expected one label per utterance"
    )
    assert bad.reason.endswith(
        "the labels are the same line of dialogues_act_train.txt and dialogues_emotion_train.txt)"
    )
    assert len(records) == 11_117


def test_kaggle_csv_built_from_the_real_splits(original, splits, tmp_path):
    """No real copy of the Kaggle/HF CSV exists here: build it from the real txt exactly as it is made."""
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    for split in ("train", "validation", "test"):
        folder = original / split

        def lines(name: str, folder: Path = folder) -> list[str]:
            return (folder / name).read_text(encoding="utf-8").splitlines()

        pd.DataFrame(
            {
                "dialog": [np.array(x.split("__eou__")[:-1]) for x in lines(f"dialogues_{split}.txt")],
                "act": [np.array([int(i) for i in x.split()]) for x in lines(f"dialogues_act_{split}.txt")],
                "emotion": [np.array([int(i) for i in x.split()]) for x in lines(f"dialogues_emotion_{split}.txt")],
            }
        ).to_csv(tmp_path / f"{split}.csv", index=False)
    from_csv, rejected, _ = read([tmp_path])
    assert rejected == []
    records, _, _ = splits

    def core(r):
        return r["split"], r["turns"], [lab for lab in r["labels"] if lab["task"] != "topic"]

    assert [core(r) for r in from_csv] == [core(r) for r in records]
