"""The ESConv adapter on the example slices (examples/data/esconv) and on files built from their real rows."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from curation.adapters.base import Rejected, collect, get_adapter
from curation.adapters.esconv import ESConvAdapter
from curation.errors import InputError

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples" / "data" / "esconv"
HF = EXAMPLES / "hf"
FAILED = EXAMPLES / "raw" / "FailedESConv.json"
# The last six conversations of FailedESConv.json, cut verbatim: the only ones with the
# un-normalised aliases "Direct Guidance", "Approval and Reassurance" and "Restatement".
FAILED_TAIL = Path(__file__).parent / "fixtures" / "FailedESConv_tail.json"

# A real first line of DailyDialog's dialogues_train.txt.
DAILYDIALOG_LINE = (
    "Say , Jim , how about going for a few beers after dinner ? __eou__ You know that is tempting "
    "but is really not good for our fitness . __eou__\n"
)
# Real first rows of GoEmotions' train.tsv.
GOEMOTIONS_ROWS = "My favourite food is anything I didn't have to cook myself.\t27\teebbqej\n"


def read(*paths: Path) -> tuple[list[dict], list[Rejected], ESConvAdapter]:
    adapter = ESConvAdapter()
    records, rejected = collect(adapter, paths)
    return records, rejected, adapter


def hf_lines(name: str) -> list[str]:
    return (HF / name).read_text(encoding="utf-8").splitlines(keepends=True)


def strategy_labels(records: list[dict]) -> Counter[str]:
    return Counter(lab["value"] for r in records for lab in r["labels"] if lab["task"] == "strategy")


# ------------------------------------------------------------------ HF release


def test_registered_under_its_name():
    adapter = get_adapter("esconv")
    assert isinstance(adapter, ESConvAdapter)
    assert adapter.version == "1"


def test_hf_example_counts_speakers_and_strategies():
    records, rejected, adapter = read(HF)
    assert rejected == []
    assert Counter(r["split"] for r in records) == {"train": 150, "validation": 40, "test": 40}
    speakers = Counter(t["speaker"] for r in records for t in r["turns"])
    assert speakers == {"seeker": 3659, "supporter": 3305}
    assert strategy_labels(records) == {
        "Question": 648,
        "Others": 601,
        "Providing Suggestions": 542,
        "Affirmation and Reassurance": 507,
        "Self-disclosure": 291,
        "Reflection of feelings": 265,
        "Information": 257,
        "Restatement or Paraphrasing": 194,
    }
    # every supporter turn carries its strategy on the turn and as a gold label for that turn
    for r in records:
        turn_labels = {lab["turn"]: lab for lab in r["labels"] if lab["task"] == "strategy"}
        for i, t in enumerate(r["turns"]):
            assert (t["strategy"] is not None) == (t["speaker"] == "supporter")
            if t["strategy"]:
                assert turn_labels[i]["value"] == t["strategy"] == turn_labels[i]["raw"]
    assert adapter.stats["records"] == 230
    assert adapter.stats["files_skipped"] == 1  # strategy.json
    assert {r["context"]["esconv_set"] for r in records} == {"main"}


def test_hf_ids_are_line_numbers_deterministic_and_unique():
    first, _, _ = read(HF)
    second, _, _ = read(HF)
    ids = [r["id"] for r in first]
    assert ids == [r["id"] for r in second]
    assert len(set(ids)) == len(ids)
    train = [r for r in first if r["split"] == "train"]
    assert [r["id"] for r in train] == [f"esconv:train:{n}" for n in range(1, 151)]
    assert [r["provenance"]["line"] for r in train] == list(range(1, 151))
    assert {r["id"].split(":")[1] for r in first if r["split"] == "validation"} == {"validation"}


def test_hf_record_shape():
    records, _, _ = read(HF / "train.txt")
    r = records[0]
    raw = json.loads(hf_lines("train.txt")[0])
    assert r["id"] == "esconv:train:1"
    assert r["provenance"]["file"] == "train.txt"  # a file given directly: its name
    assert r["provenance"]["adapter"] == "esconv" and r["provenance"]["line"] == 1
    assert [t["text"] for t in r["turns"]] == [t["text"] for t in raw["dialog"]]
    assert r["turns"][0]["speaker"] == "seeker" and r["turns"][0]["attrs"] == {"speaker_raw": "usr"}
    assert r["turns"][1]["speaker"] == "supporter" and r["turns"][1]["strategy"] == "Question"
    ctx = r["context"]
    assert ctx["situation"] == raw["situation"]
    assert ctx["emotion_type"] == "anxiety" and ctx["problem_type"] == "job crisis"
    assert ctx["experience_type"] == "Current Experience"
    assert ctx["survey.seeker.empathy"] == "5" and ctx["survey.supporter.relevance"] == "5"
    assert ctx["seeker_question2"] == "N.A" and ctx["supporter_question2"] == ""
    by_task = {lab["task"]: lab for lab in r["labels"] if lab["task"] != "strategy"}
    assert by_task["problem_type"]["value"] == "job crisis"
    assert by_task["emotion"]["value"] == "nervousness" and by_task["emotion"]["raw"] == "anxiety"
    empathy = by_task["empathy"]
    assert (empathy["value"], empathy["score"], empathy["raw"]) == ("5", 5.0, "5")
    assert empathy["source"] == "gold" and empathy["agent"] == "esconv:seeker_survey"
    assert all(lab["source"] == "gold" and lab["created_at"] is None for lab in r["labels"])


def test_provenance_is_relative_to_the_given_folder():
    records, _, _ = read(EXAMPLES)
    files = Counter(r["provenance"]["file"] for r in records)
    assert files == {"esconv/hf/train.txt": 150, "esconv/hf/valid.txt": 40, "esconv/hf/test.txt": 40,
                     "esconv/raw/FailedESConv.json": 40}  # fmt: skip


def test_problem_types_are_normalised_with_raw_kept():
    records, _, _ = read(HF)
    by_id = {r["id"]: r for r in records}
    parents = []
    for rid in ("esconv:train:14", "esconv:test:34"):
        lab = next(lab for lab in by_id[rid]["labels"] if lab["task"] == "problem_type")
        parents.append((lab["value"], lab["raw"]))
    assert parents == [("issues with parents", "conflict with parents"), ("issues with parents", "Issues with Parents")]
    values = Counter(lab["value"] for r in records for lab in r["labels"] if lab["task"] == "problem_type")
    assert values["issues with parents"] == 2
    assert values["sleep problems"] == 5  # raw "Sleep Problems"
    assert all(v == v.lower() for v in values)


def test_emotion_mapped_onto_goemotions_with_raw_kept():
    records, _, _ = read(HF)
    pairs = Counter((lab["raw"], lab["value"]) for r in records for lab in r["labels"] if lab["task"] == "emotion")
    assert pairs[("anxiety", "nervousness")] == 67
    assert pairs[("depression", "sadness")] == 60
    assert pairs[("shame", "embarrassment")] == 10


def test_empathy_label_only_where_the_seeker_answered_the_survey():
    records, _, _ = read(HF)
    scores = Counter(lab["value"] for r in records for lab in r["labels"] if lab["task"] == "empathy")
    assert scores == {"5": 123, "4": 56, "3": 23, "2": 2, "1": 2}
    without = [r for r in records if "survey.seeker.empathy" not in r["context"]]
    assert len(without) == 24
    assert all(lab["task"] != "empathy" for r in without for lab in r["labels"])


# ------------------------------------------------------- raw collection format


def test_failed_example_records():
    records, rejected, _ = read(FAILED)
    assert rejected == []
    assert len(records) == 40
    assert [r["id"].rsplit(":", 1)[1] for r in records] == [f"failed-{i}" for i in range(40)]
    assert sum(len(r["turns"]) for r in records) == 1111
    assert Counter(t["attrs"]["speaker_raw"] for r in records for t in r["turns"]) == {"speaker": 623, "listener": 488}
    assert Counter(t["speaker"] for r in records for t in r["turns"]) == {"seeker": 623, "supporter": 488}
    assert all(r["context"]["esconv_set"] == "failed" and r["context"]["split_assigned"] == "hash" for r in records)
    assert all(r["id"].split(":")[1] == r["split"] for r in records)
    # the raw format's trailing newlines are stripped
    raw_first = json.loads(FAILED.read_text(encoding="utf-8"))[0]
    assert raw_first["dialog"][0]["content"] == "Hey there\n"
    assert records[0]["turns"][0]["text"] == "Hey there"
    assert not any(t["text"].endswith("\n") for r in records for t in r["turns"])
    # seeker feedback is kept on the turn
    assert sum("feedback" in t["attrs"] for r in records for t in r["turns"]) == 208
    assert records[0]["turns"][4]["attrs"] == {"speaker_raw": "speaker", "feedback": "4"}
    # list elements are located by the line they start on and their byte offset
    assert records[0]["provenance"]["line"] == 2 and records[0]["provenance"]["offset"] == 3
    text = FAILED.read_bytes()
    for r in records[:5]:
        assert text[r["provenance"]["offset"] : r["provenance"]["offset"] + 2] == b"{\n"
        assert text.count(b"\n", 0, r["provenance"]["offset"]) + 1 == r["provenance"]["line"]


def test_raw_strategy_names_map_onto_the_vocabulary_with_raw_kept():
    records, rejected, _ = read(FAILED, FAILED_TAIL)
    assert rejected == []
    pairs = Counter((lab["raw"], lab["value"]) for r in records for lab in r["labels"] if lab["task"] == "strategy")
    assert pairs[("Questions", "Question")] == 127
    assert pairs[("Other", "Others")] == 88 + 17
    assert pairs[("Direct Guidance", "Providing Suggestions")] == 11
    assert pairs[("Approval and Reassurance", "Affirmation and Reassurance")] == 7
    assert pairs[("Restatement", "Restatement or Paraphrasing")] == 3
    assert pairs[("Question", "Question")] == 8  # the normalised name also occurs


def test_failed_splits_from_the_content_hash_are_pinned():
    records, _, _ = read(FAILED)
    assert Counter(r["split"] for r in records) == {"train": 27, "validation": 6, "test": 7}


def test_split_survives_reordering(tmp_path):
    records, _, _ = read(FAILED)
    conversations = json.loads(FAILED.read_text(encoding="utf-8"))
    reordered = tmp_path / "FailedESConv.json"
    reordered.write_text(json.dumps(conversations[::-1], indent=1), encoding="utf-8")
    again, _, _ = read(reordered)
    assert [r["split"] for r in again] == [r["split"] for r in records][::-1]
    assert again[0]["id"] == f"esconv:{records[-1]['split']}:failed-0"  # ids follow the file's order


# ------------------------------------------------------------- ESConv.json


def to_esconv_json(line: str) -> dict:
    """A HF record converted back to ESConv.json's layout (the inverse of HF's process.py, minus feedback)."""
    d = json.loads(line)
    d["dialog"] = [
        {
            "content": t["text"],
            "speaker": {"usr": "seeker", "sys": "supporter"}[t["speaker"]],
            "annotation": {"strategy": t["strategy"]} if "strategy" in t else {},
        }
        for t in d["dialog"]
    ]
    return d


def test_esconv_json_format(tmp_path):
    # ESConv.json itself is not available; this file is built from the real HF records
    # of the example, converted back to the original list layout.
    lines = hf_lines("train.txt")[:30]
    path = tmp_path / "ESConv.json"
    path.write_text(json.dumps([to_esconv_json(line) for line in lines], indent=2), encoding="utf-8")
    records, rejected, _ = read(path)
    hf, _, _ = read(HF / "train.txt")
    assert rejected == []
    assert [r["id"].rsplit(":", 1)[1] for r in records] == [f"json-{i}" for i in range(30)]
    assert all(r["context"]["esconv_set"] == "main" and r["context"]["split_assigned"] == "hash" for r in records)
    assert {r["split"] for r in records} <= {"train", "validation", "test"}
    for got, want in zip(records, hf[:30], strict=True):
        assert got["turns"] == [
            {**t, "attrs": {"speaker_raw": t["speaker"]}} for t in want["turns"]
        ]  # same text, speakers and strategies; speaker_raw is seeker/supporter
        assert sorted((lab["task"], lab["value"], lab["raw"]) for lab in got["labels"]) == sorted(
            (lab["task"], lab["value"], lab["raw"]) for lab in want["labels"]
        )


# ------------------------------------------------------------------ bad input


def test_nonexistent_path():
    with pytest.raises(InputError, match="does not exist") as err:
        read(EXAMPLES / "nope" / "train.txt")
    assert "nope/train.txt" in str(err.value)


def test_empty_file(tmp_path):
    (tmp_path / "train.txt").write_bytes(b"")
    with pytest.raises(InputError, match="empty") as err:
        read(tmp_path / "train.txt")
    assert err.value.file == "train.txt"


@pytest.mark.parametrize(
    ("name", "content", "expected", "line"),
    [
        ("train.txt", DAILYDIALOG_LINE, "not an ESConv file", 1),
        ("train.tsv", GOEMOTIONS_ROWS, "not an ESConv file", 1),
        ("train.txt", '{"text": "a document", "label": 3}\n', "not ESConv data", 1),
        ("ESConv.json", (HF / "strategy.json").read_text(), "not ESConv data", 2),  # a list of strategy names
    ],
)
def test_wrong_format_is_refused_at_once(tmp_path, name, content, expected, line):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=expected) as err:
        read(path)
    assert err.value.file == name and err.value.line == line
    assert f"{name}, line {line}: " in str(err.value)


def test_split_must_be_readable_from_a_hf_file_name(tmp_path):
    path = tmp_path / "dialogues.txt"
    path.write_text(hf_lines("train.txt")[0], encoding="utf-8")
    with pytest.raises(InputError, match="split from the file name"):
        read(path)


def test_folder_without_esconv_files(tmp_path):
    (tmp_path / "README.md").write_text("hello", encoding="utf-8")
    with pytest.raises(InputError, match="no ESConv files"):
        read(tmp_path)


def test_truncated_hf_line_is_rejected_with_its_line(tmp_path):
    lines = hf_lines("valid.txt")[:3]
    path = tmp_path / "valid.txt"
    path.write_text(lines[0] + lines[1][: len(lines[1]) // 2] + "\n" + lines[2], encoding="utf-8")
    records, rejected, _ = read(path)
    assert [r["id"] for r in records] == ["esconv:validation:1", "esconv:validation:3"]
    (rej,) = rejected
    assert rej.line == 2 and rej.file == "valid.txt"
    assert "invalid JSON" in rej.reason and "truncated" in rej.reason
    assert str(rej.error()).startswith("valid.txt, line 2: ")


def test_truncated_file_mid_line_without_newline(tmp_path):
    lines = hf_lines("test.txt")[:2]
    path = tmp_path / "test.txt"
    path.write_text(lines[0] + lines[1][:500], encoding="utf-8")
    records, rejected, _ = read(path)
    assert len(records) == 1 and [r.line for r in rejected] == [2]


def test_truncated_json_list_yields_complete_conversations_then_where_it_broke(tmp_path):
    data = FAILED.read_bytes()
    cut = len(data) // 2
    path = tmp_path / "FailedESConv.json"
    path.write_bytes(data[:cut])
    records, rejected, _ = read(path)
    full, _, _ = read(FAILED)
    # the elements before the cut are read, unchanged; the one the cut falls in is rejected
    assert 0 < len(records) < len(full)
    assert records == full[: len(records)]
    assert full[len(records)]["provenance"]["offset"] < cut < full[len(records) + 1]["provenance"]["offset"]
    (rej,) = rejected
    broken = full[len(records)]
    assert rej.line == broken["provenance"]["line"]
    assert f"byte offset {broken['provenance']['offset']}" in rej.reason
    assert "truncated" in rej.reason
    assert str(rej.error()).startswith(f"FailedESConv.json, line {rej.line}: ")


def test_json_list_without_closing_bracket(tmp_path):
    data = FAILED.read_text(encoding="utf-8")
    path = tmp_path / "FailedESConv.json"
    path.write_text(data.rstrip().removesuffix("]"), encoding="utf-8")
    records, rejected, _ = read(path)
    assert len(records) == 40
    (rej,) = rejected
    assert "without the closing ']'" in rej.reason and rej.line == data.count("\n")


def test_invalid_utf8_rejects_only_its_line(tmp_path):
    lines = [line.encode() for line in hf_lines("train.txt")[:3]]
    lines[1] = lines[1].replace(b"Hello", b"Hel\xfflo", 1) if b"Hello" in lines[1] else b"\xff" + lines[1]
    path = tmp_path / "train.txt"
    path.write_bytes(b"".join(lines))
    records, rejected, _ = read(path)
    assert [r["id"] for r in records] == ["esconv:train:1", "esconv:train:3"]
    assert [(r.line, "UTF-8" in r.reason) for r in rejected] == [(2, True)]


def test_invalid_utf8_in_a_json_list_rejects_only_that_element(tmp_path):
    data = FAILED.read_bytes()
    second = data.index(b"How are you?")  # in element 0
    path = tmp_path / "FailedESConv.json"
    path.write_bytes(data[:second] + b"\xff" + data[second:])
    records, rejected, _ = read(path)
    assert len(records) == 39 and records[0]["id"].endswith("failed-1")
    (rej,) = rejected
    assert rej.line == 2 and "not UTF-8" in rej.reason


def test_unknown_strategy_is_rejected_naming_it(tmp_path):
    lines = hf_lines("train.txt")[:2]
    bad = json.loads(lines[1])
    turn = next(i for i, t in enumerate(bad["dialog"]) if t["speaker"] == "sys")
    bad["dialog"][turn]["strategy"] = "Hugging"
    path = tmp_path / "train.txt"
    path.write_text(lines[0] + json.dumps(bad) + "\n", encoding="utf-8")
    records, rejected, _ = read(path)
    assert len(records) == 1
    (rej,) = rejected
    assert rej.record == "esconv:train:2" and rej.line == 2
    assert f"turn {turn}" in rej.reason and "'Hugging'" in rej.reason and "Question" in rej.reason


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("emotion_type", "boredom", "unknown emotion_type"), ("problem_type", "money trouble", "unknown problem_type")],
)
def test_unknown_record_labels_are_rejected_naming_them(tmp_path, field, value, message):
    d = json.loads(hf_lines("test.txt")[0])
    d[field] = value
    path = tmp_path / "test.txt"
    path.write_text(json.dumps(d) + "\n", encoding="utf-8")
    records, rejected, _ = read(path)
    assert records == []
    assert message in rejected[0].reason and repr(value) in rejected[0].reason
    assert rejected[0].line == 1 and rejected[0].record == "esconv:test:1"


def test_unknown_speaker_is_rejected(tmp_path):
    d = json.loads(hf_lines("test.txt")[0])
    d["dialog"][3]["speaker"] = "bot"
    path = tmp_path / "test.txt"
    path.write_text(json.dumps(d) + "\n", encoding="utf-8")
    _, rejected, _ = read(path)
    assert "turn 3: expected speaker 'usr' or 'sys', got 'bot'" in rejected[0].reason


def test_json_list_reader_does_not_depend_on_chunk_boundaries(tmp_path):
    # Non-ASCII text (multi-byte UTF-8 split across reads) and tiny reads give the same elements.
    from curation.adapters.esconv import _iter_json_list

    conversations = [to_esconv_json(line) for line in hf_lines("test.txt")[:3]]
    conversations[1]["situation"] = "Ich fühle mich einsam — 孤独 😔"
    path = tmp_path / "ESConv.json"
    path.write_text(json.dumps(conversations, indent=1, ensure_ascii=False), encoding="utf-8")
    with path.open("rb") as f:
        whole = list(_iter_json_list(f, "ESConv.json"))
    with path.open("rb") as f:
        tiny = list(_iter_json_list(f, "ESConv.json", chunk_size=3))
    assert whole == tiny
    assert [e.value for e in whole] == conversations
    data = path.read_bytes()
    assert [e.offset for e in whole] == [data.index(b'{\n  "experience_type"', e.offset) for e in whole]
