"""ESConv (Liu et al., ACL 2021): emotional-support conversations with strategy labels.

Three real layouts of the same data are read; the format of each file is
detected from its first non-blank character, never from a flag:

``train.txt`` / ``valid.txt`` / ``test.txt`` -- the publisher's Hugging Face release (thu-coai/esconv)
    One JSON object per line; speakers ``usr`` / ``sys``; ``strategy`` on
    ``sys`` turns; text already whitespace-normalised by HF's ``process.py``.
    The split comes from the file name (``valid`` -> ``validation``). The
    release has no conversation id, so the native id is the 1-based line
    number in that file: ``esconv:train:17``. The files are fixed (the publisher
    split them once with a seeded shuffle), so the id is stable.

``ESConv.json`` -- the original GitHub release
    A JSON list; turns ``{"content", "speaker": seeker|supporter, "annotation":
    {"strategy"} | {"feedback": "1".."5"} | {}}``. It has no split: one is
    assigned from a hash of the conversation's content (situation + first
    turn), 70 / 15 / 15, so it never depends on file order;
    ``context["split_assigned"] = "hash"``. Id ``esconv:{split}:json-{index}``
    with the 0-based index in the list.

``FailedESConv.json`` -- the raw collection format (196 failed / negative conversations)
    As ``ESConv.json`` but speakers ``speaker`` (the seeker) / ``listener``
    (the supporter), contents with a trailing newline, and un-normalised
    strategy names ("Questions", "Direct Guidance", ...; aliases in the
    ``strategy`` vocabulary). Which of the two list formats a file is in is read
    from its speaker names; the raw collection format is the failed set:
    ``context["esconv_set"] = "failed"`` (else ``"main"``), id
    ``esconv:{split}:failed-{index}``.

JSON lists are parsed one element at a time (``JSONDecoder.raw_decode`` over a
growing buffer), so memory holds one conversation, and a truncated file yields
its complete conversations and then a rejection naming the line and byte offset
where the broken element starts.

Canonical record: speakers ``seeker`` / ``supporter`` (the raw name in turn
``attrs["speaker_raw"]``); a supporter turn's canonical strategy in
``turn.strategy`` plus a gold ``strategy`` label (raw name kept); seeker
``feedback`` (list formats) in turn attrs. Record-level gold labels:
``problem_type`` (case-insensitive, aliases merged, raw kept), ``emotion`` (the
seeker's ``emotion_type`` mapped onto GoEmotions, raw kept) and ``empathy`` (the
seeker's post-chat survey rating of the supporter's empathy, 1-5, when given).
Text is stripped at both ends (the raw format's trailing newlines); inner
whitespace is kept as the file has it.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from curation import vocabularies
from curation.adapters.base import (
    Adapter,
    Rejected,
    check_not_empty,
    display_path,
    hash_split,
    iter_text_lines,
    register,
    require_paths,
    split_from_name,
)
from curation.errors import InputError, SchemaError, UnknownLabelError
from curation.record import Label, Record, Turn, label, make_id, provenance, turn

_AGENT = "esconv"
_SURVEY_AGENT = "esconv:seeker_survey"

_HF_SPEAKERS = {"usr": "seeker", "sys": "supporter"}
# The two JSON-list dialects, told apart by their speaker names.
_JSON_SPEAKERS = {
    "main": {"seeker": "seeker", "supporter": "supporter"},
    "failed": {"speaker": "seeker", "listener": "supporter"},
}
_ID_PREFIX = {"main": "json", "failed": "failed"}

# Fields copied into the record context as they are (all strings in every release).
_CONTEXT_FIELDS = (
    "situation",
    "emotion_type",
    "problem_type",
    "experience_type",
    "seeker_question1",
    "seeker_question2",
    "supporter_question1",
    "supporter_question2",
)
_REQUIRED_FIELDS = ("emotion_type", "problem_type", "dialog")

# Hash-assigned split for the list formats: bucket (0..99) below 70 -> train, below 85 -> validation.
_HASH_SPLIT_RATIOS = (0.70, 0.15, 0.15)

_JSON_LIST_CHUNK = 1 << 16
_LONE_SURROGATE = re.compile("[\udc80-\udcff]")


class _Invalid(Exception):
    """A conversation that cannot become a record; the message is the rejection reason."""


@register
class ESConvAdapter(Adapter):
    name = "esconv"
    version = "1"
    description = (
        "ESConv emotional-support conversations: the HF release (train/valid/test.txt), "
        "ESConv.json and the raw-format FailedESConv.json; strategy, problem type, emotion and "
        "seeker-rated empathy as gold labels."
    )

    def read(self, paths: Sequence[Path]) -> Iterator[Record | Rejected]:
        for given in require_paths(paths):
            if given.is_dir():
                files = self._files_in(given)
                root: Path | None = given
            else:
                files, root = [given], None
            for path in files:
                yield from self._read_file(path, display_path(path, root))

    # ----------------------------------------------------------- file level

    def _files_in(self, directory: Path) -> list[Path]:
        """The ESConv files under a folder: HF split files and the JSON lists.

        ``strategy.json``, READMEs and other files of the releases are skipped.
        """
        chosen = []
        for p in sorted(directory.rglob("*")):
            if not p.is_file():
                continue
            name = p.name.lower()
            if (name.endswith(".txt") and split_from_name(p) is not None) or (
                name.endswith(".json") and "esconv" in name
            ):
                chosen.append(p)
            else:
                self.stats["files_skipped"] += 1
        if not chosen:
            raise InputError(
                "no ESConv files in this folder: expected train.txt / valid.txt / test.txt "
                "(HF release), ESConv.json or FailedESConv.json",
                file=str(directory),
            )
        return chosen

    def _read_file(self, path: Path, display: str) -> Iterator[Record | Rejected]:
        check_not_empty(path, display)
        self.stats["files"] += 1
        with path.open("rb") as stream:
            first, line = _first_char(stream)
            stream.seek(0)
            if first == "{":
                split = split_from_name(path)
                if split is None:
                    raise InputError(
                        "cannot tell the split from the file name: expected train.txt, valid.txt or test.txt "
                        "(a name containing train / valid / test)",
                        file=display,
                    )
                yield from self._read_json_lines(stream, display, split)
            elif first == "[":
                yield from self._read_json_list(stream, display)
            else:
                shown = "nothing but whitespace" if first is None else f"{first!r}"
                raise InputError(
                    "not an ESConv file: expected JSON lines (HF train/valid/test.txt) or a JSON list "
                    f"(ESConv.json, FailedESConv.json), but the file starts with {shown}",
                    file=display,
                    line=line,
                )

    def _read_json_lines(self, stream: BinaryIO, file: str, split: str) -> Iterator[Record | Rejected]:
        seen_dialogue = False
        for n, text in iter_text_lines(stream, file):
            self.stats["lines"] += 1
            if isinstance(text, Rejected):
                yield text
                continue
            if not text.strip():
                self.stats["blank_lines"] += 1
                continue
            try:
                conv = json.loads(text)
            except json.JSONDecodeError as exc:
                yield Rejected(
                    file=file,
                    line=n,
                    reason=f"invalid JSON at column {exc.colno}: {exc.msg} "
                    "(expected one complete ESConv dialogue object per line; truncated?)",
                    raw=text,
                )
                continue
            if not seen_dialogue:
                # The first readable line decides whether this is ESConv at all.
                _check_is_esconv(conv, file=file, line=n)
                seen_dialogue = True
            self.stats["dialogues_read"] += 1
            yield self._record_or_rejected(
                conv,
                split=split,
                native_id=str(n),
                file=file,
                line=n,
                raw=text,
                speakers=_HF_SPEAKERS,
                esconv_set="main",
                split_assigned=None,
            )

    def _read_json_list(self, stream: BinaryIO, file: str) -> Iterator[Record | Rejected]:
        esconv_set: str | None = None
        for item in _iter_json_list(stream, file):
            if isinstance(item, Rejected):
                self.stats["json_errors"] += 1
                yield item
                continue
            self.stats["list_elements"] += 1
            if esconv_set is None:
                _check_is_esconv(item.value, file=file, line=item.line)
                esconv_set = _list_dialect(item.value)
                if esconv_set is None:
                    raise InputError(
                        "cannot tell the ESConv.json format from the speakers of the first conversation: "
                        "expected 'seeker'/'supporter' (ESConv.json) or 'speaker'/'listener' (FailedESConv.json)",
                        file=file,
                        line=item.line,
                    )
            self.stats["dialogues_read"] += 1
            split = _hash_split(item.value)
            yield self._record_or_rejected(
                item.value,
                split=split,
                native_id=f"{_ID_PREFIX[esconv_set]}-{item.index}",
                file=file,
                line=item.line,
                line_end=item.line_end,
                offset=item.offset,
                raw=item.raw,
                speakers=_JSON_SPEAKERS[esconv_set],
                esconv_set=esconv_set,
                split_assigned="hash",
            )

    # ------------------------------------------------------- record level

    def _record_or_rejected(
        self,
        conv: Any,
        *,
        split: str,
        native_id: str,
        file: str,
        line: int,
        raw: str,
        speakers: Mapping[str, str],
        esconv_set: str,
        split_assigned: str | None,
        line_end: int | None = None,
        offset: int | None = None,
    ) -> Record | Rejected:
        record_id = f"{self.name}:{split}:{native_id}"
        try:
            record = self._build(
                conv,
                record_id=make_id(self.name, split, native_id),
                split=split,
                speakers=speakers,
                esconv_set=esconv_set,
                split_assigned=split_assigned,
                prov=provenance(
                    file,
                    adapter=self.name,
                    adapter_version=self.version,
                    line=line,
                    line_end=line_end,
                    offset=offset,
                ),
            )
        except (_Invalid, SchemaError) as exc:
            self.stats["dialogues_rejected"] += 1
            return Rejected(file=file, line=line, record=record_id, reason=str(exc), raw=raw)
        self.stats["records"] += 1
        self.stats["turns"] += len(record["turns"])
        return record

    def _build(
        self,
        conv: Any,
        *,
        record_id: str,
        split: str,
        speakers: Mapping[str, str],
        esconv_set: str,
        split_assigned: str | None,
        prov: Any,
    ) -> Record:
        if not isinstance(conv, dict):
            raise _Invalid(f"expected a dialogue object, got a JSON {type(conv).__name__}")
        missing = [k for k in _REQUIRED_FIELDS if k not in conv]
        if missing:
            raise _Invalid(f"missing field(s) {', '.join(missing)} (expected an ESConv dialogue object)")
        dialog = conv["dialog"]
        if not isinstance(dialog, list) or not dialog:
            raise _Invalid("'dialog' must be a non-empty list of turns")

        context = {"esconv_set": esconv_set}
        for key in _CONTEXT_FIELDS:
            value = conv.get(key)
            if value is None:
                continue
            if not isinstance(value, str):
                raise _Invalid(f"'{key}' must be a string, got {type(value).__name__}")
            context[key] = value
        if split_assigned:
            context["split_assigned"] = split_assigned
        survey = _flatten_survey(conv.get("survey_score"))
        context.update(survey)

        turns: list[Turn] = []
        labels: list[Label] = []
        for i, raw_turn in enumerate(dialog):
            t, strategy_raw = _turn(raw_turn, i, speakers)
            turns.append(t)
            strategy = t["strategy"]
            if strategy is not None:
                labels.append(label("strategy", strategy, source="gold", agent=_AGENT, turn=i, raw=strategy_raw))
                self.stats[f"strategy.{strategy}"] += 1
            self.stats[f"speaker.{t['speaker']}"] += 1

        labels[:0] = _record_labels(conv, survey)
        return {
            "id": record_id,
            "source": self.name,
            "split": split,
            "context": context,
            "turns": turns,
            "labels": labels,
            "provenance": prov,
        }


# ------------------------------------------------------------------ helpers


def _turn(raw: Any, i: int, speakers: Mapping[str, str]) -> tuple[Turn, str | None]:
    """One canonical turn and its raw strategy name, from either the HF or a list format."""
    if not isinstance(raw, dict):
        raise _Invalid(f"turn {i}: expected an object, got a JSON {type(raw).__name__}")
    speaker_raw = raw.get("speaker")
    if speaker_raw not in speakers:
        expected = " or ".join(repr(s) for s in speakers)
        raise _Invalid(f"turn {i}: expected speaker {expected}, got {speaker_raw!r}")
    speaker = speakers[speaker_raw]
    # HF: {"text", "speaker", "strategy"?}; lists: {"content", "speaker", "annotation": {...}}
    text = raw.get("text", raw.get("content"))
    if not isinstance(text, str):
        raise _Invalid(f"turn {i}: expected a string 'text' (HF) or 'content' (ESConv.json), got {text!r:.40}")
    annotation = raw.get("annotation", {})
    if not isinstance(annotation, dict):
        raise _Invalid(f"turn {i}: 'annotation' must be an object, got {annotation!r:.40}")
    strategy_raw = raw.get("strategy", annotation.get("strategy"))
    attrs = {"speaker_raw": speaker_raw}
    for key, value in annotation.items():
        if key == "strategy":
            continue
        if not isinstance(value, str | int):
            raise _Invalid(f"turn {i}: annotation '{key}' must be a string, got {value!r:.40}")
        attrs[key] = str(value)
    strategy = None
    if strategy_raw is not None:
        if speaker != "supporter":
            raise _Invalid(f"turn {i}: a strategy ({strategy_raw!r}) on a seeker turn; expected it on supporter turns")
        if not isinstance(strategy_raw, str):
            raise _Invalid(f"turn {i}: strategy must be a string, got {strategy_raw!r:.40}")
        try:
            strategy = vocabularies.load("strategy").canonical(strategy_raw)
        except UnknownLabelError as exc:
            raise _Invalid(f"turn {i}: unknown strategy: {exc}") from None
    return turn(speaker, text.strip(), strategy=strategy, attrs=attrs), strategy_raw


def _flatten_survey(survey: Any) -> dict[str, str]:
    """``survey_score.{seeker,supporter}.*`` as flat ``survey.seeker.empathy`` strings."""
    if survey is None:
        return {}
    if not isinstance(survey, dict):
        raise _Invalid(f"'survey_score' must be an object, got {survey!r:.40}")
    flat = {}
    for who, scores in survey.items():
        if not isinstance(scores, dict):
            raise _Invalid(f"'survey_score.{who}' must be an object, got {scores!r:.40}")
        for key, value in scores.items():
            if not isinstance(value, str | int) or isinstance(value, bool):
                raise _Invalid(f"'survey_score.{who}.{key}' must be a string, got {value!r:.40}")
            flat[f"survey.{who}.{key}"] = str(value)
    return flat


def _record_labels(conv: dict[str, Any], survey: Mapping[str, str]) -> list[Label]:
    """Gold problem type, emotion (mapped onto GoEmotions) and seeker-rated empathy."""
    problem_raw, emotion_raw = conv["problem_type"], conv["emotion_type"]
    for key, value in (("problem_type", problem_raw), ("emotion_type", emotion_raw)):
        if not isinstance(value, str):
            raise _Invalid(f"'{key}' must be a string, got {value!r:.40}")
    try:
        problem = vocabularies.load("problem_type").canonical(problem_raw)
    except UnknownLabelError as exc:
        raise _Invalid(f"unknown problem_type: {exc}") from None
    try:
        emotion = vocabularies.load("esconv_emotion").map(emotion_raw)
    except UnknownLabelError as exc:
        raise _Invalid(f"unknown emotion_type: {exc}") from None
    labels = [
        label("problem_type", problem, source="gold", agent=_AGENT, raw=problem_raw),
        label("emotion", emotion, source="gold", agent=_AGENT, raw=emotion_raw),
    ]
    empathy = survey.get("survey.seeker.empathy")
    if empathy is not None:
        if empathy.strip() not in {"1", "2", "3", "4", "5"}:
            raise _Invalid(f"'survey_score.seeker.empathy' must be a rating '1'..'5', got {empathy!r}")
        value = empathy.strip()
        labels.append(label("empathy", value, score=float(value), source="gold", agent=_SURVEY_AGENT, raw=empathy))
    return labels


def _check_is_esconv(value: Any, *, file: str, line: int) -> None:
    """The first readable object of a file must look like an ESConv dialogue, else the file is not ESConv."""
    if not isinstance(value, dict) or not isinstance(value.get("dialog"), list):
        got = f"keys {sorted(value)[:6]}" if isinstance(value, dict) else f"a JSON {type(value).__name__}"
        raise InputError(
            f"not ESConv data: expected a dialogue object with a 'dialog' list of turns, got {got}",
            file=file,
            line=line,
        )


def _list_dialect(conv: dict[str, Any]) -> str | None:
    """``main`` (seeker/supporter) or ``failed`` (speaker/listener), from a conversation's speakers."""
    names = {t.get("speaker") for t in conv["dialog"] if isinstance(t, dict)}
    for dialect, speakers in _JSON_SPEAKERS.items():
        if names and names <= speakers.keys():
            return dialect
    return None


