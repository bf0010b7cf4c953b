"""A UTF-8 byte-order mark at the start of a raw file changes nothing: every text reader of every adapter.

Each case copies real example files, reads them once as they are and once with ``EF BB BF`` put in
front of one file, and expects the same records: no ``\\ufeff`` in the first text, the same ids and
the same line numbers. (Byte offsets into a file, which ESConv's JSON lists record, move by the
three bytes of the mark, as they should.)
"""

from __future__ import annotations

import codecs
import csv
import io
import lzma
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from curation.adapters.base import collect, get_adapter
from curation.vocabularies import load

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "data"
DD_SLICE = EXAMPLES / "dailydialog" / "ijcnlp_dailydialog"
OWT_CHUNK = EXAMPLES / "openwebtext" / "urlsf_subset00-1_data.xz"

# The header and first data row of the real goemotions_1.csv (as in test_goemotions.py).
RATER_CSV = (
    "text,id,author,subreddit,link_id,parent_id,created_utc,rater_id,example_very_unclear,"
    + ",".join(load("emotion").labels)
    + "\nThat game hurt.,eew5j0j,Brdd9,nrl,t3_ajis4z,t1_eew18eq,1548381039.0,1,False,"
    "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1,0,0\n"
)


def owt_documents() -> dict[str, bytes]:
    with tarfile.open(OWT_CHUNK, "r:xz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def dd_kaggle_csv(path: Path) -> None:
    """Two rows of the Kaggle/HF CSV built from the slice's first train lines (no real copy exists)."""
    text, act, emotion = (
        (DD_SLICE / "train" / name).read_text(encoding="utf-8").splitlines()[:2]
        for name in ("dialogues_train.txt", "dialogues_act_train.txt", "dialogues_emotion_train.txt")
    )
    with path.open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["dialog", "act", "emotion"])
        for t, a, e in zip(text, act, emotion, strict=True):
            utterances = [u.strip() for u in t.split("__eou__")[:-1]]
            out.writerow(["[" + " ".join(map(repr, utterances)) + "]", f"[{a.strip()}]", f"[{e.strip()}]"])


def build(case: str, root: Path) -> tuple[str, Path, Path]:
    """(source, the input path to give, the file to put a BOM on) for one case, in ``root``."""
    if case.startswith("goemotions"):
        folder = root / "goemotions"
        shutil.copytree(EXAMPLES / "goemotions", folder)
        (folder / "full_dataset").mkdir()
        (folder / "full_dataset" / "goemotions_1.csv").write_text(RATER_CSV, encoding="utf-8")
        target = {"TSV": "train.tsv", "emotions.txt": "emotions.txt", "rater CSV": "full_dataset/goemotions_1.csv"}
        return "goemotions", folder, folder / target[case.split(" ", 1)[1]]
    if case.startswith("dailydialog"):
        folder = root / "ijcnlp_dailydialog"
        shutil.copytree(DD_SLICE, folder)
        kind = case.split(" ", 1)[1]
        if kind == "CSV":
            shutil.rmtree(folder)
            folder.mkdir()
            dd_kaggle_csv(folder / "train.csv")
            return "dailydialog", folder, folder / "train.csv"
        if kind == "zip member":
            return "dailydialog", folder / "train.zip", folder / "train" / "dialogues_train.txt"
        target = {
            "split text": "train/dialogues_train.txt",
            "act file": "train/dialogues_act_train.txt",
            "full text": "dialogues_text.txt",
            "topic file": "dialogues_topic.txt",
        }
        return "dailydialog", folder, folder / target[kind]
    if case == "empatheticdialogues CSV":
        folder = root / "empatheticdialogues"
        shutil.copytree(EXAMPLES / "empatheticdialogues", folder)
        return "empatheticdialogues", folder, folder / "train.csv"
    if case.startswith("esconv"):
        folder = root / "esconv"
        shutil.copytree(EXAMPLES / "esconv", folder)
        if case == "esconv HF lines":
            return "esconv", folder / "hf", folder / "hf" / "train.txt"
        return "esconv", folder / "raw", folder / "raw" / "FailedESConv.json"
    if case == "openwebtext document":
        folder = root / "urlsf_subset00-1_data"
        folder.mkdir(parents=True)
        for name, data in owt_documents().items():
            (folder / name).write_bytes(data)
        return "openwebtext", folder, folder / sorted(owt_documents())[0]
    raise AssertionError(case)


def with_bom(path: Path) -> None:
    path.write_bytes(codecs.BOM_UTF8 + path.read_bytes())


def zip_train(folder: Path) -> None:
    """``train.zip`` from the (maybe BOM-prefixed) train folder, as the distribution ships it."""
    with zipfile.ZipFile(folder / "train.zip", "w", compression=zipfile.ZIP_DEFLATED) as z:
        for path in sorted((folder / "train").iterdir()):
            z.write(path, f"train/{path.name}")


def comparable(records: list[dict]) -> list[dict]:
    out = []
    for r in records:
        r = dict(r, provenance={k: v for k, v in r["provenance"].items() if k != "offset"})
        out.append(r)
    return out


CASES = [
    "goemotions TSV",
    "goemotions emotions.txt",
    "goemotions rater CSV",
    "dailydialog split text",
    "dailydialog act file",
    "dailydialog full text",
    "dailydialog topic file",
    "dailydialog zip member",
    "dailydialog CSV",
    "empatheticdialogues CSV",
    "esconv HF lines",
    "esconv JSON list",
    "openwebtext document",
]


@pytest.mark.parametrize("case", CASES)
def test_a_leading_bom_changes_nothing(tmp_path: Path, case: str) -> None:
    read: dict[str, list[dict]] = {}
    for variant in ("plain", "bom"):
        source, given, target = build(case, tmp_path / variant)
        if variant == "bom":
            with_bom(target)
        if case == "dailydialog zip member":
            zip_train(given.parent)
        records, rejected = collect(get_adapter(source), [given])
        assert rejected == [], rejected[:1]
        read[variant] = records
    plain, bom = read["plain"], read["bom"]
    assert plain
    assert not bom[0]["turns"][0]["text"].startswith("\ufeff")
    assert [r["id"] for r in bom] == [r["id"] for r in plain]
    assert [r["provenance"].get("line") for r in bom] == [r["provenance"].get("line") for r in plain]
    assert comparable(bom) == comparable(plain)


def test_openwebtext_member_with_a_bom_inside_a_chunk(tmp_path: Path) -> None:
    docs = owt_documents()
    first = sorted(docs)[0]
    texts = {}
    for variant, prefix in (("plain", b""), ("bom", codecs.BOM_UTF8)):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for name, data in docs.items():
                data = prefix + data if name == first else data
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(data), 1555555555
                tar.addfile(info, io.BytesIO(data))
        path = tmp_path / variant / "urlsf_subset00-1_data.xz"
        path.parent.mkdir()
        path.write_bytes(lzma.compress(buf.getvalue()))
        records, rejected = collect(get_adapter("openwebtext"), [path])
        assert rejected == []
        texts[variant] = [(r["id"], r["turns"][0]["text"]) for r in records]
    assert texts["bom"] == texts["plain"]
    assert texts["bom"][0][1].startswith("A magazine supplement")
