"""The snapshot store: immutable, content-addressed Parquet snapshots on any fsspec filesystem.

Layout under the store root (a local folder, ``memory://...``, ``s3://...``)::

    snapshots/<id>/manifest.json          written last: a snapshot exists iff its manifest does
    snapshots/<id>/data/part-00000.parquet
    snapshots/<id>/quarantine.jsonl       rejected raw rows with their reasons (if any)
    refs/<name>.json                      {"id": ..., "updated_at": ...}: tags such as ``latest``
    tmp/<uuid>/                           snapshots being written

A snapshot is written under ``tmp/`` and renamed into place; it is never
modified afterwards. Its id is a hash of its parents, the configuration of the
step that made it and its data (records and quarantine), so writing the same
data twice yields the same id, and the second write leaves no second copy.
Refs are small files replaced atomically (write aside, then rename).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import uuid
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curation import __version__
from curation.errors import InputError, StoreError
from curation.record import RECORD_SCHEMA, SCHEMA_VERSION, Record, from_batch, to_table

#: Records a step removed: the record as it was, plus which step, why, and a human detail.
DROPPED_SCHEMA = pa.schema(
    [*RECORD_SCHEMA, pa.field("step", pa.string()), pa.field("reason", pa.string()), pa.field("detail", pa.string())],
    metadata=RECORD_SCHEMA.metadata,
)

DEFAULT_STORE = "./workbench-store"
ID_LENGTH = 16
_REF_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def default_store_url() -> str:
    return os.environ.get("WORKBENCH_STORE") or DEFAULT_STORE


def canonical_json(value: Any) -> bytes:
    """Stable JSON bytes for hashing (sorted keys, no whitespace)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


@dataclass(frozen=True)
class SnapshotInfo:
    """One line of ``snapshots list``."""

    id: str
    created_at: str
    status: str
    rows: int
    sources: tuple[str, ...]
    refs: tuple[str, ...]
    parents: tuple[str, ...]
    step: str


