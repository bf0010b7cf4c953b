"""The EmpatheticDialogues adapter on the example slice and on files built from its real rows."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from curation.adapters.base import Rejected, collect, get_adapter
from curation.adapters.empatheticdialogues import HEADER, EmpatheticDialoguesAdapter
from curation.errors import InputError

REPO = Path(__file__).resolve().parents[3]
EXAMPLE_DIR = REPO / "examples" / "data" / "empatheticdialogues"
EXAMPLE = EXAMPLE_DIR / "train.csv"
HEADER_LINE = ",".join(HEADER) + "\n"

# Real first rows of GoEmotions' train.tsv.
GOEMOTIONS_ROWS = "My favourite food is anything I didn't have to cook myself.\t27\teebbqej\n"


def read(*paths: Path) -> tuple[list[dict], list[Rejected], EmpatheticDialoguesAdapter]:
    adapter = EmpatheticDialoguesAdapter()
    records, rejected = collect(adapter, paths)
    return records, rejected, adapter


def example_rows() -> list[str]:
    """The slice's data rows, line endings kept."""
    return EXAMPLE.read_text(encoding="utf-8").splitlines(keepends=True)[1:]


def conversation_rows(conv_id: str) -> list[str]:
    return [row for row in example_rows() if row.startswith(conv_id + ",")]


def write_csv(tmp_path: Path, rows: list[str], name: str = "train.csv") -> Path:
    path = tmp_path / name
    path.write_text(HEADER_LINE + "".join(rows), encoding="utf-8")
    return path


def by_id(records: list[dict]) -> dict[str, dict]:
    return {r["id"]: r for r in records}


# ------------------------------------------------------------------ the slice


def test_registered_under_its_name():
    assert isinstance(get_adapter("empatheticdialogues"), EmpatheticDialoguesAdapter)


def test_example_counts():
    records, rejected, adapter = read(EXAMPLE)
    assert rejected == []
    assert len(records) == 95
    assert sum(len(r["turns"]) for r in records) == 439 == adapter.stats["rows"]
    assert len({r["context"]["emotion"] for r in records}) == 30
    assert {r["split"] for r in records} == {"train"}
    sizes = Counter(len(r["turns"]) for r in records)
    assert sizes == {4: 52, 5: 25, 6: 14, 7: 3, 1: 1}
    assert adapter.stats["rows_extra_commas"] == 0


def test_ids_are_conv_ids_deterministic_and_unique():
    first, _, _ = read(EXAMPLE)
    second, _, _ = read(EXAMPLE)
    ids = [r["id"] for r in first]
    assert ids == [r["id"] for r in second]
    assert len(set(ids)) == len(ids)
    assert ids[0] == "empatheticdialogues:train:hit:0_conv:1"
    assert ids[-1] == "empatheticdialogues:train:hit:55_conv:111"


def test_record_shape_speakers_and_commas():
    records, _, _ = read(EXAMPLE)
    r = records[0]
    assert [t["speaker"] for t in r["turns"]] == ["speaker", "listener"] * 3
    assert [t["attrs"]["speaker_idx"] for t in r["turns"]] == ["1", "0"] * 3
    # `_comma_` becomes a real comma in turn text and prompt
    assert r["turns"][1]["text"] == "Was this a friend you were in love with, or just a best friend?"
    assert r["context"] == {
        "emotion": "sentimental",
        "prompt": "I remember going to the fireworks with my best friend. There was a lot of people, "
        "but it only felt like us in the world.",
        "selfeval": "5|5|5_2|2|5",
    }
    assert not any("_comma_" in t["text"] for rec in records for t in rec["turns"])
    assert not any("_comma_" in rec["context"]["prompt"] for rec in records)
    assert r["provenance"]["file"] == "train.csv"
    assert (r["provenance"]["line"], r["provenance"]["line_end"]) == (2, 7)
    assert r["provenance"]["adapter"] == "empatheticdialogues"


def test_emotion_mapped_onto_goemotions_with_raw_kept():
    records, _, _ = read(EXAMPLE)
    for r in records:
        (lab,) = r["labels"]
        assert lab["task"] == "emotion" and lab["source"] == "gold" and lab["agent"] == "empatheticdialogues"
        assert lab["raw"] == r["context"]["emotion"]
    pairs = Counter((r["labels"][0]["raw"], r["labels"][0]["value"]) for r in records)
    assert pairs[("sentimental", "love")] > 0
    assert pairs[("afraid", "fear")] > 0


