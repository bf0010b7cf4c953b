"""The canonical record: one conversation or document, from any source.

Records are plain dicts shaped by :data:`RECORD_SCHEMA` (an explicit Arrow
schema), so a batch of them is a ``pyarrow.Table`` and every step can run over
Parquet shards on one machine or on Ray Data. :func:`validate_record` rejects a
record that does not fit, naming the field.

Shape::

    id          "source:split:native_id" -- deterministic; the split is the
                source's original one and never changes, even if curation moves
                the record (the ``split`` field)
    source      adapter name ("dailydialog", ...)
    split       "train" | "validation" | "test"
    context     {str: str}: situation, prompt, topic, problem_type, ... as the source gives
    turns       [{speaker, text, emotion?, act?, strategy?, attrs{str: str}}]
    labels      [{task, value, score?, source, agent, created_at?, turn?, raw?, attrs{str: str}}]
    provenance  {file, line?, line_end?, offset?, adapter, adapter_version, synthetic, generator?}
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from functools import cache
from typing import Any, Literal, TypedDict

import pyarrow as pa

from curation import vocabularies
from curation.errors import SchemaError, UnknownLabelError

SCHEMA_VERSION = 1

SPLITS = ("train", "validation", "test")
LABEL_SOURCES = ("gold", "llm", "human", "model")

LabelSource = Literal["gold", "llm", "human", "model"]

_STR_MAP = pa.map_(pa.string(), pa.string())

TURN_TYPE = pa.struct(
    [
        pa.field("speaker", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("emotion", pa.string()),
        pa.field("act", pa.string()),
        pa.field("strategy", pa.string()),
        pa.field("attrs", _STR_MAP),
    ]
)

LABEL_TYPE = pa.struct(
    [
        pa.field("task", pa.string(), nullable=False),
        pa.field("value", pa.string(), nullable=False),
        pa.field("score", pa.float64()),
        pa.field("source", pa.string(), nullable=False),
        pa.field("agent", pa.string(), nullable=False),
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
        pa.field("turn", pa.int32()),
        pa.field("raw", pa.string()),
        pa.field("attrs", _STR_MAP),
    ]
)

PROVENANCE_TYPE = pa.struct(
    [
        pa.field("file", pa.string(), nullable=False),
        pa.field("line", pa.int64()),
        pa.field("line_end", pa.int64()),
        pa.field("offset", pa.int64()),
        pa.field("adapter", pa.string(), nullable=False),
        pa.field("adapter_version", pa.string(), nullable=False),
        pa.field("synthetic", pa.bool_(), nullable=False),
        pa.field("generator", pa.string()),
    ]
)

RECORD_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("context", _STR_MAP),
        pa.field("turns", pa.list_(pa.field("item", TURN_TYPE, nullable=False)), nullable=False),
        pa.field("labels", pa.list_(pa.field("item", LABEL_TYPE, nullable=False)), nullable=False),
        pa.field("provenance", PROVENANCE_TYPE, nullable=False),
    ],
    metadata={"workbench.schema_version": str(SCHEMA_VERSION)},
)


class Turn(TypedDict, total=False):
    speaker: str
    text: str
    emotion: str | None
    act: str | None
    strategy: str | None
    attrs: dict[str, str]


class Label(TypedDict, total=False):
    task: str
    value: str
    score: float | None
    source: LabelSource
    agent: str
    created_at: datetime | None
    turn: int | None
    raw: str | None
    attrs: dict[str, str]


class Provenance(TypedDict, total=False):
    file: str
    line: int | None
    line_end: int | None
    offset: int | None
    adapter: str
    adapter_version: str
    synthetic: bool
    generator: str | None


class Record(TypedDict):
    id: str
    source: str
    split: str
    context: dict[str, str]
    turns: list[Turn]
    labels: list[Label]
    provenance: Provenance


_NATIVE_ID = re.compile(r"\S+")


def make_id(source: str, split: str, native_id: str | int) -> str:
    """The deterministic record id ``source:split:native_id``."""
    native = str(native_id)
    if not _NATIVE_ID.fullmatch(native):
        raise SchemaError(f"native id must be non-empty with no whitespace, got {native!r}", field="id")
    return f"{source}:{split}:{native}"


def turn(
    speaker: str,
    text: str,
    *,
    emotion: str | None = None,
    act: str | None = None,
    strategy: str | None = None,
    attrs: Mapping[str, str] | None = None,
) -> Turn:
    """Build a turn; per-turn annotations are canonical labels (raw ones go in ``attrs``)."""
    return {
        "speaker": speaker,
        "text": text,
        "emotion": emotion,
        "act": act,
        "strategy": strategy,
        "attrs": dict(attrs or {}),
    }


def label(
    task: str,
    value: str,
    *,
    source: LabelSource,
    agent: str,
    score: float | None = None,
    turn: int | None = None,
    raw: str | None = None,
    created_at: datetime | None = None,
    attrs: Mapping[str, str] | None = None,
) -> Label:
    """Build a label. ``raw`` keeps the source's original label beside the mapped ``value``.

    Gold labels carry no ``created_at``: the dataset does not say when they were
    made, and a timestamp of ingestion would make identical data hash differently.
    """
    return {
        "task": task,
        "value": value,
        "score": score,
        "source": source,
        "agent": agent,
        "created_at": created_at,
        "turn": turn,
        "raw": raw,
        "attrs": dict(attrs or {}),
    }


def provenance(
    file: str,
    *,
    adapter: str,
    adapter_version: str,
    line: int | None = None,
    line_end: int | None = None,
    offset: int | None = None,
    synthetic: bool = False,
    generator: str | None = None,
) -> Provenance:
    return {
        "file": file,
        "line": line,
        "line_end": line_end,
        "offset": offset,
        "adapter": adapter,
        "adapter_version": adapter_version,
        "synthetic": synthetic,
        "generator": generator,
    }


# ---------------------------------------------------------------- validation

_SCALARS: dict[pa.DataType, tuple[type, ...]] = {
    pa.string(): (str,),
    pa.float64(): (float, int),
    pa.int32(): (int,),
    pa.int64(): (int,),
    pa.bool_(): (bool,),
    pa.timestamp("us", tz="UTC"): (datetime,),
}


def validate_record(record: Mapping[str, Any]) -> None:
    """Check a record against :data:`RECORD_SCHEMA` and the record invariants.

    Raises :class:`SchemaError` naming the first offending field (a dotted
    path such as ``turns[3].text``).
    """
    if not isinstance(record, Mapping):
        raise SchemaError(f"expected a mapping, got {type(record).__name__}", field="<record>")
    rid = record.get("id")
    rid = rid if isinstance(rid, str) else None
    if not _RECORD_OK(record):
        # Slow path only on failure: walk again, tracking the path, to name the field.
        _check_struct(record, RECORD_SCHEMA, "", rid)
    if record["split"] not in SPLITS:
        raise SchemaError(f"expected one of {SPLITS}, got {record['split']!r}", field="split", record_id=rid)
    parts = record["id"].split(":", 2)
    if len(parts) != 3 or parts[0] != record["source"] or not parts[2]:
        raise SchemaError(
            f"expected 'source:split:native_id' starting with {record['source']!r}, got {record['id']!r}",
            field="id",
            record_id=rid,
        )
    if parts[1] not in SPLITS:
        raise SchemaError(f"split part of the id must be one of {SPLITS}", field="id", record_id=rid)
    if not record["turns"]:
        raise SchemaError("a record has at least one turn", field="turns", record_id=rid)
    n_turns = len(record["turns"])
    task_labels = _task_labels()
    for i, lab in enumerate(record["labels"]):
        where = f"labels[{i}]"
        if lab["source"] not in LABEL_SOURCES:
            raise SchemaError(
                f"expected one of {LABEL_SOURCES}, got {lab['source']!r}", field=f"{where}.source", record_id=rid
            )
        t = lab.get("turn")
        if t is not None and not 0 <= t < n_turns:
            raise SchemaError(f"turn index {t} outside 0..{n_turns - 1}", field=f"{where}.turn", record_id=rid)
        score = lab.get("score")
        if score is not None and not math.isfinite(score):
            raise SchemaError("score must be finite", field=f"{where}.score", record_id=rid)
        known = task_labels.get(lab["task"])
        if known is not None and lab["value"] not in known:
            exc = UnknownLabelError(lab["task"], lab["value"], vocabularies.load(lab["task"]).labels)
            raise SchemaError(str(exc), field=f"{where}.value", record_id=rid)
    for i, t in enumerate(record["turns"]):
        for key in ("emotion", "act", "strategy"):
            value = t.get(key)
            if value is not None and value not in task_labels[key]:
                raise SchemaError(f"{value!r} is not in vocabulary {key!r}", field=f"turns[{i}].{key}", record_id=rid)


@cache
def _task_labels() -> dict[str, frozenset[str]]:
    return {task: frozenset(vocabularies.load(task).labels) for task in vocabularies.TASK_VOCABULARIES}


def _compile(t: pa.DataType, nullable: bool) -> Callable[[Any], bool]:
    """A predicate that is true when a Python value fits Arrow type ``t`` (no messages: the fast path)."""
    if pa.types.is_struct(t):
        fields = [(f.name, _compile(f.type, f.nullable)) for f in t]
        names = frozenset(name for name, _ in fields)

        def check(v: Any) -> bool:
            return isinstance(v, Mapping) and names.issuperset(v) and all(ok(v.get(n)) for n, ok in fields)

    elif pa.types.is_map(t):

        def check(v: Any) -> bool:
            return isinstance(v, Mapping) and all(type(k) is str and type(x) is str for k, x in v.items())

    elif pa.types.is_list(t):
        item = _compile(t.value_type, t.value_field.nullable)

        def check(v: Any) -> bool:
            return isinstance(v, list | tuple) and all(item(x) for x in v)

    else:
        allowed = _SCALARS[t]
        if t == pa.timestamp("us", tz="UTC"):

            def check(v: Any) -> bool:
                return isinstance(v, datetime) and v.tzinfo is not None

        elif bool in allowed:

            def check(v: Any) -> bool:
                return type(v) is bool

        else:

            def check(v: Any) -> bool:
                return isinstance(v, allowed) and type(v) is not bool

    if nullable:
        return lambda v: v is None or check(v)
    return check


def _check_struct(value: Mapping[str, Any], fields: Iterable[pa.Field], path: str, rid: str | None) -> None:
    names = set()
    for f in fields:
        names.add(f.name)
        _check_value(value.get(f.name), f, f"{path}{f.name}", rid)
    extra = sorted(set(value) - names)
    if extra:
        raise SchemaError("not part of the schema", field=f"{path}{extra[0]}", record_id=rid)


def _check_value(value: Any, f: pa.Field, path: str, rid: str | None) -> None:
    if value is None:
        if not f.nullable:
            raise SchemaError("required, got nothing", field=path, record_id=rid)
        return
    t = f.type
    if pa.types.is_struct(t):
        if not isinstance(value, Mapping):
            raise SchemaError(f"expected a mapping, got {type(value).__name__}", field=path, record_id=rid)
        _check_struct(value, t, f"{path}.", rid)
    elif pa.types.is_map(t):
        if not isinstance(value, Mapping):
            raise SchemaError(f"expected a mapping of strings, got {type(value).__name__}", field=path, record_id=rid)
        for k, v in value.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise SchemaError(f"expected str -> str, got {k!r}: {v!r}", field=f"{path}.{k}", record_id=rid)
    elif pa.types.is_list(t):
        if not isinstance(value, Sequence) or isinstance(value, str | bytes):
            raise SchemaError(f"expected a list, got {type(value).__name__}", field=path, record_id=rid)
        item = t.value_field
        for i, v in enumerate(value):
            _check_value(v, item, f"{path}[{i}]", rid)
    else:
        allowed = _SCALARS[t]
        if not isinstance(value, allowed) or (bool not in allowed and isinstance(value, bool)):
            raise SchemaError(f"expected {t}, got {type(value).__name__} {value!r:.40}", field=path, record_id=rid)
        if isinstance(value, datetime) and value.tzinfo is None:
            raise SchemaError("timestamps must be timezone-aware (UTC)", field=path, record_id=rid)


_RECORD_OK = _compile(pa.struct(list(RECORD_SCHEMA)), False)


def text_of(record: Mapping[str, Any]) -> str:
    """The record's text: its turns joined by newlines (what dedup, filters and language checks read)."""
    return "\n".join(t["text"] for t in record["turns"])


def to_table(records: Sequence[Mapping[str, Any]]) -> pa.Table:
    """A batch of (validated) records as an Arrow table with the canonical schema."""
    return pa.Table.from_pylist(list(records), schema=RECORD_SCHEMA)


def from_batch(batch: pa.RecordBatch | pa.Table) -> list[Record]:
    """Arrow rows back to record dicts (maps become dicts).

    Plain ``to_pylist`` (maps as key/value pairs) plus a dict() per map is about
    twice as fast as pyarrow's ``maps_as_pydicts="strict"``.
    """
    rows = batch.to_pylist()
    names = set(batch.schema.names)
    context, turns, labels = "context" in names, "turns" in names, "labels" in names  # a column subset is fine
    for row in rows:
        if context and row["context"] is not None:
            row["context"] = dict(row["context"])
        for t in row["turns"] if turns else ():
            if t["attrs"] is not None:
                t["attrs"] = dict(t["attrs"])
        for lab in row["labels"] if labels else ():
            if lab["attrs"] is not None:
                lab["attrs"] = dict(lab["attrs"])
    return rows  # type: ignore[return-value]
