"""Curate on Ray Data: the same step objects, the same Parquet shards, the same snapshot id.

``curate(..., engine="ray")`` lands here. The records of the input snapshots are read
with ``ray.data.read_parquet`` and flow through the steps as Arrow batches:

* a :class:`RecordStep` runs in ``map_batches``: rows -> records
  (:func:`~curation.record.from_batch`) -> ``step.process_batch`` -> Arrow again
  (:func:`~curation.record.to_table`);
* a :class:`GlobalStep` is a barrier: the data so far is materialised, its signatures
  are computed in ``map_batches`` and brought to the driver, ``step.decide`` runs once
  there, and ``step.apply`` runs in ``map_batches`` with the verdicts.

A dropped record stays in the dataset, flagged with the step that dropped it, its reason
and detail (columns ``_drop_step``, ``_reason``, ``_detail``), so every row keeps its
place and later steps skip it. Record steps' own counters travel in one JSON cell per
batch (``_counters_<i>``) and are summed on the driver.

Same snapshot id as the local engine: the snapshot hash covers the kept records and the
dropped rows as two streams, each in order, so the driver writes both in the order of the
local runner's lazy pipeline (see :func:`_local_event_order`), reading Ray's output in
order (``preserve_order``). Global steps get their signatures in the local runner's chunks
(one per 1,000 records that reach them), so decisions come out identical; artifacts are
hashed after their chunks are combined.

Ray is started locally for the run (2 CPUs, no dashboard, no usage stats, every
server on 127.0.0.1) and shut down after, unless the caller already runs it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curation.curate import BATCH, CurateResult, StepReport, _batched
from curation.errors import WorkbenchError
from curation.record import RECORD_SCHEMA, Record, from_batch, to_table
from curation.steps.base import Dropped, GlobalStep, RecordStep, Step, Verdicts
from curation.store import SnapshotStore

INSTALL_HINT = "pip install 'workbench[ray]'  (or: pip install 'ray[data]==2.60.*')"
NUM_CPUS = 2

#: Set while Ray starts: no usage report, and no "cluster" mode, in which Ray turns 127.0.0.1
#: into the host's interface address and its servers listen on every interface.
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}

KEPT = -1
_FLAGS = [
    pa.field("_drop_step", pa.int32(), nullable=False),
    pa.field("_reason", pa.string()),
    pa.field("_detail", pa.string()),
]
_RECORD_COLUMNS = RECORD_SCHEMA.names


class RayUnavailableError(WorkbenchError):
    """``--engine ray`` without Ray installed."""


def import_ray() -> Any:
    """Ray and Ray Data, or one clear error with the install hint."""
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise RayUnavailableError(
            f"the ray engine needs Ray Data, which is not installed ({exc}): {INSTALL_HINT}"
        ) from None
    _settle_fsspec_http()
    return ray


def _settle_fsspec_http() -> None:
    """Make a missing ``fsspec.implementations.http`` fail the same way in every thread.

    Ray Data's file listing checks for fsspec's HTTP filesystem from several threads at
    once; without ``aiohttp`` that import fails, and a thread that sees another thread's
    half-imported module gets an ImportError Ray does not catch (read_parquet then fails
    on local files). Marking the module absent makes every attempt in this process a
    clean ModuleNotFoundError, which Ray handles; Ray's worker processes do the same
    check, which is why the ``ray`` extra installs ``aiohttp`` (then the import works).
    """
    import sys

    try:
        import fsspec.implementations.http  # noqa: F401
    except ImportError:
        sys.modules["fsspec.implementations.http"] = None  # type: ignore[assignment]


# ------------------------------------------------------------------ entry point


def run_steps_ray(
    parents: Sequence[str],
    *,
    store: SnapshotStore,
    steps: Sequence[Step],
    tag: str | None = None,
    dry_run: bool = False,
) -> CurateResult:
    """Run ``steps`` over the snapshots ``parents`` on Ray Data; same result and snapshot id as the local runner."""
    ray = import_ray()
    for step in steps:
        if not isinstance(step, RecordStep | GlobalStep):
            raise WorkbenchError(f"step {step.name!r} is neither a record step nor a global step")
    reports = [StepReport(s.name, s.config.to_dict()) for s in steps]
    manifest_steps = [{"kind": f"curate.{s.name}", "config": s.config.to_dict()} for s in steps]
    paths, filesystem = _shards(store, parents)

    with local_ray(ray), _quiet_ray_data(), store.scratch_dir() as spill_dir:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # the snapshot id depends on the row order
        ctx.enable_progress_bars = False
        schema = _work_schema(steps)
        ds = ray.data.read_parquet(paths, filesystem=filesystem, schema=RECORD_SCHEMA)
        ds = ds.map_batches(_add_flags, batch_format="pyarrow", fn_kwargs={"schema": schema}, zero_copy_batch=True)
        artifacts: dict[str, pa.Table] = {}
        for i, (step, report) in enumerate(zip(steps, reports, strict=True)):
            if isinstance(step, RecordStep):
                ds = ds.map_batches(
                    _record_step_batch, batch_format="pyarrow", fn_kwargs={"step": step, "index": i, "schema": schema}
                )
            else:
                ds = ds.materialize()  # the barrier: signatures and apply read the same blocks
                decisions = step.decide(_signatures(ray, ds, step, i))
                report.counters.update(decisions.counters)
                for name, table in decisions.artifacts.items():
                    artifacts[f"{step.name}.{name}"] = table
                verdicts = ray.put(decisions.verdicts)
                ds = ds.map_batches(
                    _global_step_batch,
                    batch_format="pyarrow",
                    fn_kwargs={"step": step, "index": i, "schema": schema, "verdicts": [verdicts]},
                )
        ds = ds.materialize()

        fates, counts = _fates_and_counters(ray, ds, steps, reports)
        if dry_run:
            return CurateResult(None, list(parents), reports, int((fates == KEPT).sum()), counts)

        dropped = _spill_dropped(ray, ds, len(steps), Path(spill_dir))
        with store.writer(steps=manifest_steps, parents=list(parents)) as writer:
            kept = _kept_records(ray, ds)
            drops = [_iter_spill(p) for p in dropped]
            for event in _local_event_order(fates, [isinstance(s, GlobalStep) for s in steps]):
                if event == KEPT:
                    writer.add(next(kept))
                else:
                    rec, reason, detail = next(drops[event])
                    writer.drop(rec, step=steps[event].name, reason=reason, detail=detail)
            if next(kept, None) is not None:
                raise WorkbenchError("ray engine: more kept records than the replay expected")
            for st, rep in zip(writer.steps, reports, strict=True):
                st.update(rep.to_manifest())
            for name, table in artifacts.items():
                writer.attach(name, table)
            sid = writer.commit()
            reused = writer.reused
    manifest = store.manifest(sid)
    if tag:
        store.set_ref(tag, sid)
    store.set_ref("latest", sid)
    return CurateResult(sid, list(parents), reports, manifest["rows"], manifest["counts"], reused=reused, tag=tag)


# ------------------------------------------------------------------ Ray, locally and quietly


@contextlib.contextmanager
def local_ray(ray: Any, *, num_cpus: int = NUM_CPUS) -> Iterator[None]:
    """A local Ray for the block, on loopback only; an already running Ray is used as it is."""
    if ray.is_initialized():
        yield
        return
    saved = {k: os.environ.get(k) for k in RAY_ENV}
    os.environ.update(RAY_ENV)
    # The constant is read when ray is imported; set it too in case ray was imported before us.
    with contextlib.suppress(ImportError, AttributeError):
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            configure_logging=False,
            log_to_driver=False,
            _node_ip_address="127.0.0.1",
        )
        address = ray.util.get_node_ip_address()
        if address not in ("127.0.0.1", "::1"):
            ray.shutdown()
            raise WorkbenchError(f"Ray started on {address}, not on loopback; refusing to run (see {__name__})")
        yield
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _quiet_ray_data() -> Iterator[None]:
    """Ray Data logs every execution plan at INFO; keep warnings and errors only while we run."""
    log = logging.getLogger("ray.data")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _shards(store: SnapshotStore, parents: Sequence[str]) -> tuple[list[str], Any]:
    # Ray reads shard files itself: a label layer is compacted first (a flat copy, written once,
    # content-addressed, so a second run finds it), and the engine reads the copy's shards.
    paths = [p for sid in parents for p in store.shard_paths(store.compact(sid))]
    protocols = store.fs.protocol if isinstance(store.fs.protocol, tuple) else (store.fs.protocol,)
    if "file" in protocols or "local" in protocols:
        return paths, None
    if "memory" in protocols:
        raise WorkbenchError(
            f"the ray engine cannot read an in-memory store ({store.url}): Ray workers are other processes"
        )
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    return paths, PyFileSystem(FSSpecHandler(store.fs))


# ------------------------------------------------------------------ batch functions (run in Ray workers)


def _work_schema(steps: Sequence[Step]) -> pa.Schema:
    counters = [pa.field(f"_counters_{i}", pa.string()) for i, s in enumerate(steps) if isinstance(s, RecordStep)]
    return pa.schema([*RECORD_SCHEMA, *_FLAGS, *counters])


def _add_flags(batch: pa.Table, *, schema: pa.Schema) -> pa.Table:
    n = batch.num_rows
    columns = [batch.column(name) for name in _RECORD_COLUMNS]
    columns.append(pa.array(np.full(n, KEPT, dtype=np.int32)))
    columns.extend(pa.nulls(n, f.type) for f in schema if f.name not in _RECORD_COLUMNS and f.name != "_drop_step")
    return pa.Table.from_arrays(columns, schema=schema)


def _record_step_batch(batch: pa.Table, *, step: RecordStep, index: int, schema: pa.Schema) -> pa.Table:
    live, records = _live_records(batch)
    if not records:
        return batch
    results, counters = step.process_batch(records)
    out = _merge(batch, live, results, index, schema)
    cell = [None] * out.num_rows
    cell[0] = json.dumps(dict(counters), sort_keys=True)
    return out.set_column(
        schema.get_field_index(f"_counters_{index}"), f"_counters_{index}", pa.array(cell, pa.string())
    )


_VERDICTS: dict[str, Verdicts] = {}


def _global_step_batch(
    batch: pa.Table, *, step: GlobalStep, index: int, schema: pa.Schema, verdicts: list[Any]
) -> pa.Table:
    import ray

    live, records = _live_records(batch)
    if not records:
        return batch
    ref = verdicts[0]
    key = ref.hex()
    if key not in _VERDICTS:  # one copy per worker process, not one per batch
        _VERDICTS.clear()
        _VERDICTS[key] = ray.get(ref)
    by_id = _VERDICTS[key]
    found = by_id.get_many([r["id"] for r in records])
    results = [step.apply(r, v) for r, v in zip(records, found, strict=True)]
    return _merge(batch, live, results, index, schema)


def _live_records(batch: pa.Table) -> tuple[np.ndarray, list[Record]]:
    live = batch.column("_drop_step").to_numpy() == KEPT
    if not live.any():
        return live, []
    rows = batch.select(_RECORD_COLUMNS)
    return live, from_batch(rows if live.all() else rows.filter(pa.array(live)))


def _merge(
    batch: pa.Table, live: np.ndarray, results: list[Record | Dropped], index: int, schema: pa.Schema
) -> pa.Table:
    """The batch with the live rows replaced by the step's results, every row in its place."""
    records = [r.record if isinstance(r, Dropped) else r for r in results]
    drop_step = [index if isinstance(r, Dropped) else KEPT for r in results]
    reasons = [r.reason if isinstance(r, Dropped) else None for r in results]
    details = [r.detail if isinstance(r, Dropped) else None for r in results]
    table = to_table(records)
    columns = [table.column(name) for name in _RECORD_COLUMNS]
    columns += [pa.array(drop_step, pa.int32()), pa.array(reasons, pa.string()), pa.array(details, pa.string())]
    columns += [batch.column(f.name).filter(pa.array(live)) for f in schema if f.name.startswith("_counters_")]
    out = pa.Table.from_arrays(columns, schema=schema)
    if live.all():
        return out
    dead = batch.filter(pa.array(~live)).cast(schema)
    order = np.argsort(np.concatenate([np.flatnonzero(live), np.flatnonzero(~live)]), kind="stable")
    return pa.concat_tables([out, dead]).take(pa.array(order))


