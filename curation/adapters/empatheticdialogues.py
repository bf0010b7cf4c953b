"""EmpatheticDialogues (Rashkin et al., ACL 2019): conversations grounded in an emotional situation.

Input: the facebookresearch CSVs ``train.csv`` / ``valid.csv`` / ``test.csv`` (or
any file whose name says which split it is, such as a ``train_head.csv`` slice).
Header ``conv_id,utterance_idx,context,prompt,speaker_idx,utterance,selfeval,tags``;
one row per utterance; the rows of a conversation are consecutive and numbered
1..n by ``utterance_idx``. One record per conversation, id
``empatheticdialogues:{split}:{conv_id}`` (``hit:0_conv:1``).

The files are not real CSV: there is no quoting, and a comma inside text is
written ``_comma_``. So rows are split on every comma, as the official loader
does, and never with CSV quoting rules (an utterance with literal mid-field
double quotes must survive as it is). The canonical turn text and the prompt
get real commas back; nothing else in the text is touched (leading, trailing
and double spaces are the workers' and are kept; only the line ending goes).

A row with more than 8 fields is resolved deliberately, not by position:

* a raw comma inside the utterance (the field after ``speaker_idx``) splits it
  in two; the ``selfeval`` field (``5|5|5_2|2|5``: two ``|``-joined triples
  joined by ``_``) is found as the first field after the utterance that has
  that shape, and everything before it is the utterance, rejoined with ``,``
  (counted as ``rows_extra_commas``);
* the official valid and test files add a 9th field after ``tags``: the
  inline label candidates that ParlAI reads (``|``-separated, ``_comma_`` /
  ``_pipe_`` escaped). It is kept raw in turn ``attrs["label_candidates"]``
  (counted as ``rows_label_candidates``);
* if no field has the selfeval shape, ``selfeval`` and ``tags`` are taken as
  the last two fields and the utterance absorbs the rest (also counted, as
  ``rows_extra_commas_unanchored``).

A row with fewer than 8 fields is rejected. A conversation whose rows are out
of order, change ``context`` or ``prompt``, have more than two authors, or
reappear after another conversation is rejected, naming the line. (Rows are
grouped as they stream by, so when a conversation's rows reappear later, its
first run has already been read as a record; the later run is rejected, so an
id is never given twice.)

Canonical record: the author of utterance 1 is ``speaker`` and the other
``listener`` (ED's own terms; ``speaker_idx`` in turn attrs); ``tags`` in turn
attrs when non-empty; context ``emotion`` (raw), ``prompt``, ``selfeval`` (raw);
one gold ``emotion`` label, ED's emotion mapped onto GoEmotions, raw kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from curation import vocabularies
from curation.adapters.base import (
    Adapter,
    Rejected,
    check_not_empty,
    display_path,
    iter_text_lines,
    register,
    require_paths,
    split_from_name,
)
from curation.errors import InputError, SchemaError, UnknownLabelError
from curation.record import Record, Turn, label, make_id, provenance, turn

HEADER = ("conv_id", "utterance_idx", "context", "prompt", "speaker_idx", "utterance", "selfeval", "tags")
_N_FIELDS = len(HEADER)
_UTTERANCE = HEADER.index("utterance")
_AGENT = "empatheticdialogues"
_ROLES = ("speaker", "listener")

# The workers' self-evaluation: two triples of scores, "5|5|5_2|2|5". Real values
# carry stray spaces, pasted URLs and free text inside the parts, so only the
# shape (4 pipes, an underscore in the middle part) is checked.
_SELFEVAL_SHAPE = re.compile(r"[^|]*\|[^|]*\|[^|_]*_[^|]*\|[^|]*\|[^|]*")


@dataclass
class _Row:
    line: int
    conv_id: str
    utterance_idx: int
    context: str
    prompt: str
    speaker_idx: str
    utterance: str
    selfeval: str
    tags: str
    label_candidates: str | None
    raw: str


@dataclass
class _Conversation:
    conv_id: str
    rows: list[_Row] = field(default_factory=list)
    problem: str | None = None  # the first reason this conversation cannot become a record
    problem_line: int | None = None

    def fail(self, reason: str, line: int) -> None:
        if self.problem is None:
            self.problem, self.problem_line = reason, line


@register
class EmpatheticDialoguesAdapter(Adapter):
    name = "empatheticdialogues"
    version = "1"
    description = (
        "EmpatheticDialogues train/valid/test.csv: one record per conversation, speaker/listener turns, "
        "the situation prompt and the situation emotion (mapped onto GoEmotions) as a gold label."
    )

    def read(self, paths: Sequence[Path]) -> Iterator[Record | Rejected]:
        for given in require_paths(paths):
            if given.is_dir():
                files = sorted(p for p in given.rglob("*.csv") if p.is_file())
                if not files:
                    raise InputError(
                        "no .csv files in this folder (expected train.csv, valid.csv, test.csv)", file=str(given)
                    )
                root: Path | None = given
            else:
                files, root = [given], None
            for path in files:
                yield from self._read_file(path, display_path(path, root))

    def _read_file(self, path: Path, display: str) -> Iterator[Record | Rejected]:
        check_not_empty(path, display)
        split = split_from_name(path)
        if split is None:
            raise InputError(
                "cannot tell the split from the file name: expected a name containing exactly one of "
                "train / valid / test (train.csv, valid.csv, test.csv)",
                file=display,
            )
        self.stats["files"] += 1
        seen: set[str] = set()  # conversation ids already closed in this file
        current: _Conversation | None = None
        with path.open("rb") as stream:
            lines = iter_text_lines(stream, display)
            _check_header(next(lines, None), display)
            for n, text in lines:
                if text == "":
                    self.stats["blank_lines"] += 1
                    continue
                self.stats["rows"] += 1
                row = text if isinstance(text, Rejected) else self._parse_row(text, n, display)
                if isinstance(row, Rejected):
                    # The conversation this row belongs to is incomplete now: reject it too.
                    self.stats["rows_rejected"] += 1
                    if current is not None and (row.raw or "").split(",", 1)[0] == current.conv_id:
                        current.fail(f"its row at line {n} could not be read ({row.reason})", n)
                    yield row
                    continue
                if current is None or row.conv_id != current.conv_id:
                    if current is not None:
                        seen.add(current.conv_id)
                        yield self._finish(current, split, display)
                    current = _Conversation(row.conv_id)
                    if row.conv_id in seen:
                        current.fail(
                            f"conversation {row.conv_id} starts again at line {n} after other conversations; "
                            "expected its rows to be contiguous",
                            n,
                        )
                _check_row(current, row)
                current.rows.append(row)
        if current is not None:
            yield self._finish(current, split, display)

    def _parse_row(self, text: str, n: int, file: str) -> _Row | Rejected:
        fields = text.split(",")
        if len(fields) < _N_FIELDS:
            return Rejected(
                file=file,
                line=n,
                reason=f"expected {_N_FIELDS} fields ({','.join(HEADER)}), got {len(fields)}",
                raw=text,
            )
        candidates = None
        if len(fields) == _N_FIELDS:
            utterance, selfeval, tags = fields[5:8]
        else:
            anchor = next(
                (k for k in range(_UTTERANCE + 1, len(fields) - 1) if _SELFEVAL_SHAPE.fullmatch(fields[k])), None
            )
            if anchor is None:
                anchor = len(fields) - 2
                self.stats["rows_extra_commas_unanchored"] += 1
            rest = fields[anchor + 2 :]
            if len(rest) > 1:
                return Rejected(
                    file=file,
                    line=n,
                    reason=(
                        f"expected {_N_FIELDS} fields ({_N_FIELDS + 1} with label candidates), got {len(fields)}: "
                        "cannot tell where the utterance ends"
                    ),
                    raw=text,
                )
            if rest:
                candidates = rest[0]
                self.stats["rows_label_candidates"] += 1
            if anchor > _UTTERANCE + 1:
                self.stats["rows_extra_commas"] += 1
            utterance = ",".join(fields[_UTTERANCE:anchor])
            selfeval, tags = fields[anchor], fields[anchor + 1]
        try:
            utterance_idx = int(fields[1])
        except ValueError:
            return Rejected(file=file, line=n, reason=f"utterance_idx must be an integer, got {fields[1]!r}", raw=text)
        if not fields[4].strip().isdigit():
            return Rejected(
                file=file,
                line=n,
                reason=f"speaker_idx must be an integer, got {fields[4]!r} (a raw comma in the prompt?)",
                raw=text,
            )
        return _Row(
            line=n,
            conv_id=fields[0],
            utterance_idx=utterance_idx,
            context=fields[2],
            prompt=fields[3],
            speaker_idx=fields[4].strip(),
            utterance=utterance,
            selfeval=selfeval,
            tags=tags,
            label_candidates=candidates,
            raw=text,
        )

    def _finish(self, conv: _Conversation, split: str, file: str) -> Record | Rejected:
        first, last = conv.rows[0] if conv.rows else None, conv.rows[-1] if conv.rows else None
        line = first.line if first else conv.problem_line
        record_id = f"{self.name}:{split}:{conv.conv_id}"
        self.stats["conversations"] += 1
        try:
            if conv.problem is not None:
                raise _Invalid(conv.problem)
            assert first is not None and last is not None
            record = self._build(conv, split, file, first.line, last.line)
        except (_Invalid, SchemaError) as exc:
            self.stats["conversations_rejected"] += 1
            raw = "\n".join(r.raw for r in conv.rows)
            return Rejected(file=file, line=conv.problem_line or line, record=record_id, reason=str(exc), raw=raw)
        self.stats["records"] += 1
        self.stats["turns"] += len(record["turns"])
        return record

    def _build(self, conv: _Conversation, split: str, file: str, line: int, line_end: int) -> Record:
        first = conv.rows[0]
        try:
            emotion = vocabularies.load("empatheticdialogues_emotion").map(first.context)
        except UnknownLabelError as exc:
            raise _Invalid(f"unknown emotion (context column): {exc}") from None
        roles = {first.speaker_idx: _ROLES[0]}
        turns: list[Turn] = []
        for row in conv.rows:
            role = roles.setdefault(row.speaker_idx, _ROLES[1])
            attrs = {"speaker_idx": row.speaker_idx}
            if row.tags:
                attrs["tags"] = row.tags
            if row.label_candidates is not None:
                attrs["label_candidates"] = row.label_candidates
            if row.selfeval != first.selfeval:
                attrs["selfeval"] = row.selfeval
                self.stats["rows_selfeval_differs"] += 1
            turns.append(turn(role, _uncomma(row.utterance), attrs=attrs))
        return {
            "id": make_id(self.name, split, conv.conv_id),
            "source": self.name,
            "split": split,
            "context": {"emotion": first.context, "prompt": _uncomma(first.prompt), "selfeval": first.selfeval},
            "turns": turns,
            "labels": [label("emotion", emotion, source="gold", agent=_AGENT, raw=first.context)],
            "provenance": provenance(
                file, adapter=self.name, adapter_version=self.version, line=line, line_end=line_end
            ),
        }


class _Invalid(Exception):
    """A conversation that cannot become a record; the message is the rejection reason."""


def _check_row(conv: _Conversation, row: _Row) -> None:
    """The invariants between a row and the rows of its conversation before it."""
    expected = len(conv.rows) + 1
    if row.utterance_idx != expected:
        conv.fail(
            f"utterance_idx {row.utterance_idx} at line {row.line}; expected {expected} (rows run 1..n)", row.line
        )
    if conv.rows:
        first = conv.rows[0]
        for name in ("context", "prompt"):
            if getattr(row, name) != getattr(first, name):
                conv.fail(
                    f"{name} changes at line {row.line} ({getattr(row, name)!r:.60} vs {getattr(first, name)!r:.60} "
                    f"at line {first.line}); expected one value per conversation",
                    row.line,
                )
        authors = {r.speaker_idx for r in conv.rows} | {row.speaker_idx}
        if len(authors) > 2:
            conv.fail(f"a third author (speaker_idx {row.speaker_idx}) at line {row.line}; expected two", row.line)


def _check_header(first: tuple[int, str | Rejected] | None, file: str) -> None:
    expected = ",".join(HEADER)
    if first is None:
        raise InputError(f"no header: expected {expected}", file=file, line=1)
    text = first[1]
    got = text.raw if isinstance(text, Rejected) else text
    if tuple((got or "").split(",")[:_N_FIELDS]) != HEADER:
        raise InputError(
            f"not an EmpatheticDialogues CSV: expected the header {expected}, got {got!r:.80}", file=file, line=1
        )


def _uncomma(text: str) -> str:
    return text.replace("_comma_", ",")
