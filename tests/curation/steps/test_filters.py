"""turn_length, min_turns and length on real slices."""

from __future__ import annotations

import copy

import pytest

from curation.steps.base import ConfigError
from curation.steps.filters import Length, LengthConfig, MinTurns, MinTurnsConfig, TurnLength, TurnLengthConfig


def run(step, records):
    results, counters = step.process_batch(records)
    kept = [r for r in results if isinstance(r, dict)]
    return kept, [r for r in results if not isinstance(r, dict)], counters


def all_records(real_records):
    return [r for records in real_records.values() for r in records]


def test_real_slices_pass_turn_length_with_defaults(real_records):
    _kept, dropped, _ = run(TurnLength(), all_records(real_records))
    assert not dropped


def test_empty_and_short_turns_are_dropped_with_their_turn(by_id):
    record = copy.deepcopy(by_id["dailydialog:train:1"])
    record["turns"][2]["text"] = "  "
    (d,) = run(TurnLength(), [record])[1]
    assert (d.reason, d.detail) == ("empty_turn", "turn 2 is empty")

    real = by_id["dailydialog:train:1"]  # its shortest turn: "Good.Let ' s go now ." (21 chars)
    (d,) = run(TurnLength(TurnLengthConfig(min_chars=30)), [real])[1]
    assert d.reason == "short_turn" and "< min_chars 30" in d.detail
    (d,) = run(TurnLength(TurnLengthConfig(min_words=8)), [real])[1]
    assert d.reason == "short_turn" and "words < min_words 8" in d.detail


def test_turn_length_sources_scope(by_id):
    record = copy.deepcopy(by_id["dailydialog:train:1"])
    record["turns"][0]["text"] = ""
    kept, dropped, _ = run(TurnLength(TurnLengthConfig(sources=["goemotions"])), [record])
    assert kept and not dropped


def test_min_turns_drops_the_real_one_utterance_ed_conversation(real_records):
    kept, dropped, _ = run(MinTurns(), all_records(real_records))
    assert [(d.record["id"], d.reason, d.detail) for d in dropped] == [
        ("empatheticdialogues:train:hit:6_conv:13", "too_few_turns", "1 turns < min_turns 2")
    ]
    # single-text sources are out of scope by default: GoEmotions and OWT records all kept
    assert sum(r["source"] in ("goemotions", "openwebtext") for r in kept) == 504


def test_min_turns_threshold(real_records):
    dd = real_records["dailydialog"]
    shortest = min(len(r["turns"]) for r in dd)
    _, dropped, _ = run(MinTurns(MinTurnsConfig(min_turns=shortest + 1)), dd)
    assert dropped and all(len(d.record["turns"]) == shortest for d in dropped)
    assert dropped[0].detail == f"{shortest} turns < min_turns {shortest + 1}"


def test_length_defaults_keep_the_real_slices(real_records):
    _kept, dropped, _ = run(Length(), all_records(real_records))
    assert not dropped


def test_length_per_source_bounds(by_id):
    owt = by_id["openwebtext:train:0000005-93544d279b4a2417d2201864e28639b1"]
    short = copy.deepcopy(owt)
    short["turns"][0]["text"] = owt["turns"][0]["text"][:200]  # ~30 words of the real document
    (d,) = run(Length(), [short])[1]
    assert d.reason == "too_short" and "< min_words 50" in d.detail
    (d,) = run(Length(LengthConfig(per_source={"openwebtext": {"max_words": 500}})), [owt])[1]
    assert d.reason == "too_long" and d.detail == "774 words > max_words 500"
    # per-source bounds do not leak to other sources
    ge = next(r for k, r in by_id.items() if k.startswith("goemotions:"))
    assert run(Length(LengthConfig(per_source={"openwebtext": {"min_words": 10_000}})), [ge])[0]


@pytest.mark.parametrize(
    ("cls", "options", "key"),
    [
        (TurnLengthConfig, {"min_char": 2}, "min_char"),
        (TurnLengthConfig, {"min_chars": -1}, "min_chars"),
        (MinTurnsConfig, {"min_turns": 0}, "min_turns"),
        (MinTurnsConfig, {"sources": ["daily_dialog"]}, "sources"),
        (LengthConfig, {"per_source": {"openwebtext": {"min_word": 3}}}, "min_word"),
        (LengthConfig, {"per_source": {"openwebtext": {"min_words": 10, "max_words": 5}}}, "min_words"),
        (LengthConfig, {"max_chars": -5}, "max_chars"),
    ],
)
def test_config_errors_name_the_key(cls, options, key):
    with pytest.raises(ConfigError, match=key):
        cls.from_dict(options)