def test_quoted_utterance_survives_exactly():
    records, _, _ = read(EXAMPLE)
    r = by_id(records)["empatheticdialogues:train:hit:33_conv:67"]
    assert r["turns"][3]["text"] == (
        "My daughter is 1.5 years old - shes just been introduced to the water.. its always so special "
        'when our babies have their "first" moments. Congrats mama! '
    )


def test_tags_selfeval_and_spaces_kept_raw():
    records, _, _ = read(EXAMPLE)
    recs = by_id(records)
    tagged = [(r["id"], i) for r in records for i, t in enumerate(r["turns"]) if "tags" in t["attrs"]]
    assert tagged == [("empatheticdialogues:train:hit:14_conv:28", 0)]
    assert recs["empatheticdialogues:train:hit:14_conv:28"]["turns"][0]["attrs"]["tags"] == "<HI> "
    assert recs["empatheticdialogues:train:hit:28_conv:56"]["context"]["selfeval"] == " 5|5|5_4|5|5"
    assert recs["empatheticdialogues:train:hit:46_conv:92"]["context"]["selfeval"] == (
        "https://worker.mturk.com/tasks5|5|5_5|5|5"
    )
    single = recs["empatheticdialogues:train:hit:6_conv:13"]
    assert len(single["turns"]) == 1
    assert single["context"]["selfeval"] == "1|5|5_I have clicked the 'End Chat' button thank you!|4|5"
    prompts = [r["context"]["prompt"] for r in records]
    assert " i used to scare for darkness" in prompts


def test_folder_input_gives_paths_relative_to_it():
    records, _, _ = read(EXAMPLE_DIR)
    assert {r["provenance"]["file"] for r in records} == {"empatheticdialogues/train.csv"}
    assert len(records) == 95


# ------------------------------------------------------------ extra fields


def test_row_with_raw_commas_in_the_utterance_is_rejoined(tmp_path):
    rows = conversation_rows("hit:0_conv:1")
    original, _, _ = read(write_csv(tmp_path, rows))
    # the same row as a file without `_comma_` escaping would have it: raw commas in the utterance
    fields = rows[0].split(",")
    fields[5] = fields[5].replace("_comma_", ",")
    assert len(",".join(fields).split(",")) == 9
    rows[0] = ",".join(fields)
    records, rejected, adapter = read(write_csv(tmp_path, rows))
    assert rejected == []
    assert records == original
    assert records[0]["context"]["selfeval"] == "5|5|5_2|2|5"
    assert adapter.stats["rows_extra_commas"] == 1


def test_several_raw_commas_and_messy_selfeval(tmp_path):
    rows = conversation_rows("hit:46_conv:93")  # selfeval 5|5|5_https://worker.mturk.com/tasks5|5|5
    fields = rows[1].split(",")
    fields[5] = "Well, well, well, " + fields[5]
    rows[1] = ",".join(fields)
    records, rejected, adapter = read(write_csv(tmp_path, rows))
    assert rejected == []
    assert records[0]["turns"][1]["text"].startswith("Well, well, well, ")
    assert records[0]["context"]["selfeval"] == "5|5|5_https://worker.mturk.com/tasks5|5|5"
    assert "selfeval" not in records[0]["turns"][1]["attrs"]
    assert adapter.stats["rows_extra_commas"] == 1


def test_ninth_field_is_kept_as_label_candidates(tmp_path):
    # The official valid/test files add ParlAI's inline label candidates after `tags`;
    # the candidate text here is made up, the row is real.
    rows = conversation_rows("hit:1_conv:2")
    rows[1] = rows[1].rstrip("\n") + ",You must be so proud_comma_ congrats!|That sounds scary.\n"
    records, rejected, adapter = read(write_csv(tmp_path, rows))
    assert rejected == []
    attrs = records[0]["turns"][1]["attrs"]
    assert attrs["label_candidates"] == "You must be so proud_comma_ congrats!|That sounds scary."
    assert "tags" not in attrs
    assert adapter.stats["rows_label_candidates"] == 1 and adapter.stats["rows_extra_commas"] == 0


def test_row_with_too_few_fields_is_rejected_with_file_and_line(tmp_path):
    rows = conversation_rows("hit:0_conv:1") + conversation_rows("hit:1_conv:2")
    rows[2] = ",".join(rows[2].split(",")[:5]) + "\n"
    records, rejected, _ = read(write_csv(tmp_path, rows))
    assert [r["id"] for r in records] == ["empatheticdialogues:train:hit:1_conv:2"]
    row, conversation = rejected
    assert (row.file, row.line) == ("train.csv", 4)
    assert "expected 8 fields" in row.reason and "got 5" in row.reason
    assert str(row.error()).startswith("train.csv, line 4: expected 8 fields")
    # the conversation that lost a row is rejected too, naming the line
    assert conversation.record == "empatheticdialogues:train:hit:0_conv:1" and conversation.line == 4