def _hash_split(conv: Any) -> str:
    """A stable split for a conversation of a list format, from situation + first turn text."""
    situation, first = "", ""
    if isinstance(conv, dict):
        situation = conv.get("situation") if isinstance(conv.get("situation"), str) else ""
        dialog = conv.get("dialog")
        if isinstance(dialog, list) and dialog and isinstance(dialog[0], dict):
            content = dialog[0].get("content", dialog[0].get("text"))
            first = content.strip() if isinstance(content, str) else ""
    return hash_split(f"{situation}\n{first}", _HASH_SPLIT_RATIOS)


def _first_char(stream: BinaryIO) -> tuple[str | None, int]:
    """The first non-whitespace character of a file (ASCII is enough to tell formats) and its line."""
    line = 1
    head = stream.read(3)
    chunk = head[3:] if head == codecs.BOM_UTF8 else head
    while True:
        for b in chunk:
            if b == 0x0A:
                line += 1
            elif b not in b" \t\r":
                return (chr(b) if b < 0x80 else "\ufffd"), line
        chunk = stream.read(4096)
        if not chunk:
            return None, line


# ------------------------------------------------------- JSON list streaming


@dataclass(frozen=True)
class _ListElement:
    index: int
    value: Any
    raw: str
    line: int
    line_end: int
    offset: int


