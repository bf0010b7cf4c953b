"""The ESConv adapter on the full raw data: every published count of the HF release and FailedESConv.json.

Runs when WORKBENCH_DATA points at the full raw data (../shared/data). Expected figures are
those of shared/data/PROVENANCE.md, section 3 and LABELS, and of the ESConv README.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from curation.adapters import get_adapter
from curation.adapters.base import collect

pytestmark = pytest.mark.fulldata

REPO = Path(__file__).resolve().parents[2]


def read(paths):
    adapter = get_adapter("esconv")
    records, rejected = collect(adapter, paths)
    return records, rejected, adapter


@pytest.fixture(scope="module")
def hf(full_data):
    return read([full_data / "esconv" / "hf_thu-coai_esconv"])


@pytest.fixture(scope="module")
def failed(full_data):
    return read([full_data / "esconv" / "github_thu-coai" / "FailedESConv.json"])


def labels(records, task):
    return [lab for r in records for lab in r["labels"] if lab["task"] == task]


def test_dialogues_and_splits(hf):
    records, rejected, adapter = hf
    assert rejected == []
    assert len(records) == 1300
    assert Counter(r["split"] for r in records) == {"train": 910, "validation": 195, "test": 195}
    ids = [r["id"] for r in records]
    assert len(set(ids)) == len(ids)
    assert adapter.stats["files_skipped"] == 2  # strategy.json, README.md


def test_utterances_and_speakers(hf):
    records, _, _ = hf
    speakers = Counter(t["speaker"] for r in records for t in r["turns"])
    assert sum(speakers.values()) == 38365
    assert speakers == {"seeker": 19989, "supporter": 18376}


def test_strategy_counts_match_the_readme(hf):
    records, _, _ = hf
    assert Counter(lab["value"] for lab in labels(records, "strategy")) == {
        "Question": 3801,
        "Others": 3341,
        "Providing Suggestions": 2954,
        "Affirmation and Reassurance": 2827,
        "Self-disclosure": 1713,
        "Reflection of feelings": 1436,
        "Information": 1215,
        "Restatement or Paraphrasing": 1089,
    }
    assert Counter(t["strategy"] for r in records for t in r["turns"] if t["strategy"]).total() == 18376


def test_problem_types_match_the_readme_table(hf):
    records, _, _ = hf
    problems = labels(records, "problem_type")
    assert Counter(lab["value"] for lab in problems) == {
        "ongoing depression": 351,
        "job crisis": 280,
        "breakup with partner": 239,
        "problems with friends": 179,
        "academic pressure": 156,
        "sleep problems": 28,
        "procrastination": 13,
        "appearance anxiety": 12,
        "alcohol abuse": 12,
        "issues with parents": 18,
        "issues with children": 10,
        "school bullying": 2,
    }
    raw_parents = Counter(lab["raw"] for lab in problems if lab["value"] == "issues with parents")
    assert raw_parents == {"conflict with parents": 10, "Issues with Parents": 8}


def test_emotion_types_raw_and_mapped(hf):
    records, _, _ = hf
    emotions = labels(records, "emotion")
    assert Counter(lab["raw"] for lab in emotions) == {
        "anxiety": 354,
        "depression": 334,
        "sadness": 308,
        "anger": 111,
        "fear": 95,
        "shame": 42,
        "disgust": 40,
        "nervousness": 13,
        "guilt": 1,
        "jealousy": 1,
        "pain": 1,
    }
    assert Counter(lab["value"] for lab in emotions)["nervousness"] == 354 + 13


def test_seeker_empathy_ratings(hf):
    records, _, _ = hf
    assert Counter(lab["value"] for lab in labels(records, "empathy")) == {"5": 730, "4": 295, "3": 114, "2": 7, "1": 4}
    assert sum("survey.seeker.empathy" not in r["context"] for r in records) == 150


def test_failed_conversations(failed):
    records, rejected, _ = failed
    assert rejected == []
    assert len(records) == 196
    assert sum(len(r["turns"]) for r in records) == 5230
    assert Counter(t["speaker"] for r in records for t in r["turns"]) == {"seeker": 2853, "supporter": 2377}
    assert all(r["context"]["esconv_set"] == "failed" for r in records)
    assert [r["id"].rsplit(":", 1)[1] for r in records] == [f"failed-{i}" for i in range(196)]
    assert Counter(r["split"] for r in records) == {"train": 145, "validation": 24, "test": 27}
    assert not any(t["text"] != t["text"].strip() for r in records for t in r["turns"])
    assert sum("feedback" in t["attrs"] for r in records for t in r["turns"]) == 987


def test_failed_strategy_aliases(failed):
    records, _, _ = failed
    strategies = labels(records, "strategy")
    assert Counter(lab["value"] for lab in strategies) == {
        "Question": 520 + 8,
        "Others": 400,
        "Providing Suggestions": 392 + 11,
        "Affirmation and Reassurance": 334 + 7,
        "Reflection of feelings": 200,
        "Self-disclosure": 195,
        "Restatement or Paraphrasing": 176 + 3,
        "Information": 131,
    }
    assert Counter(lab["raw"] for lab in strategies)["Direct Guidance"] == 11


def test_example_slices_are_verbatim_heads(full_data):
    hf = full_data / "esconv" / "hf_thu-coai_esconv"
    examples = REPO / "examples" / "data" / "esconv"
    for name in ("train.txt", "valid.txt", "test.txt", "strategy.json"):
        assert hf.joinpath(name).read_bytes().startswith(examples.joinpath("hf", name).read_bytes())
    failed = (full_data / "esconv" / "github_thu-coai" / "FailedESConv.json").read_bytes()
    cut = examples.joinpath("raw", "FailedESConv.json").read_bytes()
    assert cut.endswith(b"\n]") and failed.startswith(cut[:-2] + b",\n {")
    tail = (REPO / "tests" / "curation" / "adapters" / "fixtures" / "FailedESConv_tail.json").read_bytes()
    assert failed.endswith(tail[2:])


def test_example_records_equal_the_full_files_records(full_data, hf, failed):
    examples = REPO / "examples" / "data" / "esconv"
    small, _, _ = read([examples / "hf" / "train.txt"])
    full_train = [r for r in hf[0] if r["split"] == "train"][: len(small)]
    strip = [{**r, "provenance": {**r["provenance"], "file": ""}} for r in small]
    assert strip == [{**r, "provenance": {**r["provenance"], "file": ""}} for r in full_train]
    small_failed, _, _ = read([examples / "raw" / "FailedESConv.json"])
    assert small_failed == failed[0][: len(small_failed)]
