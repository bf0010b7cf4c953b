"""Curate: one or more snapshots -> ONE new snapshot, through a configured list of steps.

The config is TOML, an ordered list of steps::

    [[step]]
    name = "normalize"          # a registered step (see ``workbench curate --list-steps``)
    detokenize = true           # that step's options; unknown keys are errors

Every record of every input snapshot flows through the steps in order. A
record step decides about each record as it streams by; a global step (dedup,
split resolution) is a barrier: the records reaching it are spilled to a
temporary Parquet file while their signatures are collected, the step decides
once over the signatures, then the spilled records stream on with its
verdicts. Memory holds one batch of records plus the signature tables.

Dropped records are never lost: they are written beside the new snapshot
(``dropped/``) with the step, the reason and a detail; report tables of the
steps (duplicate clusters, split moves) become snapshot artifacts. The
manifest lists every step with its config and counters: read, kept, dropped
per reason, modified, and what the step counted itself.

With ``dry_run=True`` everything is computed and counted, nothing is written.
"""

from __future__ import annotations

import multiprocessing
import tomllib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curation.errors import StoreError, WorkbenchError
from curation.record import RECORD_SCHEMA, Record, from_batch, to_table
from curation.steps.base import ConfigError, Decisions, Dropped, GlobalStep, RecordStep, Step, steps_registry
from curation.store import SnapshotStore

BATCH = 1_000
ProgressCallback = Callable[[str, int], None]
"""Called as ``progress(step_name, records_seen_by_that_step)``."""


@dataclass
class StepReport:
    """Counters of one step in one run."""

    name: str
    config: dict[str, Any]
    read: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    counters: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)  # reason -> a few record ids (dry runs)

    def to_manifest(self) -> dict[str, Any]:
        return {
            "kind": f"curate.{self.name}",
            "config": self.config,
            "counters": {
                "read": self.read,
                "kept": self.kept,
                "dropped": sum(self.dropped.values()),
                "dropped_by_reason": dict(sorted(self.dropped.items())),
                **dict(sorted(self.counters.items())),
            },
        }


@dataclass
class CurateResult:
    snapshot_id: str | None  # None for a dry run
    parents: list[str]
    steps: list[StepReport]
    rows: int
    counts: dict[str, dict[str, int]]
    reused: bool = False
    tag: str | None = None


# ------------------------------------------------------------------ config