def test_invalid_utf8_row_is_rejected_and_its_conversation_too(tmp_path):
    rows = [r.encode() for r in conversation_rows("hit:2_conv:4") + conversation_rows("hit:3_conv:7")]
    rows[1] = rows[1].replace(b"listener" if b"listener" in rows[1] else b" ", b"\xff", 1)
    path = tmp_path / "train.csv"
    path.write_bytes(HEADER_LINE.encode() + b"".join(rows))
    records, rejected, _ = read(path)
    assert [r["id"] for r in records] == ["empatheticdialogues:train:hit:3_conv:7"]
    assert rejected[0].line == 3 and "UTF-8" in rejected[0].reason
    assert rejected[1].record == "empatheticdialogues:train:hit:2_conv:4"


# ------------------------------------------------------ conversation checks


def test_utterance_order_is_checked(tmp_path):
    rows = conversation_rows("hit:0_conv:1")
    rows[2], rows[3] = rows[3], rows[2]
    records, rejected, _ = read(write_csv(tmp_path, rows))
    assert records == []
    (rej,) = rejected
    assert rej.line == 4 and "utterance_idx 4 at line 4; expected 3" in rej.reason


def test_context_must_stay_the_same(tmp_path):
    rows = conversation_rows("hit:0_conv:1")
    rows[3] = rows[3].replace(",sentimental,", ",nostalgic,", 1)
    _, rejected, _ = read(write_csv(tmp_path, rows))
    (rej,) = rejected
    assert rej.line == 5 and "context changes at line 5" in rej.reason


def test_rows_of_a_conversation_must_be_contiguous(tmp_path):
    first, second = conversation_rows("hit:0_conv:1"), conversation_rows("hit:1_conv:2")
    rows = first[:3] + second + first[3:]
    records, rejected, _ = read(write_csv(tmp_path, rows))
    # Streaming: the first run of rows was already a well-formed conversation and is
    # yielded; its second run is rejected, so no id is given twice.
    assert [r["id"] for r in records] == [
        "empatheticdialogues:train:hit:0_conv:1",
        "empatheticdialogues:train:hit:1_conv:2",
    ]
    (rej,) = rejected
    assert rej.record == "empatheticdialogues:train:hit:0_conv:1"
    again = 2 + 3 + len(second)
    assert rej.line == again
    assert f"starts again at line {again}" in rej.reason and "contiguous" in rej.reason


def test_unknown_emotion_is_rejected_naming_it(tmp_path):
    rows = [r.replace(",sentimental,", ",wistful,") for r in conversation_rows("hit:0_conv:1")]
    _, rejected, _ = read(write_csv(tmp_path, rows))
    (rej,) = rejected
    assert "'wistful'" in rej.reason and rej.record == "empatheticdialogues:train:hit:0_conv:1" and rej.line == 2


# ------------------------------------------------------------------ bad input


def test_nonexistent_path():
    with pytest.raises(InputError, match="does not exist") as err:
        read(EXAMPLE_DIR / "valid.csv")
    assert "valid.csv" in str(err.value)


def test_empty_file(tmp_path):
    (tmp_path / "test.csv").write_bytes(b"")
    with pytest.raises(InputError, match="empty") as err:
        read(tmp_path / "test.csv")
    assert err.value.file == "test.csv"


def test_tsv_is_refused_at_once(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text(GOEMOTIONS_ROWS, encoding="utf-8")
    with pytest.raises(InputError, match="not an EmpatheticDialogues CSV") as err:
        read(path)
    assert str(err.value).startswith("train.tsv, line 1: ")
    assert "conv_id,utterance_idx,context" in str(err.value)


def test_file_name_must_name_the_split(tmp_path):
    path = write_csv(tmp_path, conversation_rows("hit:0_conv:1"), name="conversations.csv")
    with pytest.raises(InputError, match="split from the file name") as err:
        read(path)
    assert err.value.file == "conversations.csv"


def test_split_from_file_name(tmp_path):
    rows = conversation_rows("hit:0_conv:1")
    (valid,), _, _ = read(write_csv(tmp_path, rows, name="valid.csv"))
    (test,), _, _ = read(write_csv(tmp_path, rows, name="test.csv"))
    assert (valid["split"], valid["id"]) == ("validation", "empatheticdialogues:validation:hit:0_conv:1")
    assert test["split"] == "test"
