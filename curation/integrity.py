"""What makes a snapshot's content hash mean something: checksums, a manifest seal, and ``verify``.

A snapshot written by this version records, in its manifest,

* for every file (data shards, dropped rows, artifacts, quarantine): its size and sha256, and for
  Parquet files its row count;
* ``digests``: the parts its id is the hash of (config, records, dropped, quarantine, artifacts), so
  the id can be recomputed from them and, by :func:`verify_snapshot`, from the data itself;
* ``seal``: the sha256 of the manifest's own canonical JSON (without the seal), so a manifest edited
  by hand (a status set to ``validated``, a row count changed) is caught when it is read.

Readers check what is cheap every time (the seal, row counts against the Parquet footers, file sizes)
and each file's sha256 once per store object before its first byte is used (see
:meth:`curation.store.SnapshotStore.check_file`); ``workbench snapshots verify`` recomputes
everything, ids included. This guards against accidents (a shard copied over another, a truncated
download, a bit flip, a hand edit), not against someone who rewrites the checksums on purpose.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from curation.errors import StoreError

if TYPE_CHECKING:
    from curation.store import SnapshotStore

CHUNK = 1 << 20
#: The manifest fields that say "this snapshot records checksums" (absent in older snapshots).
INTEGRITY_VERSION = 1


class HashingFile:
    """A write-only file wrapper that counts and hashes every byte on its way to ``raw``.

    Parquet writers and plain writes go through it, so a file's checksum is known the moment it is
    closed, without reading it back.
    """

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.sha256.update(data)
        self.bytes += len(data)
        self.raw.write(data)
        return len(data)

    def tell(self) -> int:
        return self.bytes

    def flush(self) -> None:
        self.raw.flush()

    def close(self) -> None:
        self.raw.close()

    @property
    def closed(self) -> bool:
        return bool(self.raw.closed)

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def record(self) -> dict[str, Any]:
        """``{"bytes", "sha256"}`` of everything written so far."""
        return {"bytes": self.bytes, "sha256": self.sha256.hexdigest()}


def file_sha256(fs: Any, path: str) -> tuple[int, str]:
    """Size and sha256 of a file, read sequentially in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    with fs.open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def check_recorded_file(
    fs: Any,
    path: str,
    desc: dict[str, Any] | Any,
    *,
    checked: set[tuple[str, int, str]],
    owner: str,
    rows: str,
    hint: str = "",
    check_sums: bool = True,
) -> None:
    """Raise a StoreError naming ``path`` unless it matches its manifest entry ``desc`` (bytes, sha256).

    Size always; sha256 once per ``checked`` set (the caller's memo), when ``check_sums``. ``owner``
    and ``rows`` word the missing-file message ("snapshot X lists it with N rows"), ``hint`` ends it.
    """
    key = (path, int(desc["bytes"]), str(desc["sha256"]))
    if key in checked:
        return
    try:
        size = int(fs.size(path))
    except FileNotFoundError:
        raise StoreError(f"{path} is missing ({owner} lists it with {rows} rows){hint}") from None
    if size != desc["bytes"]:
        raise StoreError(
            f"{path} has changed since it was written ({size:,} B, the manifest says {desc['bytes']:,} B): "
            "truncated or replaced; nothing was read from it"
        )
    if not check_sums:
        return
    _, digest = file_sha256(fs, path)
    if digest != desc["sha256"]:
        raise StoreError(
            f"{path} has changed since it was written (sha256 {digest[:16]}..., the manifest says "
            f"{desc['sha256'][:16]}...): corrupt or replaced; nothing was read from it"
        )
    checked.add(key)


def seal_of(manifest: dict[str, Any]) -> str:
    """The sha256 of a manifest's canonical JSON, the ``seal`` field left out."""
    from curation.store import canonical_json

    return hashlib.sha256(canonical_json({k: v for k, v in manifest.items() if k != "seal"})).hexdigest()


def snapshot_id_of(digests: dict[str, Any]) -> str:
    """The snapshot id from its component digests (what :class:`SnapshotWriter` computes at commit)."""
    from curation.store import ID_LENGTH, canonical_json

    return hashlib.sha256(canonical_json(digests)).hexdigest()[:ID_LENGTH]