def _signature_rows(batch: pa.Table, *, step: GlobalStep) -> pa.Table:
    """One row per live record: its signature (nulls where it has none) and ``_present``."""
    _, records = _live_records(batch)
    nullable = pa.schema([f.with_nullable(True) for f in step.signature_schema])
    if not records:
        return pa.table({**{f.name: pa.array([], f.type) for f in nullable}, "_present": pa.array([], pa.bool_())})
    table = step.signatures_batch(records)
    if table.num_rows == len(records):
        present = [True] * len(records)
    else:
        present = [step.signature(r) is not None for r in records]
    slots = np.cumsum(present) - 1
    take = pa.array([int(s) if p else None for s, p in zip(slots, present, strict=True)], pa.int64())
    columns = [table.column(f.name).combine_chunks().take(take).cast(f.type) for f in nullable]
    return pa.Table.from_arrays([*columns, pa.array(present)], schema=nullable.append(pa.field("_present", pa.bool_())))


# ------------------------------------------------------------------ driver side


def _signatures(ray: Any, ds: Any, step: GlobalStep, index: int) -> pa.Table:
    """The signature table exactly as the local runner builds it: one chunk per 1,000 records reaching the step."""
    rows = ds.map_batches(_signature_rows, batch_format="pyarrow", fn_kwargs={"step": step})
    parts = [t for t in ray.get(rows.to_arrow_refs()) if t.num_rows]
    if not parts:
        return step.signature_schema.empty_table()
    full = pa.concat_tables(parts)
    present = full.column("_present").to_numpy(zero_copy_only=False)
    full = full.drop_columns(["_present"])
    chunks = []
    for lo in range(0, full.num_rows, BATCH):
        chunk = full.slice(lo, BATCH).filter(pa.array(present[lo : lo + BATCH]))
        chunks.append(chunk.cast(step.signature_schema).combine_chunks())
    return pa.concat_tables(chunks)


