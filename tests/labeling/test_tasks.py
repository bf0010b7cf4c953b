"""Labeling tasks: items, messages, JSON schemas and the tolerant parsers, on real example records."""

from __future__ import annotations

import json
import re

import pytest

from curation import vocabularies
from curation.adapters import get_adapter
from curation.adapters.base import collect
from curation.record import validate_record
from labeling.prompts import load_prompt
from labeling.tasks.base import LabelItem, ParseError, get_tasks, tasks_registry
from labeling.tasks.parsing import extract_json_object
from labeling.tasks.traits import TRAITS

AGENT = "test-model@v1"


@pytest.fixture(scope="module")
def records(examples):
    out = {}
    for source, path in [
        ("goemotions", examples / "goemotions"),
        ("esconv", examples / "esconv" / "hf"),
        ("empatheticdialogues", examples / "empatheticdialogues" / "train.csv"),
        ("dailydialog", examples / "dailydialog" / "ijcnlp_dailydialog"),
    ]:
        recs, rejected = collect(get_adapter(source), [path])
        assert not rejected
        out[source] = recs
    return out


def test_registry_has_the_four_tasks_with_versioned_prompts():
    registry = tasks_registry()
    assert set(registry) >= {"emotion", "strategy", "traits", "empathy"}
    for name in ("emotion", "strategy", "traits", "empathy"):
        version = registry[name].prompt_version
        assert version == f"{name}-v1"
        assert load_prompt(version).version == version


# ------------------------------------------------------------------ items and messages


def test_emotion_items_follow_where_the_gold_sits(records):
    (emotion,) = get_tasks(["emotion"])
    ge = records["goemotions"][0]
    assert [(i.record_id, i.turn, i.text) for i in emotion.items(ge)] == [(ge["id"], None, ge["turns"][0]["text"])]
    dd = records["dailydialog"][0]  # gold emotion per turn -> one item per turn
    assert [i.turn for i in emotion.items(dd)] == list(range(len(dd["turns"])))
    ed = records["empatheticdialogues"][0]  # one situation emotion -> one item, the transcript
    (item,) = emotion.items(ed)
    assert item.turn is None and ed["turns"][1]["text"] in item.text
    assert "emotion" not in item.context  # ED's gold emotion must not leak into the prompt


def test_emotion_messages_show_text_labels_and_context(records):
    (emotion,) = get_tasks(["emotion"])
    dd = records["dailydialog"][0]
    item = emotion.items(dd)[2]
    system, user = emotion.messages(item)
    assert system["role"] == "system" and user["role"] == "user"
    assert dd["turns"][2]["text"] in user["content"]
    assert dd["turns"][1]["text"] in user["content"]  # previous turns as context
    assert "nervousness" in user["content"] and "$" not in user["content"]


def test_strategy_items_are_supporter_turns_with_previous_turns(records):
    (strategy,) = get_tasks(["strategy"])
    rec = records["esconv"][0]
    items = strategy.items(rec)
    supporter_turns = [i for i, t in enumerate(rec["turns"]) if t["speaker"] == "supporter"]
    assert [i.turn for i in items] == supporter_turns
    later = next(i for i in items if i.turn >= 2)
    user = strategy.messages(later)[1]["content"]
    assert rec["turns"][later.turn]["text"] in user
    assert rec["turns"][later.turn - 1]["text"] in user
    assert rec["context"]["situation"] in user
    assert strategy.items(records["goemotions"][0]) == []


def test_empathy_items_are_responses_and_traits_one_per_record(records):
    empathy, traits = get_tasks(["empathy", "traits"])
    rec = records["esconv"][0]
    assert all(rec["turns"][i.turn]["speaker"] == "supporter" and i.turn > 0 for i in empathy.items(rec))
    ed = records["empatheticdialogues"][0]
    assert [i.turn for i in empathy.items(ed)] == [i for i, t in enumerate(ed["turns"]) if t["speaker"] == "listener"]
    assert empathy.items(records["goemotions"][0]) == []
    assert empathy.items(records["dailydialog"][0]) == []  # peers, not helper and helped (configurable)
    (item,) = traits.items(rec)
    assert item.turn is None and rec["turns"][0]["text"] in traits.messages(item)[1]["content"]
    assert "filler_words" in traits.messages(item)[0]["content"]


# ------------------------------------------------------------------ schemas


