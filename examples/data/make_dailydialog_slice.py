"""Cut the bundled DailyDialog example slice from the full raw data (reproducible).

    python examples/data/make_dailydialog_slice.py /path/to/shared/data/dailydialog/ijcnlp_dailydialog

Writes ``examples/data/dailydialog/ijcnlp_dailydialog/``:

* ``{split}/dialogues{,_act,_emotion}_{split}.txt``: the first ``HEAD[split]`` lines of each
  split file, byte for byte;
* ``dialogues_{text,act,emotion,topic}.txt``: exactly the full-file lines those split lines are
  joined to by the adapter's topic join, in full-file order, byte for byte;
* ``readme.txt``: a copy.

It checks that the slice joins every split line to the same topic as the full data does.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from curation.adapters.base import Rejected
from curation.adapters.dailydialog import DailyDialogAdapter

HEAD = {"train": 160, "validation": 40, "test": 40}
FULL_FILES = ("dialogues_text.txt", "dialogues_act.txt", "dialogues_emotion.txt", "dialogues_topic.txt")
OUT = Path(__file__).parent / "dailydialog" / "ijcnlp_dailydialog"


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _topics(root: Path) -> dict[str, tuple[str, int]]:
    """Record id -> (topic, matched full-file line) for the split lines in the slice."""
    out = {}
    for item in DailyDialogAdapter().read([root]):
        if isinstance(item, Rejected):
            raise SystemExit(f"unexpected rejection: {item}")
        split, line = item["id"].split(":")[1:]
        if int(line) > HEAD[split]:
            continue
        topic = next(lab for lab in item["labels"] if lab["task"] == "topic")
        out[item["id"]] = (topic["value"], int(topic["attrs"]["full_line"]))
    return out


def main(src: Path) -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    for split, head in HEAD.items():
        (OUT / split).mkdir(parents=True)
        for name in (f"dialogues_{split}.txt", f"dialogues_act_{split}.txt", f"dialogues_emotion_{split}.txt"):
            (OUT / split / name).write_bytes(b"".join(_lines(src / split / name)[:head]))
    expected = _topics(src)
    keep = sorted({line for _, line in expected.values()})
    for name in FULL_FILES:
        lines = _lines(src / name)
        (OUT / name).write_bytes(b"".join(lines[n - 1] for n in keep))
    shutil.copyfile(src / "readme.txt", OUT / "readme.txt")
    got = {rid: topic for rid, (topic, _) in _topics(OUT).items()}
    if got != {rid: topic for rid, (topic, _) in expected.items()}:
        raise SystemExit("the slice joins some topic differently from the full data")
    size = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"{len(expected)} split dialogues, {len(keep)} full-file lines {keep[0]}..{keep[-1]}, {size:,} bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
