"""Reading a snapshot to look at it: paged, filtered, column-projected records, lineage and distributions.

What the dashboard shows comes from here (and from the modules the CLI uses), so
every number on screen is one a test can recompute. Snapshots are immutable, so
each function is a pure function of the store, a snapshot id and its arguments:
callers may cache results on the snapshot id.

Reads stay small on any snapshot size:

- :func:`matching_rows` reads only the columns a filter needs (``source`` and
  ``split``; the ``task`` / ``value`` / ``source`` fields of the labels for a
  label filter; the turns' ``text`` for a search) and returns row positions;
- :func:`read_rows` then reads only the Parquet row groups holding those rows,
  and only the columns asked for;
- :func:`label_counts`, :func:`distribution_change` and :func:`lineage` read
  manifests alone; :func:`score_histograms` reads four fields of the labels.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.errors import WorkbenchError
from curation.record import LABEL_SOURCES, RECORD_SCHEMA, SPLITS
from curation.store import SnapshotStore

RECORD_COLUMNS = tuple(RECORD_SCHEMA.names)
#: The label fields agreement and audit read (no ``attrs``: explanations can be long).
LABEL_FIELDS = ("task", "value", "score", "source", "agent", "turn")
#: Score tasks and the integer scale their histograms use (the validation suite's default scales).
SCORE_SCALES = {"empathy": (1, 5), "trait.*": (1, 10)}


class BrowseError(WorkbenchError):
    """A bad argument to a browse function (unknown column, page out of range, ...)."""


# ------------------------------------------------------------------ filters


@dataclass(frozen=True)
class RecordFilter:
    """Which records to show; every field narrows (``None`` = any).

    ``task`` / ``value`` / ``label_source`` select records with at least one
    label that matches all three given fields; ``text`` is a case-insensitive
    substring of any turn's text or of the record id.
    """

    source: str | None = None
    split: str | None = None
    task: str | None = None
    value: str | None = None
    label_source: str | None = None
    text: str | None = None

    def __post_init__(self) -> None:
        if self.split is not None and self.split not in SPLITS:
            raise BrowseError(f"filter split: expected one of {SPLITS}, got {self.split!r}")
        if self.label_source is not None and self.label_source not in LABEL_SOURCES:
            raise BrowseError(f"filter label_source: expected one of {LABEL_SOURCES}, got {self.label_source!r}")
        if self.value is not None and self.task is None:
            raise BrowseError("filter value: name the task too (a value means nothing without its task)")
        if self.text is not None and not self.text.strip():
            object.__setattr__(self, "text", None)

    @property
    def is_empty(self) -> bool:
        return all(v is None for v in (self.source, self.split, self.task, self.value, self.label_source, self.text))

    def columns(self) -> list[str]:
        """The Parquet column paths this filter reads."""
        cols = ["id", "source", "split"]
        label_fields = [f for f, v in (("task", self.task), ("value", self.value), ("source", self.label_source)) if v]
        cols += [f"labels.list.element.{f}" for f in label_fields]
        if self.text:
            cols.append("turns.list.element.text")
        return cols


@dataclass(frozen=True)
class RecordPage:
    records: list[dict[str, Any]]
    total: int  # records matching the filter
    page: int  # 0-based
    page_size: int
    rows: list[int] = field(default_factory=list)  # the records' positions in the snapshot

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.page_size))


def _any_per_row(list_array: pa.ListArray | pa.ChunkedArray, item_mask: pa.Array, n: int) -> np.ndarray:
    """True for each of ``n`` rows where any list item satisfies ``item_mask`` (over the flattened items)."""
    parents = pc.list_parent_indices(list_array).to_numpy(zero_copy_only=False)
    hit = np.asarray(item_mask.to_numpy(zero_copy_only=False), dtype=bool)
    return np.bincount(parents[hit], minlength=n) > 0


def _batch_mask(batch: pa.RecordBatch, flt: RecordFilter) -> np.ndarray:
    n = batch.num_rows
    mask = np.ones(n, dtype=bool)
    if flt.source is not None:
        mask &= pc.equal(batch.column("source"), flt.source).to_numpy(zero_copy_only=False)
    if flt.split is not None:
        mask &= pc.equal(batch.column("split"), flt.split).to_numpy(zero_copy_only=False)
    if flt.task or flt.value or flt.label_source:
        labels = batch.column("labels")
        items = pc.list_flatten(labels)
        item_mask = pa.array(np.ones(len(items), dtype=bool))
        for name, wanted in (("task", flt.task), ("value", flt.value), ("source", flt.label_source)):
            if wanted is not None:
                item_mask = pc.and_(item_mask, pc.equal(pc.struct_field(items, name), wanted))
        mask &= _any_per_row(labels, item_mask, n)
    if flt.text:
        turns = batch.column("turns")
        texts = pc.struct_field(pc.list_flatten(turns), "text")
        in_turns = _any_per_row(turns, pc.match_substring(texts, flt.text, ignore_case=True), n)
        in_id = pc.match_substring(batch.column("id"), flt.text, ignore_case=True).to_numpy(zero_copy_only=False)
        mask &= in_turns | in_id
    return mask


def matching_rows(store: SnapshotStore, ref: str, flt: RecordFilter | None = None) -> np.ndarray:
    """Positions (0-based, in snapshot order) of the records that match ``flt``, reading only what it needs."""
    flt = flt or RecordFilter()
    parts = []
    offset = 0
    for batch in store.iter_batches(ref, columns=flt.columns(), batch_size=8192):
        if flt.is_empty:
            parts.append(np.arange(offset, offset + batch.num_rows, dtype=np.int64))
        else:
            parts.append(np.flatnonzero(_batch_mask(batch, flt)).astype(np.int64) + offset)
        offset += batch.num_rows
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


# ------------------------------------------------------------------ reading rows


def _check_columns(columns: Sequence[str] | None) -> list[str]:
    cols = list(columns) if columns else list(RECORD_COLUMNS)
    unknown = [c for c in cols if c.split(".", 1)[0] not in RECORD_COLUMNS]
    if unknown:
        raise BrowseError(f"unknown column {unknown[0]!r} (record columns: {', '.join(RECORD_COLUMNS)})")
    return cols


def _rows_to_dicts(table: pa.Table) -> list[dict[str, Any]]:
    """Arrow rows as dicts, maps as dicts (as :func:`curation.record.from_batch`, for any column subset)."""
    rows = table.to_pylist()
    for row in rows:
        if row.get("context") is not None:
            row["context"] = dict(row["context"])
        for key in ("turns", "labels"):
            for item in row.get(key) or ():
                if item.get("attrs") is not None:
                    item["attrs"] = dict(item["attrs"])
    return rows


def read_rows(
    store: SnapshotStore, ref: str, rows: Sequence[int] | np.ndarray, *, columns: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """The records at positions ``rows`` (in that order), reading only their row groups and ``columns``."""
    cols = _check_columns(columns)
    wanted = np.asarray(rows, dtype=np.int64)
    if wanted.size == 0:
        return []
    sid = store.resolve(ref)
    total = store.manifest(sid)["rows"]
    if wanted.min() < 0 or wanted.max() >= total:
        raise BrowseError(f"row {int(wanted.max())} outside 0..{total - 1} of snapshot {sid}")
    return _rows_to_dicts(store.read_positions(sid, wanted, columns=cols))


def read_page(
    store: SnapshotStore,
    ref: str,
    flt: RecordFilter | None = None,
    *,
    page: int = 0,
    page_size: int = 20,
    columns: Sequence[str] | None = None,
    rows: np.ndarray | None = None,
) -> RecordPage:
    """Page ``page`` (0-based) of the records matching ``flt``; pass ``rows`` (from :func:`matching_rows`) to reuse."""
    if page_size < 1:
        raise BrowseError(f"page size: expected 1 or more, got {page_size}")
    matches = matching_rows(store, ref, flt) if rows is None else rows
    pages = max(1, math.ceil(len(matches) / page_size))
    if not 0 <= page < pages:
        raise BrowseError(f"page {page + 1} outside 1..{pages}")
    chosen = matches[page * page_size : (page + 1) * page_size]
    return RecordPage(
        records=read_rows(store, ref, chosen, columns=columns),
        total=len(matches),
        page=page,
        page_size=page_size,
        rows=[int(r) for r in chosen],
    )


def records_by_id(
    store: SnapshotStore, ref: str, ids: Iterable[str], *, columns: Sequence[str] | None = None
) -> dict[str, dict[str, Any]]:
    """The records with the given ids (those present), reading ``id`` first and then only their row groups."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    value_set = pa.array(wanted, type=pa.string())
    positions = []
    offset = 0
    for batch in store.iter_batches(ref, columns=["id"], batch_size=8192):
        hit = pc.is_in(batch.column("id"), value_set=value_set).to_numpy(zero_copy_only=False)
        positions.append(np.flatnonzero(hit) + offset)
        offset += batch.num_rows
    rows = np.concatenate(positions) if positions else np.zeros(0, dtype=np.int64)
    cols = _check_columns(columns)
    cols = cols if "id" in cols else ["id", *cols]
    return {r["id"]: r for r in read_rows(store, ref, rows, columns=cols)}


