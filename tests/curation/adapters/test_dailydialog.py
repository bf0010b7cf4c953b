"""The DailyDialog adapter on the bundled real slice and on small inputs built from real lines."""

from __future__ import annotations

import csv
import io
import shutil
import struct
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from curation.adapters import base
from curation.adapters.base import collect
from curation.adapters.dailydialog import DailyDialogAdapter, parse_int_array, parse_string_array
from curation.errors import InputError
from curation.ingest import ingest

REPO = Path(__file__).resolve().parents[3]
SLICE = REPO / "examples" / "data" / "dailydialog" / "ijcnlp_dailydialog"
STRAY_EOU = Path(__file__).parent / "data" / "dailydialog" / "stray_eou"
SLICE_LINES = {"train": 160, "validation": 40, "test": 40}
EMOTION_NAMES = ["no emotion", "anger", "disgust", "fear", "happiness", "sadness", "surprise"]
ACT_NAMES = {1: "inform", 2: "question", 3: "directive", 4: "commissive"}
# Two real rows of goemotions/data/train.tsv (text, label ids, comment id).
GOEMOTIONS_TSV = (
    b"My favourite food is anything I didn't have to cook myself.\t27\teebbqej\n"
    b"WHY THE FUCK IS BAYLESS ISOING\t2\teezlygj\n"
)


def read(paths, adapter=None):
    adapter = adapter or DailyDialogAdapter()
    records, rejected = collect(adapter, paths)
    return records, rejected


def split_files(split: str) -> tuple[Path, Path, Path]:
    folder = SLICE / split
    return (
        folder / f"dialogues_{split}.txt",
        folder / f"dialogues_act_{split}.txt",
        folder / f"dialogues_emotion_{split}.txt",
    )


def raw_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def write_split(folder: Path, split: str, text: list[bytes], act: list[bytes], emotion: list[bytes]) -> Path:
    """A split folder ``folder/split/`` with the three files, lines given as bytes (with newlines)."""
    out = folder / split
    out.mkdir(parents=True)
    (out / f"dialogues_{split}.txt").write_bytes(b"".join(text))
    (out / f"dialogues_act_{split}.txt").write_bytes(b"".join(act))
    (out / f"dialogues_emotion_{split}.txt").write_bytes(b"".join(emotion))
    return out


def slice_head(split: str, n: int) -> tuple[list[bytes], list[bytes], list[bytes]]:
    text, act, emotion = (p.read_bytes().splitlines(keepends=True)[:n] for p in split_files(split))
    return text, act, emotion


def without_topic(record: dict) -> tuple:
    labels = [lab for lab in record["labels"] if lab["task"] != "topic"]
    return record["split"], record["turns"], labels


@pytest.fixture(scope="module")
def slice_records():
    adapter = DailyDialogAdapter()
    records, rejected = read([SLICE], adapter)
    assert rejected == []
    return records, adapter.stats


# ------------------------------------------------------------------ the slice


def test_registered():
    assert base._REGISTRY["dailydialog"] is DailyDialogAdapter
    assert DailyDialogAdapter.name == "dailydialog" and DailyDialogAdapter.version


def test_counts_per_split(slice_records):
    records, stats = slice_records
    assert Counter(r["split"] for r in records) == SLICE_LINES
    for split in SLICE_LINES:
        expected = sum(line.count("__eou__") for line in raw_lines(split_files(split)[0]))
        assert sum(len(r["turns"]) for r in records if r["split"] == split) == expected
    assert stats["dialogues"] == 240 and stats["lines"] == 240


def test_turns_and_labels_align_with_the_raw_lines(slice_records):
    records, _ = slice_records
    for split in SLICE_LINES:
        text, act, emotion = (raw_lines(p) for p in split_files(split))
        mine = [r for r in records if r["split"] == split]
        for n, record in enumerate(mine):
            utterances = [u.strip() for u in text[n].split("__eou__")[:-1]]
            acts, emotions = [int(x) for x in act[n].split()], [int(x) for x in emotion[n].split()]
            assert [t["text"] for t in record["turns"]] == utterances
            assert [t["speaker"] for t in record["turns"]] == ["A", "B"] * (len(utterances) // 2) + ["A"] * (
                len(utterances) % 2
            )
            assert [int(t["attrs"]["act_id"]) for t in record["turns"]] == acts
            assert [int(t["attrs"]["emotion_id"]) for t in record["turns"]] == emotions
            by_task = {task: [lab for lab in record["labels"] if lab["task"] == task] for task in ("act", "emotion")}
            assert [lab["turn"] for lab in by_task["act"]] == list(range(len(utterances)))
            assert [lab["turn"] for lab in by_task["emotion"]] == list(range(len(utterances)))
            assert [lab["value"] for lab in by_task["act"]] == [t["act"] for t in record["turns"]]
            assert [lab["value"] for lab in by_task["emotion"]] == [t["emotion"] for t in record["turns"]]
            assert all(lab["source"] == "gold" and lab["agent"] == "dailydialog" for lab in record["labels"])


