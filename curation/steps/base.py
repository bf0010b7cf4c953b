"""What every curation step shares.

A step is a small class with a config dataclass and a pure method over records,
in datatrove's spirit: records in, records out, counters kept, dropped rows
kept with their reason. Two kinds:

* :class:`RecordStep` (normalise, filter, mask): looks at one record at a time.
  ``process(record, counters)`` returns the record (possibly changed) or a
  :class:`Dropped`. Pure, so batches can go to worker processes or to Ray Data's
  ``map_batches`` unchanged.
* :class:`GlobalStep` (dedup, leak-free splits): needs to see every record
  before deciding. Three pure phases:
  ``signature(record)`` -> a small row (per record, parallel), then
  ``decide(signatures)`` -> :class:`Decisions` (once, on the driver, over the
  signature table only: never the full records), then
  ``apply(record, verdict)`` -> record or :class:`Dropped` (per record, parallel).

Configs are dataclasses whose fields carry help text and bounds
(:func:`option`); :meth:`StepConfig.from_dict` rejects unknown keys and bad
values naming the key, as the CLI's ``--list-steps`` documents them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import types
import typing
from collections import Counter
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from curation.errors import WorkbenchError
from curation.record import Record


class ConfigError(WorkbenchError):
    """A curation config that cannot be used; names the step and the key."""


@dataclass(frozen=True)
class Dropped:
    """A record a step removed: a short machine ``reason`` and a human ``detail``."""

    record: Record
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class Verdict:
    """What a global step decided for one record: drop it, move it to another split, or change nothing."""

    drop: str | None = None  # reason
    split: str | None = None  # new split
    detail: str = ""


class Verdicts(MutableMapping[str, Verdict]):
    """Verdicts by record id: a mapping, kept compact for the bulk of a dedup step's drops.

    Verdicts set one by one (``verdicts[id] = Verdict(...)``) live in a dict. A step that drops many
    records at once (dedup: one per duplicate) adds them with :meth:`add_drops` as columns: the ids,
    the kept copies' ids and the similarities in Arrow and numpy, one reason and one detail template.
    Such a drop costs ~60 bytes instead of the ~500 of a dict entry, an id string, a ``Verdict`` and
    its detail string; the ``Verdict`` is made when it is looked up. Looking up goes through a
    stable 64-bit hash of the id (the same in every process: the mapping pickles to Ray workers).
    """

    def __init__(self, items: Mapping[str, Verdict] | None = None) -> None:
        self._one: dict[str, Verdict] = dict(items or {})
        self._blocks: list[_DropBlock] = []
        self._hidden: set[str] = set()  # block ids deleted or overridden by ``_one``

    def add_drops(self, ids: pa.Array, *, reason: str, detail: str, kept_ids: pa.Array, similarity: np.ndarray) -> None:
        """Drop each of ``ids`` for ``reason``; its detail is ``detail.format(sim=similarity[i], kept=kept_ids[i])``.

        The ids must be new to this mapping and distinct.
        """
        if len(ids) == 0:
            return
        ids, kept_ids = _flat(ids), _flat(kept_ids)
        hashes = _id_hashes(ids)
        order = np.argsort(hashes, kind="stable")
        self._blocks.append(
            _DropBlock(
                hashes=hashes[order],
                order=order.astype(np.int32 if len(ids) < 2**31 else np.int64),
                ids=ids,
                kept_ids=kept_ids,
                similarity=np.asarray(similarity, dtype=np.float64),
                reason=reason,
                detail=detail,
            )
        )

    def _find(self, key: str) -> Verdict | None:
        if not self._blocks:
            return None
        h = _id_hashes([key])[0]
        for block in self._blocks:
            found = block.lookup(int(np.searchsorted(block.hashes, h)), h, key)
            if found is not None:
                return found
        return None

    def __getitem__(self, key: str) -> Verdict:
        found = self._one.get(key)
        if found is None and key not in self._hidden:
            found = self._find(key)
        if found is None:
            raise KeyError(key)
        return found

    def get_many(self, keys: Sequence[str]) -> list[Verdict | None]:
        """The verdict of each id (None where there is none), for a batch of records at once."""
        out: list[Verdict | None] = [self._one.get(k) for k in keys]
        if not self._blocks or not keys:
            return out
        hashes = _id_hashes(keys)
        for block in self._blocks:
            at = np.searchsorted(block.hashes, hashes)
            last = block.hashes.size - 1
            hit = np.flatnonzero((at <= last) & (block.hashes[np.minimum(at, last)] == hashes))
            for i in hit.tolist():
                if out[i] is not None or keys[i] in self._hidden:
                    continue
                out[i] = block.lookup(int(at[i]), hashes[i], keys[i])
        return out

    def __setitem__(self, key: str, value: Verdict) -> None:
        if self._blocks:
            self._hidden.add(key)
        self._one[key] = value

    def __delitem__(self, key: str) -> None:
        if key in self._one:
            del self._one[key]
        elif key in self._hidden or self._find(key) is None:
            raise KeyError(key)
        self._hidden.add(key)

    def __iter__(self) -> Iterator[str]:
        yield from self._one
        for block in self._blocks:
            for chunk in _chunks(block.ids):
                for key in chunk.to_pylist():
                    if key not in self._hidden:
                        yield key

    def __len__(self) -> int:
        if not self._hidden:
            return len(self._one) + sum(b.hashes.size for b in self._blocks)
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"Verdicts({len(self)} verdicts)"


@dataclass(frozen=True)
class _DropBlock:
    """Drops in columns; ``hashes`` sorted, ``order[j]`` the row of the j-th smallest hash."""

    hashes: np.ndarray  # uint64, sorted
    order: np.ndarray
    ids: pa.Array
    kept_ids: pa.Array
    similarity: np.ndarray
    reason: str
    detail: str

    def lookup(self, j: int, h: np.uint64, key: str) -> Verdict | None:
        """The verdict of ``key`` (hash ``h``), scanning the run of equal hashes from sorted position ``j``."""
        while j < self.hashes.size and self.hashes[j] == h:
            row = int(self.order[j])
            if self.ids[row].as_py() == key:
                detail = self.detail.format(sim=float(self.similarity[row]), kept=self.kept_ids[row].as_py())
                return Verdict(drop=self.reason, detail=detail)
            j += 1
        return None


def _id_hashes(ids: Sequence[str] | pa.Array) -> np.ndarray:
    """A stable 64-bit hash of each id (BLAKE2b), as uint64: the same in every process and run."""
    blake = hashlib.blake2b
    chunks = _chunks(ids) if isinstance(ids, pa.Array | pa.ChunkedArray) else [ids]
    parts = [
        np.fromiter(
            (
                int.from_bytes(blake(k.encode(), digest_size=8).digest(), "little")
                for k in (c.to_pylist() if isinstance(c, pa.Array | pa.ChunkedArray) else c)
            ),
            dtype=np.uint64,
        )
        for c in chunks
    ]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)


def _flat(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(array, pa.ChunkedArray):
        return array.chunk(0) if array.num_chunks == 1 else array.combine_chunks()
    return array


def _chunks(array: pa.Array | pa.ChunkedArray, size: int = 8_192) -> Iterator[pa.Array]:
    """Slices of an Arrow array, so that only ``size`` of its values are Python objects at a time."""
    for start in range(0, len(array), size):
        yield array.slice(start, size)


@dataclass
class Decisions:
    """The outcome of :meth:`GlobalStep.decide`: verdicts by record id, report tables, counters."""

    verdicts: Verdicts = field(default_factory=Verdicts)
    artifacts: dict[str, pa.Table] = field(default_factory=dict)
    counters: Counter[str] = field(default_factory=Counter)


def option(
    default: Any,
    help: str,
    *,
    min: float | None = None,
    max: float | None = None,
    choices: Sequence[Any] | None = None,
) -> Any:
    """A config field with help text and bounds, checked by :meth:`StepConfig.check`."""
    meta = {"help": help, "min": min, "max": max, "choices": tuple(choices) if choices else None}
    if isinstance(default, list | dict | set):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class StepConfig:
    """Base of step configs: frozen dataclasses of plain values (TOML-friendly, hashable into ids)."""

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Type, bounds and choices of every field; subclasses add cross-field checks (call super)."""
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            expected = hints[f.name]
            if not _type_ok(value, expected):
                raise ConfigError(f"{f.name!r}: expected {_type_name(expected)}, got {value!r}")
            lo, hi, choices = f.metadata.get("min"), f.metadata.get("max"), f.metadata.get("choices")
            items = value if isinstance(value, list | tuple) else [value]
            for v in items:
                if isinstance(v, int | float) and not isinstance(v, bool):
                    if lo is not None and v < lo:
                        raise ConfigError(f"{f.name!r}: {v} is below the minimum {lo}")
                    if hi is not None and v > hi:
                        raise ConfigError(f"{f.name!r}: {v} is above the maximum {hi}")
                if choices is not None and v not in choices:
                    raise ConfigError(f"{f.name!r}: {v!r} is not one of {', '.join(map(repr, choices))}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown key {unknown[0]!r} (expected: {', '.join(sorted(names)) or 'none'})")
        hints = typing.get_type_hints(cls)
        values = {k: (list(v) if isinstance(v, tuple) else v) for k, v in data.items()}
        for k, v in values.items():
            if _origin(hints[k]) is tuple and isinstance(v, list):
                values[k] = tuple(v)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """Each option: name, type, default, help, bounds (for ``--list-steps``)."""
        hints = typing.get_type_hints(cls)
        out = []
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            out.append(
                {
                    "name": f.name,
                    "type": _type_name(hints[f.name]),
                    "default": _plain(default),
                    "help": f.metadata.get("help", ""),
                    "min": f.metadata.get("min"),
                    "max": f.metadata.get("max"),
                    "choices": f.metadata.get("choices"),
                }
            )
        return out


