"""The review settings each task declares: our vocabularies and scales, required questions, metadata, overlap."""

from __future__ import annotations

import json

import pytest

from curation import vocabularies
from curation.errors import WorkbenchError
from labeling.review.settings import (
    CONFIDENCE_QUESTION,
    build_settings,
    gold_metadata,
    known_questions,
    reviewable_tasks,
)
from labeling.tasks.base import get_tasks
from labeling.tasks.traits import TRAITS


def test_each_task_declares_its_vocabulary_or_scale():
    s = build_settings(["emotion", "strategy", "empathy", "traits"])
    emotion = s.question("emotion")
    assert emotion.kind == "multi_label" and emotion.label_task == "emotion"
    assert emotion.options == vocabularies.load("emotion").labels and len(emotion.options) == 28
    strategy = s.question("strategy")
    assert strategy.kind == "label" and strategy.options == vocabularies.load("strategy").labels
    assert "Restatement or Paraphrasing" in strategy.options and len(strategy.options) == 8
    empathy = s.question("empathy")
    assert empathy.kind == "rating" and empathy.values == (1, 2, 3, 4, 5)
    traits = s.questions_of("traits")
    assert [q.name for q in traits] == [f"trait_{t}" for t in TRAITS]
    assert [q.label_task for q in traits] == [f"trait.{t}" for t in TRAITS]
    assert all(q.kind == "rating" and q.values == tuple(range(1, 11)) for q in traits)
    assert s.tasks == ("emotion", "strategy", "empathy", "traits") and reviewable_tasks() == sorted(s.tasks)


def test_fields_metadata_guidelines_and_overlap():
    s = build_settings(get_tasks(["strategy"]), overlap=3, snapshot="abc123", show_gold=False)
    assert [(f.name, f.kind, f.required) for f in s.fields] == [
        ("conversation", "chat", False),
        ("text", "text", False),
        ("context", "text", False),
        ("instructions", "text", True),
    ]
    meta = {m.name: m for m in s.metadata}
    assert set(meta) == {"record_id", "turn", "source", "split", "snapshot", "tasks", "gold_strategy"}
    assert meta["turn"].kind == "integer" and meta["gold_strategy"].kind == "terms"
    assert not meta["gold_strategy"].visible_for_annotators and not meta["snapshot"].visible_for_annotators
    assert gold_metadata("empathy") == "gold_empathy"
    assert s.overlap == 3 and "abc123" in s.guidelines and "strategy" in s.guidelines
    json.dumps(s.to_dict())  # the declaration is plain data


def test_required_questions_follow_the_units():
    # One task applies to every unit it is pushed for: its question is required.
    assert [q.required for q in build_settings(["strategy"]).questions] == [True]
    # strategy + empathy on supporter turns: both apply everywhere.
    both = build_settings(["strategy", "empathy"], required=["strategy", "empathy"])
    assert [q.required for q in both.questions] == [True, True]
    # emotion (whole records) + strategy (turns): neither applies to every unit, so both stay optional
    # and a required confidence question lets Argilla publish the dataset and annotators submit.
    mixed = build_settings(["emotion", "strategy"], required=[])
    assert [(q.name, q.required) for q in mixed.questions] == [
        ("emotion", False),
        ("strategy", False),
        (CONFIDENCE_QUESTION, True),
    ]
    assert "gold_confidence" not in {m.name for m in mixed.metadata}
    partial = build_settings(["emotion", "strategy"], required=["strategy"])
    assert [q.required for q in partial.questions] == [False, True]


def test_known_questions_map_answers_back_to_label_tasks():
    known = known_questions()
    assert known["trait_filler_words"].label_task == "trait.filler_words"
    assert known["emotion"].label_task == "emotion" and known[CONFIDENCE_QUESTION].label_task is None


@pytest.mark.parametrize(
    ("tasks", "kwargs", "message"),
    [
        (["act"], {}, "unknown task"),
        ([], {}, "at least one task"),
        (["emotion"], {"overlap": 0}, "overlap"),
        (["emotion", "emotion"], {}, "twice"),
        (["emotion"], {"required": ["strategy"]}, "not one of the tasks"),
    ],
)
def test_bad_settings_are_one_clear_error(tasks, kwargs, message):
    with pytest.raises(WorkbenchError, match=message):
        build_settings(tasks, **kwargs)
