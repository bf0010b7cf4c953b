"""Memoised stages: a derivation key (what went in) -> the snapshot that came out, as a build cache keeps.

A stage's key is a hash of its kind, the ids of the snapshots it reads (refs resolved: a ref that
moved is a different input), its configuration and the code that computes it (:func:`code_fingerprint`,
a hash of the workbench's own source files, so an edit anywhere recomputes). When a stage with a
known key is asked for again and the snapshot it produced is still in the store, the answer is that
snapshot, at once, without reading a record: ``workbench run`` re-run on unchanged inputs does no
work. ``--force`` recomputes (and, snapshots being content-addressed, arrives at the same id).

Layout: ``<store>/derivations/<key>.json`` = ``{"key", "kind", "output", "created_at", "material"}``,
written aside and renamed into place. An entry whose snapshot is gone, or that cannot be read, is
a miss, never an error.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from curation.store import SnapshotStore, canonical_json

#: The packages whose source makes up the code version of a derivation.
CODE_PACKAGES = ("curation", "labeling", "finetune", "evaluate")
DERIVATIONS = "derivations"


@cache
def code_fingerprint() -> str:
    """A hash of the workbench's source files (``.py`` and the ``.toml`` data they read), computed once."""
    digest = hashlib.sha256()
    for package in CODE_PACKAGES:
        spec = find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        root = Path(next(iter(spec.submodule_search_locations)))
        for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".toml") and p.is_file()):
            digest.update(f"{package}/{path.relative_to(root).as_posix()}\0".encode())
            digest.update(path.read_bytes())
            digest.update(b"\0")
    return digest.hexdigest()


def derivation_key(kind: str, *, parents: Sequence[str] = (), config: Mapping[str, Any] | None = None) -> str:
    """The key of one stage: its kind, the snapshot ids it reads, its config and the code version."""
    material = {"kind": kind, "parents": list(parents), "config": dict(config or {}), "code": code_fingerprint()}
    return hashlib.sha256(canonical_json(material)).hexdigest()


def _path(store: SnapshotStore, key: str) -> str:
    return store._path(DERIVATIONS, f"{key}.json")


def lookup(store: SnapshotStore, key: str, *, exists: Callable[[str], bool] | None = None) -> dict[str, Any] | None:
    """The entry for ``key`` if its output is still there (a snapshot; ``exists`` checks other kinds)."""
    try:
        with store.fs.open(_path(store, key), "rb") as f:
            entry = json.loads(f.read())
    except (FileNotFoundError, OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("key") != key or not isinstance(entry.get("output"), str):
        return None
    outputs = entry["output"].split(",")
    if not all((exists or store.exists)(sid) for sid in outputs):
        return None
    return entry


def remember(store: SnapshotStore, key: str, kind: str, output: str, **extra: Any) -> None:
    """Record that the stage ``key`` produced ``output`` (a snapshot id; several joined by commas)."""
    entry = {"key": key, "kind": kind, "output": output, "created_at": datetime.now(UTC).isoformat(), **extra}
    folder = store._path(DERIVATIONS)
    store.fs.makedirs(folder, exist_ok=True)
    tmp = f"{folder}/.{key}.{uuid.uuid4().hex}.tmp"
    with store.fs.open(tmp, "wb") as f:
        f.write(json.dumps(entry, indent=1, sort_keys=True).encode())
    store.fs.mv(tmp, _path(store, key))
