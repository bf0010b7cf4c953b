"""The snapshot store: immutable, content-addressed Parquet snapshots on any fsspec filesystem.

Layout under the store root (a local folder, ``memory://...``, ``s3://...``)::

    snapshots/<id>/manifest.json          written last: a snapshot exists iff its manifest does
    snapshots/<id>/data/part-00000.parquet
    snapshots/<id>/quarantine.jsonl       rejected raw rows with their reasons (if any)
    snapshots/<id>/layer/labels.parquet   a label layer: (pos, id, labels) rows replacing its base's labels
    snapshots/<id>/record-blocks.bin      sha256 of each block of RECORD_BLOCK records (what the id hashes)
    refs/<name>.json                      {"id": ..., "updated_at": ...}: tags such as ``latest``
    tmp/<uuid>/                           snapshots being written

A snapshot is written under ``tmp/`` and renamed into place; it is never
modified afterwards. Its id is a hash of its parents, the configuration of the
step that made it and its data (records and quarantine), so writing the same
data twice yields the same id, and the second write leaves no second copy.
Refs are small files replaced atomically (write aside, then rename).

**Label layers.** A step that only changes labels (label, review, a review pull, validate) or appends
records (augment) writes a *layer*: ``manifest["layer"] = {"base": <parent id>, "base_rows": n,
"labels": {path, rows, ...}}`` plus its own appended shards. Reading it (:meth:`iter_batches`,
:meth:`read_positions`) streams the base and replaces the labels of the rows the layer lists (by
position), then yields the appended records: the same records a full copy would hold, with time and
disk of the write growing with the rows changed, not with the snapshot. A layer's id is its
parent's id, its step and the digest of the layer (what changed), so it is content-addressed; its
``content_id`` is the id the same step's full copy has (records are hashed in blocks of
``RECORD_BLOCK``, ``record-blocks.bin``, so the layer rehashes only the blocks it touches).
``compact`` writes that full copy, for engines that read shards themselves.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
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
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation import __version__
from curation.errors import InputError, StoreError
from curation.integrity import (
    INTEGRITY_VERSION,
    HashingFile,
    VerifyReport,
    check_manifest,
    check_recorded_file,
    record_blocks_of,
    seal_of,
)
from curation.liveness import process_alive
from curation.record import RECORD_SCHEMA, SCHEMA_VERSION, Record, from_batch, to_table

#: Records a step removed: the record as it was, plus which step, why, and a human detail.
DROPPED_SCHEMA = pa.schema(
    [*RECORD_SCHEMA, pa.field("step", pa.string()), pa.field("reason", pa.string()), pa.field("detail", pa.string())],
    metadata=RECORD_SCHEMA.metadata,
)

#: A label layer's rows: the position of a record in its base (as :meth:`SnapshotStore.iter_batches`
#: yields them), its id (checked on read) and its complete new list of labels.
LAYER_SCHEMA = pa.schema(
    [
        pa.field("pos", pa.int64(), nullable=False),
        pa.field("id", pa.string(), nullable=False),
        RECORD_SCHEMA.field("labels"),
    ]
)
LAYER_PATH = "layer/labels.parquet"
#: Records are hashed in blocks of this many (by position); the records digest is the hash of the block
#: digests, kept beside the snapshot (``BLOCKS_PATH``), so a layer that changes k records rehashes the
#: blocks holding them, not the snapshot, and arrives at the digest a full copy would have.
RECORD_BLOCK = 2_000
BLOCKS_PATH = "record-blocks.bin"

log = logging.getLogger(__name__)

DEFAULT_STORE = "./workbench-store"
#: A temporary folder without an owner file this old (seconds) is a leftover of an older version.
STALE_UNOWNED_AFTER = 3600.0
SCRATCH_PREFIX = "workbench-scratch-"
ID_LENGTH = 16
_REF_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def default_store_url() -> str:
    return os.environ.get("WORKBENCH_STORE") or DEFAULT_STORE


def canonical_json(value: Any) -> bytes:
    """Stable JSON bytes for hashing (sorted keys, no whitespace)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


@dataclass(frozen=True)
class SnapshotInfo:
    """One line of ``snapshots list``; ``problem`` is set (and the rest mostly empty) for an unreadable manifest."""

    id: str
    created_at: str
    status: str
    rows: int
    sources: tuple[str, ...]
    refs: tuple[str, ...]
    parents: tuple[str, ...]
    step: str
    problem: str | None = None