def test_emotion_mapped_onto_goemotions_and_raw_kept(slice_records):
    records, _ = slice_records
    seen = Counter()
    for record in records:
        emotion_labels = [lab for lab in record["labels"] if lab["task"] == "emotion"]
        for t, lab in zip(record["turns"], emotion_labels, strict=True):
            raw = EMOTION_NAMES[int(t["attrs"]["emotion_id"])]
            assert t["attrs"]["emotion_raw"] == raw == lab["raw"]
            seen[(raw, t["emotion"])] += 1
    assert seen[("happiness", "joy")] > 0
    assert seen[("no emotion", "neutral")] > 0
    mapping = dict(seen)
    assert {mapped for (raw, mapped) in mapping if raw == "happiness"} == {"joy"}
    assert {mapped for (raw, mapped) in mapping if raw == "no emotion"} == {"neutral"}


def test_act_labels(slice_records):
    records, _ = slice_records
    acts = Counter()
    for record in records:
        for t in record["turns"]:
            assert t["act"] == ACT_NAMES[int(t["attrs"]["act_id"])]
            acts[t["act"]] += 1
    assert set(acts) == set(ACT_NAMES.values())


def test_topic_joined_from_the_full_files(slice_records):
    records, stats = slice_records
    topic_names = {
        1: "ordinary life",
        2: "school life",
        3: "culture & education",
        4: "attitude & emotion",
        5: "relationship",
        6: "tourism",
        7: "health",
        8: "work",
        9: "politics",
        10: "finance",
    }
    full_text = raw_lines(SLICE / "dialogues_text.txt")
    full_topic = [int(x) for x in raw_lines(SLICE / "dialogues_topic.txt")]
    split_text = {split: raw_lines(split_files(split)[0]) for split in SLICE_LINES}
    for record in records:
        (topic,) = [lab for lab in record["labels"] if lab["task"] == "topic"]
        assert topic["turn"] is None and topic["source"] == "gold"
        assert record["context"]["topic"] == topic["value"] == topic_names[int(topic["raw"])]
        full_line = int(topic["attrs"]["full_line"])
        line = split_text[record["split"]][int(record["id"].rsplit(":", 1)[1]) - 1]
        assert full_text[full_line - 1] == line
        assert full_topic[full_line - 1] == int(topic["raw"])
    assert stats["topic_matched_exact"] == 240 and stats["topic_unmatched"] == 0


def test_ids_deterministic_unique_and_provenance(slice_records):
    records, _ = slice_records
    ids = [r["id"] for r in records]
    assert len(set(ids)) == len(ids)
    assert ids[:2] == ["dailydialog:train:1", "dailydialog:train:2"]
    assert ids[160] == "dailydialog:validation:1" and ids[-1] == "dailydialog:test:40"
    assert [r["id"] for r in read([SLICE])[0]] == ids
    prov = records[0]["provenance"]
    assert prov["file"] == "ijcnlp_dailydialog/train/dialogues_train.txt" and prov["line"] == 1
    assert prov["adapter"] == "dailydialog" and prov["adapter_version"] == DailyDialogAdapter.version
    assert records[-1]["provenance"]["file"] == "ijcnlp_dailydialog/test/dialogues_test.txt"
    assert records[-1]["provenance"]["line"] == 40


def test_path_order_does_not_change_the_result(slice_records):
    records, _ = slice_records
    shuffled = [SLICE / "test", SLICE / "dialogues_text.txt", SLICE / "train", SLICE / "validation"]
    again, rejected = read([p / f"dialogues_{p.name}.txt" if p.is_dir() else p for p in shuffled])
    assert rejected == []
    assert [r["id"] for r in again] == [r["id"] for r in records]
    assert [r["labels"] for r in again] == [r["labels"] for r in records]