def _fates_and_counters(
    ray: Any, ds: Any, steps: Sequence[Step], reports: list[StepReport]
) -> tuple[np.ndarray, dict[str, dict[str, int]]]:
    """Which step dropped each row (-1: kept), in input order; fills the reports; counts kept rows by source/split."""
    counter_cols = [f"_counters_{i}" for i, s in enumerate(steps) if isinstance(s, RecordStep)]
    small = ds.select_columns(["source", "split", "_drop_step", "_reason", *counter_cols])
    fate_parts = []
    counts: dict[str, Counter[str]] = {}
    for table in ray.get(small.to_arrow_refs()):
        fates = table.column("_drop_step").to_numpy(zero_copy_only=False)
        fate_parts.append(fates)
        reasons = table.column("_reason").to_pylist()
        for i in np.flatnonzero(fates != KEPT).tolist():
            reports[int(fates[i])].dropped[reasons[i]] += 1
        kept = pa.array(fates == KEPT)
        for source, split in zip(
            table.column("source").filter(kept).to_pylist(), table.column("split").filter(kept).to_pylist(), strict=True
        ):
            counts.setdefault(source, Counter())[split] += 1
        for col in counter_cols:
            for cell in table.column(col).drop_null().to_pylist():
                reports[int(col.rsplit("_", 1)[1])].counters.update(json.loads(cell))
    fates = np.concatenate(fate_parts) if fate_parts else np.empty(0, np.int32)
    for i, report in enumerate(reports):
        report.read = int(((fates == KEPT) | (fates >= i)).sum())
        report.kept = report.read - sum(report.dropped.values())
    return fates, {s: dict(sorted(c.items())) for s, c in sorted(counts.items())}