class _JsonListCursor:
    """A window over a JSON list file that grows on demand and forgets what was consumed.

    Invalid UTF-8 is decoded with ``surrogateescape`` so the element holding it
    can be rejected on its own while the rest of the file is still read.
    """

    def __init__(self, stream: BinaryIO, chunk_size: int) -> None:
        self._stream = stream
        self._chunk_size = chunk_size
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        self.buf = ""
        self.line = 1  # line number of buf[0]
        self.offset = 0  # byte offset of buf[0]
        self.eof = False

    def fill(self, at_least: int = 0) -> bool:
        """Read at least ``at_least`` more bytes; False at end of file."""
        if self.eof:
            return False
        chunk = self._stream.read(max(at_least, self._chunk_size))
        if not chunk:
            self.eof = True
            self.buf += self._decoder.decode(b"", final=True)
            return False
        self.buf += self._decoder.decode(chunk)
        return True

    def skip_ws(self) -> str | None:
        """Drop whitespace; the next character, or None at end of file."""
        while True:
            stripped = self.buf.lstrip(" \t\r\n\ufeff")
            self.consume(len(self.buf) - len(stripped))
            if self.buf:
                return self.buf[0]
            if not self.fill():
                return None

    def consume(self, n: int) -> str:
        taken, self.buf = self.buf[:n], self.buf[n:]
        self.line += taken.count("\n")
        self.offset += len(taken.encode("utf-8", "surrogateescape"))
        return taken