def _strict_ok(schema):
    """OpenAI strict structured outputs: every object closes its properties and requires all of them."""
    if schema.get("type") == "object":
        assert schema["additionalProperties"] is False
        assert sorted(schema["required"]) == sorted(schema["properties"])
        for sub in schema["properties"].values():
            _strict_ok(sub)
    if schema.get("type") == "array":
        _strict_ok(schema["items"])


@pytest.mark.parametrize("name", ["emotion", "strategy", "traits", "empathy"])
def test_schemas_are_valid_strict_json_schema(name):
    jsonschema = pytest.importorskip("jsonschema")
    (task,) = get_tasks([name])
    schema = task.json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    json.dumps(schema)
    _strict_ok(schema)


def test_schemas_accept_a_good_answer_and_reject_a_bad_one():
    jsonschema = pytest.importorskip("jsonschema")
    emotion, traits = get_tasks(["emotion", "traits"])
    jsonschema.validate({"emotions": [{"label": "joy", "confidence": 0.9}]}, emotion.json_schema())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"emotions": [{"label": "happy", "confidence": 0.9}]}, emotion.json_schema())
    good = {t: {"score": 3, "explanation": "x."} for t in TRAITS}
    jsonschema.validate(good, traits.json_schema())


# ------------------------------------------------------------------ parsers

ITEM = LabelItem("goemotions:train:x", None, "I love it!")
TURN_ITEM = LabelItem("esconv:test:1", 4, "That sounds really hard.")


def test_extract_json_object_tolerates_fences_prose_and_near_json():
    want = {"a": 1, "b": [True, None]}
    assert extract_json_object('{"a": 1, "b": [true, null]}') == want
    assert extract_json_object('Sure! Here it is:\n```json\n{"a": 1, "b": [true, null]}\n```\nHope it helps.') == want
    assert extract_json_object('The answer is {"a": 1, "b": [true, null]} as requested.') == want
    assert extract_json_object("{'a': 1, 'b': [true, null],}") == want
    assert extract_json_object('note {not json} then {"a": 1, "b": [true, null]}') == want


@pytest.mark.parametrize(
    "content, reason",
    [
        ("", "empty completion"),
        ("I think it is joy.", "no JSON object"),
        ('{"emotions": [{"label": "joy", "confid', "invalid JSON"),
    ],
)
def test_extract_json_object_says_why(content, reason):
    with pytest.raises(ParseError, match=reason):
        extract_json_object(content)


def test_emotion_parser():
    (emotion,) = get_tasks(["emotion"])
    labels = emotion.parse(
        'Here:\n```json\n{"emotions": [{"label": "Joy", "confidence": 0.8}, '
        '{"label": "love", "confidence": 0.4}]}\n```',
        ITEM,
        agent=AGENT,
    )
    assert [(lab["task"], lab["value"], lab["score"], lab["source"], lab["agent"]) for lab in labels] == [
        ("emotion", "joy", 0.8, "llm", AGENT),
        ("emotion", "love", 0.4, "llm", AGENT),
    ]
    assert emotion.parse('{"emotions": ["neutral"]}', ITEM, agent=AGENT)[0]["score"] is None
    for lab in labels:
        validate_record({**_record(), "labels": [lab]})
    with pytest.raises(ParseError, match="'happy' is not in the emotion vocabulary"):
        emotion.parse('{"emotions": [{"label": "happy", "confidence": 0.9}]}', ITEM, agent=AGENT)
    with pytest.raises(ParseError, match="empty"):
        emotion.parse('{"emotions": []}', ITEM, agent=AGENT)
    with pytest.raises(ParseError, match="missing key 'emotions'"):
        emotion.parse('{"mood": "joy"}', ITEM, agent=AGENT)
    with pytest.raises(ParseError, match="outside"):
        emotion.parse('{"emotions": [{"label": "joy", "confidence": 3000}]}', ITEM, agent=AGENT)


def test_strategy_parser_accepts_aliases_and_brackets():
    (strategy,) = get_tasks(["strategy"])
    (lab,) = strategy.parse('{"strategy": "[Reflection of feelings]", "confidence": 0.7}', TURN_ITEM, agent=AGENT)
    assert (lab["value"], lab["turn"], lab["score"]) == ("Reflection of feelings", 4, 0.7)
    assert (
        strategy.parse('{"strategy": "Direct Guidance", "confidence": 1}', TURN_ITEM, agent=AGENT)[0]["value"]
        == "Providing Suggestions"
    )
    with pytest.raises(ParseError, match="not in the strategy vocabulary"):
        strategy.parse('{"strategy": "Empathy", "confidence": 0.5}', TURN_ITEM, agent=AGENT)