# ------------------------------------------------------------------ zips


def zip_split(folder: Path, split: str) -> Path:
    """``{split}.zip`` laid out as the distribution's (a ``split/`` entry, then the three files)."""
    archive = folder / f"{split}.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{split}/", "")
        for path in split_files(split):
            z.write(path, f"{split}/{path.name}")
    return archive


def test_zip_reading_equals_folder_reading(tmp_path, slice_records):
    records, _ = slice_records
    root = tmp_path / "ijcnlp_dailydialog"
    root.mkdir()
    for split in SLICE_LINES:
        zip_split(root, split)
    for name in ("dialogues_text.txt", "dialogues_act.txt", "dialogues_emotion.txt", "dialogues_topic.txt"):
        shutil.copy(SLICE / name, root / name)
    from_zip, rejected = read([root])
    assert rejected == []
    assert [r["id"] for r in from_zip] == [r["id"] for r in records]
    assert [(r["turns"], r["labels"], r["context"]) for r in from_zip] == [
        (r["turns"], r["labels"], r["context"]) for r in records
    ]
    assert from_zip[0]["provenance"]["file"] == "ijcnlp_dailydialog/train.zip!train/dialogues_train.txt"
    alone, _ = read([root / "validation.zip"])
    assert alone[0]["provenance"]["file"] == "ijcnlp_dailydialog/validation.zip!validation/dialogues_validation.txt"


def test_folder_and_zip_of_one_split_are_read_once(tmp_path):
    root = tmp_path / "ijcnlp_dailydialog"
    shutil.copytree(SLICE / "train", root / "train")
    zip_split(root, "train")
    records, _ = read([root])
    assert len(records) == 160
    assert {r["provenance"]["file"] for r in records} == {"ijcnlp_dailydialog/train/dialogues_train.txt"}
    # Given explicitly, folder and zip side by side are still one split.
    assert len(read([root / "train.zip", root / "train"])[0]) == 160


def test_one_split_from_two_places_is_an_error(tmp_path):
    other = tmp_path / "variant"
    other.mkdir()
    archive = zip_split(other, "train")
    with pytest.raises(InputError, match="split 'train' is given twice"):
        list(DailyDialogAdapter().read([SLICE / "train", archive]))


# ------------------------------------------------------------------ damaged zips