def _kept_records(ray: Any, ds: Any) -> Iterator[Record]:
    kept = ds.map_batches(_only, batch_format="pyarrow", fn_kwargs={"kept": True})
    for ref in kept.to_arrow_refs():
        yield from from_batch(ray.get(ref))


def _only(batch: pa.Table, *, kept: bool) -> pa.Table:
    mask = batch.column("_drop_step").to_numpy() == KEPT
    if kept:
        return batch.filter(pa.array(mask)).select(_RECORD_COLUMNS)
    return batch.filter(pa.array(~mask)).select([*_RECORD_COLUMNS, "_drop_step", "_reason", "_detail"])


def _spill_dropped(ray: Any, ds: Any, n_steps: int, spill_dir: Path) -> list[Path]:
    """The dropped rows, one Parquet file per step, in input order (read back as the replay asks)."""
    paths = [spill_dir / f"dropped-{i}.parquet" for i in range(n_steps)]
    schema = pa.schema([*RECORD_SCHEMA, *_FLAGS])
    writers = [pq.ParquetWriter(p, schema) for p in paths]
    try:
        dropped = ds.map_batches(_only, batch_format="pyarrow", fn_kwargs={"kept": False})
        for ref in dropped.to_arrow_refs():
            table = ray.get(ref)
            if not table.num_rows:
                continue
            table = table.cast(schema)
            steps_of = table.column("_drop_step").to_numpy(zero_copy_only=False)
            for i in np.unique(steps_of).tolist():
                writers[i].write_table(table.filter(pa.array(steps_of == i)))
    finally:
        for w in writers:
            w.close()
    return paths