class SnapshotStore:
    """Snapshots and refs under one fsspec URL.

    ``check_sums`` (default True): each file's sha256 is checked against the manifest once per store
    object, before its first use (see :mod:`curation.integrity`); row counts and the manifest seal
    are checked on every read regardless.
    """

    def __init__(self, url: str | None = None, *, check_sums: bool = True) -> None:
        self.url = url or default_store_url()
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        self.root = self.root.rstrip("/") or "/"
        self.check_sums = check_sums
        self._checked: set[tuple[str, int, str]] = set()  # (path, size, sha256) verified by this object
        self._cleaned = False
        self.last_cleanup: tuple[int, int] = (0, 0)  # stale temporaries removed, bytes freed

    def __repr__(self) -> str:
        return f"SnapshotStore({self.url!r})"

    @property
    def is_local(self) -> bool:
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        return "file" in protocols or "local" in protocols

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
        """Every readable ref name and the snapshot id it points at (see :meth:`ref_problems` for the rest)."""
        return {name: sid for name, (sid, problem) in self._ref_entries().items() if problem is None}

    def ref_problems(self) -> dict[str, str]:
        """Ref files that cannot be read, with what is wrong with each."""
        return {name: problem for name, (_, problem) in self._ref_entries().items() if problem is not None}

    def _ref_entries(self) -> dict[str, tuple[str, str | None]]:
        return ref_entries(self.fs, self._path("refs"), self._read_ref)

    def _read_ref(self, path: str) -> str:
        name = path.rstrip("/").rsplit("/", 1)[-1][: -len(".json")]
        try:
            payload = self._read_json(path)
        except StoreError as exc:
            hint = f"point it again with `workbench snapshots tag {name} <id>`"
            raise StoreError(f"ref {name!r}: {exc}; {hint}") from None
        sid = payload.get("id") if isinstance(payload, dict) else None
        if not isinstance(sid, str) or not re.fullmatch(r"[0-9a-f]{6,64}", sid):
            raise StoreError(
                f'ref file {path} is corrupt: expected {{"id": "<snapshot id>"}}, found {_preview(payload)}; '
                f"point it again with `workbench snapshots tag {name} <id>`"
            )
        return sid

    def resolve(self, ref: str) -> str:
        """A snapshot id from a ref name, a full id, or a unique id prefix (6+ characters)."""
        ref_file = self._path("refs", f"{ref}.json")
        if _REF_NAME.match(ref) and self.fs.exists(ref_file):
            sid = self._read_ref(ref_file)
            if not self.exists(sid):
                raise StoreError(f"ref {ref!r} points at snapshot {sid}, which is not in store {self.url}")
            return sid
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
        """A snapshot's manifest, checked (shape, id, seal, row counts): a StoreError names what is wrong."""
        return self._manifest_of(self.resolve(ref))

    def _manifest_of(self, sid: str) -> dict[str, Any]:
        path = self._path("snapshots", sid, "manifest.json")
        manifest = self._read_json(path)
        check_manifest(manifest, sid=sid, path=path)
        return manifest

    def list(self) -> list[SnapshotInfo]:
        """Every snapshot, oldest first, with its refs; an unreadable one is listed with its problem."""
        by_id: dict[str, list[str]] = defaultdict(list)
        for name, sid in self.refs().items():
            by_id[sid].append(name)
        infos = []
        for sid in self.snapshot_ids():
            try:
                m = self._manifest_of(sid)
            except StoreError as exc:
                infos.append(SnapshotInfo(sid, "", "corrupt", 0, (), tuple(by_id.get(sid, ())), (), "", str(exc)))
                continue
            infos.append(
                SnapshotInfo(
                    id=sid,
                    created_at=m.get("created_at", ""),
                    status=m["status"],
                    rows=m["rows"],
                    sources=tuple(sorted(m["counts"])),
                    refs=tuple(by_id.get(sid, ())),
                    parents=tuple(m["parents"]),
                    step=m["steps"][-1]["kind"] if m["steps"] else "",
                )
            )
        return sorted(infos, key=lambda i: (i.created_at, i.id))

    def verify(self, ref: str | None = None, *, recompute_id: bool = True) -> list[VerifyReport]:
        """Recompute checksums, row counts and ids of one snapshot (``ref``) or of every one (None).

        Never raises for what it finds: see each report's ``problems``; :meth:`ref_problems` lists
        unreadable refs.
        """
        from curation.integrity import verify_snapshot

        ids = [self.resolve(ref)] if ref is not None else self.snapshot_ids()
        return [verify_snapshot(self, sid, recompute_id=recompute_id) for sid in ids]

    # ------------------------------------------------------------ checked file access

    def check_file(self, sid: str, desc: Mapping[str, Any]) -> str:
        """The full path of a snapshot file, after checking it against its manifest entry ``desc``.

        Missing file: StoreError. Size differs: StoreError (cheap, always). sha256 differs: StoreError
        (once per store object and file, when ``check_sums``). Snapshots written before checksums were
        recorded are only checked for existence.
        """
        path = self._path("snapshots", sid, desc["path"])
        if "sha256" not in desc:
            if not self.fs.exists(path):
                raise StoreError(f"{path} is missing (snapshot {sid} lists it); run `workbench snapshots verify {sid}`")
            return path
        check_recorded_file(
            self.fs,
            path,
            desc,
            checked=self._checked,
            owner=f"snapshot {sid}",
            rows=str(desc.get("rows", "?")),
            hint=f"; run `workbench snapshots verify {sid}`",
            check_sums=self.check_sums,
        )
        return path

    def _parquet_rows(self, path: str) -> int:
        """The row count in a Parquet file's footer; an unreadable file is a StoreError naming it."""
        try:
            with self.fs.open(path, "rb") as f:
                return pq.ParquetFile(f).metadata.num_rows
        except FileNotFoundError:
            raise StoreError(f"{path} is missing") from None
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise StoreError(f"{path} is not a readable Parquet file: {exc}") from None

    def shard_paths(self, ref: str, *, check: bool = True) -> list[str]:
        """Full paths of a snapshot's Parquet shards, e.g. for ``ray.data.read_parquet``.

        With ``check`` (the default) every shard is checked first (:meth:`check_file`), so an engine
        that reads the paths itself never sees a file that is not what the manifest says. A label
        layer's records are not all in its own shards: for one, this raises and says to compact it
        (``workbench snapshots compact REF``), or to read it with :meth:`iter_batches`.
        """
        sid = self.resolve(ref)
        m = self._manifest_of(sid)
        if m.get("layer"):
            raise StoreError(
                f"snapshot {sid} is a label layer over {m['layer']['base']} (its records are read merged with "
                f"its base's); run `workbench snapshots compact {sid}` for a flat copy an engine can read"
            )
        if check:
            return [self.check_file(sid, s) for s in m["shards"]]
        return [self._path("snapshots", sid, s["path"]) for s in m["shards"]]

    def is_layer(self, ref: str) -> bool:
        """Whether a snapshot is a label layer (read merged with its base) rather than a flat copy."""
        return bool(self.manifest(ref).get("layer"))

    def chain(self, ref: str) -> list[str]:
        """The snapshot and the bases it is layered on, newest first, down to a flat snapshot."""
        out = [self.resolve(ref)]
        while layer := self._manifest_of(out[-1]).get("layer"):
            out.append(layer["base"])
        return out

    def record_schema(self, ref: str) -> pa.Schema:
        """The Arrow schema of a snapshot's record files, as written (read from its flat base's first shard)."""
        sid = self.chain(ref)[-1]
        shard = self._manifest_of(sid)["shards"][0]
        with self.fs.open(self.check_file(sid, shard), "rb") as f:
            return pq.ParquetFile(f).schema_arrow

    def iter_batches(
        self, ref: str, *, columns: Sequence[str] | None = None, batch_size: int = 1024
    ) -> Iterator[pa.RecordBatch]:
        """Stream a snapshot's rows shard by shard; memory stays bounded by ``batch_size``.

        Each shard is checked (:meth:`check_file`, and its footer's row count) before its first row
        is yielded. A label layer streams its base with the layer's labels in place, then its own
        appended records (see the module's docstring).
        """
        yield from self._iter_merged(self.resolve(ref), columns, batch_size)

    def _iter_merged(self, sid: str, columns: Sequence[str] | None, batch_size: int) -> Iterator[pa.RecordBatch]:
        m = self._manifest_of(sid)
        layer = m.get("layer")
        if layer:
            base = self._iter_merged(layer["base"], columns, batch_size)
            label_cols = _label_columns(columns)
            if layer["labels"]["rows"] and label_cols:
                base = self._apply_layer(sid, layer, base, label_cols)
            yield from base
        for shard in m["shards"]:
            path = self.check_file(sid, shard)
            yield from self._read_parquet(path, shard["rows"], columns=columns, batch_size=batch_size)

    def _layer_batches(self, sid: str, layer: Mapping[str, Any], columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
        desc = layer["labels"]
        yield from self._read_parquet(self.check_file(sid, desc), desc["rows"], columns=columns, batch_size=8192)

    def _layer_groups_at(
        self, sid: str, layer: Mapping[str, Any], positions: np.ndarray, label_cols: list[str]
    ) -> Iterator[pa.RecordBatch]:
        """The layer's row groups that may hold ``positions`` (by each group's pos min/max), and only those."""
        desc = layer["labels"]
        path = self.check_file(sid, desc)
        try:
            with self.fs.open(path, "rb") as f:
                pf = pq.ParquetFile(f)
                meta = pf.metadata
                col = pf.schema_arrow.get_field_index("pos")
                groups = []
                for g in range(meta.num_row_groups):
                    stats = meta.row_group(g).column(col).statistics
                    if stats is None or not stats.has_min_max:
                        groups.append(g)
                        continue
                    lo, hi = np.searchsorted(positions, [stats.min, stats.max + 1])
                    if hi > lo:
                        groups.append(g)
                if groups:
                    yield from pf.read_row_groups(groups, columns=["pos", "id", *label_cols]).to_batches()
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"{path} is not a readable Parquet file: {exc}") from None

    def _apply_layer(
        self, sid: str, layer: Mapping[str, Any], batches: Iterator[pa.RecordBatch], label_cols: list[str]
    ) -> Iterator[pa.RecordBatch]:
        cursor = _LayerCursor(self._layer_batches(sid, layer, ["pos", "id", *label_cols]))
        start = 0
        for batch in batches:
            n = batch.num_rows
            pos, ids, labels = cursor.take(start, start + n)
            if len(pos):
                batch = _replace_labels(batch, pos - start, ids, labels, where=f"snapshot {sid}'s label layer")
            start += n
            yield batch
        if not cursor.done():
            raise StoreError(
                f"snapshot {sid}'s label layer lists rows past the end of its base {layer['base']} ({start:,} rows)"
            )

    def read_positions(
        self, ref: str, positions: Sequence[int] | np.ndarray, *, columns: Sequence[str] | None = None
    ) -> pa.Table:
        """The records at ``positions`` (0-based, in :meth:`iter_batches` order), in the order given.

        Reads only the Parquet row groups holding them (and, for a layer, its label rows), so the
        cost grows with the rows asked for, not with the snapshot.
        """
        wanted = np.asarray(positions, dtype=np.int64)
        sid = self.resolve(ref)
        total = self._manifest_of(sid)["rows"]
        if wanted.size and (wanted.min() < 0 or wanted.max() >= total):
            bad = int(wanted.max()) if wanted.max() >= total else int(wanted.min())
            raise StoreError(f"row {bad} outside 0..{total - 1} of snapshot {sid}")
        unique = np.unique(wanted)
        table = self._read_unique_positions(sid, unique, list(columns) if columns else None)
        return table.take(pa.array(np.searchsorted(unique, wanted)))

    def _read_unique_positions(self, sid: str, unique: np.ndarray, columns: list[str] | None) -> pa.Table:
        m = self._manifest_of(sid)
        layer = m.get("layer")
        parts = []
        offset = 0
        if layer:
            offset = layer["base_rows"]
            in_base = unique[unique < offset]
            base = self._read_unique_positions(layer["base"], in_base, columns)
            label_cols = _label_columns(columns)
            if in_base.size and layer["labels"]["rows"] and label_cols:
                pos, ids, labels = _layer_rows_at(self._layer_groups_at(sid, layer, in_base, label_cols), in_base)
                if len(pos):
                    batch = base.combine_chunks().to_batches()[0]
                    where = f"snapshot {sid}'s label layer"
                    base = pa.Table.from_batches(
                        [_replace_labels(batch, np.searchsorted(in_base, pos), ids, labels, where=where)]
                    )
            parts.append(base)
        own = unique[unique >= offset] - offset
        starts = np.cumsum([0] + [s["rows"] for s in m["shards"]])
        for index, shard in enumerate(m["shards"]):
            lo, hi = starts[index], starts[index + 1]
            local = own[(own >= lo) & (own < hi)] - lo
            if local.size == 0:
                continue
            path = self.check_file(sid, shard)
            with self.fs.open(path, "rb") as f:
                pf = pq.ParquetFile(f)
                sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)]
                group_starts = np.cumsum([0, *sizes])
                group_of = np.searchsorted(group_starts, local, side="right") - 1
                groups = np.unique(group_of)
                table = pf.read_row_groups(groups.tolist(), columns=columns)
            begins = dict(zip(groups.tolist(), np.cumsum([0, *(sizes[g] for g in groups[:-1])]).tolist(), strict=True))
            take = [begins[g] + int(r - group_starts[g]) for r, g in zip(local, group_of, strict=True)]
            parts.append(table.take(pa.array(take, type=pa.int64())))
        if not parts:
            schema = RECORD_SCHEMA if columns is None else pa.schema([RECORD_SCHEMA.field(c) for c in columns])
            return schema.empty_table()
        return pa.concat_tables(parts, promote_options="permissive") if len(parts) > 1 else parts[0]

    def locate(self, ref: str, ids: Iterable[str]) -> dict[str, int]:
        """The position (as :meth:`iter_batches` yields them) of each of ``ids`` found in a snapshot.

        Reads only the ``id`` column: a fraction of the snapshot's bytes, and memory bounded by ``ids``.
        """
        wanted = pa.array(sorted(set(ids)), type=pa.string())
        found: dict[str, int] = {}
        if len(wanted) == 0:
            return found
        start = 0
        for batch in self.iter_batches(ref, columns=["id"], batch_size=65_536):
            col = batch.column(0)
            hits = pc.indices_nonzero(pc.is_in(col, value_set=wanted)).to_numpy()
            for i in hits.tolist():
                found[col[i].as_py()] = start + i
            start += batch.num_rows
        return found

    def find_records(self, ref: str, ids: Iterable[str]) -> dict[str, tuple[int, Record]]:
        """``id -> (position, record)`` for each of ``ids`` in a snapshot (those not found are left out)."""
        where = self.locate(ref, ids)
        order = sorted(where.items(), key=lambda kv: kv[1])
        table = self.read_positions(ref, [pos for _, pos in order])
        records = from_batch(table)
        return {rid: (pos, rec) for (rid, pos), rec in zip(order, records, strict=True)}

    def _read_parquet(
        self, path: str, rows: int | None, *, columns: Sequence[str] | None, batch_size: int
    ) -> Iterator[pa.RecordBatch]:
        try:
            with self.fs.open(path, "rb") as f:
                pf = pq.ParquetFile(f)
                if rows is not None and pf.metadata.num_rows != rows:
                    raise StoreError(
                        f"{path} holds {pf.metadata.num_rows:,} rows, the manifest says {rows:,}: "
                        "the file was replaced; nothing was read from it"
                    )
                yield from pf.iter_batches(batch_size=batch_size, columns=list(columns) if columns else None)
        except FileNotFoundError:
            raise StoreError(f"{path} is missing") from None
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"{path} is not a readable Parquet file: {exc}") from None

    def record_blocks(self, ref: str) -> bytes:
        """The sha256 of each block of RECORD_BLOCK records (in order) of a snapshot, 32 bytes each.

        Read from the snapshot's block file (checked); a snapshot written before block files existed
        has them computed from its records (streaming).
        """
        sid = self.resolve(ref)
        desc = self._manifest_of(sid).get("record_blocks")
        if desc is not None and desc.get("size") == RECORD_BLOCK:
            with self.fs.open(self.check_file(sid, desc), "rb") as f:
                return f.read()
        return record_blocks_of(self, sid=sid)

    def content_id(self, ref: str) -> str:
        """The id a flat snapshot of these records, made by the same step from the same parents, has:
        a layer's differs from its own id (which names how it is stored), a flat snapshot's is its id."""
        sid = self.resolve(ref)
        return str(self._manifest_of(sid).get("content_id") or sid)

    def iter_records(self, ref: str, *, batch_size: int = 1024) -> Iterator[Record]:
        for batch in self.iter_batches(ref, batch_size=batch_size):
            yield from from_batch(batch)

    def iter_dropped(
        self, ref: str, *, columns: Sequence[str] | None = None, batch_size: int = 1024
    ) -> Iterator[pa.RecordBatch]:
        """Stream the records the steps of a snapshot removed (record columns + step, reason, detail)."""
        sid = self.resolve(ref)
        d = self._manifest_of(sid).get("dropped")
        if not d:
            return
        yield from self._read_parquet(self.check_file(sid, d), d.get("rows"), columns=columns, batch_size=batch_size)

    def read_artifact(self, ref: str, name: str) -> pa.Table:
        """A report table stored beside a snapshot (see ``manifest["artifacts"]``)."""
        sid = self.resolve(ref)
        artifacts = self._manifest_of(sid).get("artifacts") or {}
        if name not in artifacts:
            raise StoreError(f"snapshot {sid} has no artifact {name!r} (has: {', '.join(artifacts) or 'none'})")
        path = self.check_file(sid, artifacts[name])
        try:
            with self.fs.open(path, "rb") as f:
                return pq.read_table(f)
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"{path} is not a readable Parquet file: {exc}") from None

    def iter_quarantine(self, ref: str) -> Iterator[dict[str, Any]]:
        sid = self.resolve(ref)
        q = self._manifest_of(sid).get("quarantine")
        if not q:
            return
        path = self.check_file(sid, q)
        with self.fs.open(path, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                try:
                    yield json.loads(line)
                except ValueError as exc:
                    raise StoreError(f"{path}, line {n}: not JSON ({exc})") from None

    # ------------------------------------------------------------ refs

    def set_ref(self, name: str, snapshot_id: str) -> None:
        """Point ``name`` at a snapshot, atomically (write aside, rename over); the move is logged (:meth:`ref_log`)."""
        if not _REF_NAME.match(name):
            raise StoreError(f"invalid ref name {name!r}: use letters, digits, '.', '_' or '-' (max 128)")
        if not self.exists(snapshot_id):
            raise StoreError(f"cannot point ref {name!r} at missing snapshot {snapshot_id}")
        old = self._ref_target(name)
        base = self._path("refs")
        self.fs.makedirs(base, exist_ok=True)
        tmp = self._path("refs", f".{name}.{uuid.uuid4().hex}.tmp")
        payload = {"id": snapshot_id, "updated_at": _now()}
        with self.fs.open(tmp, "wb") as f:
            f.write(json.dumps(payload, indent=1).encode())
        self.fs.mv(tmp, self._path("refs", f"{name}.json"))
        if old != snapshot_id:
            self._log_ref(name, old, snapshot_id)

    def delete_ref(self, name: str) -> None:
        path = self._path("refs", f"{name}.json")
        if not self.fs.exists(path):
            raise StoreError(f"no ref named {name!r}")
        old = self._ref_target(name)
        self.fs.rm(path)
        self._log_ref(name, old, None)

    def _ref_target(self, name: str) -> str | None:
        try:
            return self._read_ref(self._path("refs", f"{name}.json"))
        except (StoreError, OSError, FileNotFoundError):
            return None

    def _log_ref(self, name: str, old: str | None, new: str | None) -> None:
        """Append one line to ``<store>/ref-log/<name>.jsonl``: when, from what, to what, and which command."""
        import sys

        folder = self._path("ref-log")
        self.fs.makedirs(folder, exist_ok=True)
        path = self._path("ref-log", f"{name}.jsonl")
        entry = {"at": _now(), "ref": name, "old": old, "new": new, "command": " ".join(sys.argv)[:500]}
        line = (json.dumps(entry) + "\n").encode()
        before = b""
        if self.fs.exists(path):
            with self.fs.open(path, "rb") as f:
                before = f.read()
        tmp = self._path("ref-log", f".{name}.{uuid.uuid4().hex}.tmp")
        with self.fs.open(tmp, "wb") as f:
            f.write(before + line)
        self.fs.mv(tmp, path)

    def ref_log(self, name: str) -> list[dict[str, Any]]:
        """Every move of ref ``name``, oldest first: ``{"at", "ref", "old", "new", "command"}``."""
        path = self._path("ref-log", f"{name}.jsonl")
        if not self.fs.exists(path):
            return []
        with self.fs.open(path, "rb") as f:
            lines = f.read().decode("utf-8").splitlines()
        out = []
        for n, line in enumerate(lines, 1):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                raise StoreError(f"{path}, line {n}: not JSON") from None
        return out

    def compact(self, ref: str, *, tag: str | None = None, progress: Any = None) -> str:
        """One flat copy of a label layer's chain; returns its id (the layer's :meth:`content_id`).

        The copy holds the merged records in their order, with the layer's steps and parents (it is
        what the layer's step would have written in full), keeps the status (a compacted validated
        snapshot is still validated) and names what it was compacted from; a flat snapshot is
        returned as it is. Engines that read shard files themselves (Ray Data, Spark) read the copy.
        """
        sid = self.resolve(ref)
        m = self._manifest_of(sid)
        if not m.get("layer"):
            return sid
        from curation import memo

        key = memo.derivation_key("compact", parents=[sid])
        known = memo.lookup(self, key)
        if known is not None:
            new = known["output"]
        else:
            # The copy is what the layer's step would have written in full: same steps, same parents, same
            # records, drops and artifacts; so its id is the layer's content id.
            extra = {"status": m["status"], "validation": m.get("validation"), "compacted_from": sid}
            with self.writer(steps=m["steps"], parents=m["parents"]) as writer:
                for batch in self.iter_batches(sid, batch_size=writer.batch_rows):
                    writer.add_many(from_batch(batch))
                    if progress is not None:
                        progress(writer.rows)
                for batch in self.iter_dropped(sid):
                    for row in from_batch(batch):
                        step_name, reason, detail = row.pop("step"), row.pop("reason"), row.pop("detail")
                        writer.drop(row, step=step_name, reason=reason, detail=detail or "")
                for name in sorted(m.get("artifacts") or {}):
                    writer.attach(name, self.read_artifact(sid, name))
                new = writer.commit(extra=extra)
            memo.remember(self, key, "compact", new)
        if tag:
            self.set_ref(tag, new)
        return new

    # ------------------------------------------------------------ writing

    def writer(
        self,
        *,
        step: Mapping[str, Any] | None = None,
        steps: Sequence[Mapping[str, Any]] = (),
        parents: Sequence[str] = (),
        shard_rows: int = 100_000,
        batch_rows: int = 2_000,
        layer: bool = False,
    ) -> SnapshotWriter:
        """A writer for one new snapshot made by ``steps`` (or one ``step``) from ``parents``.

        Each step needs ``kind`` and ``config`` (hashed into the id) and may carry
        anything else (inputs, counters) that is recorded but not hashed; the
        writer's ``steps`` list may be updated (counters) until commit.

        ``layer``: write a label layer over the one parent instead of a full copy: the parent's
        records are kept without being written; :meth:`SnapshotWriter.set_labels` replaces the
        labels of some of them and :meth:`SnapshotWriter.add` appends new records.
        """
        all_steps = [dict(step)] if step is not None else [dict(s) for s in steps]
        if not all_steps:
            raise StoreError("a snapshot needs at least one step")
        for st in all_steps:
            for key in ("kind", "config"):
                if key not in st:
                    raise StoreError(f"step description lacks {key!r}")
        if not self._cleaned:
            self._cleaned = True
            self.clean_stale_tmp()
        parents = [self.resolve(p) for p in parents] if layer else list(parents)
        return SnapshotWriter(
            self, steps=all_steps, parents=parents, shard_rows=shard_rows, batch_rows=batch_rows, layer=layer
        )

    def gc_tmp(self) -> int:
        """Remove every leftover of interrupted writes (only when no write is running); returns how many."""
        base = self._path("tmp")
        if not self.fs.exists(base):
            return 0
        entries = self.fs.ls(base, detail=False)
        for e in entries:
            self.fs.rm(e, recursive=True)
        return len(entries)

    def clean_stale_tmp(self) -> tuple[int, int]:
        """Remove the temporaries of dead processes: ``<store>/tmp/*`` and scratch folders; returns (count, bytes).

        A temporary folder carries ``owner.json`` (host, pid); it is stale when its process is gone (on
        this host), or when it has no owner file and is over an hour old (left by an older version).
        A live writer's folder is never touched. Logged (as a warning) when something was freed.
        """
        count = freed = 0
        candidates: list[tuple[Any, str]] = []
        base = self._path("tmp")
        if self.fs.exists(base):
            candidates += [(self.fs, e) for e in self.fs.ls(base, detail=False)]
        local = fsspec.filesystem("file")
        scratch_root = tempfile.gettempdir()
        with contextlib.suppress(OSError):
            candidates += [
                (local, os.path.join(scratch_root, n)) for n in os.listdir(scratch_root) if n.startswith(SCRATCH_PREFIX)
            ]
        for fs, entry in candidates:
            if not _is_stale(fs, entry):
                continue
            size = _tree_size(fs, entry)
            with contextlib.suppress(FileNotFoundError, OSError):
                fs.rm(entry, recursive=True)
                count += 1
                freed += size
        if count:
            log.warning("removed %d stale temporaries of interrupted runs (%.1f MB freed)", count, freed / 1e6)
        self.last_cleanup = (count, freed)
        return count, freed

    @contextlib.contextmanager
    def scratch_dir(self) -> Iterator[str]:
        """A private local folder for spill files, removed on exit and cleaned by the next writer if killed."""
        path = tempfile.mkdtemp(prefix=SCRATCH_PREFIX)
        _write_owner(fsspec.filesystem("file"), path)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def _read_json(self, path: str) -> Any:
        try:
            with self.fs.open(path, "rb") as f:
                return json.loads(f.read())
        except FileNotFoundError:
            raise StoreError(f"missing {path}") from None
        except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
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
        layer: bool = False,
    ) -> None:
        if layer and len(parents) != 1:
            raise StoreError(f"a label layer has exactly one parent, got {len(parents)}")
        self.store = store
        self.steps = steps
        self.parents = parents
        self.shard_rows = shard_rows
        self.batch_rows = batch_rows
        self.tmp = store._path("tmp", uuid.uuid4().hex)
        store.fs.makedirs(f"{self.tmp}/data", exist_ok=True)
        _write_owner(store.fs, self.tmp)
        # One hash per stream, combined at commit: the id depends on what was written, not on
        # how calls to add(), drop(), quarantine() and attach() interleaved.
        self._hashes = {name: hashlib.sha256() for name in ("config", "dropped", "quarantine")}
        self._blocks = bytearray()  # sha256 of each full block of RECORD_BLOCK records written so far
        self._pending: list[Record] = []  # records written since the last full block
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
        self.layer_base: str | None = parents[0] if layer else None
        self._base_rows = 0
        self._layer_buffer: list[dict[str, Any]] = []
        self._layer_pq: pq.ParquetWriter | None = None
        self._layer_file: Any = None
        self._layer_rows = 0
        self._last_pos = -1
        self._touched_blocks: list[int] = []  # blocks (of RECORD_BLOCK base rows) holding a changed record
        if layer:
            self._start_from_base(store._manifest_of(parents[0]))

    def _start_from_base(self, base: Mapping[str, Any]) -> None:
        """A layer's counts start from its base's: the manifest describes the merged records."""
        self._hashes["layer"] = hashlib.sha256()
        self._base_rows = int(base["rows"])
        for source, by_split in base["counts"].items():
            self.counts[source].update(by_split)
        for source, by_split in (base.get("turns") or {}).items():
            self.turn_counts[source].update(by_split)
        for task, by_src in (base.get("label_distribution") or {}).items():
            for src, by_split in by_src.items():
                for split, values in by_split.items():
                    self.label_counts[task][src][split].update(values)
        for task, by_src in (base.get("label_distribution_by_source") or {}).items():
            for src, by_source in by_src.items():
                for source, by_split in by_source.items():
                    for split, values in by_split.items():
                        self.label_counts_by_source[task][src][(source, split)].update(values)

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

    def set_labels(self, pos: int, record: Record, labels: Sequence[Mapping[str, Any]]) -> None:
        """Replace the labels of the base's record at position ``pos`` (a layer writer only).

        ``record`` is that record as the base holds it (from :meth:`SnapshotStore.find_records` or
        :meth:`SnapshotStore.iter_records`); ``labels`` its complete new list. Positions must increase.
        """
        if self.layer_base is None:
            raise StoreError("set_labels needs a layer writer: store.writer(..., layer=True)")
        if not self._last_pos < pos < self._base_rows:
            raise StoreError(
                f"label layer position {pos} for record {record['id']!r}: expected {self._last_pos + 1}.."
                f"{self._base_rows - 1}, increasing"
            )
        self._last_pos = pos
        if not self._touched_blocks or self._touched_blocks[-1] != pos // RECORD_BLOCK:
            self._touched_blocks.append(pos // RECORD_BLOCK)
        source, split = record["source"], record["split"]
        for lab, sign in [*((lab, -1) for lab in record["labels"]), *((lab, 1) for lab in labels)]:
            self.label_counts[lab["task"]][lab["source"]][split][lab["value"]] += sign
            self.label_counts_by_source[lab["task"]][lab["source"]][(source, split)][lab["value"]] += sign
        self._layer_buffer.append({"pos": pos, "id": record["id"], "labels": list(labels)})
        if len(self._layer_buffer) >= self.batch_rows:
            self._flush_layer()

    def _flush_layer(self) -> None:
        if not self._layer_buffer:
            return
        table = pa.Table.from_pylist(self._layer_buffer, schema=LAYER_SCHEMA)
        self._layer_buffer = []
        for batch in table.to_batches():
            self._hashes["layer"].update(batch.serialize())
        self._open_layer().write_table(table, row_group_size=self.batch_rows)
        self._layer_rows += table.num_rows

    def _open_layer(self) -> pq.ParquetWriter:
        if self._layer_pq is None:
            self.store.fs.makedirs(f"{self.tmp}/layer", exist_ok=True)
            self._layer_file = HashingFile(self.store.fs.open(f"{self.tmp}/{LAYER_PATH}", "wb"))
            self._layer_pq = pq.ParquetWriter(self._layer_file, LAYER_SCHEMA, compression="zstd")
        return self._layer_pq

    def _close_layer(self) -> dict[str, Any]:
        """Close the layer file (an empty one if no label changed) and describe it for the manifest."""
        self._flush_layer()
        self._open_layer().close()
        self._layer_file.close()
        self._layer_pq = None
        return {"path": LAYER_PATH, "rows": self._layer_rows, **self._layer_file.record()}

    def quarantine(self, row: Mapping[str, Any]) -> None:
        """Keep a rejected raw row with its reason beside the snapshot."""
        if self._quarantine is None:
            self._quarantine = HashingFile(self.store.fs.open(f"{self.tmp}/quarantine.jsonl", "wb"))
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
            self._dropped_file = HashingFile(self.store.fs.open(f"{self.tmp}/dropped/part-00000.parquet", "wb"))
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
        f = HashingFile(self.store.fs.open(f"{self.tmp}/{path}", "wb"))
        try:
            pq.write_table(table, f, compression="zstd")
        finally:
            f.close()
        self._artifacts[name] = {"path": path, "rows": table.num_rows, **f.record()}

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
        records = self._buffer
        table = to_table(records)
        self._buffer = []
        self._hash_blocks(records, table)
        if self._pq is None:
            name = f"data/part-{self._shard_count:05d}.parquet"
            self._pq_file = HashingFile(self.store.fs.open(f"{self.tmp}/{name}", "wb"))
            self._pq = pq.ParquetWriter(self._pq_file, RECORD_SCHEMA, compression="zstd")
            self._shards.append({"path": name, "rows": 0})
            self._shard_count += 1
        self._pq.write_table(table, row_group_size=self.batch_rows)
        self._shards[-1]["rows"] += table.num_rows
        self.rows += table.num_rows
        if self._shards[-1]["rows"] >= self.shard_rows:
            self._close_shard()

    def _hash_blocks(self, records: list[Record], table: pa.Table) -> None:
        """Hash the records in blocks of RECORD_BLOCK by position, whatever the flushes' sizes."""
        if not self._pending and len(records) == RECORD_BLOCK:
            self._blocks += block_digest(table)  # a flush that is exactly one block (the usual case)
            return
        self._pending.extend(records)
        while len(self._pending) >= RECORD_BLOCK:
            self._blocks += block_digest(to_table(self._pending[:RECORD_BLOCK]))
            del self._pending[:RECORD_BLOCK]

    def _records_digest(self) -> str:
        if self._pending:
            self._blocks += block_digest(to_table(self._pending))
            self._pending = []
        return hashlib.sha256(bytes(self._blocks)).hexdigest()

    def _close_shard(self) -> None:
        if self._pq is not None:
            self._pq.close()
            self._pq_file.close()
            self._shards[-1].update(self._pq_file.record())
            self._pq = None
            self._pq_file = None

    # ---------------------------------------------------------- publish

    def commit(self, *, extra: Mapping[str, Any] | None = None) -> str:
        """Publish the snapshot; returns its id (an existing one if the data is identical)."""
        self._flush()
        self._close_shard()
        if self._ids.may_repeat():
            _raise_on_duplicate_ids(self)
        layer_desc = None
        if self.layer_base is not None:
            layer_desc = self._close_layer()
            if self.rows:
                self._check_new_ids_against_base()
        self._flush_dropped()
        self._close_dropped()
        if self._quarantine is not None:
            self._quarantine.close()
        if self.rows == 0 and not self._shards and self.layer_base is None:
            # An empty snapshot still gets one (empty) shard so readers need no special case.
            f = HashingFile(self.store.fs.open(f"{self.tmp}/data/part-00000.parquet", "wb"))
            try:
                pq.write_table(RECORD_SCHEMA.empty_table(), f)
            finally:
                f.close()
            self._shards.append({"path": "data/part-00000.parquet", "rows": 0, **f.record()})
        combined: dict[str, Any] = {name: h.hexdigest() for name, h in self._hashes.items()}
        combined["records"] = self._records_digest()
        combined["artifacts"] = dict(sorted(self._artifact_digests.items()))
        sid = hashlib.sha256(canonical_json(combined)).hexdigest()[:ID_LENGTH]
        blocks = bytes(self._blocks)
        content_id = sid
        if self.layer_base is not None:
            # The merged records' blocks, and the id a full copy of them by the same step would get.
            blocks = self._merged_blocks()
            content = {k: v for k, v in combined.items() if k != "layer"}
            content["records"] = hashlib.sha256(blocks).hexdigest()
            content_id = hashlib.sha256(canonical_json(content)).hexdigest()[:ID_LENGTH]
        self.snapshot_id = sid
        if self.store.exists(sid):
            self._discard_as_duplicate(sid)
            return sid
        f = HashingFile(self.store.fs.open(f"{self.tmp}/{BLOCKS_PATH}", "wb"))
        try:
            f.write(blocks)
        finally:
            f.close()
        self.manifest = self._manifest(sid, extra or {}, combined)
        self.manifest["record_blocks"] = {"path": BLOCKS_PATH, "size": RECORD_BLOCK, **f.record()}
        self.manifest["content_id"] = content_id
        if layer_desc is not None:
            self.manifest["layer"] = {"base": self.layer_base, "base_rows": self._base_rows, "labels": layer_desc}
            self.manifest["rows"] = self._base_rows + self.rows
        self.manifest["seal"] = seal_of(self.manifest)
        with self.store.fs.open(f"{self.tmp}/manifest.json", "wb") as f:
            f.write(json.dumps(self.manifest, indent=1, ensure_ascii=False).encode())
        self.store.fs.makedirs(self.store._path("snapshots"), exist_ok=True)
        if not self._publish(sid):
            self._discard_as_duplicate(sid)
            return sid
        self._closed = True
        return sid

    def _merged_blocks(self) -> bytes:
        """The block digests of what this layer reads as (its base with the new labels, then its records).

        Starts from the base's block digests and rehashes only the blocks holding a changed record, plus
        the base's last (partial) block and the appended records when there are any: a full copy written
        by the same step hashes to the same digests.
        """
        base = self.layer_base
        assert base is not None
        out = bytearray(self.store.record_blocks(base))
        n_base, size = self._base_rows, RECORD_BLOCK
        tail = n_base // size if self.rows else None  # from this block on, the appended records follow
        changed = _LayerRows(self.store.fs, f"{self.tmp}/{LAYER_PATH}") if self._layer_rows else None

        def base_records(lo: int, hi: int) -> list[Record]:
            records = from_batch(self.store.read_positions(base, np.arange(lo, hi)))
            if changed is not None:
                for pos, labels in changed.upto(hi):
                    records[pos - lo]["labels"] = labels
            return records

        try:
            for block in self._touched_blocks if changed is not None else []:
                if tail is not None and block >= tail:
                    break
                lo = block * size
                out[32 * block : 32 * (block + 1)] = block_digest(to_table(base_records(lo, min(lo + size, n_base))))
            if tail is not None:
                del out[32 * tail :]
                parts = [base_records(tail * size, n_base)], (from_batch(batch) for batch in self.iter_written())
                out += blocks_of(itertools.chain(*parts), size)
        finally:
            if changed is not None:
                changed.close()
        return bytes(out)

    def _check_new_ids_against_base(self) -> None:
        """Records a layer appends must not repeat an id of its base (read: the base's id column)."""
        new = [rid for batch in self.iter_written(columns=["id"]) for rid in batch.column(0).to_pylist()]
        clash = self.store.locate(self.layer_base, new)  # type: ignore[arg-type]
        if clash:
            rid = min(clash)
            raise InputError(
                f"duplicate record id {rid!r}: snapshot {self.layer_base} already holds it (row {clash[rid]}); "
                "ids must be unique within a snapshot"
            )

    def _discard_as_duplicate(self, sid: str) -> None:
        """An identical snapshot is already published (by an earlier run, or a writer that won a race)."""
        self.abort()
        self.reused = True
        self.manifest = self.store.manifest(sid)

    def _publish(self, sid: str) -> bool:
        """Move the temporary folder into place in one step; False when an identical snapshot won the race.

        On a local disk this is one ``rename(2)`` of the folder, which fails (instead of moving the
        folder *into* the other) when the target exists: a snapshot appears whole or not at all.
        Object stores have no folder rename: files are copied one by one, the manifest last, so a
        reader (which looks for the manifest) never sees a half-published snapshot.
        """
        fs, final = self.store.fs, self.store.snapshot_path(sid)
        fs.rm(f"{self.tmp}/{OWNER_FILE}")
        if self.store.is_local:
            for _ in range(2):
                try:
                    os.rename(self.tmp, final)
                    return True
                except OSError as exc:
                    if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                        raise
                if self.store.exists(sid):
                    return False
                # a folder without a manifest: debris of an older version's interrupted publish
                aside = self.store._path("tmp", f"{uuid.uuid4().hex}-debris")
                with contextlib.suppress(OSError):
                    os.rename(final, aside)
            raise StoreError(f"cannot publish snapshot {sid}: {final} exists and could not be moved aside")
        if self.store.exists(sid):
            return False
        files = [p for p in fs.find(self.tmp) if not p.endswith("/manifest.json")]
        for path in [*files, f"{self.tmp}/manifest.json"]:
            fs.mv(path, final + path[len(self.tmp) :])
        with contextlib.suppress(FileNotFoundError, OSError):
            fs.rm(self.tmp, recursive=True)
        return True

    def _close_dropped(self) -> None:
        if self._dropped is not None:
            self._dropped.close()
            self._dropped_file.close()
            self._dropped = None

    def abort(self) -> None:
        for closer in (
            self._close_shard,
            self._close_dropped,
            lambda: self._layer_pq and (self._layer_pq.close(), self._layer_file.close()),
            lambda: self._quarantine and self._quarantine.close(),
        ):
            with contextlib.suppress(Exception):
                closer()
        with contextlib.suppress(FileNotFoundError):
            if self.store.fs.exists(self.tmp):
                self.store.fs.rm(self.tmp, recursive=True)
        self._closed = True

    def _manifest(self, sid: str, extra: Mapping[str, Any], digests: Mapping[str, Any]) -> dict[str, Any]:
        manifest = {
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
            "label_distribution": _pruned(
                {
                    task: {
                        src: {split: dict((+c).most_common()) for split, c in sorted(by_split.items())}
                        for src, by_split in sorted(by_src.items())
                    }
                    for task, by_src in sorted(self.label_counts.items())
                }
            ),
            "label_distribution_by_source": _pruned(
                {
                    task: {
                        src: _nest({key: dict((+c).most_common()) for key, c in sorted(by_key.items())})
                        for src, by_key in sorted(by_src.items())
                    }
                    for task, by_src in sorted(self.label_counts_by_source.items())
                }
            ),
            "shards": self._shards,
            "quarantine": (
                {"path": "quarantine.jsonl", "rows": self._quarantine_rows, **self._quarantine.record()}
                if self._quarantine_rows
                else None
            ),
            "dropped": (
                {
                    "path": "dropped/part-00000.parquet",
                    "rows": self._dropped_rows,
                    "by_step": {st: dict(sorted(c.items())) for st, c in self.dropped_counts.items()},
                    **self._dropped_file.record(),
                }
                if self._dropped_rows
                else None
            ),
            "artifacts": self._artifacts,
            "validation": None,
            **extra,
            "integrity": INTEGRITY_VERSION,
            "digests": dict(digests),
        }
        manifest["seal"] = seal_of(manifest)
        return manifest


def block_digest(table: pa.Table) -> bytes:
    """The sha256 of a block of records as Arrow IPC (the table :func:`to_table` builds of them)."""
    digest = hashlib.sha256()
    for batch in table.to_batches():
        digest.update(batch.serialize())
    return digest.digest()


def blocks_of(parts: Iterable[list[Record]], size: int | None = None) -> bytes:
    """The block digests of records arriving in lists, in order: one per ``size`` (RECORD_BLOCK) records."""
    size = size or RECORD_BLOCK
    out = bytearray()
    pending: list[Record] = []
    for part in parts:
        pending.extend(part)
        while len(pending) >= size:
            out += block_digest(to_table(pending[:size]))
            del pending[:size]
    if pending:
        out += block_digest(to_table(pending))
    return bytes(out)


class _LayerRows:
    """A layer file's (position, labels) rows in order, read a row group at a time."""

    def __init__(self, fs: Any, path: str) -> None:
        self._file = fs.open(path, "rb")
        self._batches = pq.ParquetFile(self._file).iter_batches(columns=["pos", "labels"], batch_size=RECORD_BLOCK)
        self._rows: list[dict[str, Any]] = []

    def upto(self, stop: int) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """The rows with a position below ``stop`` not yet taken (labels as record dicts hold them)."""
        while True:
            if not self._rows:
                batch = next(self._batches, None)
                if batch is None:
                    return
                self._rows = from_batch_labels(batch)
                self._rows.reverse()
            if self._rows[-1]["pos"] >= stop:
                return
            row = self._rows.pop()
            yield row["pos"], row["labels"]

    def close(self) -> None:
        self._file.close()


def from_batch_labels(batch: pa.RecordBatch | pa.Table) -> list[dict[str, Any]]:
    """Layer rows as Python values, each label's ``attrs`` a dict as in a record."""
    rows = batch.to_pylist()
    for row in rows:
        for lab in row["labels"]:
            if lab.get("attrs") is not None:
                lab["attrs"] = dict(lab["attrs"])
    return rows


def _label_columns(columns: Sequence[str] | None) -> list[str]:
    """The label columns (``labels`` or nested ``labels.list.element.task``) among ``columns``; all if None."""
    if columns is None:
        return ["labels"]
    return [c for c in columns if c == "labels" or c.startswith("labels.")]


class _LayerCursor:
    """Walks a label layer's rows (sorted by position) alongside its base's batches."""

    def __init__(self, batches: Iterator[pa.RecordBatch]) -> None:
        self._batches = batches
        self._pos = np.empty(0, dtype=np.int64)
        self._ids: pa.Array = pa.array([], pa.string())
        self._labels: pa.Array | None = None
        self._at = 0
        self._exhausted = False

    def _load(self) -> bool:
        for batch in self._batches:
            if batch.num_rows:
                self._pos = batch.column("pos").to_numpy()
                self._ids = batch.column("id")
                self._labels = batch.column("labels")
                self._at = 0
                return True
        self._exhausted = True
        return False

    def take(self, lo: int, hi: int) -> tuple[np.ndarray, pa.Array, pa.Array | None]:
        """The layer's rows with ``lo <= pos < hi``: positions, ids, labels."""
        pos_parts, id_parts, label_parts = [], [], []
        while True:
            if self._at >= len(self._pos) and (self._exhausted or not self._load()):
                break
            rest = self._pos[self._at :]
            if rest[0] < lo:
                raise StoreError(f"label layer row at position {int(rest[0])} is out of order")
            end = self._at + int(np.searchsorted(rest, hi, side="left"))
            if end > self._at:
                pos_parts.append(self._pos[self._at : end])
                id_parts.append(self._ids.slice(self._at, end - self._at))
                label_parts.append(self._labels.slice(self._at, end - self._at))
            self._at = end
            if end < len(self._pos):
                break
        if not pos_parts:
            return np.empty(0, dtype=np.int64), pa.array([], pa.string()), None
        return np.concatenate(pos_parts), pa.concat_arrays(id_parts), pa.concat_arrays(label_parts)

    def done(self) -> bool:
        return self._at >= len(self._pos) and (self._exhausted or not self._load())


def _layer_rows_at(batches: Iterator[pa.RecordBatch], positions: np.ndarray) -> tuple[np.ndarray, pa.Array, pa.Array]:
    """The layer rows whose position is in ``positions`` (sorted, unique)."""
    pos_parts, id_parts, label_parts = [], [], []
    for batch in batches:
        pos = batch.column("pos").to_numpy()
        hit = np.flatnonzero(np.isin(pos, positions, assume_unique=True))
        if hit.size:
            idx = pa.array(hit)
            pos_parts.append(pos[hit])
            id_parts.append(batch.column("id").take(idx))
            label_parts.append(batch.column("labels").take(idx))
    if not pos_parts:
        return np.empty(0, dtype=np.int64), pa.array([], pa.string()), pa.array([], RECORD_SCHEMA.field("labels").type)
    return np.concatenate(pos_parts), pa.concat_arrays(id_parts), pa.concat_arrays(label_parts)


def _replace_labels(
    batch: pa.RecordBatch, rows: np.ndarray, ids: pa.Array, labels: pa.Array, *, where: str
) -> pa.RecordBatch:
    """``batch`` with the labels of ``rows`` (indices into it) replaced by ``labels``; ids must match."""
    names = batch.schema.names
    if "id" in names:
        have = batch.column("id").take(pa.array(rows))
        if not have.equals(ids):
            bad = next(i for i in range(len(rows)) if have[i] != ids[i])
            raise StoreError(
                f"{where}: row {int(rows[bad])} of a batch holds record {have[bad].as_py()!r}, "
                f"the layer expected {ids[bad].as_py()!r}; the base was not the one the layer was written on"
            )
    i = names.index("labels")
    col = batch.column(i)
    if labels.type != col.type:
        labels = labels.cast(col.type)
    n = batch.num_rows
    index = np.arange(n, dtype=np.int64)
    index[rows] = n + np.arange(len(rows), dtype=np.int64)
    arrays = list(batch.columns)
    arrays[i] = pa.concat_arrays([col, labels]).take(pa.array(index))
    return pa.RecordBatch.from_arrays(arrays, schema=batch.schema)


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


def _pruned(tree: dict[str, Any]) -> dict[str, Any]:
    """A nested dict of counts without its empty branches (a layer's label counts can fall to zero)."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            value = _pruned(value)
            if not value:
                continue
        out[key] = value
    return out


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


OWNER_FILE = "owner.json"


def _write_owner(fs: Any, folder: str) -> None:
    """Mark a temporary folder with the process that owns it, so a later run can tell it is stale."""
    payload = {"host": socket.gethostname(), "pid": os.getpid(), "started_at": _now()}
    with fs.open(f"{folder}/{OWNER_FILE}", "wb") as f:
        f.write(json.dumps(payload).encode())


def _is_stale(fs: Any, folder: str) -> bool:
    """True when the process that made ``folder`` is gone (see :meth:`SnapshotStore.clean_stale_tmp`)."""
    try:
        with fs.open(f"{folder}/{OWNER_FILE}", "rb") as f:
            owner = json.loads(f.read())
        host, pid = owner["host"], int(owner["pid"])
    except FileNotFoundError:
        try:
            info = fs.info(folder)
        except FileNotFoundError:
            return False
        mtime = info.get("mtime") or info.get("created") or info.get("LastModified")
        if hasattr(mtime, "timestamp"):
            mtime = mtime.timestamp()
        return mtime is not None and time.time() - float(mtime) > STALE_UNOWNED_AFTER
    except (ValueError, KeyError, TypeError, OSError):
        return False  # unreadable owner: leave it alone
    if host != socket.gethostname():
        return False  # another machine's process: cannot tell
    return not process_alive(pid)


def _tree_size(fs: Any, folder: str) -> int:
    with contextlib.suppress(OSError, FileNotFoundError):
        return sum(int(info.get("size") or 0) for info in fs.find(folder, detail=True).values())
    return 0


def _preview(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=True, default=str) if not isinstance(value, bytes) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def ref_entries(fs: Any, base: str, read: Any) -> dict[str, tuple[str, str | None]]:
    """Every ref file ``<base>/<name>.json``: name -> (id, None), or ("", what is wrong) when ``read`` fails."""
    if not fs.exists(base):
        return {}
    out: dict[str, tuple[str, str | None]] = {}
    for entry in fs.ls(base, detail=False):
        name = entry.rstrip("/").rsplit("/", 1)[-1]
        if name.endswith(".json") and not name.startswith("."):
            try:
                out[name[: -len(".json")]] = (read(entry), None)
            except StoreError as exc:
                out[name[: -len(".json")]] = ("", str(exc))
    return dict(sorted(out.items()))