def iter_label_records(
    store: SnapshotStore, ref: str, *, fields: Sequence[str] = LABEL_FIELDS, batch_size: int = 8192
) -> Iterator[dict[str, Any]]:
    """``{"id", "source", "split", "labels"}`` per record, the labels with ``fields`` only.

    What :func:`labeling.agreement.agreement` and :func:`labeling.audit.audit` read,
    at a fraction of the cost of whole records (no turns, no label ``attrs``).
    """
    cols = ["id", "source", "split", *(f"labels.list.element.{f}" for f in fields)]
    for batch in store.iter_batches(ref, columns=cols, batch_size=batch_size):
        yield from batch.to_pylist()


# ------------------------------------------------------------------ snapshots and lineage


def lineage(store: SnapshotStore) -> dict[str, Any]:
    """Every readable snapshot as a node (refs, status, last step, rows, created), its parent -> child edges,
    and ``problems``: one line per snapshot whose manifest cannot be read, and per unreadable ref."""
    listed = store.list()
    infos = [i for i in listed if i.problem is None]
    problems = [f"snapshot {i.id}: {i.problem}" for i in listed if i.problem is not None]
    problems += [f"ref {name}: {problem}" for name, problem in store.ref_problems().items()]
    known = {i.id for i in infos}
    nodes = [
        {
            "id": i.id,
            "refs": list(i.refs),
            "status": i.status,
            "step": i.step,
            "rows": i.rows,
            "sources": list(i.sources),
            "created_at": i.created_at,
            "parents": list(i.parents),
        }
        for i in infos
    ]
    edges = [(p, i.id) for i in infos for p in i.parents if p in known]
    return {"nodes": nodes, "edges": edges, "problems": problems}