def config_digest(parents: list[str], steps: list[dict[str, Any]]) -> str:
    """The digest of what made a snapshot: its parents and each step's kind and config."""
    from curation.store import canonical_json

    material = {"parents": parents, "steps": [{"kind": st["kind"], "config": st["config"]} for st in steps]}
    return hashlib.sha256(canonical_json(material)).hexdigest()


def file_entries(manifest: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(relative path, descriptor)`` of every file a manifest lists (shards, dropped, artifacts, quarantine)."""
    for shard in manifest.get("shards") or []:
        yield shard["path"], shard
    layer = manifest.get("layer")
    if layer:
        yield layer["labels"]["path"], layer["labels"]
    blocks = manifest.get("record_blocks")
    if blocks:
        yield blocks["path"], blocks
    dropped = manifest.get("dropped")
    if dropped:
        yield dropped["path"], dropped
    for art in (manifest.get("artifacts") or {}).values():
        yield art["path"], art
    quarantine = manifest.get("quarantine")
    if quarantine:
        yield quarantine["path"], quarantine


def check_manifest(manifest: Any, *, sid: str, path: str) -> None:
    """The checks every read of a manifest makes: shape, id, seal, row count, status. Raises StoreError."""
    if not isinstance(manifest, dict):
        found = type(manifest).__name__
        raise StoreError(f"{path}: not a snapshot manifest (a JSON object was expected, found {found})")
    missing = [k for k in ("id", "status", "rows", "shards", "steps", "parents", "counts") if k not in manifest]
    if missing:
        raise StoreError(f"{path}: not a snapshot manifest (missing {', '.join(missing)})")
    if manifest["id"] != sid:
        raise StoreError(f"{path}: the manifest says id {manifest['id']!r} but lies in folder {sid!r}")
    if "seal" in manifest and seal_of(manifest) != manifest["seal"]:
        raise StoreError(
            f"{path}: the manifest was changed after it was written (its seal does not match its content); "
            f"run `workbench snapshots verify {sid}`"
        )
    shards = manifest["shards"]
    if not isinstance(shards, list) or not all(isinstance(s, dict) and "path" in s and "rows" in s for s in shards):
        raise StoreError(f"{path}: 'shards' must be a list of {{path, rows}}")
    listed = sum(int(s["rows"]) for s in shards)
    layer = manifest.get("layer")
    if layer is not None:
        if not (
            isinstance(layer, dict) and isinstance(layer.get("base"), str) and isinstance(layer.get("labels"), dict)
        ):
            raise StoreError(f"{path}: 'layer' must be {{base, base_rows, labels}}")
        listed += int(layer["base_rows"])
    if listed != manifest["rows"]:
        raise StoreError(f"{path}: the manifest says {manifest['rows']:,} rows but its shards list {listed:,}")
    last = manifest["steps"][-1]["kind"] if manifest["steps"] else None
    if manifest["status"] == "validated" and last not in ("validate", "compact"):
        raise StoreError(f"{path}: status 'validated' but the last step is not a validation")


# ------------------------------------------------------------------ verify


@dataclass
class VerifyReport:
    """What ``workbench snapshots verify`` found for one snapshot."""

    id: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # not errors: e.g. an older snapshot without checksums
    files: int = 0
    bytes: int = 0
    rows: int = 0
    seconds: float = 0.0
    id_recomputed: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_snapshot(store: SnapshotStore, sid: str, *, recompute_id: bool = True) -> VerifyReport:
    """Recompute everything a snapshot's manifest claims: file sizes and checksums, row counts, the seal, the id.

    Never raises for what it finds: each problem is one line of the report, naming the file.
    """
    start = time.perf_counter()
    report = VerifyReport(id=sid)
    manifest_path = store._path("snapshots", sid, "manifest.json")
    try:
        manifest = store._read_json(manifest_path)
        check_manifest(manifest, sid=sid, path=manifest_path)
    except StoreError as exc:
        report.problems.append(str(exc))
        report.seconds = time.perf_counter() - start
        return report
    if "seal" not in manifest:
        report.notes.append("written before snapshots carried checksums: sizes and sums cannot be checked, only the id")
    report.rows = manifest["rows"]
    for parent in manifest["parents"]:
        if not store.exists(parent):
            report.problems.append(f"parent snapshot {parent} is missing from the store")

    files_ok = True
    for rel, desc in file_entries(manifest):
        full = store._path("snapshots", sid, rel)
        try:
            size, digest = file_sha256(store.fs, full)
        except FileNotFoundError:
            report.problems.append(f"{full}: missing")
            files_ok = False
            continue
        report.files += 1
        report.bytes += size
        if "sha256" in desc and (size != desc["bytes"] or digest != desc["sha256"]):
            what = f"size {size:,} B, expected {desc['bytes']:,} B" if size != desc["bytes"] else "sha256 differs"
            report.problems.append(f"{full}: content changed since it was written ({what})")
            files_ok = False
            continue
        if rel.endswith(".parquet"):
            try:
                rows = store._parquet_rows(full)
            except StoreError as exc:
                report.problems.append(str(exc))
                files_ok = False
                continue
            if "rows" in desc and rows != desc["rows"]:
                report.problems.append(f"{full}: {rows:,} rows, the manifest says {desc['rows']:,}")
                files_ok = False

    if recompute_id and files_ok:
        try:
            digests = recompute_digests(store, sid, manifest)
        except StoreError as exc:
            report.problems.append(str(exc))
        else:
            recomputed = snapshot_id_of(digests)
            report.id_recomputed = True
            stored = manifest.get("digests")
            if stored:
                for part in (
                    "config",
                    "records",
                    "dropped",
                    "quarantine",
                    "artifacts",
                    *(["layer"] if "layer" in digests else []),
                ):
                    if stored.get(part) != digests[part]:
                        report.problems.append(f"snapshots/{sid}: the {part} digest recomputed from the data differs")
            if recomputed != sid:
                report.problems.append(
                    f"snapshots/{sid}: the id recomputed from the data is {recomputed}: content and id disagree"
                )
            if manifest.get("record_blocks"):
                report.problems.extend(_block_problems(store, sid, manifest, digests))
    report.seconds = time.perf_counter() - start
    return report


def _block_problems(store: SnapshotStore, sid: str, manifest: dict[str, Any], digests: dict[str, Any]) -> list[str]:
    """The block file against the records it describes, and a layer's content id against its merged records."""
    desc = manifest["record_blocks"]
    try:
        with store.fs.open(store._path("snapshots", sid, desc["path"]), "rb") as f:
            stored = f.read()
        merged = record_blocks_of(store, sid=sid, size=desc["size"]) if manifest.get("layer") else None
    except (OSError, StoreError) as exc:
        return [f"snapshots/{sid}: cannot re-read the records to check the block digests: {exc}"]
    if merged is None:
        if hashlib.sha256(stored).hexdigest() != digests["records"]:
            return [f"snapshots/{sid}/{desc['path']}: the block digests do not match the records"]
        return []
    if stored != merged:
        return [f"snapshots/{sid}/{desc['path']}: the block digests do not match the merged records"]
    content = {k: v for k, v in digests.items() if k != "layer"}
    content["records"] = hashlib.sha256(merged).hexdigest()
    if manifest.get("content_id") != snapshot_id_of(content):
        return [f"snapshots/{sid}: the content id recomputed from the merged records is {snapshot_id_of(content)}"]
    return []


def recompute_digests(store: SnapshotStore, sid: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """The component digests of a snapshot, recomputed from its files the way the writer computed them.

    Records and dropped rows are hashed batch by batch as Arrow IPC, one batch per Parquet row group
    (one row group is one writer flush), after a round trip through Python rows: that rebuilds the
    exact buffers the writer hashed. Quarantine lines are hashed as written; artifacts as the
    writer hashes them (their table, chunks combined).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curation.record import from_batch, to_table
    from curation.store import DROPPED_SCHEMA

    def table_digest(paths: list[str], rebuild: Any) -> str:
        digest = hashlib.sha256()
        for path in paths:
            with store.fs.open(path, "rb") as f:
                pf = pq.ParquetFile(f)
                for group in range(pf.num_row_groups):
                    table = rebuild(pf.read_row_group(group))
                    for batch in table.to_batches():
                        digest.update(batch.serialize())
        return digest.hexdigest()

    def rebuild_records(table: pa.Table) -> pa.Table:
        return to_table(from_batch(table))

    def rebuild_dropped(table: pa.Table) -> pa.Table:
        rows = from_batch(table)
        return pa.Table.from_pylist(rows, schema=DROPPED_SCHEMA)

    base = store._path("snapshots", sid)
    try:
        shard_paths = [f"{base}/{s['path']}" for s in manifest["shards"] if s["rows"]]
        if manifest.get("record_blocks"):
            size = manifest["record_blocks"]["size"]
            records = hashlib.sha256(record_blocks_of(store, shard_paths, size=size)).hexdigest()
        else:  # written before block digests: one stream over the row groups
            records = table_digest(shard_paths, rebuild_records)
        dropped_desc = manifest.get("dropped")
        dropped = table_digest([f"{base}/{dropped_desc['path']}"] if dropped_desc else [], rebuild_dropped)
        quarantine = hashlib.sha256()
        if manifest.get("quarantine"):
            with store.fs.open(f"{base}/{manifest['quarantine']['path']}", "rb") as f:
                while chunk := f.read(CHUNK):
                    quarantine.update(chunk)
        artifacts = {}
        for name, desc in sorted((manifest.get("artifacts") or {}).items()):
            with store.fs.open(f"{base}/{desc['path']}", "rb") as f:
                table = pq.read_table(f).combine_chunks()
            art = hashlib.sha256()
            for batch in table.to_batches():
                art.update(batch.serialize())
            artifacts[name] = art.hexdigest()
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise StoreError(f"snapshots/{sid}: cannot re-read the data to recompute the id: {exc}") from None
    out = {
        "config": config_digest(manifest["parents"], manifest["steps"]),
        "records": records,
        "dropped": dropped,
        "quarantine": quarantine.hexdigest(),
        "artifacts": artifacts,
    }
    if manifest.get("layer"):
        from curation.store import LAYER_SCHEMA, from_batch_labels

        def rebuild_layer(table: pa.Table) -> pa.Table:
            return pa.Table.from_pylist(from_batch_labels(table), schema=LAYER_SCHEMA)

        layer_desc = manifest["layer"]["labels"]
        try:
            out["layer"] = table_digest([f"{base}/{layer_desc['path']}"] if layer_desc["rows"] else [], rebuild_layer)
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise StoreError(f"snapshots/{sid}: cannot re-read the label layer to recompute the id: {exc}") from None
    return out


def record_blocks_of(
    store: SnapshotStore, paths: list[str] | None = None, *, sid: str | None = None, size: int | None = None
) -> bytes:
    """The block digests (32 bytes per block of ``size`` records, RECORD_BLOCK by default) of Parquet files'
    records, or of a snapshot's merged records (``sid``: a layer's base with its labels, then its own records)."""
    import pyarrow.parquet as pq

    from curation.record import from_batch
    from curation.store import RECORD_BLOCK, blocks_of

    size = size or RECORD_BLOCK

    def batches() -> Iterator[Any]:
        if sid is not None:
            yield from store.iter_batches(sid, batch_size=size)
            return
        for path in paths or []:
            with store.fs.open(path, "rb") as f:
                yield from pq.ParquetFile(f).iter_batches(batch_size=size)

    return blocks_of((from_batch(batch) for batch in batches()), size)


def quick_problems(store: SnapshotStore, sid: str) -> list[str]:
    """What a cheap look finds wrong with a snapshot: unreadable manifest, missing files, wrong sizes or row counts.

    No checksum is computed (that is :func:`verify_snapshot`); meant for ``snapshots show``.
    """
    path = store._path("snapshots", sid, "manifest.json")
    try:
        manifest = store._read_json(path)
        check_manifest(manifest, sid=sid, path=path)
    except StoreError as exc:
        return [str(exc)]
    problems = []
    for rel, desc in file_entries(manifest):
        full = store._path("snapshots", sid, rel)
        try:
            size = int(store.fs.size(full))
        except FileNotFoundError:
            problems.append(f"{full}: missing")
            continue
        if "bytes" in desc and size != desc["bytes"]:
            problems.append(f"{full}: {size:,} B, the manifest says {desc['bytes']:,} B")
            continue
        if rel.endswith(".parquet"):
            try:
                rows = store._parquet_rows(full)
            except StoreError as exc:
                problems.append(str(exc))
                continue
            if rows != desc.get("rows", rows):
                problems.append(f"{full}: {rows:,} rows, the manifest says {desc['rows']:,}")
    return problems