def _traits_answer(**overrides):
    answer = {t: {"score": i + 2, "explanation": f"Because of {t}."} for i, t in enumerate(TRAITS)}
    answer.update(overrides)
    return answer


def test_traits_parser_writes_six_labels():
    (traits,) = get_tasks(["traits"])
    labels = traits.parse("Ratings follow.\n" + json.dumps(_traits_answer()), ITEM, agent=AGENT)
    assert [lab["task"] for lab in labels] == [f"trait.{t}" for t in TRAITS]
    assert [(lab["value"], lab["score"]) for lab in labels] == [(str(i + 2), float(i + 2)) for i in range(6)]
    assert labels[0]["attrs"] == {"explanation": "Because of formality."}
    # a score written as "7" or 7.0 is still an integer on the scale
    ok = traits.parse(json.dumps(_traits_answer(formality={"score": "7", "explanation": "x."})), ITEM, agent=AGENT)
    assert ok[0]["value"] == "7"


@pytest.mark.parametrize(
    "bad, reason",
    [
        ({"score": 11, "explanation": "x."}, "11 is outside the scale 1..10"),
        ({"score": 0, "explanation": "x."}, "0 is outside the scale 1..10"),
        ({"score": 6.5, "explanation": "x."}, "must be an integer"),
        ({"score": "high", "explanation": "x."}, "must be an integer"),
        ({"score": 5, "explanation": ""}, "explanation must be a non-empty string"),
        (7, "expected {'score', 'explanation'}"),
    ],
)
def test_traits_parser_rejects_out_of_range_and_malformed(bad, reason):
    (traits,) = get_tasks(["traits"])
    with pytest.raises(ParseError, match=re.escape(reason)):
        traits.parse(json.dumps(_traits_answer(enthusiasm=bad)), ITEM, agent=AGENT)
    missing = _traits_answer()
    del missing["filler_words"]
    with pytest.raises(ParseError, match="missing key 'filler_words'"):
        traits.parse(json.dumps(missing), ITEM, agent=AGENT)


def test_empathy_parser():
    (empathy,) = get_tasks(["empathy"])
    (lab,) = empathy.parse("```\n{'rating': 4, 'rationale': 'Validates the feeling.'}\n```", TURN_ITEM, agent=AGENT)
    assert (lab["task"], lab["value"], lab["score"], lab["turn"]) == ("empathy", "4", 4.0, 4)
    assert lab["attrs"] == {"rationale": "Validates the feeling."}
    with pytest.raises(ParseError, match=r"6 is outside the scale 1\.\.5"):
        empathy.parse('{"rating": 6, "rationale": "x"}', TURN_ITEM, agent=AGENT)


def _record():
    return {
        "id": "goemotions:train:x",
        "source": "goemotions",
        "split": "train",
        "context": {},
        "turns": [
            {"speaker": "author", "text": "I love it!", "emotion": None, "act": None, "strategy": None, "attrs": {}}
        ],
        "labels": [],
        "provenance": {
            "file": "f",
            "line": None,
            "line_end": None,
            "offset": None,
            "adapter": "goemotions",
            "adapter_version": "1",
            "synthetic": False,
            "generator": None,
        },
    }


def test_vocabulary_sizes_match_the_schemas():
    emotion, strategy = get_tasks(["emotion", "strategy"])
    enum = emotion.json_schema()["properties"]["emotions"]["items"]["properties"]["label"]["enum"]
    assert enum == list(vocabularies.load("emotion").labels) and len(enum) == 28
    assert len(strategy.json_schema()["properties"]["strategy"]["enum"]) == 8


def test_every_numeric_answer_is_bounded_by_the_scale_its_parser_accepts():
    """A schema without bounds lets a server answer 0 or 11 and the parser then rejects it."""
    from labeling.tasks.base import get_tasks, tasks_registry

    def integers(schema):
        if isinstance(schema, dict):
            if schema.get("type") == "integer":
                yield schema
            for value in schema.values():
                yield from integers(value)

    for task in get_tasks(list(tasks_registry())):
        for node in integers(task.json_schema()):
            assert "minimum" in node and "maximum" in node, (task.name, node)
