"""pii: planted PII in real OpenWebText sentences; the real documents' numbers are not PII."""

from __future__ import annotations

import copy

import pytest

from curation.record import validate_record
from curation.steps.base import ConfigError
from curation.steps.pii import Pii, PiiConfig, mask_pii

DOC = "openwebtext:validation:0000031-3207f8f62f3945d00ca85bd440c8faaa"


def run(step, records):
    results, counters = step.process_batch(records)
    return [r for r in results if isinstance(r, dict)], counters


def test_real_documents_have_no_pii_and_stay_unchanged(real_records):
    # they hold years (1945), prices ($216,000), 500,000, dates (9/06), 7%, 45-year-old
    kept, counters = run(Pii(), real_records["openwebtext"])
    assert kept == real_records["openwebtext"]
    assert not counters


def test_planted_pii_in_a_real_document_is_masked(by_id):
    record = copy.deepcopy(by_id[DOC])
    raw = record["turns"][0]["text"]
    first, rest = raw.split("\n\n", 1)
    planted = (
        f"{first} Write to jane.doe+owt@example.co.uk or call (415) 555-0132 or +44 20 7946 0958."
        f" Details at https://example.org/pot?id=7. and www.example.com, served from 192.168.10.254."
        f"\n\n{rest}"
    )
    record["turns"][0]["text"] = planted
    (out,), counters = run(Pii(), [record])
    text = out["turns"][0]["text"]
    assert f"{first} Write to [EMAIL] or call [PHONE] or [PHONE]." in text
    assert "Details at [URL]. and [URL], served from [IP]." in text
    assert text.endswith(rest)  # the real text around is untouched
    assert out["turns"][0]["attrs"]["raw_text"] == planted
    assert counters == {
        "masked_email": 1,
        "masked_phone": 2,
        "masked_url": 2,
        "masked_ip": 1,
        "turns_modified": 1,
        "modified": 1,
    }
    validate_record(out)
    # idempotent: masking the masked text changes nothing, the first raw text survives
    (again,), counters = run(Pii(), [out])
    assert again == out and not counters


@pytest.mark.parametrize(
    "text",
    [
        "In 1945 the book was banned; by 2015 it was back.",
        "The measure would raise $216,000 a year, or $8,000 per county, at $17 an ounce.",
        "Some 500,000 people were arrested, 1.5 million in total, up 7% since 2004.",
        "On Tuesday 9/06 at 10:30 and again on 2019-01-05 at 14:45:10.",
        "Upgrade from version 1.2.3 to 10.4.1 (build 2.0.1); pages 123-456.",
        "Call extension 4283 or room 1808; the 45-year-old drove 12 miles.",
        "Scores were 3-4 and 5-4, a ratio of 1:2, on 12.05.2019.",
    ],
)
def test_not_pii(text):
    assert mask_pii(text) == (text, {})


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("mail me: a.b-c@mail.example.com.", "mail me: [EMAIL]."),
        ("see http://www.bbc.co.uk/news/world-123, then", "see [URL], then"),
        ("posted on reddit.com/r/politics today", "posted on [URL] today"),
        ("call 415.555.0132 now", "call [PHONE] now"),
        ("call 555-0132 now", "call [PHONE] now"),
        ("tel. 020 7946 0958", "tel. [PHONE]"),
        ("from 8.8.8.8 and fe80:0:0:0:202:b3ff:fe1e:8329", "from [IP] and [IP]"),
    ],
)
def test_pii_kinds(text, masked):
    assert mask_pii(text)[0] == masked


def test_kinds_and_sources_are_configurable(by_id):
    text = "mail a@example.com or visit www.example.com"
    assert mask_pii(text, kinds=["email"])[0] == "mail [EMAIL] or visit www.example.com"
    record = copy.deepcopy(next(r for k, r in by_id.items() if k.startswith("goemotions:")))
    record["turns"][0]["text"] = text
    (out,), _ = run(Pii(), [record])
    assert out is record  # GoEmotions is not in the default sources
    (out,), _ = run(Pii(PiiConfig(sources=["*"])), [record])
    assert out["turns"][0]["text"] == "mail [EMAIL] or visit [URL]"


@pytest.mark.parametrize(("options", "key"), [({"kinds": ["ssn"]}, "kinds"), ({"source": ["*"]}, "source")])
def test_config_errors_name_the_key(options, key):
    with pytest.raises(ConfigError, match=key):
        PiiConfig.from_dict(options)