class SnapshotStore:
    """Snapshots and refs under one fsspec URL."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or default_store_url()
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        self.root = self.root.rstrip("/") or "/"

    def __repr__(self) -> str:
        return f"SnapshotStore({self.url!r})"

    # ------------------------------------------------------------ paths

    def _path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def snapshot_path(self, snapshot_id: str) -> str:
        return self._path("snapshots", snapshot_id)

    # ------------------------------------------------------------ reading

    def exists(self, snapshot_id: str) -> bool:
        return self.fs.exists(self._path("snapshots", snapshot_id, "manifest.json"))

    def snapshot_ids(self) -> list[str]:
        base = self._path("snapshots")
        if not self.fs.exists(base):
            return []
        ids = []
        for entry in self.fs.ls(base, detail=False):
            sid = entry.rstrip("/").rsplit("/", 1)[-1]
            if self.exists(sid):
                ids.append(sid)
        return sorted(ids)

    def refs(self) -> dict[str, str]:
        """Every ref name and the snapshot id it points at."""
        base = self._path("refs")
        if not self.fs.exists(base):
            return {}
        out = {}
        for entry in self.fs.ls(base, detail=False):
            name = entry.rstrip("/").rsplit("/", 1)[-1]
            if name.endswith(".json") and not name.startswith("."):
                out[name[: -len(".json")]] = self._read_json(entry)["id"]
        return dict(sorted(out.items()))

    def resolve(self, ref: str) -> str:
        """A snapshot id from a ref name, a full id, or a unique id prefix (6+ characters)."""
        ref_file = self._path("refs", f"{ref}.json")
        if _REF_NAME.match(ref) and self.fs.exists(ref_file):
            return self._read_json(ref_file)["id"]
        if self.exists(ref):
            return ref
        if len(ref) >= 6 and re.fullmatch(r"[0-9a-f]+", ref):
            matches = [sid for sid in self.snapshot_ids() if sid.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise StoreError(f"snapshot id prefix {ref!r} is ambiguous: {', '.join(matches)}")
        known = list(self.refs())
        hint = f" (refs: {', '.join(known[:10])})" if known else " (the store has no refs yet)"
        raise StoreError(f"no snapshot or ref named {ref!r} in store {self.url}{hint}")

    def manifest(self, ref: str) -> dict[str, Any]:
        sid = self.resolve(ref)
        return self._read_json(self._path("snapshots", sid, "manifest.json"))

    def list(self) -> list[SnapshotInfo]:
        """Every snapshot, oldest first, with the refs that point at it."""
        by_id: dict[str, list[str]] = defaultdict(list)
        for name, sid in self.refs().items():
            by_id[sid].append(name)
        infos = []
        for sid in self.snapshot_ids():
            m = self._read_json(self._path("snapshots", sid, "manifest.json"))
            infos.append(
                SnapshotInfo(
                    id=sid,
                    created_at=m["created_at"],
                    status=m["status"],
                    rows=m["rows"],
                    sources=tuple(sorted(m["counts"])),
                    refs=tuple(by_id.get(sid, ())),
                    parents=tuple(m["parents"]),
                    step=m["steps"][-1]["kind"] if m["steps"] else "",
                )
            )
        return sorted(infos, key=lambda i: (i.created_at, i.id))

    def shard_paths(self, ref: str) -> list[str]:
        """Full paths of a snapshot's Parquet shards, e.g. for ``ray.data.read_parquet``."""
        sid = self.resolve(ref)
        m = self.manifest(sid)
        return [self._path("snapshots", sid, s["path"]) for s in m["shards"]]

    def iter_batches(
        self, ref: str, *, columns: Sequence[str] | None = None, batch_size: int = 1024
    ) -> Iterator[pa.RecordBatch]:
        """Stream a snapshot's rows shard by shard; memory stays bounded by ``batch_size``."""
        for path in self.shard_paths(ref):
            with self.fs.open(path, "rb") as f:
                pf = pq.ParquetFile(f)
                yield from pf.iter_batches(batch_size=batch_size, columns=list(columns) if columns else None)

    def iter_records(self, ref: str, *, batch_size: int = 1024) -> Iterator[Record]:
        for batch in self.iter_batches(ref, batch_size=batch_size):
            yield from from_batch(batch)

    def iter_dropped(
        self, ref: str, *, columns: Sequence[str] | None = None, batch_size: int = 1024
    ) -> Iterator[pa.RecordBatch]:
        """Stream the records the steps of a snapshot removed (record columns + step, reason, detail)."""
        sid = self.resolve(ref)
        d = self.manifest(sid).get("dropped")
        if not d:
            return
        with self.fs.open(self._path("snapshots", sid, d["path"]), "rb") as f:
            yield from pq.ParquetFile(f).iter_batches(batch_size=batch_size, columns=list(columns) if columns else None)

    def read_artifact(self, ref: str, name: str) -> pa.Table:
        """A report table stored beside a snapshot (see ``manifest["artifacts"]``)."""
        sid = self.resolve(ref)
        artifacts = self.manifest(sid).get("artifacts") or {}
        if name not in artifacts:
            raise StoreError(f"snapshot {sid} has no artifact {name!r} (has: {', '.join(artifacts) or 'none'})")
        with self.fs.open(self._path("snapshots", sid, artifacts[name]["path"]), "rb") as f:
            return pq.read_table(f)

    def iter_quarantine(self, ref: str) -> Iterator[dict[str, Any]]:
        sid = self.resolve(ref)
        q = self.manifest(sid).get("quarantine")
        if not q:
            return
        with self.fs.open(self._path("snapshots", sid, q["path"]), "rt", encoding="utf-8") as f:
            for line in f:
                yield json.loads(line)

    # ------------------------------------------------------------ refs

    def set_ref(self, name: str, snapshot_id: str) -> None:
        """Point ``name`` at a snapshot, atomically (write aside, rename over)."""
        if not _REF_NAME.match(name):
            raise StoreError(f"invalid ref name {name!r}: use letters, digits, '.', '_' or '-' (max 128)")
        if not self.exists(snapshot_id):
            raise StoreError(f"cannot point ref {name!r} at missing snapshot {snapshot_id}")
        base = self._path("refs")
        self.fs.makedirs(base, exist_ok=True)
        tmp = self._path("refs", f".{name}.{uuid.uuid4().hex}.tmp")
        payload = {"id": snapshot_id, "updated_at": _now()}
        with self.fs.open(tmp, "wb") as f:
            f.write(json.dumps(payload, indent=1).encode())
        self.fs.mv(tmp, self._path("refs", f"{name}.json"))

    def delete_ref(self, name: str) -> None:
        path = self._path("refs", f"{name}.json")
        if not self.fs.exists(path):
            raise StoreError(f"no ref named {name!r}")
        self.fs.rm(path)

    # ------------------------------------------------------------ writing

    def writer(
        self,
        *,
        step: Mapping[str, Any] | None = None,
        steps: Sequence[Mapping[str, Any]] = (),
        parents: Sequence[str] = (),
        shard_rows: int = 100_000,
        batch_rows: int = 2_000,
    ) -> SnapshotWriter:
        """A writer for one new snapshot made by ``steps`` (or one ``step``) from ``parents``.

        Each step needs ``kind`` and ``config`` (hashed into the id) and may carry
        anything else (inputs, counters) that is recorded but not hashed; the
        writer's ``steps`` list may be updated (counters) until commit.
        """
        all_steps = [dict(step)] if step is not None else [dict(s) for s in steps]
        if not all_steps:
            raise StoreError("a snapshot needs at least one step")
        for st in all_steps:
            for key in ("kind", "config"):
                if key not in st:
                    raise StoreError(f"step description lacks {key!r}")
        return SnapshotWriter(
            self, steps=all_steps, parents=list(parents), shard_rows=shard_rows, batch_rows=batch_rows
        )

    def gc_tmp(self) -> int:
        """Remove leftovers of interrupted writes; returns how many."""
        base = self._path("tmp")
        if not self.fs.exists(base):
            return 0
        entries = self.fs.ls(base, detail=False)
        for e in entries:
            self.fs.rm(e, recursive=True)
        return len(entries)

    def _read_json(self, path: str) -> dict[str, Any]:
        try:
            with self.fs.open(path, "rb") as f:
                return json.loads(f.read())
        except FileNotFoundError:
            raise StoreError(f"missing {path}") from None
        except json.JSONDecodeError as exc:
            raise StoreError(f"corrupt JSON in {path}: {exc}") from None