def load_steps(path: str | Path) -> list[Step]:
    """Read a curate TOML into step objects; errors name the file, the step and the key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: curate config not found")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"step"})
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key {unknown[0]!r} (expected [[step]] tables)")
    specs = data.get("step", [])
    if not isinstance(specs, list) or not specs:
        raise ConfigError(f"{path}: no [[step]] tables")
    try:
        return build_steps(specs)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def build_steps(specs: Sequence[Mapping[str, Any]]) -> list[Step]:
    """Step objects from ``[{"name": ..., **options}, ...]``."""
    registry = steps_registry()
    steps = []
    for i, spec in enumerate(specs, start=1):
        spec = dict(spec)
        name = spec.pop("name", None)
        if name not in registry:
            raise ConfigError(
                f"[[step]] #{i}: unknown step {name!r} (expected one of: {', '.join(registry)})"
                if name
                else f"[[step]] #{i}: missing key 'name'"
            )
        cls = registry[name]
        try:
            steps.append(cls(cls.Config.from_dict(spec)))
        except ConfigError as exc:
            raise ConfigError(f"[[step]] #{i} ({name}): {exc}") from None
        except TypeError as exc:  # a required option missing
            raise ConfigError(f"[[step]] #{i} ({name}): {exc}") from None
    return steps


# ------------------------------------------------------------------ running


def curate(
    refs: Sequence[str],
    *,
    store: SnapshotStore,
    steps: Sequence[Step],
    tag: str | None = None,
    dry_run: bool = False,
    progress: ProgressCallback | None = None,
    engine: str = "local",
    workers: int = 1,
) -> CurateResult:
    """Run ``steps`` over the records of the snapshots ``refs`` into one new snapshot.

    ``workers > 1`` runs record steps and global-step signatures on that many
    processes (batches in order, so the result is identical to ``workers=1``).
    """
    if workers < 1:
        raise WorkbenchError(f"workers must be at least 1, got {workers}")
    if not refs:
        raise WorkbenchError("curate needs at least one input snapshot")
    if not steps:
        raise ConfigError("curate needs at least one step")
    parents = [store.resolve(r) for r in refs]
    if len(set(parents)) != len(parents):
        raise StoreError(f"the same snapshot is given twice: {', '.join(refs)}")
    if engine == "ray":
        from curation.engines.ray_engine import run_steps_ray

        return run_steps_ray(parents, store=store, steps=steps, tag=tag, dry_run=dry_run)
    if engine != "local":
        raise WorkbenchError(f"unknown engine {engine!r} (expected 'local' or 'ray')")

    reports = [StepReport(s.name, s.config.to_dict()) for s in steps]
    manifest_steps = [{"kind": f"curate.{s.name}", "config": s.config.to_dict()} for s in steps]

    def source() -> Iterator[Record]:
        for sid in parents:
            yield from store.iter_records(sid, batch_size=BATCH)

    with store.scratch_dir() as spill_dir, _pool(workers) as pool:
        if dry_run:
            sink = _CountingSink()
            final = _run(source(), steps, reports, sink, Path(spill_dir), progress, pool)
            rows, counts = sink.consume(final)
            return CurateResult(None, parents, reports, rows, counts)
        with store.writer(steps=manifest_steps, parents=parents) as writer:
            sink = _WriterSink(writer)
            final = _run(source(), steps, reports, sink, Path(spill_dir), progress, pool)
            for rec in final:
                writer.add(rec)  # the writer refuses repeated ids at commit
            for st, rep in zip(writer.steps, reports, strict=True):
                st.update(rep.to_manifest())
            sid = writer.commit()
            reused = writer.reused
    manifest = store.manifest(sid)
    if tag:
        store.set_ref(tag, sid)
    store.set_ref("latest", sid)
    return CurateResult(sid, parents, reports, manifest["rows"], manifest["counts"], reused=reused, tag=tag)


def _run(
    stream: Iterable[Record],
    steps: Sequence[Step],
    reports: list[StepReport],
    sink: _Sink,
    spill_dir: Path,
    progress: ProgressCallback | None,
    pool: Any = None,
) -> Iterator[Record]:
    """Chain the steps lazily; runs of record steps go batch by batch, global steps spill and decide."""
    i = 0
    while i < len(steps):
        step = steps[i]
        if isinstance(step, RecordStep):
            j = i
            while j < len(steps) and isinstance(steps[j], RecordStep):
                j += 1
            stream = _record_steps(steps[i:j], reports[i:j], stream, sink, progress, pool)  # type: ignore[arg-type]
            i = j
        elif isinstance(step, GlobalStep):
            stream = _global_step(step, reports[i], stream, sink, spill_dir / f"step-{i}.parquet", progress, pool)
            i += 1
        else:
            raise WorkbenchError(f"step {step.name!r} is neither a record step nor a global step")
    return iter(stream)


def _batched(stream: Iterable[Record], size: int = BATCH) -> Iterator[list[Record]]:
    batch: list[Record] = []
    for rec in stream:
        batch.append(rec)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def apply_record_steps(
    steps: Sequence[RecordStep], batch: list[Record]
) -> tuple[list[Record], list[tuple[str, Dropped]], list[tuple[int, int, Counter[str], Counter[str]]]]:
    """Run consecutive record steps over one batch (pure: also what worker processes and Ray run).

    Returns the kept records, the dropped ones with their step, and per step
    (read, kept, dropped by reason, counters).
    """
    dropped: list[tuple[str, Dropped]] = []
    stats = []
    for step in steps:
        results, counters = step.process_batch(batch)
        kept = [r for r in results if not isinstance(r, Dropped)]
        gone = [r for r in results if isinstance(r, Dropped)]
        dropped.extend((step.name, d) for d in gone)
        stats.append((len(batch), len(kept), Counter(d.reason for d in gone), counters))
        batch = kept
    return batch, dropped, stats


def _record_steps(
    steps: Sequence[RecordStep],
    reports: Sequence[StepReport],
    stream: Iterable[Record],
    sink: _Sink,
    progress: ProgressCallback | None,
    pool: Any,
) -> Iterator[Record]:
    for _, (kept, dropped, stats) in _ordered_map(pool, partial(apply_record_steps, steps), _batched(stream)):
        for report, (read, n_kept, by_reason, counters) in zip(reports, stats, strict=True):
            report.read += read
            report.kept += n_kept
            report.dropped.update(by_reason)
            report.counters.update(counters)
        for name, d in dropped:
            sink.drop(d, name)
        if progress:
            progress(steps[-1].name, reports[0].read)
        yield from kept


def _ordered_map(pool: Any, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
    """``(item, fn(item))`` in input order; on a pool, a bounded window of batches in flight."""
    if pool is None:
        for item in items:
            yield item, fn(item)
        return
    window: deque[tuple[Any, Any]] = deque()
    limit = 2 * pool._processes  # the pool size (no public accessor)
    for item in items:
        window.append((item, pool.apply_async(fn, (item,))))
        if len(window) >= limit:
            done, result = window.popleft()
            yield done, result.get()
    while window:
        done, result = window.popleft()
        yield done, result.get()


@contextmanager
def _pool(workers: int) -> Iterator[Any]:
    if workers == 1:
        yield None
        return
    ctx = multiprocessing.get_context("fork")
    pool = ctx.Pool(workers)
    try:
        yield pool
    finally:
        pool.terminate()
        pool.join()


def _global_step(
    step: GlobalStep,
    report: StepReport,
    stream: Iterable[Record],
    sink: _Sink,
    spill_path: Path,
    progress: ProgressCallback | None,
    pool: Any = None,
) -> Iterator[Record]:
    signatures = []
    writer = pq.ParquetWriter(spill_path, RECORD_SCHEMA, compression="lz4")
    # A step's bulky signature part (MinHash matrices: 512 B a record) goes to a scratch file as it comes,
    # so memory holds the small columns only; decide reads the matrix back in pieces.
    matrix_path = spill_path.with_suffix(".minhash")
    matrix_rows, matrix_width = 0, 0
    matrix_file = None
    try:
        for batch, sig in _ordered_map(pool, step.signatures_batch, _batched(stream)):
            writer.write_table(to_table(batch))
            sig, matrix = step.spill(sig)
            if matrix is not None:
                if matrix_file is None:
                    matrix_file = open(matrix_path, "wb")  # noqa: SIM115 (closed in finally)
                matrix_file.write(np.ascontiguousarray(matrix, dtype="<u4").tobytes())
                matrix_rows += matrix.shape[0]
                matrix_width = matrix.shape[1] if matrix.ndim == 2 else matrix_width
            signatures.append(sig)
            report.read += len(batch)
            if progress:
                progress(f"{step.name} (signatures)", report.read)
    finally:
        writer.close()
        if matrix_file is not None:
            matrix_file.close()
    table = _one_chunk(signatures, step.signature_schema)
    _release_freed_memory()  # the record batches' buffers, before decide's peak
    if matrix_file is not None:
        from curation.steps.dedup import SpilledMatrix

        if matrix_rows != table.num_rows:
            raise WorkbenchError(f"{step.name}: {matrix_rows} spilled signature rows for {table.num_rows} records")
        spilled = SpilledMatrix(str(matrix_path), matrix_rows, matrix_width)
        decisions: Decisions = step.decide(table, minhash=spilled)  # type: ignore[call-arg]
    else:
        decisions = step.decide(table)
    del signatures, table
    matrix_path.unlink(missing_ok=True)
    _release_freed_memory()
    report.counters.update(decisions.counters)
    for name, artifact in decisions.artifacts.items():
        sink.artifact(f"{step.name}.{name}", artifact)
    seen = 0
    for batch in pq.ParquetFile(spill_path).iter_batches(batch_size=BATCH):
        records = from_batch(batch)
        for rec, verdict in zip(records, decisions.verdicts.get_many([r["id"] for r in records]), strict=True):
            seen += 1
            item = step.apply(rec, verdict)
            if isinstance(item, Dropped):
                report.dropped[item.reason] += 1
                sink.drop(item, step.name)
            else:
                report.kept += 1
                yield item
        if progress:
            progress(f"{step.name} (apply)", seen)
    spill_path.unlink(missing_ok=True)


def _one_chunk(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    """The signature batches as one table of one chunk per column, combined a column at a time.

    ``decide`` takes rows of these columns; a take on a column of many chunks copies the whole column
    first, each time. Emptying the list as it goes keeps the peak at one column's copy.
    """
    if not tables:
        return schema.empty_table()
    table = pa.concat_tables(tables)
    tables.clear()
    for i, name in enumerate(table.column_names):
        table = table.set_column(i, name, table.column(i).combine_chunks())
    return table


def _release_freed_memory() -> None:
    """Hand the memory a global step's decision freed back to the OS (glibc keeps freed heap pages otherwise),
    so the next step's peak does not stack on the last one's (malloc_trim: a no-op where there is no glibc)."""
    import ctypes
    import gc

    gc.collect()
    pa.default_memory_pool().release_unused()  # Arrow's allocator (mimalloc, jemalloc) keeps freed pages too
    with suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class _Sink:
    def __init__(self) -> None:
        self.artifacts: dict[str, pa.Table] = {}

    def drop(self, item: Dropped, step: str) -> None:
        raise NotImplementedError

    def artifact(self, name: str, table: pa.Table) -> None:
        self.artifacts[name] = table


class _WriterSink(_Sink):
    def __init__(self, writer: Any) -> None:
        super().__init__()
        self.writer = writer

    def drop(self, item: Dropped, step: str) -> None:
        self.writer.drop(item.record, step=step, reason=item.reason, detail=item.detail)

    def artifact(self, name: str, table: pa.Table) -> None:
        self.writer.attach(name, table)  # written now: a clusters table is not held through the later steps


class _CountingSink(_Sink):
    def __init__(self) -> None:
        super().__init__()
        self.examples: dict[tuple[str, str], list[str]] = {}

    def drop(self, item: Dropped, step: str) -> None:
        ex = self.examples.setdefault((step, item.reason), [])
        if len(ex) < 3:
            ex.append(f"{item.record['id']}: {item.detail}")

    def consume(self, final: Iterator[Record]) -> tuple[int, dict[str, dict[str, int]]]:
        counts: dict[str, Counter[str]] = {}
        rows = 0
        for rec in final:
            rows += 1
            counts.setdefault(rec["source"], Counter())[rec["split"]] += 1
        return rows, {s: dict(sorted(c.items())) for s, c in sorted(counts.items())}
