"""OpenWebText adapter, on the bundled chunk (the 4 real documents of HF's dummy
data in the distributed format) and on archives built from it in tmp_path."""

from __future__ import annotations

import io
import lzma
import tarfile
import tracemalloc
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from curation.adapters import openwebtext
from curation.adapters.base import Rejected, collect, get_adapter
from curation.adapters.openwebtext import OpenWebTextAdapter, document_split, iter_tar, xz_chunks
from curation.errors import InputError

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "data" / "openwebtext" / "urlsf_subset00-1_data.xz"
STEMS = [
    "0000005-93544d279b4a2417d2201864e28639b1",
    "0000031-3207f8f62f3945d00ca85bd440c8faaa",
    "0000036-585b205b8fa6ea83669d62036770cbe2",
    "0000068-1ad7382d9e2e97d93b002a64642ab65d",
]


def read_all(*paths: Path) -> tuple[list[dict], list[Rejected], OpenWebTextAdapter]:
    adapter = OpenWebTextAdapter()
    records, rejected = collect(adapter, paths)
    return records, rejected, adapter


def real_documents() -> dict[str, bytes]:
    """The example chunk's documents, read with the standard library (the reference)."""
    with tarfile.open(EXAMPLE, "r:xz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def essence(records: list[dict]) -> list[tuple[str, str, str, str]]:
    return [(r["id"], r["split"], r["turns"][0]["text"], r["context"]["subset"]) for r in records]


def make_tar(members: dict[str, bytes], *, fmt: int = tarfile.GNU_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1555555555
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# --------------------------------------------------------------- the chunk


def test_registered_by_name() -> None:
    assert isinstance(get_adapter("openwebtext"), OpenWebTextAdapter)


def test_example_chunk_yields_the_four_real_documents() -> None:
    records, rejected, adapter = read_all(EXAMPLE)
    assert rejected == []
    assert [r["id"].split(":", 2)[2] for r in records] == STEMS
    docs = real_documents()
    with tarfile.open(EXAMPLE, "r:xz") as tar:
        offsets = [m.offset for m in tar.getmembers()]
    for record, (name, data), offset in zip(records, docs.items(), offsets, strict=True):
        assert record["turns"] == [
            {
                "speaker": "document",
                "text": data.decode("utf-8"),
                "emotion": None,
                "act": None,
                "strategy": None,
                "attrs": {},
            }
        ]
        assert record["provenance"]["file"] == f"urlsf_subset00-1_data.xz!{name}"
        assert record["provenance"]["offset"] == offset  # what tarfile reports
        assert record["context"] == {"subset": "urlsf_subset00-1_data", "split_assigned": "hash"}
        assert record["labels"] == []
        assert record["split"] == document_split(name[:-4])
    assert records[0]["turns"][0]["text"].startswith("A magazine supplement with an image of Adolf Hitler")
    assert "\n\n" in records[0]["turns"][0]["text"]  # text kept as the file has it
    assert adapter.stats["documents"] == 4 and adapter.stats["document_bytes"] == sum(map(len, docs.values()))


def test_chunk_directory_of_txt_and_outer_tars_give_the_same_records(tmp_path: Path) -> None:
    from_chunk, _, _ = read_all(EXAMPLE)
    docs = real_documents()
    # the documents unpacked into a folder named like the chunk (as HF's dummy data does)
    folder = tmp_path / "extracted" / "urlsf_subset00-1_data"
    folder.mkdir(parents=True)
    for name, data in docs.items():
        (folder / name).write_bytes(data)
    from_dir, _, _ = read_all(tmp_path / "extracted")
    # the HF form: urlsf_subset00.tar holding openwebtext/<chunk>.xz
    outer = make_tar({"openwebtext/urlsf_subset00-1_data.xz": EXAMPLE.read_bytes()}, fmt=tarfile.USTAR_FORMAT)
    (tmp_path / "urlsf_subset00.tar").write_bytes(outer)
    from_tar, _, _ = read_all(tmp_path / "urlsf_subset00.tar")
    # the Zenodo form: openwebtext.tar.xz
    (tmp_path / "openwebtext.tar.xz").write_bytes(lzma.compress(outer))
    from_tar_xz, rejected, adapter = read_all(tmp_path / "openwebtext.tar.xz")
    assert rejected == []
    assert essence(from_chunk) == essence(from_dir) == essence(from_tar) == essence(from_tar_xz)
    assert from_dir[0]["provenance"]["file"] == f"extracted/urlsf_subset00-1_data/{STEMS[0]}.txt"
    assert from_dir[0]["provenance"]["offset"] is None
    assert (
        from_tar[0]["provenance"]["file"] == f"urlsf_subset00.tar!openwebtext/urlsf_subset00-1_data.xz!{STEMS[0]}.txt"
    )
    assert [r["provenance"]["offset"] for r in from_tar] == [r["provenance"]["offset"] for r in from_chunk]
    assert adapter.stats["archives"] == 2


def test_a_directory_of_chunks_is_walked_in_sorted_order(tmp_path: Path) -> None:
    docs = list(real_documents().items())
    (tmp_path / "urlsf_subset01-2_data.xz").write_bytes(lzma.compress(make_tar(dict(docs[2:]))))
    (tmp_path / "urlsf_subset01-1_data.xz").write_bytes(lzma.compress(make_tar(dict(docs[:2]))))
    (tmp_path / "README.md").write_text("not a document\n")
    records, _, adapter = read_all(tmp_path)
    assert [r["id"].split(":", 2)[2] for r in records] == STEMS
    assert [r["context"]["subset"] for r in records] == ["urlsf_subset01-1_data"] * 2 + ["urlsf_subset01-2_data"] * 2
    assert records[2]["provenance"]["file"] == f"{tmp_path.name}/urlsf_subset01-2_data.xz!{STEMS[2]}.txt"
    assert adapter.stats["ignored_files"] == 1


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_tar_dialects_long_names_and_offsets_match_tarfile(fmt: int) -> None:
    docs = real_documents()
    long_dir = "/".join(["subdirectory"] * 9)  # > 100 characters: prefix (ustar), 'L' (GNU) or pax path
    members = {f"{long_dir}/{name}": data for name, data in docs.items()}
    members["dir-entry-free/" + "é" * 3 + ".txt"] = "naïve café".encode()
    raw = make_tar(members, fmt=fmt)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        expected = [(m.name, m.offset, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]
    got = list(iter_tar(iter([raw[i : i + 1000] for i in range(0, len(raw), 1000)])))
    assert got == expected


def test_gnu_base256_size_field() -> None:
    data = "x" * 700
    raw = bytearray(make_tar({"0000001-abc.txt": data.encode()}))
    raw[124:136] = b"\x80" + (700).to_bytes(11, "big")
    raw[148:156] = b" " * 8
    raw[148:155] = f"{sum(raw[:512]):06o}\x00".encode()
    assert [(n, d) for n, _, d in iter_tar(iter([bytes(raw)]))] == [("0000001-abc.txt", data.encode())]


def test_split_assignment_is_deterministic_and_about_98_1_1() -> None:
    first, _, _ = read_all(EXAMPLE)
    second, _, _ = read_all(EXAMPLE)
    assert first == second
    assert [document_split(s) for s in STEMS] == [r["split"] for r in first]
    splits = Counter(document_split(f"{i:07d}-deadbeef") for i in range(20_000))
    assert 19_400 <= splits["train"] <= 19_800
    assert 120 <= splits["validation"] <= 280 and 120 <= splits["test"] <= 280


def test_memory_stays_flat_with_the_number_of_documents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading 4x more documents needs no more memory: no per-member list is kept.

    Decompressed chunks are made small (64 KiB) so both archives are many times
    larger than what the reader holds in flight.
    """
    monkeypatch.setattr(openwebtext, "OUTPUT_SIZE", 1 << 16)
    monkeypatch.setattr(openwebtext, "READ_SIZE", 1 << 16)

    def peak_for(n_docs: int) -> int:
        members = {f"{i:07d}-{i:032x}.txt": f"Document {i}. ".encode() * 20 for i in range(n_docs)}
        path = tmp_path / f"urlsf_subset00-{n_docs}_data.xz"
        path.write_bytes(lzma.compress(make_tar(members), preset=0))
        del members
        adapter = OpenWebTextAdapter()
        tracemalloc.start()
        try:
            count = sum(1 for _ in adapter.read([path]))
            return tracemalloc.get_traced_memory()[1] if count == n_docs else -1
        finally:
            tracemalloc.stop()

    small, large = peak_for(4_000), peak_for(16_000)
    assert small > 0 and large > 0
    # tarfile's stream mode keeps every TarInfo (measured: 4.3 MB for 12,000): 4x the documents would show it.
    # tracemalloc sees every thread of the test process, and earlier tests leave some running (HTTP
    # clients, Streamlit): a 1 MB margin absorbs their noise (seen: +300 KB) and still catches that.
    assert large < small + 1024 * 1024, (small, large)
    assert large < 2 * 1024 * 1024, large


# ------------------------------------------------------------- bad inputs


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "urlsf_subset00-1_data.xz").write_bytes(b"")
    with pytest.raises(InputError, match=r"urlsf_subset00-1_data\.xz: file is empty"):
        read_all(tmp_path / "urlsf_subset00-1_data.xz")


def test_nonexistent_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"missing\.xz: path does not exist"):
        read_all(tmp_path / "missing.xz")


def test_a_zip_is_not_an_openwebtext_archive(tmp_path: Path) -> None:
    path = tmp_path / "dummy_data.zip"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in real_documents().items():
            z.writestr(f"fake_subset-1_data-dirxz/{name}", data)
    with pytest.raises(
        InputError, match=r"dummy_data\.zip: not an OpenWebText archive: .*expected an xz-compressed tar"
    ):
        read_all(path)


def test_an_xz_that_is_not_a_tar_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "urlsf_subset00-1_data.xz"
    path.write_bytes(lzma.compress(real_documents()[STEMS[0] + ".txt"]))
    with pytest.raises(InputError, match=r"urlsf_subset00-1_data\.xz: not an OpenWebText archive: the first 512 bytes"):
        read_all(path)


def test_a_file_named_xz_that_is_not_xz_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "urlsf_subset00-1_data.xz"
    path.write_bytes(b"\xfd7zXZ\x00" + b"garbage" * 100)
    with pytest.raises(InputError, match=r"urlsf_subset00-1_data\.xz: not an OpenWebText archive: not xz-compressed"):
        read_all(path)


def test_non_utf8_document_is_rejected_naming_its_member(tmp_path: Path) -> None:
    docs = real_documents()
    docs["0000099-0123456789abcdef0123456789abcdef.txt"] = "Caf\u00e9 latin-1".encode("latin-1")
    path = tmp_path / "urlsf_subset00-1_data.xz"
    path.write_bytes(lzma.compress(make_tar(docs)))
    records, rejected, _ = read_all(path)
    assert len(records) == 4
    assert rejected[0].file == "urlsf_subset00-1_data.xz!0000099-0123456789abcdef0123456789abcdef.txt"
    assert "invalid UTF-8 at byte 3 of the document" in rejected[0].reason
    assert "urlsf_subset00-1_data.xz!0000099-" in str(rejected[0].error())


def test_truncated_chunk_yields_what_came_before_then_a_rejection(tmp_path: Path) -> None:
    data = EXAMPLE.read_bytes()
    path = tmp_path / "urlsf_subset00-1_data.xz"
    path.write_bytes(data[: len(data) // 2])
    records, rejected, _ = read_all(path)
    assert [r["id"].split(":", 2)[2] for r in records] == STEMS[: len(records)]
    assert 1 <= len(records) < 4
    assert records[0]["turns"][0]["text"] == real_documents()[STEMS[0] + ".txt"].decode()
    assert len(rejected) == 1
    damage = rejected[0]
    assert damage.file == "urlsf_subset00-1_data.xz"
    assert damage.reason.startswith(f"archive truncated: expected more xz-compressed data after byte {len(data) // 2}")
    assert "of the decompressed tar" in damage.reason
    assert damage.record == STEMS[len(records)] + ".txt"  # the member being read when the data ran out
    assert str(damage.error()).startswith("urlsf_subset00-1_data.xz, record 0000")


def test_corrupt_tar_header_mid_stream(tmp_path: Path) -> None:
    raw = bytearray(make_tar(real_documents()))
    second = 512 + 4772 + (-4772 % 512)  # header of the second member
    raw[second : second + 100] = b"\xff" * 100
    path = tmp_path / "urlsf_subset00.tar"
    path.write_bytes(bytes(raw))
    records, rejected, _ = read_all(path)
    assert len(records) == 1
    assert rejected[0].file == "urlsf_subset00.tar"
    assert f"corrupt tar header at byte {second}: checksum does not match" in rejected[0].reason


def test_truncated_outer_tar(tmp_path: Path) -> None:
    outer = make_tar({"openwebtext/urlsf_subset00-1_data.xz": EXAMPLE.read_bytes()})
    path = tmp_path / "urlsf_subset00.tar"
    path.write_bytes(outer[:3000])
    records, rejected, _ = read_all(path)
    assert rejected and all("archive truncated" in e.reason for e in rejected)
    assert rejected[0].file == "urlsf_subset00.tar!openwebtext/urlsf_subset00-1_data.xz"
    assert len(records) < 4


def test_directory_without_documents(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("nothing here\n")
    with pytest.raises(InputError, match="no OpenWebText documents in this directory"):
        read_all(tmp_path)


def test_xz_chunks_accepts_concatenated_streams() -> None:
    raw = make_tar(real_documents())
    half = len(raw) // 2
    joined = lzma.compress(raw[:half]) + b"\x00" * 8 + lzma.compress(raw[half:])
    assert b"".join(xz_chunks(io.BytesIO(joined))) == raw


# ------------------------------------------------------- damage inside a chunk


def test_a_corrupt_chunk_is_a_rejection_naming_it_not_a_wrong_format(tmp_path: Path) -> None:
    """A flipped byte in a real chunk's xz data is damage (like a truncation), not "not an xz file"."""
    data = bytearray(EXAMPLE.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "urlsf_subset00-2_data.xz").write_bytes(bytes(data))
    (tmp_path / "urlsf_subset00-1_data.xz").write_bytes(EXAMPLE.read_bytes())
    records, rejected, _ = read_all(tmp_path)
    assert len(records) == 4  # the good chunk
    (damage,) = rejected
    assert damage.file == f"{tmp_path.name}/urlsf_subset00-2_data.xz"
    assert damage.reason.startswith("corrupt xz data at or before compressed byte")
    assert str(damage.error()).startswith(f"{tmp_path.name}/urlsf_subset00-2_data.xz: corrupt xz data")


@pytest.mark.parametrize("size", [b"x", b"-5"])
def test_a_pax_header_with_a_bad_size_is_damage(tmp_path: Path, size: bytes) -> None:
    docs = real_documents()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in docs.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1555555555
            info.pax_headers = {"size": str(len(data))}
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    second = str(len(docs[STEMS[1] + ".txt"])).encode()
    record = b"size=" + second + b"\n"
    assert raw.count(record) == 1
    bad = b"size=" + size.ljust(len(second), b" ")[: len(second)] + b"\n"  # same length: the record's length holds
    path = tmp_path / "urlsf_subset00.tar"
    path.write_bytes(raw.replace(record, bad))
    records, rejected, _ = read_all(path)
    assert len(records) == 1
    (damage,) = rejected
    assert damage.file == "urlsf_subset00.tar"
    assert "corrupt pax header" in damage.reason and "size" in damage.reason


# ------------------------------------------------------------------- symlinks


def test_a_symlink_loop_in_a_folder_is_a_rejection_naming_the_link(tmp_path: Path, store) -> None:
    from curation.ingest import ingest

    folder = tmp_path / "owt"
    folder.mkdir()
    (folder / "urlsf_subset00-1_data.xz").write_bytes(EXAMPLE.read_bytes())
    (folder / "a.txt").symlink_to("b.txt")
    (folder / "b.txt").symlink_to("a.txt")
    (folder / "loop").symlink_to("loop")  # not a document name: ignored like any other file
    (folder / "here").symlink_to(".")  # a link to a folder is not followed
    (folder / "gone.xz").symlink_to("missing.xz")
    records, rejected, adapter = read_all(folder)
    assert len(records) == 4
    assert [(r.file, r.reason.split(" (")[0]) for r in rejected] == [
        ("owt/a.txt", "symbolic link loop"),
        ("owt/b.txt", "symbolic link loop"),
        ("owt/gone.xz", "broken symbolic link to 'missing.xz'"),
    ]
    assert adapter.stats["unreadable_files"] == 3 and adapter.stats["ignored_files"] == 1

    with pytest.raises(InputError, match=r"^owt/a\.txt: symbolic link loop"):
        ingest("openwebtext", [folder], store=store)
    assert store.snapshot_ids() == []
    result = ingest("openwebtext", [folder], store=store, on_error="skip")
    assert (result.kept, result.rejected) == (4, 3)
    counters = store.manifest(result.snapshot_id)["steps"][0]["counters"]
    assert counters["rejected"] == 3 and counters["unreadable_files"] == 3


def test_a_symlink_loop_given_as_the_path(tmp_path: Path) -> None:
    (tmp_path / "a.xz").symlink_to("b.xz")
    (tmp_path / "b.xz").symlink_to("a.xz")
    with pytest.raises(InputError, match=r"a\.xz: symbolic link loop"):
        read_all(tmp_path / "a.xz")