class SnapshotWriter:
    """Collects records into Parquet shards under a temporary name; :meth:`commit` publishes.

    Use as a context manager: leaving the block with an exception (or Ctrl-C)
    removes everything written, so a failed run leaves no snapshot behind.
    """

    def __init__(
        self,
        store: SnapshotStore,
        *,
        steps: list[dict[str, Any]],
        parents: list[str],
        shard_rows: int,
        batch_rows: int,
    ) -> None:
        self.store = store
        self.steps = steps
        self.parents = parents
        self.shard_rows = shard_rows
        self.batch_rows = batch_rows
        self.tmp = store._path("tmp", uuid.uuid4().hex)
        store.fs.makedirs(f"{self.tmp}/data", exist_ok=True)
        # One hash per stream, combined at commit: the id depends on what was written, not on
        # how calls to add(), drop(), quarantine() and attach() interleaved.
        self._hashes = {name: hashlib.sha256() for name in ("config", "records", "dropped", "quarantine")}
        self._artifact_digests: dict[str, str] = {}
        self._hashes["config"].update(
            canonical_json(
                {"parents": parents, "steps": [{"kind": st["kind"], "config": st["config"]} for st in steps]}
            )
        )
        self._buffer: list[Record] = []
        self._shards: list[dict[str, Any]] = []
        self._pq: pq.ParquetWriter | None = None
        self._pq_file: Any = None
        self._shard_count = 0
        self._quarantine: Any = None
        self._quarantine_rows = 0
        self._dropped: pq.ParquetWriter | None = None
        self._dropped_file: Any = None
        self._dropped_buffer: list[dict[str, Any]] = []
        self._dropped_rows = 0
        self.dropped_counts: dict[str, Counter[str]] = defaultdict(Counter)  # step -> reason -> n
        self._artifacts: dict[str, dict[str, Any]] = {}
        self._ids = _IdDigests()
        self.rows = 0
        self.counts: dict[str, Counter[str]] = defaultdict(Counter)
        self.turn_counts: dict[str, Counter[str]] = defaultdict(Counter)
        # task -> label source -> split -> value -> count
        self.label_counts: dict[str, dict[str, dict[str, Counter[str]]]] = defaultdict(
            lambda: defaultdict(lambda: defaultdict(Counter))
        )
        # task -> label source -> (record source, split) -> value -> count
        self.label_counts_by_source: dict[str, dict[str, dict[tuple[str, str], Counter[str]]]] = defaultdict(
            lambda: defaultdict(lambda: defaultdict(Counter))
        )
        self._closed = False
        self.snapshot_id: str | None = None
        self.reused = False  # True when identical data was already in the store
        self.manifest: dict[str, Any] | None = None

    def __enter__(self) -> SnapshotWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None or not self._closed:
            self.abort()

    # ---------------------------------------------------------- records

    def add(self, record: Record) -> None:
        self._buffer.append(record)
        self._ids.add(record["id"])
        source, split = record["source"], record["split"]
        self.counts[source][split] += 1
        self.turn_counts[source][split] += len(record["turns"])
        for lab in record["labels"]:
            self.label_counts[lab["task"]][lab["source"]][split][lab["value"]] += 1
            self.label_counts_by_source[lab["task"]][lab["source"]][(source, split)][lab["value"]] += 1
        if len(self._buffer) >= self.batch_rows:
            self._flush()

    def add_many(self, records: Iterable[Record]) -> None:
        for r in records:
            self.add(r)

    def quarantine(self, row: Mapping[str, Any]) -> None:
        """Keep a rejected raw row with its reason beside the snapshot."""
        if self._quarantine is None:
            self._quarantine = self.store.fs.open(f"{self.tmp}/quarantine.jsonl", "wb")
        line = canonical_json(dict(row)) + b"\n"
        self._hashes["quarantine"].update(line)
        self._quarantine.write(line)
        self._quarantine_rows += 1

    def drop(self, record: Record, *, step: str, reason: str, detail: str = "") -> None:
        """Keep a record a step removed, with the step, a short reason and a human detail."""
        self._dropped_buffer.append({**record, "step": step, "reason": reason, "detail": detail})
        self.dropped_counts[step][reason] += 1
        if len(self._dropped_buffer) >= self.batch_rows:
            self._flush_dropped()

    def _flush_dropped(self) -> None:
        if not self._dropped_buffer:
            return
        table = pa.Table.from_pylist(self._dropped_buffer, schema=DROPPED_SCHEMA)
        self._dropped_buffer = []
        for batch in table.to_batches():
            self._hashes["dropped"].update(batch.serialize())
        if self._dropped is None:
            self.store.fs.makedirs(f"{self.tmp}/dropped", exist_ok=True)
            self._dropped_file = self.store.fs.open(f"{self.tmp}/dropped/part-00000.parquet", "wb")
            self._dropped = pq.ParquetWriter(self._dropped_file, DROPPED_SCHEMA, compression="zstd")
        self._dropped.write_table(table)
        self._dropped_rows += table.num_rows

    def attach(self, name: str, table: pa.Table) -> None:
        """Store a report table beside the snapshot (duplicate clusters, split moves, ...)."""
        if not _REF_NAME.match(name) or name in self._artifacts:
            raise StoreError(f"invalid or repeated artifact name {name!r}")
        table = table.combine_chunks()  # hash the content, not how the caller chunked it
        digest = hashlib.sha256()
        for batch in table.to_batches():
            digest.update(batch.serialize())
        self._artifact_digests[name] = digest.hexdigest()
        path = f"artifacts/{name}.parquet"
        self.store.fs.makedirs(f"{self.tmp}/artifacts", exist_ok=True)
        with self.store.fs.open(f"{self.tmp}/{path}", "wb") as f:
            pq.write_table(table, f, compression="zstd")
        self._artifacts[name] = {"path": path, "rows": table.num_rows}

    def iter_written(self, *, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        """Read back what has been written so far (before commit), shard by shard."""
        self._flush()
        self._close_shard()
        for shard in self._shards:
            with self.store.fs.open(f"{self.tmp}/{shard['path']}", "rb") as f:
                yield from pq.ParquetFile(f).iter_batches(columns=list(columns) if columns else None)

    def _flush(self) -> None:
        if not self._buffer:
            return
        table = to_table(self._buffer)
        self._buffer = []
        for batch in table.to_batches():
            # Hash the Arrow IPC bytes: exact, and far cheaper than per-record JSON.
            self._hashes["records"].update(batch.serialize())
        if self._pq is None:
            name = f"data/part-{self._shard_count:05d}.parquet"
            self._pq_file = self.store.fs.open(f"{self.tmp}/{name}", "wb")
            self._pq = pq.ParquetWriter(self._pq_file, RECORD_SCHEMA, compression="zstd")
            self._shards.append({"path": name, "rows": 0})
            self._shard_count += 1
        self._pq.write_table(table, row_group_size=self.batch_rows)
        self._shards[-1]["rows"] += table.num_rows
        self.rows += table.num_rows
        if self._shards[-1]["rows"] >= self.shard_rows:
            self._close_shard()

    def _close_shard(self) -> None:
        if self._pq is not None:
            self._pq.close()
            self._pq_file.close()
            self._pq = None
            self._pq_file = None

    # ---------------------------------------------------------- publish

    def commit(self, *, extra: Mapping[str, Any] | None = None) -> str:
        """Publish the snapshot; returns its id (an existing one if the data is identical)."""
        self._flush()
        self._close_shard()
        if self._ids.may_repeat():
            _raise_on_duplicate_ids(self)
        self._flush_dropped()
        self._close_dropped()
        if self._quarantine is not None:
            self._quarantine.close()
        if self.rows == 0 and not self._shards:
            # An empty snapshot still gets one (empty) shard so readers need no special case.
            with self.store.fs.open(f"{self.tmp}/data/part-00000.parquet", "wb") as f:
                pq.write_table(RECORD_SCHEMA.empty_table(), f)
            self._shards.append({"path": "data/part-00000.parquet", "rows": 0})
        combined = {name: h.hexdigest() for name, h in self._hashes.items()}
        combined["artifacts"] = dict(sorted(self._artifact_digests.items()))
        sid = hashlib.sha256(canonical_json(combined)).hexdigest()[:ID_LENGTH]
        self.snapshot_id = sid
        final = self.store.snapshot_path(sid)
        if self.store.exists(sid):
            self.abort()
            self.reused = True
            self.manifest = self.store.manifest(sid)
            return sid
        self.manifest = self._manifest(sid, extra or {})
        with self.store.fs.open(f"{self.tmp}/manifest.json", "wb") as f:
            f.write(json.dumps(self.manifest, indent=1, ensure_ascii=False).encode())
        self.store.fs.makedirs(self.store._path("snapshots"), exist_ok=True)
        try:
            self.store.fs.mv(self.tmp, final, recursive=True)
        except (FileExistsError, OSError):
            if not self.store.exists(sid):  # not a lost race with an identical writer
                self.abort()
                raise
            self.abort()
        self._closed = True
        return sid

    def _close_dropped(self) -> None:
        if self._dropped is not None:
            self._dropped.close()
            self._dropped_file.close()
            self._dropped = None

    def abort(self) -> None:
        for closer in (
            self._close_shard,
            self._close_dropped,
            lambda: self._quarantine and self._quarantine.close(),
        ):
            with contextlib.suppress(Exception):
                closer()
        with contextlib.suppress(FileNotFoundError):
            if self.store.fs.exists(self.tmp):
                self.store.fs.rm(self.tmp, recursive=True)
        self._closed = True

    def _manifest(self, sid: str, extra: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "id": sid,
            "schema_version": SCHEMA_VERSION,
            "status": "draft",
            "created_at": _now(),
            "code_version": code_version(),
            "parents": self.parents,
            "steps": self.steps,
            "rows": self.rows,
            "counts": {s: dict(sorted(c.items())) for s, c in sorted(self.counts.items())},
            "turns": {s: dict(sorted(c.items())) for s, c in sorted(self.turn_counts.items())},
            "label_distribution": {
                task: {
                    src: {split: dict(c.most_common()) for split, c in sorted(by_split.items())}
                    for src, by_split in sorted(by_src.items())
                }
                for task, by_src in sorted(self.label_counts.items())
            },
            "label_distribution_by_source": {
                task: {
                    src: _nest({key: dict(c.most_common()) for key, c in sorted(by_key.items())})
                    for src, by_key in sorted(by_src.items())
                }
                for task, by_src in sorted(self.label_counts_by_source.items())
            },
            "shards": self._shards,
            "quarantine": (
                {"path": "quarantine.jsonl", "rows": self._quarantine_rows} if self._quarantine_rows else None
            ),
            "dropped": (
                {
                    "path": "dropped/part-00000.parquet",
                    "rows": self._dropped_rows,
                    "by_step": {st: dict(sorted(c.items())) for st, c in self.dropped_counts.items()},
                }
                if self._dropped_rows
                else None
            ),
            "artifacts": self._artifacts,
            "validation": None,
            **extra,
        }


class _IdDigests:
    """8-byte digests of the record ids seen, to check uniqueness in 8 bytes an id.

    A set of the id strings would cost ~100 bytes an id (800 MB for OpenWebText's
    8M documents); this array costs 64 MB. A repeated digest is confirmed
    against the written ids before anything is reported.
    """

    def __init__(self) -> None:
        self._digests = array("Q")

    def add(self, rid: str) -> None:
        self._digests.append(int.from_bytes(hashlib.blake2b(rid.encode(), digest_size=8).digest(), "little"))

    def may_repeat(self) -> bool:
        d = np.sort(np.frombuffer(self._digests, dtype=np.uint64))
        return bool((d[1:] == d[:-1]).any())


def _raise_on_duplicate_ids(writer: SnapshotWriter) -> None:
    """Find a repeated id among the written records (rare path) and raise naming both places."""
    first: dict[str, tuple[str, int | None]] = {}
    for batch in writer.iter_written(columns=["id", "provenance"]):
        for rid, prov in zip(batch.column("id").to_pylist(), batch.column("provenance").to_pylist(), strict=True):
            if rid in first:
                file, line = first[rid]
                raise InputError(
                    f"duplicate record id {rid!r}, first seen in {file}"
                    + (f" line {line}" if line else "")
                    + " (ids must be unique within a snapshot)",
                    file=prov["file"],
                    line=prov.get("line"),
                )
            first[rid] = (prov["file"], prov.get("line"))


def _nest(flat: Mapping[tuple[str, str], Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for (a, b), v in flat.items():
        out.setdefault(a, {})[b] = v
    return out


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def code_version() -> dict[str, str | None]:
    """The package version, plus the git commit when run from a checkout."""
    commit = None
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    head = os.path.join(here, ".git", "HEAD")
    with contextlib.suppress(OSError):
        with open(head) as f:
            ref = f.read().strip()
        if ref.startswith("ref: "):
            ref_path = os.path.join(here, ".git", ref[5:])
            if os.path.exists(ref_path):
                with open(ref_path) as f:
                    commit = f.read().strip()
            else:
                packed = os.path.join(here, ".git", "packed-refs")
                with open(packed) as f:
                    for line in f:
                        if line.rstrip().endswith(ref[5:]):
                            commit = line.split()[0]
        else:
            commit = ref
    return {"workbench": __version__, "git": commit}
