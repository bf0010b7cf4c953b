"""normalize on real slices: DailyDialog detokenised, ED escapes, OWT blank lines, raw text kept, idempotent."""

from __future__ import annotations

import copy

import pytest

from curation.record import validate_record
from curation.steps.base import ConfigError
from curation.steps.normalize import Normalize, NormalizeConfig, detokenize


def _norm(record, **options):
    from collections import Counter

    counters: Counter[str] = Counter()
    return Normalize(NormalizeConfig(**options)).process(record, counters), counters


# Real utterances of examples/data/dailydialog (as the adapter gives them) -> natural text.
REAL_DAILYDIALOG = [
    ("dailydialog:train:1", 8, "Good.Let ' s go now .", "Good. Let's go now."),
    (
        "dailydialog:train:5",
        3,
        "I ’ m a defender . It ’ s a lot of fun . You don ’ t have to be able to skate as fast on defense .",
        "I’m a defender. It’s a lot of fun. You don’t have to be able to skate as fast on defense.",
    ),
    (
        "dailydialog:train:34",
        3,
        "Well , I ’ Ve been working so hard lately , so I ’ ll probably just take it easy .",
        "Well, I’ve been working so hard lately, so I’ll probably just take it easy.",
    ),
    (
        "dailydialog:validation:1",
        2,
        "Well , that's too far.Can you change some money for me ?",
        "Well, that's too far. Can you change some money for me?",
    ),
    ("dailydialog:test:16", 7, "It's $ 308 a night .", "It's $308 a night."),
    ("dailydialog:test:26", 9, "Is 6 o ’ clock Friday evening okay ?", "Is 6 o’clock Friday evening okay?"),
    (
        "dailydialog:validation:21",
        5,
        "Okay . ( Reads the lease ) So , according to the lease , I ’ ll deposit one month ’ s rent",
        "Okay. (Reads the lease) So, according to the lease, I’ll deposit one month’s rent",
    ),
    (
        "dailydialog:train:6",
        5,
        "Let ’ s see . . . you ’ re a Capricorn .",
        "Let’s see... you’re a Capricorn.",
    ),
    (
        "dailydialog:train:122",
        2,
        "It was nice to see you , too.And please give my regards to Mrs.Robbins .",
        "It was nice to see you, too. And please give my regards to Mrs. Robbins.",
    ),
    (
        "dailydialog:train:159",
        8,
        "You ’ ll get to know it when you are acquainted with the U . S . history later on .",
        "You’ll get to know it when you are acquainted with the U.S. history later on.",
    ),
]


@pytest.mark.parametrize(("rid", "index", "raw_part", "expected"), REAL_DAILYDIALOG)
def test_real_dailydialog_lines_are_detokenised(by_id, rid, index, raw_part, expected):
    record = by_id[rid]
    raw = record["turns"][index]["text"]
    assert raw_part in raw  # the slice really has this text
    out, counters = _norm(record)
    assert expected in out["turns"][index]["text"]
    assert out["turns"][index]["attrs"]["raw_text"] == raw
    assert counters["modified"] == 1 and counters["turns_detokenized"] >= 1
    validate_record(out)


@pytest.mark.parametrize(
    ("raw", "natural"),
    [  # lines of the full dialogues_text.txt (shared/data), quoted verbatim
        ('I\'m sorry to say " No . "', 'I\'m sorry to say "No."'),
        (
            "Go to yahoo.com and click on “ Travel ” and “ Tickets . ”",
            "Go to yahoo.com and click on “Travel” and “Tickets.”",
        ),
        ("What ? ! You did that ? ? ! ! !", "What?! You did that??!!!"),
        ("iversity next to the Teachers ' College ?", "iversity next to the Teachers' College?"),
        ("It is 3.2 % . You may earn a little", "It is 3.2%. You may earn a little"),
        ("10:00 a . m . When am I supposed to", "10:00 a.m. When am I supposed to"),
        ("Thank you , Mr.Wang.Do you have an appointment", "Thank you, Mr. Wang. Do you have an appointment"),
        ("Hello , ma ’ am . Can I help you ?", "Hello, ma’am. Can I help you?"),
        ("No , I ‘ Ve been waiting for ages .", "No, I’ve been waiting for ages."),
        ("Ok . Well , go to www.google.com , and", "Ok. Well, go to www.google.com, and"),
        ("Don't worry.In fact , it is very easy", "Don't worry. In fact, it is very easy"),
    ],
)
def test_detokenize_common_patterns(raw, natural):
    assert detokenize(raw) == natural
    assert detokenize(natural) == natural  # idempotent


