"""GoEmotions (Demszky et al., 2020): Reddit comments with 27 emotions + neutral.

Two raw forms, read alone or together:

* **Simplified TSVs** ``train.tsv`` / ``dev.tsv`` / ``test.tsv`` (split
  ``train`` / ``validation`` / ``test``): no header, three tab-separated
  columns -- text, comma-separated emotion ids (``0,15``), Reddit comment id.
  Each id becomes a ``gold`` label (multi-label). Quirk: about 2.5 % of the
  rows are wrapped in CSV-style double quotes with inner quotes doubled
  (``"He said ""hi"" to me"`` is the text ``He said "hi" to me``); they are
  unquoted exactly as the ``csv`` module and pandas do with default quoting
  (quotes inside an unquoted field stay literal). A quoted field must close on its own line: the released
  files have none that span lines, so an unclosed quote is a rejected row,
  not a licence to swallow the next lines.
* **Rater-level CSVs** ``full_dataset/goemotions_{1,2,3}.csv``: one row per
  (comment, rater) with the comment's Reddit metadata, ``rater_id``,
  ``example_very_unclear`` and 28 emotion columns of 0/1. Each 1 becomes a
  ``human`` label with agent ``goemotions:rater:<rater_id>``. A rater who
  marked the example very unclear contributes no labels (the released rows
  have all zeros then); the ids of everyone who rated a comment are kept in
  ``context["raters"]`` and those who found it unclear in
  ``context["raters_unclear"]``, so a rater who chose nothing is not lost.

The rows of one comment are not contiguous in the CSVs (nor within one
file), so the CSVs are grouped by comment id **in memory** before anything
is yielded -- about 58k comments / 211k rows for the full release, a few
hundred MB at most. When TSVs are read in the same call, a comment's ratings
attach to its TSV record (same id, its original split) together with the
CSV metadata (subreddit, author, link/parent id, created_utc). Comments that
only the CSVs have are yielded afterwards, in order of first appearance,
with a split assigned from the comment id (:func:`hash_split`, 80/10/10) and
``context["split_assigned"] = "hash"``; they carry no gold labels, since gold
is the TSVs' aggregate. To keep the original splits, give the three TSVs
together with the CSVs.

A UTF-8 byte-order mark at the start of any of these files is dropped.

Label ids are read against ``emotions.txt`` when the input has one; it must
list the canonical ``emotion`` vocabulary (same 28 names, same order), else
the input is refused. Without it the vocabulary's order is used.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

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
from curation.errors import InputError, SchemaError
from curation.record import Record, label, make_id, provenance, turn

#: Simplified TSV file stem -> canonical split.
TSV_SPLITS = {"train": "train", "dev": "validation", "test": "test"}

#: The rater CSVs' leading columns; the 28 emotion columns follow in ``emotions.txt`` order.
RATER_META_COLUMNS = (
    "text",
    "id",
    "author",
    "subreddit",
    "link_id",
    "parent_id",
    "created_utc",
    "rater_id",
    "example_very_unclear",
)

#: CSV metadata columns copied into ``context`` (same names).
CONTEXT_COLUMNS = ("subreddit", "author", "link_id", "parent_id", "created_utc")

_UNCLEAR = {"True": True, "False": False}


HASH_SPLIT_RATIOS = (0.8, 0.1, 0.1)


def comment_split(comment_id: str) -> str:
    """Deterministic 80/10/10 split (:func:`~curation.adapters.base.hash_split`) for comments no TSV places."""
    return hash_split(comment_id, HASH_SPLIT_RATIOS)


@dataclass
class _Inputs:
    tsvs: list[tuple[Path, str, str]] = field(default_factory=list)  # path, display, split
    csvs: list[tuple[Path, str]] = field(default_factory=list)
    emotions: list[tuple[Path, str]] = field(default_factory=list)


@dataclass
class _Rating:
    rater_id: str
    unclear: bool
    emotions: list[str]


@dataclass
class _RatedComment:
    """Every rater row of one comment id, grouped across the CSVs."""

    text: str
    meta: dict[str, str]
    file: str
    line: int
    ratings: list[_Rating] = field(default_factory=list)


@register
class GoEmotionsAdapter(Adapter):
    name = "goemotions"
    version = "1"
    description = "GoEmotions Reddit comments: simplified TSVs (gold, multi-label) and rater-level CSVs (human)."

    def read(self, paths: Sequence[Path]) -> Iterator[Record | Rejected]:
        inputs = self._collect(require_paths(paths))
        names = self._label_names(inputs.emotions)
        rated: dict[str, _RatedComment] = {}
        for path, display in inputs.csvs:
            yield from self._group_rater_csv(path, display, names, rated)
        for path, display, split in inputs.tsvs:
            yield from self._read_tsv(path, display, split, names, rated)
        for comment_id, comment in rated.items():
            yield self._rater_only_record(comment_id, comment)
            self.stats["rater_only_comments"] += 1

    # ---------------------------------------------------------------- inputs

    def _collect(self, paths: list[Path]) -> _Inputs:
        inputs = _Inputs()
        for path in paths:
            if path.is_dir():
                found = 0
                for stem, split in TSV_SPLITS.items():
                    tsv = path / f"{stem}.tsv"
                    if tsv.is_file():
                        inputs.tsvs.append((tsv, display_path(tsv, path), split))
                        found += 1
                if (path / "emotions.txt").is_file():
                    inputs.emotions.append((path / "emotions.txt", display_path(path / "emotions.txt", path)))
                for folder in (path, path / "full_dataset"):
                    for csv_path in sorted(folder.glob("goemotions_*.csv")):
                        inputs.csvs.append((csv_path, display_path(csv_path, path)))
                        found += 1
                if not found:
                    raise InputError(
                        "no GoEmotions files in this directory "
                        "(expected train.tsv, dev.tsv, test.tsv or full_dataset/goemotions_N.csv)",
                        file=str(path),
                    )
            else:
                self._classify_file(path, inputs)
        for path, display, _ in inputs.tsvs:
            check_not_empty(path, display)
        for path, display in inputs.csvs:
            check_not_empty(path, display)
        return inputs

    @staticmethod
    def _classify_file(path: Path, inputs: _Inputs) -> None:
        display = display_path(path)
        if path.name == "emotions.txt":
            inputs.emotions.append((path, display))
        elif path.suffix == ".csv":
            inputs.csvs.append((path, display))
        elif path.suffix == ".tsv":
            # "train.tsv", or a slice named like "train_head.tsv"
            stem = path.stem.replace("-", "_").split("_", 1)[0]
            if stem not in TSV_SPLITS:
                raise InputError(
                    "cannot tell the split from the file name (expected train.tsv, dev.tsv or test.tsv)", file=display
                )
            inputs.tsvs.append((path, display, TSV_SPLITS[stem]))
        else:
            raise InputError(
                "not a GoEmotions file (expected train.tsv, dev.tsv, test.tsv, emotions.txt "
                "or goemotions_N.csv, or a directory holding them)",
                file=display,
            )

    def _label_names(self, emotion_files: list[tuple[Path, str]]) -> tuple[str, ...]:
        canonical = vocabularies.load("emotion").labels
        for path, display in emotion_files:
            check_not_empty(path, display)
            try:
                lines = path.read_text(encoding="utf-8-sig").splitlines()
            except UnicodeDecodeError as exc:
                raise InputError(f"invalid UTF-8 at byte {exc.start} (expected UTF-8 text)", file=display) from None
            names = [n.strip() for n in lines]
            while names and not names[-1]:
                names.pop()
            for i, expected in enumerate(canonical):
                got = names[i] if i < len(names) else None
                if got != expected:
                    raise InputError(
                        f"expected emotion {expected!r} (id {i}) as in the canonical emotion vocabulary, got {got!r}",
                        file=display,
                        line=i + 1,
                    )
            if len(names) != len(canonical):
                raise InputError(
                    f"expected {len(canonical)} emotion names, got {len(names)}", file=display, line=len(canonical) + 1
                )
        return canonical

    # --------------------------------------------------------- simplified TSV

    def _read_tsv(
        self, path: Path, display: str, split: str, names: tuple[str, ...], rated: dict[str, _RatedComment]
    ) -> Iterator[Record | Rejected]:
        self.stats["files"] += 1
        seen: dict[str, int] = {}
        with path.open("rb") as stream:
            for line_no, line in iter_text_lines(stream, display):
                self.stats["lines"] += 1
                if isinstance(line, Rejected):
                    yield line
                    continue
                if line_no == 1 and "\t" not in line:
                    raise InputError(
                        "not a GoEmotions TSV: expected 3 tab-separated fields (text, emotion ids, comment id), "
                        "found no tab",
                        file=display,
                        line=1,
                    )
                fields = _split_tsv_line(line)
                if isinstance(fields, str):
                    yield Rejected(file=display, line=line_no, reason=fields, raw=line)
                    continue
                if line.startswith('"'):
                    self.stats["quoted_rows"] += 1
                result = self._tsv_record(fields, display, line_no, split, names, line)
                if isinstance(result, Rejected):
                    yield result
                    continue
                comment_id = fields[2]
                if comment_id in seen:
                    yield Rejected(
                        file=display,
                        line=line_no,
                        record=comment_id,
                        reason=f"comment id {comment_id!r} already on line {seen[comment_id]} (expected unique ids)",
                        raw=line,
                    )
                    continue
                seen[comment_id] = line_no
                if len(result["labels"]) > 1:
                    self.stats["multi_label_rows"] += 1
                comment = rated.pop(comment_id, None)
                if comment is not None:
                    _attach_ratings(result, comment)
                    self.stats["rated_comments_joined"] += 1
                self.stats["rows"] += 1
                yield result

    def _tsv_record(
        self, fields: list[str], display: str, line_no: int, split: str, names: tuple[str, ...], raw: str
    ) -> Record | Rejected:
        def reject(reason: str) -> Rejected:
            return Rejected(file=display, line=line_no, reason=reason, raw=raw)

        if len(fields) != 3:
            return reject(f"expected 3 tab-separated fields (text, emotion ids, comment id), got {len(fields)}")
        text, ids_field, comment_id = fields
        if not text:
            return reject("empty text (expected the comment text in the first field)")
        if not ids_field:
            return reject("empty emotion id list (expected comma-separated ids 0..27, e.g. '0,15')")
        gold = []
        taken: set[str] = set()
        for raw_id in ids_field.split(","):
            if not raw_id.isdigit() or not 0 <= int(raw_id) < len(names):
                return reject(f"emotion id {raw_id!r} out of range (expected integers 0..{len(names) - 1})")
            value = names[int(raw_id)]
            if value in taken:
                self.stats["repeated_emotion_ids"] += 1
                continue
            taken.add(value)
            gold.append(label("emotion", value, source="gold", agent=self.name, raw=raw_id))
        try:
            record_id = make_id(self.name, split, comment_id)
        except SchemaError as exc:
            return reject(f"bad comment id: {exc}")
        return {
            "id": record_id,
            "source": self.name,
            "split": split,
            "context": {},
            "turns": [turn("author", text)],
            "labels": gold,
            "provenance": provenance(display, adapter=self.name, adapter_version=self.version, line=line_no),
        }

    # ------------------------------------------------------------- rater CSVs

    def _group_rater_csv(
        self, path: Path, display: str, names: tuple[str, ...], rated: dict[str, _RatedComment]
    ) -> Iterator[Rejected]:
        self.stats["files"] += 1
        expected_header = [*RATER_META_COLUMNS, *names]
        n_fields = len(expected_header)
        with path.open("rb") as stream:
            lines = _DecodedLines(stream)
            reader = csv.reader(lines)
            header = next(reader, None)
            if header != expected_header or lines.bad:
                raise InputError(
                    "not a GoEmotions rater CSV: expected the header "
                    f"{','.join(expected_header[:10])},...,{expected_header[-1]} ({n_fields} columns)",
                    file=display,
                    line=1,
                )
            end = reader.line_num
            while True:
                start = end + 1
                try:
                    row = next(reader, None)
                except csv.Error as exc:
                    # the csv module's only hard error with default settings
                    reason = f"malformed CSV ({exc}); expected {n_fields} fields"
                    yield Rejected(file=display, line=start, reason=reason)
                    return
                if row is None:
                    break
                end = reader.line_num
                self.stats["rater_rows"] += 1
                raw = ",".join(row)
                if lines.bad_between(start, end):
                    yield Rejected(file=display, line=start, reason="invalid UTF-8 (expected UTF-8 text)", raw=raw)
                    continue
                problem = _check_rater_row(row, n_fields, names)
                if problem:
                    yield Rejected(
                        file=display, line=start, record=row[1] if len(row) > 1 else None, reason=problem, raw=raw
                    )
                    continue
                meta = dict(zip(RATER_META_COLUMNS, row, strict=False))
                comment_id = meta["id"]
                comment = rated.get(comment_id)
                if comment is None:
                    comment = rated[comment_id] = _RatedComment(
                        text=meta["text"],
                        meta={k: meta[k] for k in CONTEXT_COLUMNS if meta[k]},
                        file=display,
                        line=start,
                    )
                elif comment.text != meta["text"]:
                    self.stats["rater_rows_text_differs"] += 1
                emotions = [names[i] for i, v in enumerate(row[len(RATER_META_COLUMNS) :]) if v == "1"]
                comment.ratings.append(_Rating(meta["rater_id"], _UNCLEAR[meta["example_very_unclear"]], emotions))

    def _rater_only_record(self, comment_id: str, comment: _RatedComment) -> Record:
        split = comment_split(comment_id)
        record: Record = {
            "id": make_id(self.name, split, comment_id),
            "source": self.name,
            "split": split,
            "context": {"split_assigned": "hash"},
            "turns": [turn("author", comment.text)],
            "labels": [],
            "provenance": provenance(comment.file, adapter=self.name, adapter_version=self.version, line=comment.line),
        }
        _attach_ratings(record, comment)
        return record


# ------------------------------------------------------------------ helpers


def _split_tsv_line(line: str) -> list[str] | str:
    """The fields of one TSV line, unquoted as ``csv``/pandas default quoting does.

    Returns a reason string for a quoted field that does not close on its line.
    """
    if '"' not in line:
        return line.split("\t")
    try:
        return next(csv.reader([line], delimiter="\t", strict=True))
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            return "unterminated quoted field (expected a closing double quote on the same line)"
    # Lenient like pandas: text after a closing quote is kept ('"ab"c' -> 'abc').
    return next(csv.reader([line], delimiter="\t"))


def _check_rater_row(row: list[str], n_fields: int, names: tuple[str, ...]) -> str | None:
    if len(row) != n_fields:
        columns = ", ".join(RATER_META_COLUMNS)
        return f"expected {n_fields} comma-separated fields ({columns}, 28 emotions), got {len(row)}"
    comment_id, rater_id, unclear = row[1], row[7], row[8]
    if not comment_id or any(c.isspace() for c in comment_id):
        return f"bad comment id {comment_id!r} (expected a Reddit comment id such as 'eew5j0j')"
    if not rater_id or any(c.isspace() for c in rater_id):
        return f"bad rater_id {rater_id!r} (expected a rater number)"
    if unclear not in _UNCLEAR:
        return f"example_very_unclear is {unclear!r} (expected True or False)"
    for name, value in zip(names, row[len(RATER_META_COLUMNS) :], strict=True):
        if value not in ("0", "1"):
            return f"column {name!r} is {value!r} (expected 0 or 1)"
    return None


def _attach_ratings(record: Record, comment: _RatedComment) -> None:
    """Add one comment's rater rows to its record: human labels and context."""
    context = record["context"]
    for key, value in comment.meta.items():
        context.setdefault(key, value)
    context["raters"] = ",".join(r.rater_id for r in comment.ratings)
    unclear = [r.rater_id for r in comment.ratings if r.unclear]
    if unclear:
        context["raters_unclear"] = ",".join(unclear)
    for rating in comment.ratings:
        attrs = {"example_very_unclear": "true"} if rating.unclear else None
        for value in rating.emotions:
            record["labels"].append(
                label("emotion", value, source="human", agent=f"goemotions:rater:{rating.rater_id}", attrs=attrs)
            )


class _DecodedLines:
    """Physical lines of a binary stream as text, for ``csv.reader``.

    ``csv`` counts physical lines, so a row's start line is the previous
    row's ``line_num`` + 1. Lines that are not UTF-8 are decoded with
    replacement and remembered, so the row they belong to is rejected rather
    than the whole file failing.
    """

    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = iter(stream)
        self._line = 0
        self.bad: list[int] = []

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        raw = next(self._stream)
        self._line += 1
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.bad.append(self._line)
            text = raw.decode("utf-8", errors="replace")
        return text.removeprefix(BOM) if self._line == 1 else text

    def bad_between(self, start: int, end: int) -> bool:
        while self.bad and self.bad[0] < start:
            self.bad.pop(0)
        return bool(self.bad) and self.bad[0] <= end