def ancestors(store: SnapshotStore, ref: str) -> list[str]:
    """The ids of a snapshot's ancestors, nearest first (breadth-first over parents)."""
    sid = store.resolve(ref)
    seen: dict[str, None] = {}
    queue = deque(store.manifest(sid)["parents"])
    while queue:
        parent = queue.popleft()
        if parent in seen or not store.exists(parent):
            continue
        seen[parent] = None
        queue.extend(store.manifest(parent)["parents"])
    return list(seen)


def counts_table(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Records and turns per source and split, one row each, from a manifest."""
    rows = []
    for source, by_split in manifest["counts"].items():
        turns = manifest.get("turns", {}).get(source, {})
        for split in SPLITS:
            if split in by_split:
                rows.append(
                    {"source": source, "split": split, "records": by_split[split], "turns": turns.get(split, 0)}
                )
    return rows


# ------------------------------------------------------------------ label distributions


def label_tasks(manifest: Mapping[str, Any]) -> dict[str, list[str]]:
    """Each label task in a snapshot and the label sources (gold / llm / human / model) that give it."""
    return {task: sorted(by_src) for task, by_src in sorted(manifest.get("label_distribution", {}).items())}


def label_values(manifest: Mapping[str, Any], task: str) -> list[str]:
    """The values of ``task`` present in a snapshot, most frequent first."""
    totals: Counter[str] = Counter()
    for by_split in manifest.get("label_distribution", {}).get(task, {}).values():
        for counts in by_split.values():
            totals.update(counts)
    return [v for v, _ in totals.most_common()]


def label_counts(
    manifest: Mapping[str, Any],
    *,
    task: str | None = None,
    label_source: str | None = None,
    source: str | None = None,
    split: str | None = None,
) -> list[dict[str, Any]]:
    """Tidy rows ``{task, label_source, source, split, value, count}`` from a manifest, optionally narrowed."""
    rows = []
    for t, by_src in sorted(manifest.get("label_distribution_by_source", {}).items()):
        if task is not None and t != task:
            continue
        for ls, by_source in sorted(by_src.items()):
            if label_source is not None and ls != label_source:
                continue
            for src, by_split in sorted(by_source.items()):
                if source is not None and src != source:
                    continue
                for sp, counts in sorted(by_split.items()):
                    if split is not None and sp != split:
                        continue
                    rows.extend(
                        {"task": t, "label_source": ls, "source": src, "split": sp, "value": v, "count": n}
                        for v, n in counts.items()
                    )
    return rows


def _totals(rows: Iterable[Mapping[str, Any]]) -> Counter[str]:
    out: Counter[str] = Counter()
    for r in rows:
        out[r["value"]] += r["count"]
    return out


def distribution_change(
    before: Sequence[Mapping[str, Any]],
    after: Mapping[str, Any],
    *,
    task: str,
    label_source: str | None = None,
    source: str | None = None,
    split: str | None = None,
) -> list[dict[str, Any]]:
    """Per value of ``task``: count and share in ``before`` (summed over the manifests) and in ``after``.

    Rows ``{value, before, after, change, before_share, after_share}``, largest
    ``after`` first: a snapshot against its parent(s) or any ancestor.
    """
    narrow = {"task": task, "label_source": label_source, "source": source, "split": split}
    b = _totals(r for m in before for r in label_counts(m, **narrow))
    a = _totals(label_counts(after, **narrow))
    nb, na = sum(b.values()) or 1, sum(a.values()) or 1
    values = sorted(set(a) | set(b), key=lambda v: (-a.get(v, 0), -b.get(v, 0), v))
    return [
        {
            "value": v,
            "before": b.get(v, 0),
            "after": a.get(v, 0),
            "change": a.get(v, 0) - b.get(v, 0),
            "before_share": b.get(v, 0) / nb,
            "after_share": a.get(v, 0) / na,
        }
        for v in values
    ]


# ------------------------------------------------------------------ score histograms


def score_scale(task: str) -> tuple[int, int] | None:
    """The integer scale of a score task (``empathy`` 1-5, ``trait.*`` 1-10); None for other tasks."""
    if task in SCORE_SCALES:
        return SCORE_SCALES[task]
    if task.startswith("trait."):
        return SCORE_SCALES["trait.*"]
    return None


def score_histograms(
    store: SnapshotStore, ref: str, *, tasks: Sequence[str] | None = None, source: str | None = None
) -> list[dict[str, Any]]:
    """Histogram rows ``{task, label_source, bucket, count}`` of score labels (``empathy``, ``trait.*``).

    A label's number is its ``score``, else its value; buckets are the integers
    of the task's scale (numbers rounded half up and clipped onto it), so every
    bucket of the scale appears, empty ones with count 0. Reads four label fields
    (and the record ``source`` column when narrowed to one source).
    """
    counts: Counter[tuple[str, str, int]] = Counter()
    cols = ["source", *(f"labels.list.element.{f}" for f in ("task", "value", "score", "source"))]
    for batch in store.iter_batches(ref, columns=cols, batch_size=16384):
        if source is not None:
            batch = batch.filter(pc.equal(batch.column("source"), source))
        items = pc.list_flatten(batch.column("labels"))
        task = pc.struct_field(items, "task")
        keep = pc.or_(pc.equal(task, "empathy"), pc.starts_with(task, "trait."))
        if tasks is not None:
            keep = pc.and_(keep, pc.is_in(task, value_set=pa.array(list(tasks), type=pa.string())))
        items = items.filter(keep)
        if len(items) == 0:
            continue
        task = pc.struct_field(items, "task")
        number = _numbers(pc.struct_field(items, "score"), pc.struct_field(items, "value"))
        is_trait = pc.starts_with(task, "trait.").to_numpy(zero_copy_only=False)
        high = np.where(is_trait, SCORE_SCALES["trait.*"][1], SCORE_SCALES["empathy"][1])
        low = np.where(is_trait, SCORE_SCALES["trait.*"][0], SCORE_SCALES["empathy"][0])
        given = ~np.isnan(number)  # not a number: the validation suite reports it, a histogram skips it
        bucket = np.clip(np.floor(np.where(given, number, 0) + 0.5), low, high).astype(np.int64)
        grouped = (
            pa.table({"task": task, "label_source": pc.struct_field(items, "source"), "bucket": bucket})
            .filter(pa.array(given))
            .group_by(["task", "label_source", "bucket"])
            .aggregate([([], "count_all")])
        )
        for row in grouped.to_pylist():
            counts[(row["task"], row["label_source"], row["bucket"])] += row["count_all"]
    rows = []
    for task, ls in sorted({(t, ls) for t, ls, _ in counts}):
        low, high = score_scale(task)  # type: ignore[misc]
        rows.extend(
            {"task": task, "label_source": ls, "bucket": b, "count": counts.get((task, ls, b), 0)}
            for b in range(low, high + 1)
        )
    return rows


def _numbers(score: pa.Array, value: pa.Array) -> np.ndarray:
    """Each label's number: its score, else its value parsed; NaN where neither is a number."""
    out = pc.fill_null(score, float("nan")).to_numpy(zero_copy_only=False).astype(np.float64)
    missing = np.flatnonzero(np.isnan(out))
    if missing.size:
        values = value.take(pa.array(missing)).to_pylist()
        for i, v in zip(missing, values, strict=True):
            with contextlib.suppress(TypeError, ValueError):  # else NaN: skipped by the caller
                out[i] = float(v)
    return out