def _iter_json_list(
    stream: BinaryIO, file: str, *, chunk_size: int = _JSON_LIST_CHUNK
) -> Iterator[_ListElement | Rejected]:
    """Yield the elements of a top-level JSON list one at a time, with their lines and byte offsets.

    A broken element (truncated file, syntax error) ends the file with one
    :class:`Rejected` that names where the element starts and where parsing failed.
    """
    decoder = json.JSONDecoder()
    cur = _JsonListCursor(stream, chunk_size)
    if cur.skip_ws() != "[":
        raise InputError("expected a JSON list starting with '['", file=file, line=cur.line)
    cur.consume(1)
    index = 0
    while True:
        nxt = cur.skip_ws()
        if nxt is None:
            yield Rejected(
                file=file,
                line=cur.line,
                reason=f"the file ends after {index} list element(s) without the closing ']' (truncated?)",
            )
            return
        if nxt == "]" and index == 0:
            cur.consume(1)
            break
        start_line, start_offset = cur.line, cur.offset
        while True:
            try:
                value, end = decoder.raw_decode(cur.buf)
            except json.JSONDecodeError as exc:
                if cur.fill(len(cur.buf)):  # more data may complete it; grow geometrically
                    continue
                yield Rejected(
                    file=file,
                    line=start_line,
                    reason=(
                        f"list element {index} starting at line {start_line} (byte offset {start_offset}) "
                        f"is not valid JSON: {exc.msg} at line {start_line + exc.lineno - 1} "
                        "(truncated file?); nothing after it can be read"
                    ),
                    raw=cur.buf[:2000],
                )
                return
            if end == len(cur.buf) and cur.fill():
                continue  # a scalar cut at the window's edge; read on and decode again
            break
        raw = cur.consume(end)
        if _LONE_SURROGATE.search(raw):
            yield Rejected(
                file=file,
                line=start_line,
                reason=f"list element {index} has bytes that are not UTF-8 (expected UTF-8 text)",
                raw=raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
            )
        else:
            yield _ListElement(index, value, raw, start_line, start_line + raw.count("\n"), start_offset)
        index += 1
        sep = cur.skip_ws()
        if sep == ",":
            cur.consume(1)
            continue
        if sep == "]":
            cur.consume(1)
            break
        if sep is None:
            end_line = start_line + raw.count("\n")
            yield Rejected(
                file=file,
                line=end_line,
                reason=f"the file ends after list element {index - 1} (line {end_line}) without the closing ']' "
                "(truncated?)",
            )
            return
        yield Rejected(
            file=file,
            line=cur.line,
            reason=f"expected ',' or ']' after list element {index - 1}, got {sep!r}",
            raw=cur.buf[:200],
        )
        return
    trailing = cur.skip_ws()
    if trailing is not None:
        yield Rejected(
            file=file,
            line=cur.line,
            reason=f"unexpected {trailing!r} after the closing ']' of the list",
            raw=cur.buf[:200],
        )