def _iter_spill(path: Path) -> Iterator[tuple[Record, str, str]]:
    for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH):
        reasons = batch.column("_reason").to_pylist()
        details = batch.column("_detail").to_pylist()
        records = from_batch(batch.select(_RECORD_COLUMNS))
        yield from zip(records, reasons, details, strict=True)


def _local_event_order(fates: np.ndarray, is_global: Sequence[bool]) -> Iterator[int]:
    """The order of writer calls in the local runner: ``-1`` for an add, ``i`` for a drop by step ``i``.

    The local runner chains lazy generators (record steps pull 1,000 records at a time, a
    global step pulls everything before it yields), so its adds and drops interleave in a
    fixed pattern; the snapshot hash sees where the writer's buffers flush inside that
    pattern. This replays the same generator chain over row numbers, with the fates Ray
    computed, instead of over records.
    """
    events: list[int] = []
    fate = fates.tolist()

    def record_step(stream: Iterator[int], i: int) -> Iterator[int]:
        for batch in _batched(stream):
            for row in batch:
                if fate[row] == i:
                    events.append(i)
                else:
                    yield row

    def global_step(stream: Iterator[int], i: int) -> Iterator[int]:
        reached = [row for batch in _batched(stream) for row in batch]
        for row in reached:
            if fate[row] == i:
                events.append(i)
            else:
                yield row

    stream: Iterator[int] = iter(range(len(fate)))
    for i, glob in enumerate(is_global):
        stream = (global_step if glob else record_step)(stream, i)
    for _ in stream:
        yield from events
        events.clear()
        yield KEPT
    yield from events
