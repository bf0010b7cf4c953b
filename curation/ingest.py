"""Ingest: the raw files of one source -> one new snapshot.

The driver runs an adapter, validates every record against the canonical
schema, keeps ids unique, and writes the snapshot. By default the first bad
raw row stops everything (:class:`~curation.errors.InputError` naming file and
line; nothing is written). With ``on_error="skip"`` good records are written and
each rejected row goes to the snapshot's quarantine file with its reason; the
manifest counts them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from curation.adapters.base import Rejected, get_adapter, require_paths
from curation.errors import InputError, SchemaError, WorkbenchError
from curation.record import validate_record
from curation.store import SnapshotStore

OnError = Literal["raise", "skip"]
ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(kept, rejected)`` every few hundred records."""


@dataclass
class IngestResult:
    snapshot_id: str
    source: str
    kept: int
    rejected: int
    counts: dict[str, dict[str, int]]
    reused: bool
    tag: str | None
    adapter_stats: dict[str, int] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)


def ingest(
    source: str,
    paths: Sequence[str | os.PathLike[str]],
    *,
    store: SnapshotStore,
    tag: str | None = None,
    on_error: OnError = "raise",
    progress: ProgressCallback | None = None,
    inputs: list[dict[str, Any]] | None = None,
) -> IngestResult:
    """Read ``paths`` with the adapter for ``source`` into a new snapshot (tagged ``tag``).

    ``inputs``: :func:`describe_inputs` of ``paths`` when the caller has it already (each file is hashed once).
    """
    if on_error not in ("raise", "skip"):
        raise WorkbenchError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    adapter = get_adapter(source)
    resolved = require_paths([Path(p) for p in paths])
    if inputs is None:
        inputs = describe_inputs(resolved)
    step = {
        "kind": "ingest",
        # Hashed into the snapshot id: what was done, not where the files lay.
        "config": {"source": source, "adapter": adapter.name, "adapter_version": adapter.version},
        "inputs": inputs,
    }
    kept = rejected = 0
    with store.writer(step=step) as writer:
        for item in adapter.read(resolved):
            if not isinstance(item, Rejected):
                try:
                    validate_record(item)
                except SchemaError as exc:
                    prov = item.get("provenance") or {} if isinstance(item, dict) else {}
                    item = Rejected(
                        file=str(prov.get("file", "?")),
                        line=prov.get("line"),
                        record=item.get("id") if isinstance(item, dict) else None,
                        reason=f"record does not fit the schema: {exc}",
                    )
            if isinstance(item, Rejected):
                if on_error == "raise":
                    raise item.error()
                writer.quarantine(item.to_json())
                rejected += 1
            else:
                writer.add(item)
                kept += 1
            if progress is not None and (kept + rejected) % 500 == 0:
                progress(kept, rejected)
        if progress is not None:
            progress(kept, rejected)
        if kept == 0 and rejected == 0:
            raise InputError(f"no {source} records found in the given input", file=", ".join(map(str, paths)))
        stats = dict(sorted(adapter.stats.items()))
        writer.steps[0]["counters"] = {"read": kept + rejected, "kept": kept, "rejected": rejected, **stats}
        sid = writer.commit()
        reused = writer.reused
    manifest = store.manifest(sid)
    if tag:
        store.set_ref(tag, sid)
    store.set_ref("latest", sid)
    return IngestResult(
        snapshot_id=sid,
        source=source,
        kept=kept,
        rejected=rejected,
        counts=manifest["counts"],
        reused=reused,
        tag=tag,
        adapter_stats=stats,
        manifest=manifest,
    )


def describe_inputs(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Each input file with its size and SHA-256 (directories are walked)."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(q for q in p.rglob("*") if q.is_file()))
        else:
            files.append(p)
    out = []
    for f in files:
        h = hashlib.sha256()
        try:
            with open(f, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
            size = f.stat().st_size
        except OSError as exc:  # unreadable (permissions, a file that vanished, an I/O error)
            raise InputError(f"cannot read this input file: {exc.strerror or exc}", file=str(f)) from None
        out.append({"path": str(f.resolve()), "bytes": size, "sha256": h.hexdigest()})
    return out
