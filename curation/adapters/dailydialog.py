"""DailyDialog (Li et al., IJCNLP 2017): 13,118 daily-life dialogues with per-utterance acts and emotions.

Three layouts of the same data are read, detected from the paths given:

* **Split files** -- ``train/ validation/ test/`` folders holding ``dialogues_{split}.txt`` with
  ``dialogues_act_{split}.txt`` and ``dialogues_emotion_{split}.txt``, or the distributed
  ``{split}.zip`` archives, streamed without unpacking. Where a folder and the zip beside it hold
  the same split, the folder is read and the zip ignored (they are identical); a split found in
  two unrelated places is an error, never ingested twice. Ids: ``dailydialog:{split}:{line}``.
* **Full files** -- ``dialogues_text.txt`` + ``dialogues_act.txt`` + ``dialogues_emotion.txt``
  (+ ``dialogues_topic.txt``), all 13,118 dialogues with no split. Beside split files they only
  supply the topic, which the split files lack (see *topic join*). Given alone, each dialogue
  gets a split from a hash of its text (85 / 7.5 / 7.5; identical dialogues land together),
  ``context["split_assigned"] = "hash"`` and the id ``dailydialog:{split}:full-{line}``.
* **Kaggle / Hugging Face CSV** -- ``train.csv`` / ``validation.csv`` / ``test.csv`` with columns
  ``dialog, act, emotion`` as ``DataFrame.to_csv`` writes numpy arrays: ``['a' "b's" ...]``
  (no commas, either quote, wrapped over lines) and ``[3 4 2]``. Ids: ``dailydialog:{split}:csv-{row}``
  with the 0-based data row; provenance ``line`` is the physical line where the row starts.

Text lines are ``utt1 __eou__ utt2 __eou__ ... __eou__``; utterances are kept as the file has them
apart from stripping the spaces around the separator (detokenising is a curation step).
Speakers alternate ``A`` / ``B``. Each turn carries the canonical act and the emotion mapped onto
the canonical (GoEmotions) set, and the record carries matching gold labels with the original
names as ``raw``; the raw ids stay in the turn's ``attrs``.

Topic join: a split line takes the topic of the first not-yet-used full-file line with the same
utterances, acts and emotions; failing that, the same utterances; failing that, the same words
with utterance boundaries ignored. The last tier exists for one dialogue: train line 7852, whose
full-file twin (line 673) still has a stray ``__eou__`` inside an utterance that the November 2017
``train.zip`` removed. Splits are joined in the order train, validation, test whatever order the
paths come in, so the join is deterministic. ``stats`` counts the matches per tier and the misses.

Memory: one dialogue at a time, except the topic index (a digest and a line number per full-file
dialogue, about 13k entries) built before a topic join.

Damaged zips: a zip that cannot be opened, or a member that fails to decompress or to match its
CRC-32 (or is encrypted, or uses a compression method zipfile lacks), raises one
:class:`~curation.errors.InputError` naming ``archive.zip!member``, even with ``on_error="skip"``.
A corrupt member cannot be isolated row by row: a bad CRC says some bytes are wrong, not which, and
broken deflate data loses everything after the break, so any of its lines may be missing or garbled
and the aligned act/emotion lines would be joined to the wrong dialogues. The three members of a
split are read in full before the split's first record (the line-count check), so the damage is
found before anything of that split is yielded.
"""

from __future__ import annotations

import ast
import codecs
import csv
import hashlib
import lzma
import re
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from curation import vocabularies
from curation.adapters.base import (
    BOM,
    Adapter,
    Rejected,
    check_not_empty,
    display_path,
    hash_split,
    iter_text_lines,
    register,
    require_paths,
)
from curation.errors import InputError, UnknownLabelError
from curation.record import SPLITS, Record, label, make_id, provenance, turn

EOU = "__eou__"
SPEAKERS = ("A", "B")
AGENT = "dailydialog"

#: Hash-assigned split shares (per mille) when only the full files are given.
HASH_SPLIT_RATIOS = (0.85, 0.075, 0.075)

_SPLIT_TEXT = re.compile(r"^dialogues_(train|validation|test)\.txt$")
_SPLIT_LABELS = re.compile(r"^dialogues_(act|emotion)_(train|validation|test)\.txt$")
_FULL_NAMES = {"dialogues_text.txt", "dialogues_act.txt", "dialogues_emotion.txt", "dialogues_topic.txt"}
_CSV_SPLITS = {"train": "train", "validation": "validation", "valid": "validation", "dev": "validation", "test": "test"}
_COMPANIONS = {"readme.txt"}  # shipped with the distribution; nothing to ingest
_CSV_COLUMNS = ("dialog", "act", "emotion")