def test_natural_text_of_other_sources_is_not_detokenised(real_records):
    # ESConv and GoEmotions are natural text: only whitespace / unicode fixes may touch them.
    for source in ("esconv", "goemotions"):
        for record in real_records[source]:
            out, _ = _norm(record)
            for before, after in zip(record["turns"], out["turns"], strict=True):
                assert after["text"] == " ".join(before["text"].split()) or after is before


def test_idempotent_and_raw_text_survives_repeated_runs(real_records):
    for records in real_records.values():
        for record in records:
            once, _ = _norm(record)
            twice, counters = _norm(once)
            assert twice == once
            assert counters["modified"] == 0
            for t_raw, t_once in zip(record["turns"], once["turns"], strict=True):
                if t_once["text"] != t_raw["text"]:
                    assert t_once["attrs"]["raw_text"] == t_raw["text"]


def test_raw_text_already_set_is_kept(by_id):
    record = copy.deepcopy(by_id["dailydialog:train:5"])
    record["turns"][3]["attrs"]["raw_text"] = "as ingested"
    out, _ = _norm(record)
    assert out["turns"][3]["attrs"]["raw_text"] == "as ingested"


def test_openwebtext_blank_line_runs_collapse(by_id):
    record = by_id["openwebtext:train:0000068-1ad7382d9e2e97d93b002a64642ab65d"]
    raw = record["turns"][0]["text"]
    assert "\n\n\n" in raw
    out, counters = _norm(record)
    text = out["turns"][0]["text"]
    assert "\n\n\n" not in text and text == text.strip()
    assert text.split("\n\n") == [p for p in (q.strip() for q in raw.split("\n\n")) if p]
    assert counters["turns_whitespace"] == 1


def test_empatheticdialogues_comma_escape_left_in_prompt(by_id):
    record = copy.deepcopy(by_id["empatheticdialogues:train:hit:0_conv:1"])
    prompt = record["context"]["prompt"]
    assert "," in prompt
    record["context"]["prompt"] = prompt.replace(",", "_comma_")  # as an adapter that did not unescape gives it
    record["turns"][0]["text"] = record["turns"][0]["text"].replace(",", "_comma_") + "_comma_ really"
    out, counters = _norm(record)
    assert out["context"]["prompt"] == " ".join(prompt.split())
    assert "_comma_" not in out["turns"][0]["text"] and out["turns"][0]["text"].endswith(", really")
    assert counters["context_modified"] == 1 and counters["turns_replaced"] == 1
    # the escape is only ED's: a DailyDialog turn keeps the literal text
    dd = copy.deepcopy(by_id["dailydialog:train:1"])
    dd["turns"][0]["text"] = "a _comma_ b"
    assert _norm(dd)[0]["turns"][0]["text"] == "a _comma_ b"


def test_mojibake_is_repaired_and_nfc_applied(by_id):
    record = copy.deepcopy(next(r for k, r in by_id.items() if k.startswith("goemotions:")))
    text = record["turns"][0]["text"]
    # UTF-8 read as cp1252 ("café" -> "cafÃ©"), and a decomposed é (e + U+0301)
    record["turns"][0]["text"] = text + " cafÃ© nai\u0308ve"
    out, counters = _norm(record)
    assert out["turns"][0]["text"] == " ".join(text.split()) + " café naïve"
    assert counters["turns_mojibake_fixed"] == 1 and counters["turns_nfc"] == 1


def test_curly_quotes_are_kept(by_id):
    record = by_id["openwebtext:train:0000005-93544d279b4a2417d2201864e28639b1"]
    assert "“Mein Kampf”" in record["turns"][0]["text"]
    out, _ = _norm(record)
    assert "“Mein Kampf”" in out["turns"][0]["text"]


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"detokenize": True}, "detokenize"),
        ({"max_blank_lines": -1}, "max_blank_lines"),
        ({"detokenize_sources": ["dailydialogue"]}, "detokenize_sources"),
        ({"replacements": {"empatheticdialogues": {"_comma_": 1}}}, "replacements"),
    ],
)
def test_config_errors_name_the_key(options, key):
    with pytest.raises(ConfigError, match=key):
        NormalizeConfig.from_dict(options)
