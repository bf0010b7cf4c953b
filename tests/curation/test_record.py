from datetime import UTC, datetime

import pytest

from curation.errors import SchemaError
from curation.record import from_batch, label, make_id, provenance, to_table, turn, validate_record


def _record(**over):
    rec = {
        "id": make_id("dailydialog", "train", 1),
        "source": "dailydialog",
        "split": "train",
        "context": {"topic": "ordinary life"},
        "turns": [
            turn("A", "The kitchen stinks .", act="directive", emotion="neutral"),
            turn("B", "I'll throw out the garbage .", act="commissive", emotion="neutral"),
        ],
        "labels": [label("act", "directive", source="gold", agent="dailydialog", turn=0, raw="3")],
        "provenance": provenance(
            "ijcnlp_dailydialog/train/dialogues_train.txt", line=1, adapter="dailydialog", adapter_version="1"
        ),
    }
    rec.update(over)
    return rec


def test_valid_record_round_trips_through_arrow():
    rec = _record()
    validate_record(rec)
    back = from_batch(to_table([rec]))[0]
    assert back == rec


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r.pop("source"), "source"),
        (lambda r: r["turns"][1].update(text=None), "turns[1].text"),
        (lambda r: r["turns"][0].update(text=3), "turns[0].text"),
        (lambda r: r.update(split="dev"), "split"),
        (lambda r: r.update(id="dailydialog-1"), "id"),
        (lambda r: r["labels"][0].update(source="gpt"), "labels[0].source"),
        (lambda r: r["labels"][0].update(turn=5), "labels[0].turn"),
        (lambda r: r["labels"][0].update(value="shouting"), "labels[0].value"),
        (lambda r: r["turns"][0].update(emotion="happiness"), "turns[0].emotion"),
        (lambda r: r["context"].update(topic=1), "context.topic"),
        (lambda r: r["provenance"].update(synthetic="no"), "provenance.synthetic"),
        (lambda r: r.update(extra=1), "extra"),
        (lambda r: r.update(turns=[]), "turns"),
        (lambda r: r["labels"][0].update(created_at=datetime(2024, 1, 1)), "labels[0].created_at"),
    ],
)
def test_record_that_does_not_fit_is_rejected_naming_the_field(change, field):
    rec = _record()
    change(rec)
    with pytest.raises(SchemaError) as info:
        validate_record(rec)
    assert info.value.field == field
    assert repr(field) in str(info.value)


def test_llm_label_with_timestamp_is_accepted():
    rec = _record()
    rec["labels"].append(
        label(
            "emotion",
            "joy",
            source="llm",
            agent="gpt-4o-mini@emotion-v1",
            score=0.8,
            created_at=datetime(2026, 11, 24, tzinfo=UTC),
        )
    )
    validate_record(rec)


def test_native_id_with_whitespace_is_refused():
    with pytest.raises(SchemaError):
        make_id("goemotions", "train", "a b")