class Step:
    """Base of all steps. Subclasses set ``name``, ``description`` and ``Config``."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    Config: ClassVar[type[StepConfig]] = StepConfig

    def __init__(self, config: StepConfig | None = None) -> None:
        self.config = config if config is not None else self.Config()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"


class RecordStep(Step):
    """A step that decides about each record on its own (map / filter)."""

    def process(self, record: Record, counters: Counter[str]) -> Record | Dropped:
        raise NotImplementedError

    def process_batch(self, records: Sequence[Record]) -> tuple[list[Record | Dropped], Counter[str]]:
        counters: Counter[str] = Counter()
        return [self.process(r, counters) for r in records], counters


class GlobalStep(Step):
    """A step that decides after seeing every record's signature (dedup, split resolution)."""

    #: Arrow schema of the rows :meth:`signature` returns (kept compact: ids, hashes, splits).
    signature_schema: ClassVar[pa.Schema]

    def signature(self, record: Record) -> dict[str, Any] | None:
        """A small row describing the record, or None to leave it out of the decision."""
        raise NotImplementedError

    def signatures_batch(self, records: Sequence[Record]) -> pa.Table:
        rows = [s for s in (self.signature(r) for r in records) if s is not None]
        return pa.Table.from_pylist(rows, schema=self.signature_schema)

    def decide(self, signatures: pa.Table) -> Decisions:
        raise NotImplementedError

    def spill(self, signatures: pa.Table) -> tuple[pa.Table, np.ndarray | None]:
        """Split off the bulky part of a signature batch (a MinHash matrix) for the engine to keep on disk.

        Returns the rest of the table and the matrix (rows in table order), or ``(signatures, None)`` when
        the step keeps everything in memory. A step that spills takes the matrix back as
        ``decide(table, minhash=SpilledMatrix)``.
        """
        return signatures, None

    def apply(self, record: Record, verdict: Verdict | None) -> Record | Dropped:
        """Default: drop with the verdict's reason, move split, or pass through."""
        if verdict is None:
            return record
        if verdict.drop:
            return Dropped(record, verdict.drop, verdict.detail)
        if verdict.split and verdict.split != record["split"]:
            return {**record, "split": verdict.split}
        return record


_STEPS: dict[str, type[Step]] = {}


def register_step(cls: type[Step]) -> type[Step]:
    if cls.name in _STEPS:
        raise WorkbenchError(f"two steps named {cls.name!r}")
    _STEPS[cls.name] = cls
    return cls


def steps_registry() -> dict[str, type[Step]]:
    import curation.steps  # noqa: F401  (each step module registers itself on import)

    return dict(sorted(_STEPS.items()))


# ------------------------------------------------------------------ helpers


def _origin(tp: Any) -> Any:
    return typing.get_origin(tp) or tp


def _type_ok(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin in (list, tuple):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return isinstance(value, list | tuple) and all(_type_ok(v, args[0]) for v in value) if args else True
    if origin is dict:
        return isinstance(value, dict)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return f"list of {_type_name(args[0])}" if args else "list"
    return getattr(tp, "__name__", str(tp)).replace("NoneType", "none")


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