_EXPECTED = (
    "expected DailyDialog files: a folder with train/ validation/ test/ (dialogues_{split}.txt, "
    "dialogues_act_{split}.txt, dialogues_emotion_{split}.txt) or train.zip / validation.zip / test.zip, "
    "dialogues_text.txt with dialogues_act.txt, dialogues_emotion.txt (and dialogues_topic.txt), "
    "or the CSV files train.csv / validation.csv / test.csv"
)


# ------------------------------------------------------------------ raw inputs

#: What zipfile raises while reading a damaged member: a bad CRC-32 or local header (BadZipFile),
#: broken deflate / lzma / bzip2 data (zlib.error, LZMAError, OSError), data that ends early (EOFError).
_ZIP_DATA_ERRORS = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError)
#: ... and when opening one: also an encrypted member (RuntimeError), an unknown compression method or
#: zip version (NotImplementedError), a central directory that points outside the file (OSError,
#: ValueError) or a name flagged UTF-8 that is not (UnicodeDecodeError, a ValueError).
_ZIP_OPEN_ERRORS = (*_ZIP_DATA_ERRORS, RuntimeError, NotImplementedError, ValueError)


def _open_zip(path: Path, display: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except _ZIP_OPEN_ERRORS as exc:
        raise InputError(f"not a readable zip archive ({_zip_detail(exc)}); {_EXPECTED}", file=display) from None


def _zip_detail(exc: BaseException) -> str:
    if isinstance(exc, zlib.error):
        return f"deflate data: {exc}"
    if isinstance(exc, lzma.LZMAError):
        return f"lzma data: {exc}"
    if isinstance(exc, EOFError):
        return "the compressed data ends before the member does"
    return str(exc) or type(exc).__name__


def _member_error(exc: BaseException, display: str) -> InputError:
    if isinstance(exc, RuntimeError | NotImplementedError):  # encrypted, unknown method: intact but unreadable
        detail = _zip_detail(exc)
        expected = "expected an unencrypted member, stored or compressed with deflate, bzip2 or lzma"
        return InputError(f"unreadable archive member ({detail}); {expected}", file=display)
    return InputError(
        f"corrupt archive member ({_zip_detail(exc)}); any of its lines may be lost or garbled, "
        "so it cannot be skipped row by row: re-download or re-create the archive",
        file=display,
    )


class _ZipMemberStream:
    """A zip member's binary stream whose read errors become one :class:`InputError` naming the member.

    Wrapping the stream, not the ``with`` around it, keeps the blame on the right member when the
    three files of a split are open together.
    """

    def __init__(self, stream: BinaryIO, display: str) -> None:
        self._stream = stream
        self._display = display

    def read(self, n: int = -1) -> bytes:
        try:
            return self._stream.read(n)
        except _ZIP_DATA_ERRORS as exc:
            raise _member_error(exc, self._display) from None

    def readline(self) -> bytes:
        try:
            return self._stream.readline()
        except _ZIP_DATA_ERRORS as exc:
            raise _member_error(exc, self._display) from None

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


@dataclass(frozen=True)
class _RawFile:
    """One raw file: a plain file, or a member of a zip archive (read without unpacking)."""

    path: Path
    display: str
    member: str | None = None

    @property
    def key(self) -> tuple[str, str | None]:
        return (str(self.path.resolve()), self.member)

    @property
    def archive_display(self) -> str:
        assert self.member is not None
        return self.display[: -len(self.member) - 1]  # the display is "archive!member"

    @contextmanager
    def open(self) -> Iterator[BinaryIO]:
        if self.member is None:
            with open(self.path, "rb") as f:
                yield f
            return
        with _open_zip(self.path, self.archive_display) as archive:
            try:
                member = archive.open(self.member)
            except _ZIP_OPEN_ERRORS as exc:
                raise _member_error(exc, self.display) from None
            with member:
                yield _ZipMemberStream(member, self.display)  # type: ignore[misc]

    def check_not_empty(self) -> None:
        if self.member is None:
            check_not_empty(self.path, self.display)
        else:
            with _open_zip(self.path, self.archive_display) as archive:
                if archive.getinfo(self.member).file_size == 0:
                    raise InputError("file is empty", file=self.display)

    def scan(self) -> tuple[int, bytes]:
        """Number of lines and the first line (without a byte-order mark), read in chunks (nothing kept)."""
        lines, first, last = 0, b"", b"\n"
        with self.open() as f:
            first = f.readline()
            if first:
                lines, last = first.count(b"\n"), first[-1:]
                first = first.removeprefix(codecs.BOM_UTF8)
            while chunk := f.read(1 << 20):
                lines += chunk.count(b"\n")
                last = chunk[-1:]
        if last != b"\n":
            lines += 1  # a last line with no newline
        return lines, first


@dataclass(frozen=True)
class _SplitFiles:
    split: str
    text: _RawFile
    act: _RawFile
    emotion: _RawFile
    container: Path  # the split folder or the zip: where the split came from
    in_zip: bool


@dataclass(frozen=True)
class _FullFiles:
    text: _RawFile
    act: _RawFile
    emotion: _RawFile
    topic: _RawFile | None


@dataclass(frozen=True)
class _CsvFile:
    split: str
    file: _RawFile


@dataclass
class _Plan:
    splits: dict[str, _SplitFiles]
    csvs: dict[str, _CsvFile]
    full: _FullFiles | None = None
    skipped: int = 0

    def add_split(self, new: _SplitFiles) -> None:
        if new.split in self.csvs:
            raise InputError(
                f"split {new.split!r} is given twice, also as {self.csvs[new.split].file.display}; give one",
                file=new.text.display,
            )
        old = self.splits.get(new.split)
        if old is None or old.text.key == new.text.key:
            self.splits[new.split] = old or new
            return
        # The distribution ships each split as a folder and as the zip beside it, identical:
        # read the folder, ignore the zip. Anything else would ingest one split twice.
        folder, archive = (old, new) if new.in_zip else (new, old)
        if (
            folder.in_zip is False
            and archive.in_zip
            and folder.container.parent.resolve() == archive.container.parent.resolve()
        ):
            self.splits[new.split] = folder
            return
        raise InputError(
            f"split {new.split!r} is given twice, also as {old.text.display}; give one of them",
            file=new.text.display,
        )

    def add_full(self, new: _FullFiles) -> None:
        if self.full is not None and self.full.text.key != new.text.key:
            raise InputError(
                f"the full DailyDialog files are given twice, also as {self.full.text.display}; give one",
                file=new.text.display,
            )
        self.full = self.full or new

    def add_csv(self, new: _CsvFile) -> None:
        if new.split in self.splits or (new.split in self.csvs and self.csvs[new.split].file.key != new.file.key):
            other = self.splits[new.split].text if new.split in self.splits else self.csvs[new.split].file
            raise InputError(
                f"split {new.split!r} is given twice, also as {other.display}; give one", file=new.file.display
            )
        self.csvs[new.split] = new


def _plan(paths: Sequence[Path]) -> _Plan:
    plan = _Plan(splits={}, csvs={})
    for path in require_paths(paths):
        if path.is_dir():
            _plan_directory(plan, path)
        else:
            # A file given on its own is shown with its folder ("train/dialogues_train.txt",
            # "variant_2017-04/train.zip!..."), enough to tell two versions apart.
            _plan_file(plan, path, root=path.parent)
    if not (plan.splits or plan.csvs or plan.full):
        raise InputError(f"nothing to ingest; {_EXPECTED}", file=str(paths[0]))
    return plan


def _plan_directory(plan: _Plan, root: Path) -> None:
    found = False
    for split in SPLITS:
        for folder in (root / split, root):
            text = folder / f"dialogues_{split}.txt"
            if text.is_file():
                plan.add_split(_split_from_folder(split, text, root))
                found = True
                break
        archive = root / f"{split}.zip"
        if archive.is_file():
            for files in _splits_from_zip(archive, root):
                plan.add_split(files)
            found = True
        for stem, csv_split in _CSV_SPLITS.items():
            if csv_split == split and (root / f"{stem}.csv").is_file():
                plan.add_csv(_CsvFile(split, _RawFile(root / f"{stem}.csv", display_path(root / f"{stem}.csv", root))))
                found = True
    if (root / "dialogues_text.txt").is_file():
        plan.add_full(_full_from_folder(root, root))
        found = True
    if not found:
        raise InputError(f"no DailyDialog files in this folder; {_EXPECTED}", file=str(root))


def _plan_file(plan: _Plan, path: Path, root: Path | None) -> None:
    name = path.name
    if m := _SPLIT_TEXT.match(name):
        plan.add_split(_split_from_folder(m.group(1), path, root))
    elif m := _SPLIT_LABELS.match(name):
        plan.add_split(_split_from_folder(m.group(2), path.with_name(f"dialogues_{m.group(2)}.txt"), root))
    elif name in _FULL_NAMES:
        plan.add_full(_full_from_folder(path.parent, root))
    elif name.endswith(".zip"):
        for files in _splits_from_zip(path, root):
            plan.add_split(files)
    elif name.endswith(".csv") and path.stem.lower() in _CSV_SPLITS:
        plan.add_csv(_CsvFile(_CSV_SPLITS[path.stem.lower()], _RawFile(path, display_path(path, root))))
    elif name.lower() in _COMPANIONS:
        plan.skipped += 1
    else:
        raise InputError(f"not a DailyDialog file; {_EXPECTED}", file=display_path(path, root))


def _require_sibling(path: Path, root: Path | None, beside: str, what: str) -> _RawFile:
    if not path.is_file():
        raise InputError(f"no matching {what} file: expected {path.name} beside it", file=beside)
    return _RawFile(path, display_path(path, root))


def _split_from_folder(split: str, text: Path, root: Path | None) -> _SplitFiles:
    shown = display_path(text, root)
    if not text.is_file():
        raise InputError(f"no matching dialogue text: expected {text.name} beside it", file=shown)
    return _SplitFiles(
        split=split,
        text=_RawFile(text, shown),
        act=_require_sibling(text.with_name(f"dialogues_act_{split}.txt"), root, shown, "act"),
        emotion=_require_sibling(text.with_name(f"dialogues_emotion_{split}.txt"), root, shown, "emotion"),
        container=text.parent,
        in_zip=False,
    )


def _full_from_folder(folder: Path, root: Path | None) -> _FullFiles:
    text = folder / "dialogues_text.txt"
    shown = display_path(text, root)
    if not text.is_file():
        raise InputError("no matching dialogue text: expected dialogues_text.txt beside it", file=shown)
    topic = folder / "dialogues_topic.txt"
    return _FullFiles(
        text=_RawFile(text, shown),
        act=_require_sibling(folder / "dialogues_act.txt", root, shown, "act"),
        emotion=_require_sibling(folder / "dialogues_emotion.txt", root, shown, "emotion"),
        topic=_RawFile(topic, display_path(topic, root)) if topic.is_file() else None,
    )


def _splits_from_zip(archive: Path, root: Path | None) -> list[_SplitFiles]:
    shown = display_path(archive, root)
    check_not_empty(archive, shown)
    with _open_zip(archive, shown) as z:
        members = [i.filename for i in z.infolist() if not i.is_dir()]
    by_name = {m.rsplit("/", 1)[-1]: m for m in members}
    out = []
    for m in members:
        found = _SPLIT_TEXT.match(m.rsplit("/", 1)[-1])
        if not found:
            continue
        split = found.group(1)

        def member(name: str, what: str, text: str = m) -> _RawFile:
            if name not in by_name:
                raise InputError(f"no matching {what} file: expected {name} in the archive", file=f"{shown}!{text}")
            return _RawFile(archive, f"{shown}!{by_name[name]}", by_name[name])

        out.append(
            _SplitFiles(
                split=split,
                text=_RawFile(archive, f"{shown}!{m}", m),
                act=member(f"dialogues_act_{split}.txt", "act"),
                emotion=member(f"dialogues_emotion_{split}.txt", "emotion"),
                container=archive,
                in_zip=True,
            )
        )
    if not out:
        raise InputError(
            f"no DailyDialog split in this zip (expected dialogues_{{split}}.txt); {_EXPECTED}", file=shown
        )
    return out


def _check_aligned(files: Sequence[_RawFile]) -> None:
    """Whole-input checks before any record: not empty, DailyDialog-shaped, one line per dialogue each."""
    for f in files:
        f.check_not_empty()
    counts = []
    for i, f in enumerate(files):
        n, first = f.scan()
        if i == 0 and EOU.encode() not in first:
            raise InputError(
                f"not DailyDialog text: expected utterances separated by {EOU} on every line", file=f.display, line=1
            )
        if i > 0 and not re.fullmatch(rb"[\d \t]*\r?\n?", first):
            raise InputError(
                "not a DailyDialog label file: expected space-separated integer ids", file=f.display, line=1
            )
        counts.append(n)
    for f, n in zip(files[1:], counts[1:], strict=True):
        if n != counts[0]:
            raise InputError(
                f"{n} lines but {files[0].display} has {counts[0]} (expected one line per dialogue, aligned)",
                file=f.display,
                line=min(n, counts[0]) + 1,
            )


# ------------------------------------------------------------------ parsing


class _Bad(Exception):
    """A per-dialogue problem; becomes a :class:`Rejected` at the file named."""

    def __init__(self, reason: str, file: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.file = file


def _split_utterances(line: str, file: str) -> list[str]:
    parts = line.split(EOU)
    if len(parts) < 2 or parts[-1].strip():
        raise _Bad(f"expected utterances each followed by {EOU}, the line ending with {EOU}", file)
    return [p.strip() for p in parts[:-1]]


def _parse_ids(tokens: Iterable[str], what: str, file: str) -> list[int]:
    ids = []
    for tok in tokens:
        try:
            ids.append(int(tok))
        except ValueError:
            raise _Bad(f"{what} label {tok!r} is not an integer id", file) from None
    return ids


class _Labels:
    """The act and emotion vocabularies, with the id ranges for messages."""

    def __init__(self) -> None:
        self.act = vocabularies.load("act")
        self.emotion = vocabularies.load("dailydialog_emotion")
        self.topic = vocabularies.load("topic")

    @staticmethod
    def name(vocab: vocabularies.Vocabulary, raw_id: int, what: str, file: str) -> str:
        try:
            return vocab.from_id(raw_id)
        except UnknownLabelError:
            lo, hi = min(vocab.ids), max(vocab.ids)
            raise _Bad(f"{what} id {raw_id} out of range {lo}..{hi}", file) from None


def _check_counts(
    utterances: list[str], acts: list[int], emotions: list[int], *, text_file: str, act_file: str, emotion_file: str
) -> None:
    n = len(utterances)
    wrong = [
        (len(x), what, f)
        for x, what, f in ((acts, "act", act_file), (emotions, "emotion", emotion_file))
        if len(x) != n
    ]
    if wrong:
        counts = " and ".join(f"{k} {what} labels" for k, what, _ in wrong)
        files = " and ".join(Path(f).name for _, _, f in wrong)
        raise _Bad(
            f"{n} utterances but {counts} (expected one label per utterance; the labels are the same line of {files})",
            text_file,
        )


@dataclass(frozen=True)
class _Topic:
    id: int
    name: str
    full_line: int
    tier: str


def _record(
    labels: _Labels,
    *,
    split: str,
    native_id: str,
    utterances: list[str],
    acts: list[int],
    emotions: list[int],
    prov: dict,
    act_file: str,
    emotion_file: str,
    context: dict[str, str],
) -> Record:
    turns, gold = [], []
    for i, (text, act_id, emotion_id) in enumerate(zip(utterances, acts, emotions, strict=True)):
        act = labels.name(labels.act, act_id, "act", act_file)
        emotion_raw = labels.name(labels.emotion, emotion_id, "emotion", emotion_file)
        emotion = labels.emotion.map(emotion_raw)
        attrs = {"act_id": str(act_id), "emotion_id": str(emotion_id), "emotion_raw": emotion_raw}
        turns.append(turn(SPEAKERS[i % 2], text, emotion=emotion, act=act, attrs=attrs))
        gold.append(label("act", act, source="gold", agent=AGENT, turn=i, raw=act))
        gold.append(label("emotion", emotion, source="gold", agent=AGENT, turn=i, raw=emotion_raw))
    return {
        "id": make_id(AGENT, split, native_id),
        "source": AGENT,
        "split": split,
        "context": dict(context),
        "turns": turns,
        "labels": gold,
        "provenance": prov,  # type: ignore[typeddict-item]
    }


def _add_topic(record: Record, topic: _Topic) -> None:
    """The dialogue's topic as context and as a record-level gold label (``raw`` = the file's id)."""
    record["context"]["topic"] = topic.name
    record["context"]["topic_id"] = str(topic.id)
    # Where the topic came from: the full-file line, and how it was matched (see the topic join).
    where = {"full_line": str(topic.full_line), "match": topic.tier}
    record["labels"].append(label("topic", topic.name, source="gold", agent=AGENT, raw=str(topic.id), attrs=where))


def _hash_split(utterances: Sequence[str]) -> str:
    return hash_split("\n".join(utterances), HASH_SPLIT_RATIOS)


# ------------------------------------------------------------------ topic join


def _digest(*parts: object) -> bytes:
    return hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=16).digest()


def _join_keys(utterances: Sequence[str], acts: Sequence[str], emotions: Sequence[str]) -> list[tuple[str, bytes]]:
    """Match keys from strictest to loosest (see the module docstring)."""
    utts = tuple(utterances)
    words = " ".join(" ".join(utts).split())
    return [
        ("exact", _digest(utts, tuple(acts), tuple(emotions))),
        ("text", _digest(utts)),
        ("resegmented", _digest(words)),
    ]


class _TopicIndex:
    """Full-file dialogues by content, each usable once, with their topic."""

    def __init__(self) -> None:
        self.lines: dict[str, dict[bytes, list[int]]] = {"exact": {}, "text": {}, "resegmented": {}}
        self.topics: dict[int, int] = {}
        self.used: set[int] = set()

    def add(self, line: int, topic_id: int, keys: list[tuple[str, bytes]]) -> None:
        self.topics[line] = topic_id
        for tier, key in keys:
            self.lines[tier].setdefault(key, []).append(line)

    def match(self, keys: list[tuple[str, bytes]]) -> tuple[int, str] | None:
        for tier, key in keys:
            for line in self.lines[tier].get(key, ()):
                if line not in self.used:
                    self.used.add(line)
                    return line, tier
        return None


def _aligned_lines(files: Sequence[_RawFile]) -> Iterator[tuple[int, list[str | Rejected]]]:
    """Lines of aligned files in lockstep (line counts were checked before)."""
    with _open_all(files) as streams:
        iters = [iter_text_lines(s, f.display) for s, f in zip(streams, files, strict=True)]
        for rows in zip(*iters, strict=False):
            yield rows[0][0], [text for _, text in rows]


@contextmanager
def _open_all(files: Sequence[_RawFile]) -> Iterator[list[BinaryIO]]:
    with ExitStack() as stack:
        yield [stack.enter_context(f.open()) for f in files]


# ------------------------------------------------------------------ numpy reprs (CSV)


def parse_string_array(cell: str) -> list[str]:
    """The strings of a numpy string-array repr (``['a' "b's"\\n 'c']``) or a list repr (``['a', 'b']``).

    ``ast.literal_eval`` would glue adjacent literals into one string, so the elements are
    tokenised here (either quote, backslash escapes as Python's repr writes them, any
    whitespace or one comma between elements) and each literal is evaluated on its own.
    Raises :class:`ValueError` saying what was expected where.
    """
    s = cell.strip()
    if len(s) < 2 or s[0] != "[" or s[-1] != "]":
        raise ValueError("expected a bracketed list of quoted strings like ['...' '...']")
    out: list[str] = []
    i, end = 1, len(s) - 1
    while True:
        while i < end and s[i].isspace():
            i += 1
        if i >= end:
            return out
        quote = s[i]
        if quote not in "'\"":
            raise ValueError(f"expected a quoted string at character {i}, got {s[i : i + 10]!r}")
        j = i + 1
        while j < end and s[j] != quote:
            if s[j] == "\n":
                raise ValueError(f"line break inside the string starting at character {i}")
            j += 2 if s[j] == "\\" else 1
        if j >= end:
            raise ValueError(f"unterminated string starting at character {i}")
        try:
            out.append(ast.literal_eval(s[i : j + 1]))
        except (SyntaxError, ValueError) as exc:
            raise ValueError(f"bad string literal at character {i}: {exc}") from None
        i = j + 1
        while i < end and s[i].isspace():
            i += 1
        if i < end and s[i] == ",":
            i += 1
        elif i < end and s[i] not in "'\"":
            raise ValueError(f"expected whitespace, a comma or ']' after the string at character {i}")


def parse_int_array(cell: str) -> list[int]:
    """The ids of a numpy int-array repr (``[3 4 2]``, maybe wrapped) or a list repr (``[3, 4, 2]``)."""
    s = cell.strip()
    if len(s) < 2 or s[0] != "[" or s[-1] != "]":
        raise ValueError("expected a bracketed list of integers like [3 4 2]")
    out = []
    for tok in s[1:-1].replace(",", " ").split():
        try:
            out.append(int(tok))
        except ValueError:
            raise ValueError(f"{tok!r} is not an integer id") from None
    return out


class _CsvLines:
    """Physical lines of a CSV decoded as UTF-8, for ``csv.reader``; remembers the raw text and bad bytes.

    A line that is not UTF-8 is passed on with replacement characters so the row
    structure holds; the row it belongs to is rejected, naming the line.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.line = 0
        self.row_lines: list[str] = []
        self.bad: list[tuple[int, str]] = []

    def __iter__(self) -> Iterator[str]:
        for raw in self._stream:
            self.line += 1
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                text = raw.decode("utf-8", errors="replace")
                self.bad.append((self.line, f"invalid UTF-8 at byte {exc.start} of the line (expected UTF-8 text)"))
            if self.line == 1:
                text = text.removeprefix(BOM)
            self.row_lines.append(text)
            yield text

    def take_row(self) -> tuple[str, list[tuple[int, str]]]:
        raw, bad = "".join(self.row_lines), self.bad
        self.row_lines, self.bad = [], []
        return raw, bad


# ------------------------------------------------------------------ the adapter


@register
class DailyDialogAdapter(Adapter):
    name = "dailydialog"
    version = "1"
    description = (
        "DailyDialog (Li et al. 2017): daily-life dialogues with per-utterance dialogue acts and emotions "
        "(mapped onto GoEmotions) and per-dialogue topics. Reads the original split folders or zips, the full "
        "dialogues_*.txt files, or the Kaggle/HF CSV. License CC BY-NC-SA 4.0."
    )

    def read(self, paths: Sequence[Path]) -> Iterator[Record | Rejected]:
        plan = _plan([Path(p) for p in paths])
        self.stats["skipped_files"] += plan.skipped
        labels = _Labels()
        if not plan.splits and not plan.csvs:
            assert plan.full is not None
            yield from self._read_full(plan.full, labels)
            return
        index = None
        if plan.full is not None and plan.full.topic is not None:
            index = _TopicIndex()
            yield from self._index_topics(plan.full, labels, index)
        elif plan.full is not None:
            self.stats["full_files_unused"] += 1  # beside splits they only supply topics
        for split in SPLITS:
            if split in plan.splits:
                yield from self._read_split(plan.splits[split], labels, index)
            elif split in plan.csvs:
                yield from self._read_csv(plan.csvs[split], labels, index)

    # -- one dialogue, whatever the layout

    def _build(
        self,
        labels: _Labels,
        *,
        split: str,
        native_id: str,
        utterances: list[str],
        acts: list[int],
        emotions: list[int],
        prov: dict,
        text_file: str,
        act_file: str,
        emotion_file: str,
        index: _TopicIndex | None,
        context: dict[str, str] | None = None,
        topic: _Topic | None = None,
    ) -> Record:
        _check_counts(utterances, acts, emotions, text_file=text_file, act_file=act_file, emotion_file=emotion_file)
        record = _record(
            labels,
            split=split,
            native_id=native_id,
            utterances=utterances,
            acts=acts,
            emotions=emotions,
            prov=prov,
            act_file=act_file,
            emotion_file=emotion_file,
            context=context or {},
        )
        # Only a dialogue that became a record may use up a full-file line in the join.
        if index is not None:
            found = index.match(_join_keys(utterances, [str(a) for a in acts], [str(e) for e in emotions]))
            if found is None:
                self.stats["topic_unmatched"] += 1
            else:
                line, tier = found
                self.stats[f"topic_matched_{tier}"] += 1
                topic_id = index.topics[line]
                topic = _Topic(topic_id, labels.topic.from_id(topic_id), line, tier)
        if topic is not None:
            _add_topic(record, topic)
        self.stats["dialogues"] += 1
        self.stats["utterances"] += len(utterances)
        return record

    def _prov(self, file: str, line: int, line_end: int | None = None) -> dict:
        return dict(provenance(file, adapter=self.name, adapter_version=self.version, line=line, line_end=line_end))

    # -- split files (folders or zips)

    def _read_split(
        self, files: _SplitFiles, labels: _Labels, index: _TopicIndex | None
    ) -> Iterator[Record | Rejected]:
        raw_files = (files.text, files.act, files.emotion)
        _check_aligned(raw_files)
        self.stats["files"] += 3
        for line, (text, acts, emotions) in _aligned_lines(raw_files):
            self.stats["lines"] += 1
            record_id = make_id(AGENT, files.split, line)
            bad = next((x for x in (text, acts, emotions) if isinstance(x, Rejected)), None)
            if bad is not None:
                yield Rejected(file=bad.file, line=line, record=record_id, reason=bad.reason, raw=bad.raw)
                continue
            assert isinstance(text, str) and isinstance(acts, str) and isinstance(emotions, str)
            try:
                yield self._build(
                    labels,
                    split=files.split,
                    native_id=str(line),
                    utterances=_split_utterances(text, files.text.display),
                    acts=_parse_ids(acts.split(), "act", files.act.display),
                    emotions=_parse_ids(emotions.split(), "emotion", files.emotion.display),
                    prov=self._prov(files.text.display, line),
                    text_file=files.text.display,
                    act_file=files.act.display,
                    emotion_file=files.emotion.display,
                    index=index,
                )
            except _Bad as bad_row:
                yield Rejected(file=bad_row.file, line=line, record=record_id, reason=bad_row.reason, raw=text)

    # -- full files

    def _full_rows(
        self, full: _FullFiles, labels: _Labels
    ) -> Iterator[tuple[int, str, list[str], list[str], list[str], int | None] | Rejected]:
        """Each full-file line as (line, raw text, utterances, act tokens, emotion tokens, topic id)."""
        raw_files = [full.text, full.act, full.emotion] + ([full.topic] if full.topic else [])
        _check_aligned(raw_files)
        self.stats["files"] += len(raw_files)
        for line, rows in _aligned_lines(raw_files):
            bad = next((x for x in rows if isinstance(x, Rejected)), None)
            if bad is not None:
                yield bad
                continue
            text, acts, emotions = rows[0], rows[1], rows[2]
            assert isinstance(text, str) and isinstance(acts, str) and isinstance(emotions, str)
            try:
                utterances = _split_utterances(text, full.text.display)
                topic_id = None
                if full.topic is not None:
                    assert isinstance(rows[3], str)
                    (topic_id,) = _parse_ids([rows[3].strip()], "topic", full.topic.display)
                    labels.name(labels.topic, topic_id, "topic", full.topic.display)
            except _Bad as bad_row:
                yield Rejected(file=bad_row.file, line=line, reason=bad_row.reason, raw=text)
                continue
            yield line, text, utterances, acts.split(), emotions.split(), topic_id

    def _index_topics(self, full: _FullFiles, labels: _Labels, index: _TopicIndex) -> Iterator[Rejected]:
        for row in self._full_rows(full, labels):
            if isinstance(row, Rejected):
                yield row
                continue
            line, _, utterances, acts, emotions, topic_id = row
            assert topic_id is not None
            index.add(line, topic_id, _join_keys(utterances, acts, emotions))
            self.stats["topic_index_lines"] += 1

    def _read_full(self, full: _FullFiles, labels: _Labels) -> Iterator[Record | Rejected]:
        for row in self._full_rows(full, labels):
            self.stats["lines"] += 1
            if isinstance(row, Rejected):
                yield row
                continue
            line, text, utterances, act_tokens, emotion_tokens, topic_id = row
            split = _hash_split(utterances)
            record_id = make_id(AGENT, split, f"full-{line}")
            try:
                topic = None
                if topic_id is not None:
                    topic = _Topic(topic_id, labels.topic.from_id(topic_id), line, "same-line")
                yield self._build(
                    labels,
                    split=split,
                    native_id=f"full-{line}",
                    utterances=utterances,
                    acts=_parse_ids(act_tokens, "act", full.act.display),
                    emotions=_parse_ids(emotion_tokens, "emotion", full.emotion.display),
                    prov=self._prov(full.text.display, line),
                    text_file=full.text.display,
                    act_file=full.act.display,
                    emotion_file=full.emotion.display,
                    index=None,
                    context={"split_assigned": "hash"},
                    topic=topic,
                )
            except _Bad as bad_row:
                yield Rejected(file=bad_row.file, line=line, record=record_id, reason=bad_row.reason, raw=text)

    # -- Kaggle / HF CSV

    def _read_csv(self, files: _CsvFile, labels: _Labels, index: _TopicIndex | None) -> Iterator[Record | Rejected]:
        f = files.file
        f.check_not_empty()
        self.stats["files"] += 1
        with f.open() as stream:
            lines = _CsvLines(stream)
            reader = csv.reader(lines)
            header = [h.strip() for h in next(reader, [])]
            _, bad_header = lines.take_row()
            if bad_header or not set(_CSV_COLUMNS) <= set(header):
                raise InputError(
                    f"expected a DailyDialog CSV header with columns {', '.join(_CSV_COLUMNS)}, "
                    f"got {','.join(header)[:80]!r}",
                    file=f.display,
                    line=1,
                )
            columns = [header.index(c) for c in _CSV_COLUMNS]
            row_index, end = 0, reader.line_num
            for row in reader:
                start, end = end + 1, reader.line_num
                raw, bad = lines.take_row()
                if not row:
                    continue  # a blank line
                self.stats["csv_rows"] += 1
                record_id = make_id(AGENT, files.split, f"csv-{row_index}")
                row_index += 1
                if bad:
                    line, reason = bad[0]
                    yield Rejected(file=f.display, line=line, record=record_id, reason=reason, raw=raw)
                    continue
                if len(row) != len(header):
                    yield Rejected(
                        file=f.display,
                        line=start,
                        record=record_id,
                        reason=f"expected {len(header)} fields ({', '.join(header)}), got {len(row)}",
                        raw=raw,
                    )
                    continue
                try:
                    utterances, acts, emotions = self._csv_cells([row[c] for c in columns], f.display)
                    yield self._build(
                        labels,
                        split=files.split,
                        native_id=f"csv-{row_index - 1}",
                        utterances=utterances,
                        acts=acts,
                        emotions=emotions,
                        prov=self._prov(f.display, start, end),
                        text_file=f.display,
                        act_file=f.display,
                        emotion_file=f.display,
                        index=index,
                    )
                except _Bad as bad_row:
                    yield Rejected(file=f.display, line=start, record=record_id, reason=bad_row.reason, raw=raw)

    @staticmethod
    def _csv_cells(row: list[str], file: str) -> tuple[list[str], list[int], list[int]]:
        parsed = []
        for column, cell, parse in zip(
            _CSV_COLUMNS, row, (parse_string_array, parse_int_array, parse_int_array), strict=True
        ):
            try:
                parsed.append(parse(cell))
            except ValueError as exc:
                raise _Bad(f"column {column!r}: {exc}", file) from None
        utterances, acts, emotions = parsed
        return [u.strip() for u in utterances], acts, emotions


__all__ = ["DailyDialogAdapter", "parse_int_array", "parse_string_array"]