def zip_layout(data: bytes, member: str) -> tuple[int, int, int, int]:
    """Where a member lies in zip bytes: (local header, central directory entry, data start, compressed size)."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        info, central = z.getinfo(member), z.start_dir
    local = info.header_offset
    name_len, extra_len = struct.unpack_from("<HH", data, local + 26)
    while True:
        assert data[central : central + 4] == b"PK\x01\x02"
        n, m, k = struct.unpack_from("<HHH", data, central + 28)
        if data[central + 46 : central + 46 + n] == member.encode():
            break
        central += 46 + n + m + k
    return local, central, local + 30 + name_len + extra_len, info.compress_size


def damage_zip(archive: Path, member: str, how: str) -> None:
    """Damage one member of a real zip in place, as a bad download or a bad disk would."""
    data = bytearray(archive.read_bytes())
    local, central, start, size = zip_layout(bytes(data), member)
    if how == "flipped byte":  # mid-stream: zlib.error or a bad CRC, depending on what the byte meant
        data[start + size // 2] ^= 0xFF
    elif how == "bad block type":  # the first deflate block header says BTYPE=11 (reserved): zlib.error
        data[start] = 0b111
    elif how == "bad crc":  # both copies of the CRC, so only the data check can catch it
        crc = struct.unpack_from("<I", data, central + 16)[0] ^ 0x5A5A
        struct.pack_into("<I", data, local + 14, crc)
        struct.pack_into("<I", data, central + 16, crc)
    elif how == "short data":  # the compressed size cut in both headers: EOFError
        struct.pack_into("<I", data, local + 18, size // 2)
        struct.pack_into("<I", data, central + 20, size // 2)
    elif how == "bad local header":  # zipfile.BadZipFile: Bad magic number for file header
        data[local] ^= 0xFF
    elif how == "encrypted":  # flag bit 0: RuntimeError, password required
        struct.pack_into("<H", data, central + 8, struct.unpack_from("<H", data, central + 8)[0] | 1)
    elif how == "unknown method":  # NotImplementedError
        struct.pack_into("<H", data, central + 10, 77)
    elif how == "offset past the end":  # OSError from a seek before the start of the file
        struct.pack_into("<I", data, central + 42, 0xFFFFFFF0)
    else:
        raise AssertionError(how)
    archive.write_bytes(bytes(data))


ZIP_DAMAGE = [
    "flipped byte",
    "bad block type",
    "bad crc",
    "short data",
    "bad local header",
    "encrypted",
    "unknown method",
]


@pytest.mark.parametrize("how", ZIP_DAMAGE)
@pytest.mark.parametrize("member", ["train/dialogues_train.txt", "train/dialogues_emotion_train.txt"])
def test_a_damaged_zip_member_is_one_input_error_naming_archive_and_member(tmp_path, how, member):
    root = tmp_path / "ijcnlp_dailydialog"
    root.mkdir()
    archive = zip_split(root, "train")
    damage_zip(archive, member, how)
    with pytest.raises(InputError) as err:
        list(DailyDialogAdapter().read([root]))
    assert err.value.file == f"ijcnlp_dailydialog/train.zip!{member}"
    assert str(err.value).startswith(f"ijcnlp_dailydialog/train.zip!{member}: ")
    assert "archive member" in err.value.reason


def test_bad_crc_message_says_what_was_wrong(tmp_path):
    archive = zip_split(tmp_path, "train")
    damage_zip(archive, "train/dialogues_train.txt", "bad crc")
    with pytest.raises(InputError) as err:
        list(DailyDialogAdapter().read([archive]))
    assert str(err.value).startswith(
        f"{tmp_path.name}/train.zip!train/dialogues_train.txt: corrupt archive member (Bad CRC-32"
    )
    damage_zip(zip_split(tmp_path, "train"), "train/dialogues_train.txt", "bad block type")
    with pytest.raises(
        InputError,
        match=r"train\.zip!train/dialogues_train\.txt: corrupt archive member \(deflate data: .*invalid block type",
    ):
        list(DailyDialogAdapter().read([archive]))


def test_a_central_directory_that_points_past_the_file_is_one_error(tmp_path):
    archive = zip_split(tmp_path, "train")
    damage_zip(archive, "train/dialogues_act_train.txt", "offset past the end")
    with pytest.raises(InputError, match=r"train\.zip"):
        list(DailyDialogAdapter().read([archive]))


def test_zip_damage_found_by_fuzzing_never_escapes_as_another_exception(tmp_path):
    """Every single-byte change of a small real zip: records, rejections or one InputError, nothing else."""
    archive = zip_split(tmp_path, "test")
    data = archive.read_bytes()
    for pos in range(0, len(data), 7):
        damaged = bytearray(data)
        damaged[pos] ^= 0xFF
        archive.write_bytes(bytes(damaged))
        try:
            list(DailyDialogAdapter().read([archive]))
        except InputError as exc:
            assert exc.file and exc.file.startswith(f"{tmp_path.name}/test.zip"), (pos, exc)


def test_a_corrupt_zip_member_is_fatal_even_when_skipping(tmp_path, store):
    """A corrupt member may have lost or garbled any of its lines, so skipping rows cannot isolate it."""
    root = tmp_path / "ijcnlp_dailydialog"
    root.mkdir()
    for split in SLICE_LINES:
        zip_split(root, split)
    damage_zip(root / "test.zip", "test/dialogues_test.txt", "bad crc")
    for on_error in ("raise", "skip"):
        with pytest.raises(InputError, match=r"test\.zip!test/dialogues_test\.txt: corrupt archive member"):
            ingest("dailydialog", [root], store=store, tag="dd", on_error=on_error)
    assert store.snapshot_ids() == [] and store.refs() == {}


def test_the_real_validation_zip_damaged(tmp_path, full_data):
    """The distributed validation.zip (2017-04-14), with its CRC edited and then a flipped data byte."""
    real = full_data / "dailydialog" / "ijcnlp_dailydialog" / "validation.zip"
    member = "validation/dialogues_validation.txt"
    assert len(read([real])[0]) == 1000
    for how in ("bad crc", "flipped byte"):
        archive = tmp_path / how.replace(" ", "_") / "validation.zip"
        archive.parent.mkdir()
        shutil.copy(real, archive)
        damage_zip(archive, member, how)
        with pytest.raises(InputError) as err:
            list(DailyDialogAdapter().read([archive]))
        assert str(err.value).startswith(f"{archive.parent.name}/validation.zip!{member}: corrupt archive member")


# ------------------------------------------------------------------ full files only


def test_full_files_alone_get_a_hash_split(slice_records):
    records, _ = slice_records
    full, rejected = read([SLICE / "dialogues_text.txt"])
    assert rejected == [] and len(full) == 240
    assert all(r["context"]["split_assigned"] == "hash" for r in full)
    assert [r["id"].rsplit(":", 1)[1] for r in full] == [f"full-{n}" for n in range(1, 241)]
    assert {r["split"] for r in full} <= {"train", "validation", "test"}
    assert all(r["id"] == f"dailydialog:{r['split']}:{r['id'].rsplit(':', 1)[1]}" for r in full)
    assert [r["id"] for r in read([SLICE / "dialogues_topic.txt"])[0]] == [r["id"] for r in full]
    # Topics come from the same line; the same dialogues as through the split files.
    topics = [int(x) for x in raw_lines(SLICE / "dialogues_topic.txt")]
    assert [int(r["context"]["topic_id"]) for r in full] == topics
    assert sorted(str(r["turns"]) for r in full) == sorted(str(r["turns"]) for r in records)


def test_identical_dialogues_get_one_hash_split(tmp_path):
    text = (SLICE / "dialogues_text.txt").read_bytes().splitlines(keepends=True)
    act = (SLICE / "dialogues_act.txt").read_bytes().splitlines(keepends=True)
    emotion = (SLICE / "dialogues_emotion.txt").read_bytes().splitlines(keepends=True)
    order = list(range(40)) * 3  # every dialogue three times
    (tmp_path / "dialogues_text.txt").write_bytes(b"".join(text[i] for i in order))
    (tmp_path / "dialogues_act.txt").write_bytes(b"".join(act[i] for i in order))
    (tmp_path / "dialogues_emotion.txt").write_bytes(b"".join(emotion[i] for i in order))
    records, _ = read([tmp_path])
    assert len(records) == 120 and all("topic" not in r["context"] for r in records)
    for i in range(40):
        assert len({records[i + k * 40]["split"] for k in range(3)}) == 1


def test_full_file_line_with_a_stray_separator_is_rejected(tmp_path):
    """Real defect: dialogues_text.txt line 673 has 12 utterances but 11 labels."""
    extra = {
        "text": "train_line7852_2017-04",  # byte-identical to full-file line 673
        "act": "act_line7852",
        "emotion": "emotion_line7852",
        "topic": "topic_line673",
    }
    for name, line in extra.items():
        head = (SLICE / f"dialogues_{name}.txt").read_bytes().splitlines(keepends=True)[:5]
        (tmp_path / f"dialogues_{name}.txt").write_bytes(
            b"".join([*head, (STRAY_EOU / f"dialogues_{line}.txt").read_bytes()])
        )
    records, rejected = read([tmp_path / "dialogues_text.txt"])
    assert len(records) == 5
    (bad,) = rejected
    assert (bad.file, bad.line) == (f"{tmp_path.name}/dialogues_text.txt", 6)
    assert "12 utterances but 11 act labels and 11 emotion labels" in bad.reason
    assert "line 6" in str(bad.error()) and "dialogues_text.txt" in str(bad.error())


# ------------------------------------------------------------------ the stray __eou__ and the topic join


def test_variant_train_line_7852_is_rejected(tmp_path):
    """Real defect of the April 2017 train.zip: line 7852 has 12 utterances, 11 labels."""
    text, act, emotion = slice_head("train", 3)
    write_split(
        tmp_path,
        "train",
        [*text, (STRAY_EOU / "dialogues_train_line7852_2017-04.txt").read_bytes()],
        [*act, (STRAY_EOU / "dialogues_act_line7852.txt").read_bytes()],
        [*emotion, (STRAY_EOU / "dialogues_emotion_line7852.txt").read_bytes()],
    )
    records, rejected = read([tmp_path])
    assert [r["id"] for r in records] == ["dailydialog:train:1", "dailydialog:train:2", "dailydialog:train:3"]
    (bad,) = rejected
    assert bad.file == f"{tmp_path.name}/train/dialogues_train.txt" and bad.line == 4
    assert bad.record == "dailydialog:train:4"
    assert bad.reason.startswith(
        "12 utterances but 11 act labels and 11 emotion labels (expected one label per utterance"
    )
    assert bad.reason.endswith(
        "the labels are the same line of dialogues_act_train.txt and dialogues_emotion_train.txt)"
    )
    assert bad.raw.startswith("Sam , can we stop at this bicycle shop ?")


def test_fixed_line_7852_joins_its_full_twin_by_resegmenting(tmp_path):
    """The fixed train line matches full-file line 673 only with the stray separator ignored."""
    write_split(
        tmp_path,
        "train",
        [(STRAY_EOU / "dialogues_train_line7852_2017-11.txt").read_bytes()],
        [(STRAY_EOU / "dialogues_act_line7852.txt").read_bytes()],
        [(STRAY_EOU / "dialogues_emotion_line7852.txt").read_bytes()],
    )
    for name, source in (
        ("text", "train_line7852_2017-04"),
        ("act", "act_line7852"),
        ("emotion", "emotion_line7852"),
        ("topic", "topic_line673"),
    ):
        (tmp_path / f"dialogues_{name}.txt").write_bytes((STRAY_EOU / f"dialogues_{source}.txt").read_bytes())
    adapter = DailyDialogAdapter()
    records, rejected = read([tmp_path], adapter)
    assert rejected == []
    (record,) = records
    assert len(record["turns"]) == 11
    (topic,) = [lab for lab in record["labels"] if lab["task"] == "topic"]
    assert (topic["value"], topic["raw"], topic["attrs"]["match"]) == ("ordinary life", "1", "resegmented")
    assert adapter.stats["topic_matched_resegmented"] == 1 and adapter.stats["topic_unmatched"] == 0


def test_duplicate_dialogues_use_each_full_line_once(tmp_path):
    text, act, emotion = slice_head("train", 2)
    write_split(
        tmp_path, "train", [text[0], text[0], text[1]], [act[0], act[0], act[1]], [emotion[0]] * 2 + [emotion[1]]
    )
    # Full files: the first dialogue twice with different topics, the second not at all.
    (tmp_path / "dialogues_text.txt").write_bytes(text[0] * 2)
    (tmp_path / "dialogues_act.txt").write_bytes(act[0] * 2)
    (tmp_path / "dialogues_emotion.txt").write_bytes(emotion[0] * 2)
    (tmp_path / "dialogues_topic.txt").write_bytes(b"4\n5\n")
    adapter = DailyDialogAdapter()
    records, _ = read([tmp_path], adapter)
    assert [r["context"].get("topic_id") for r in records] == ["4", "5", None]
    assert adapter.stats["topic_unmatched"] == 1


# ------------------------------------------------------------------ bad inputs


def test_path_that_does_not_exist(tmp_path):
    with pytest.raises(InputError, match="path does not exist") as err:
        list(DailyDialogAdapter().read([tmp_path / "nope"]))
    assert "nope" in str(err.value)


def test_empty_file(tmp_path):
    write_split(tmp_path, "train", [], *slice_head("train", 1)[1:])
    with pytest.raises(InputError, match="file is empty") as err:
        list(DailyDialogAdapter().read([tmp_path]))
    assert err.value.file == f"{tmp_path.name}/train/dialogues_train.txt"


def test_goemotions_tsv_is_the_wrong_format(tmp_path):
    tsv = tmp_path / "train.tsv"
    tsv.write_bytes(GOEMOTIONS_TSV)
    with pytest.raises(InputError, match="not a DailyDialog file") as err:
        list(DailyDialogAdapter().read([tsv]))
    assert err.value.file.endswith("train.tsv")
    with pytest.raises(InputError, match="no DailyDialog files in this folder"):
        list(DailyDialogAdapter().read([tmp_path]))
    # Renamed to look like DailyDialog, the content still gives it away.
    renamed = tmp_path / "train.csv"
    renamed.write_bytes(GOEMOTIONS_TSV)
    with pytest.raises(InputError, match="expected a DailyDialog CSV header") as err:
        list(DailyDialogAdapter().read([renamed]))
    assert err.value.line == 1
    write_split(tmp_path / "tsv", "train", [GOEMOTIONS_TSV], *slice_head("train", 1)[1:])
    with pytest.raises(InputError, match="not DailyDialog text") as err:
        list(DailyDialogAdapter().read([tmp_path / "tsv"]))
    assert err.value.line == 1


def test_text_without_its_act_file(tmp_path):
    folder = write_split(tmp_path, "train", *slice_head("train", 2))
    (folder / "dialogues_act_train.txt").unlink()
    with pytest.raises(InputError, match=r"no matching act file: expected dialogues_act_train\.txt"):
        list(DailyDialogAdapter().read([folder / "dialogues_train.txt"]))


def test_label_file_with_a_missing_line(tmp_path):
    text, act, emotion = slice_head("train", 3)
    write_split(tmp_path, "train", text, act[:2], emotion)
    with pytest.raises(InputError, match=r"2 lines but .* has 3") as err:
        list(DailyDialogAdapter().read([tmp_path]))
    assert err.value.file.endswith("dialogues_act_train.txt") and err.value.line == 3


def test_act_id_out_of_range(tmp_path):
    text, act, emotion = slice_head("train", 3)
    n = len(act[1].split())
    write_split(tmp_path, "train", text, [act[0], b"7 " * n + b"\n", act[2]], emotion)
    records, rejected = read([tmp_path])
    assert [r["id"] for r in records] == ["dailydialog:train:1", "dailydialog:train:3"]
    (bad,) = rejected
    assert (bad.file, bad.line, bad.reason) == (
        f"{tmp_path.name}/train/dialogues_act_train.txt",
        2,
        "act id 7 out of range 1..4",
    )


def test_emotion_that_is_not_a_number(tmp_path):
    text, act, emotion = slice_head("train", 2)
    write_split(tmp_path, "train", text, act, [emotion[0], emotion[1].replace(b"0", b"x", 1)])
    _, (bad,) = read([tmp_path])
    assert bad.file.endswith("dialogues_emotion_train.txt") and bad.line == 2
    assert bad.reason == "emotion label 'x' is not an integer id"


def test_non_utf8_bytes_in_a_text_line(tmp_path):
    text, act, emotion = slice_head("train", 3)
    write_split(tmp_path, "train", [text[0], b"\xff\xfe" + text[1], text[2]], act, emotion)
    records, rejected = read([tmp_path])
    assert len(records) == 2
    (bad,) = rejected
    assert bad.file.endswith("train/dialogues_train.txt") and bad.line == 2
    assert "invalid UTF-8 at byte 0" in bad.reason


# ------------------------------------------------------------------ Kaggle / HF CSV


def write_kaggle_csv(path: Path, split: str) -> pd.DataFrame:
    """The Kaggle/HF CSV, built from the real split txt: no real copy of that CSV exists here.

    As HF's loader does, utterances are the pieces between ``__eou__`` *unstripped*; the frame
    holds numpy arrays (as ``Dataset.to_pandas()`` gives), so ``to_csv`` writes numpy reprs:
    ``['a' "b's" ...]`` wrapped over lines, and ``[3 4 2]``.
    """
    text, act, emotion = (raw_lines(p) for p in split_files(split))
    frame = pd.DataFrame(
        {
            "dialog": [np.array(line.split("__eou__")[:-1]) for line in text],
            "act": [np.array([int(x) for x in line.split()]) for line in act],
            "emotion": [np.array([int(x) for x in line.split()]) for line in emotion],
        }
    )
    frame.to_csv(path, index=False)
    return frame


def test_kaggle_csv_parses_like_the_txt(tmp_path, slice_records):
    records, _ = slice_records
    folder = tmp_path / "dailydialog_csv"
    folder.mkdir()
    for split in SLICE_LINES:
        write_kaggle_csv(folder / f"{split}.csv", split)
    written = (folder / "train.csv").read_text(encoding="utf-8")
    assert '""' in written  # an utterance with an apostrophe: numpy quotes it with "
    assert "'\n '" in written or "'\n \"" in written  # a long dialogue wraps inside its field
    from_csv, rejected = read([folder])
    assert rejected == []
    assert [without_topic(r) for r in from_csv] == [without_topic(r) for r in records]
    assert [r["id"] for r in from_csv[:2]] == ["dailydialog:train:csv-0", "dailydialog:train:csv-1"]
    assert from_csv[-1]["id"] == "dailydialog:test:csv-39"
    # Provenance points at the physical line where each row starts.
    physical = written.split("\n")
    starts = [r["provenance"]["line"] for r in from_csv if r["split"] == "train"]
    assert starts[0] == 2 and starts == sorted(starts)
    train = [r for r in from_csv if r["split"] == "train"]
    assert len(train) == len(list(csv.reader(written.splitlines(keepends=True)))) - 1
    for record in train:
        line = record["provenance"]["line"]
        # A row is quoted when its dialog cell holds a comma, a quote or a line break.
        assert physical[line - 1].startswith(('"[', "[")) and record["turns"][0]["text"][:8] in physical[line - 1]
        assert record["provenance"]["line_end"] >= line


def test_kaggle_csv_joins_topics_from_the_full_files(tmp_path, slice_records):
    records, _ = slice_records
    write_kaggle_csv(tmp_path / "validation.csv", "validation")
    for name in ("dialogues_text.txt", "dialogues_act.txt", "dialogues_emotion.txt", "dialogues_topic.txt"):
        shutil.copy(SLICE / name, tmp_path / name)
    from_csv, _ = read([tmp_path])
    txt = [r for r in records if r["split"] == "validation"]
    assert [r["context"] for r in from_csv] == [r["context"] for r in txt]


def test_kaggle_csv_bad_rows(tmp_path):
    path = tmp_path / "train.csv"
    frame = write_kaggle_csv(path, "validation")
    with path.open("a", encoding="utf-8") as f:
        f.write("\"['Hello .' 'Hi .']\",[2 1],[0 0],extra\n")  # a fourth field
        f.write("\"['Hello .' 'Hi .']\",[2],[0 0]\n")  # one act for two utterances
        f.write("\"['Hello . 'Hi .']\",[2 1],[0 0]\n")  # broken quoting inside the array
    n_lines = len(path.read_text(encoding="utf-8").splitlines())
    records, rejected = read([path])
    assert len(records) == len(frame)
    assert [(r.line, r.record) for r in rejected] == [
        (n_lines - 2, f"dailydialog:train:csv-{len(frame)}"),
        (n_lines - 1, f"dailydialog:train:csv-{len(frame) + 1}"),
        (n_lines, f"dailydialog:train:csv-{len(frame) + 2}"),
    ]
    assert rejected[0].reason == "expected 3 fields (dialog, act, emotion), got 4"
    assert rejected[1].reason.startswith("2 utterances but 1 act labels (expected one label per utterance; the labels")
    assert rejected[2].reason.startswith("column 'dialog': expected whitespace, a comma or ']' after the string")
    assert all(r.file == "train.csv" or r.file.endswith("/train.csv") for r in rejected)


def test_kaggle_csv_non_utf8_row(tmp_path):
    path = tmp_path / "test.csv"
    write_kaggle_csv(path, "test")
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b" ", b" \xff", 1)
    path.write_bytes(b"".join(lines))
    records, rejected = read([path])
    (bad,) = rejected
    assert bad.line == 3 and "invalid UTF-8" in bad.reason
    assert len(records) == 39


@pytest.mark.parametrize(
    "strings",
    [
        ["plain", "I don't know", 'He said "hi"', "both ' and \"", "back\\slash", "tab\tnew\nline", "’ ll", ""],
        ["x" * 200, " leading and trailing ", "é ü 中文 \u200b", "\x07bell"],
    ],
)
def test_numpy_string_array_reprs_round_trip(strings):
    numpy_repr = str(np.array(strings))
    assert parse_string_array(numpy_repr) == strings
    assert parse_string_array(repr(strings)) == strings  # the comma-separated list repr
    assert parse_string_array("[]") == []


def test_numpy_repr_errors():
    with pytest.raises(ValueError, match="unterminated string"):
        parse_string_array("['abc]")
    with pytest.raises(ValueError, match="expected a quoted string"):
        parse_string_array("[abc]")
    with pytest.raises(ValueError, match="bracketed"):
        parse_string_array("'abc'")
    assert parse_int_array("[3 4\n 2 2]") == [3, 4, 2, 2]
    assert parse_int_array("[3, 4, 2]") == [3, 4, 2]
    with pytest.raises(ValueError, match="'x' is not an integer"):
        parse_int_array("[3 x]")
