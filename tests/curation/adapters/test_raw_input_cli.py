"""Damaged raw input through the real CLI (`workbench ingest` in a subprocess, as a user runs it).

A damaged zip member and a symlink loop must end as one ``error: ...`` line naming the file, exit
code 1, no traceback and nothing in the store; ``--on-error skip`` skips what the adapter can
isolate (a link it cannot follow) and still stops on what it cannot (a corrupt zip member).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples" / "data"
DD_SLICE = EXAMPLES / "dailydialog" / "ijcnlp_dailydialog"


def wb(*args: str, store: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WORKBENCH_STORE": str(store), "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "ui.cli", *args], capture_output=True, text=True, env=env, cwd=ROOT)


def store_is_empty(store: Path) -> bool:
    return not any(p.is_file() for p in store.rglob("*")) if store.exists() else True


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def dailydialog_zips_with_a_bad_crc(root: Path) -> Path:
    """The slice's three splits as distribution zips; test.zip's dialogue text with a wrong CRC-32."""
    folder = root / "ijcnlp_dailydialog"
    folder.mkdir()
    for split in ("train", "validation", "test"):
        with zipfile.ZipFile(folder / f"{split}.zip", "w", compression=zipfile.ZIP_DEFLATED) as z:
            for path in sorted((DD_SLICE / split).iterdir()):
                z.write(path, f"{split}/{path.name}")
    archive = folder / "test.zip"
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as z:
        info, central = z.getinfo("test/dialogues_test.txt"), z.start_dir
    crc = info.CRC ^ 0x5A5A
    struct.pack_into("<I", data, info.header_offset + 14, crc)
    while bytes(data[central + 46 : central + 46 + len(info.filename)]) != info.filename.encode():
        n, m, k = struct.unpack_from("<HHH", data, central + 28)
        central += 46 + n + m + k
    struct.pack_into("<I", data, central + 16, crc)
    archive.write_bytes(bytes(data))
    return folder


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_corrupt_zip_member_is_one_line_and_writes_nothing(tmp_path: Path, on_error: str) -> None:
    folder = dailydialog_zips_with_a_bad_crc(tmp_path)
    store = tmp_path / "store"
    proc = wb("ingest", "dailydialog", str(folder), "--tag", "dd", "--on-error", on_error, store=store)
    line = one_error_line(proc)
    assert "ijcnlp_dailydialog/test.zip!test/dialogues_test.txt: corrupt archive member (Bad CRC-32" in line
    assert store_is_empty(store)


def test_symlink_loop_is_one_line_by_default_and_a_counted_rejection_when_skipping(tmp_path: Path) -> None:
    folder = tmp_path / "owt"
    folder.mkdir()
    (folder / "urlsf_subset00-1_data.xz").write_bytes(
        (EXAMPLES / "openwebtext" / "urlsf_subset00-1_data.xz").read_bytes()
    )
    (folder / "a.txt").symlink_to("b.txt")
    (folder / "b.txt").symlink_to("a.txt")
    store = tmp_path / "store"

    line = one_error_line(wb("ingest", "openwebtext", str(folder), "--tag", "owt", store=store))
    assert "owt/a.txt: symbolic link loop" in line
    assert store_is_empty(store)

    proc = wb("ingest", "openwebtext", str(folder), "--tag", "owt", "--on-error", "skip", store=store)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    manifest = json.loads(wb("snapshots", "show", "owt", "--json", store=store).stdout)
    counters = manifest["steps"][0]["counters"]
    assert (counters["kept"], counters["rejected"], counters["unreadable_files"]) == (4, 2, 2)
    quarantine = wb("snapshots", "show", "owt", "--quarantine", store=store).stdout
    assert "owt/a.txt" in quarantine and "owt/b.txt" in quarantine and "symbolic link loop" in quarantine
