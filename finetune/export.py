"""Export a validated snapshot to training files: chat ``messages`` rows, Parquet + JSONL per split.

Layout in the snapshot store (same fsspec root as the snapshots)::

    <store>/exports/<export_id>/manifest.json        written last: an export exists iff its manifest does
    <store>/exports/<export_id>/data/<split>.parquet  train / validation / test (those present)
    <store>/exports/<export_id>/data/<split>.jsonl    the same rows, in the same order
    <store>/export-refs/<name>.json                  {"id": ..., "updated_at": ...}

Each row: ``id`` (``<task>:<record id>[#t<turn>]``, ``~<k>`` on the k-th extra
copy of an upsampled row), ``task``, ``messages`` (optional system, then
user/assistant turns; every assistant message is a training target),
``record_id``, ``source``, ``split``, ``target_source`` (the least trusted label
source among the row's targets: gold | human | llm | model), ``template``
(``<task>@<version>``) and ``heads`` (one ``{"emotions": [...], "strategy": ...}``
per assistant message: what the optional classification heads of
:mod:`finetune.heads` learn from the context before that message; empty where a
task has none, such as ``traits``).

The export id is the hash of what made it (snapshot id, tasks with their
template versions, mix, seed, system prompt, the tokenizer its statistics were
counted with) and of the rows themselves; an export is immutable and a second
export with the same inputs writes nothing. It is assembled under
``<store>/tmp/`` and published by one rename, as snapshots are.

Mixing (``mix_alpha``): temperature sampling over the (task, source) groups of
the TRAIN split: group i gets a share p_i ∝ n_i^α of the train rows (the total
is kept), drawn without replacement when it shrinks and by whole copies plus a
draw when it grows, deterministically from ``seed``. Validation and test are
never resampled, so evaluation sees the data as it is. ``None`` keeps every row.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from curation.errors import StoreError, WorkbenchError
from curation.integrity import HashingFile, check_recorded_file, seal_of
from curation.record import SPLITS
from curation.store import (
    OWNER_FILE,
    SnapshotStore,
    _now,
    _write_owner,
    canonical_json,
    code_version,
    ref_entries,
)
from finetune.tasks.base import Example, ExportTask, build_tasks

if TYPE_CHECKING:
    import pyarrow as pa
    from transformers import PreTrainedTokenizerBase

FORMAT_VERSION = 2  # 2: rows carry ``heads``
ID_LENGTH = 16
WHITESPACE_PROXY = "whitespace words (proxy: no tokenizer given)"
ROW_FIELDS = ("id", "task", "messages", "record_id", "source", "split", "target_source", "template", "heads")
FORMATS = ("parquet", "jsonl")
_REF_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

ProgressCallback = Callable[[str, int], None]
"""Called as ``progress(stage, items_done)``."""


def row_schema() -> pa.Schema:
    import pyarrow as pa

    message = pa.struct(
        [pa.field("role", pa.string(), nullable=False), pa.field("content", pa.string(), nullable=False)]
    )
    head = pa.struct(
        [pa.field("emotions", pa.list_(pa.string()), nullable=False), pa.field("strategy", pa.string(), nullable=True)]
    )
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("task", pa.string(), nullable=False),
            pa.field("messages", pa.list_(pa.field("item", message, nullable=False)), nullable=False),
            pa.field("record_id", pa.string(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("split", pa.string(), nullable=False),
            pa.field("target_source", pa.string(), nullable=False),
            pa.field("template", pa.string(), nullable=False),
            pa.field("heads", pa.list_(pa.field("item", head, nullable=False)), nullable=False),
        ]
    )


@dataclass(frozen=True)
class ExportResult:
    export_id: str
    manifest: dict[str, Any]
    reused: bool
    tag: str | None


@dataclass(frozen=True)
class ExportInfo:
    """One line of ``export list``; ``problem`` is set for an unreadable manifest."""

    id: str
    created_at: str
    snapshot: str
    tasks: tuple[str, ...]
    rows: int
    mix: str
    refs: tuple[str, ...]
    problem: str | None = None


# ---------------------------------------------------------------- the store of exports


class ExportStore:
    """Exports and their refs, beside the snapshots of a :class:`~curation.store.SnapshotStore`.

    Files are checked as the snapshot store checks its shards: size always, sha256 once per
    object and file before first use (``data_files``).
    """

    def __init__(self, store: SnapshotStore | str | None = None) -> None:
        self.snapshots = store if isinstance(store, SnapshotStore) else SnapshotStore(store)
        self.fs = self.snapshots.fs
        self._checked: set[tuple[str, int, str]] = set()

    def __repr__(self) -> str:
        return f"ExportStore({self.snapshots.url!r})"

    def _path(self, *parts: str) -> str:
        return self.snapshots._path(*parts)

    def export_path(self, export_id: str) -> str:
        return self._path("exports", export_id)

    def exists(self, export_id: str) -> bool:
        return bool(re.fullmatch(r"[0-9a-f]{6,64}", export_id)) and self.fs.exists(
            self._path("exports", export_id, "manifest.json")
        )

    def ids(self) -> list[str]:
        base = self._path("exports")
        if not self.fs.exists(base):
            return []
        names = (e.rstrip("/").rsplit("/", 1)[-1] for e in self.fs.ls(base, detail=False))
        return sorted(n for n in names if self.exists(n))

    def refs(self) -> dict[str, str]:
        """Every readable export ref and the export id it points at."""
        out = {}
        for name, (eid, problem) in self._ref_entries().items():
            if problem is None:
                out[name] = eid
        return out

    def _ref_entries(self) -> dict[str, tuple[str, str | None]]:
        return ref_entries(self.fs, self._path("export-refs"), self._read_ref)

    def _read_ref(self, path: str) -> str:
        name = path.rstrip("/").rsplit("/", 1)[-1][: -len(".json")]
        payload = _read_json(self.fs, path, what=f"export ref {name!r}")
        eid = payload.get("id") if isinstance(payload, dict) else None
        if not isinstance(eid, str) or not re.fullmatch(r"[0-9a-f]{6,64}", eid):
            raise StoreError(f'export ref file {path} is corrupt: expected {{"id": "<export id>"}}')
        return eid

    def resolve(self, ref: str) -> str:
        """An export id from a ref name, a full id, or a unique id prefix (6+ characters)."""
        ref_file = self._path("export-refs", f"{ref}.json")
        if _REF_NAME.match(ref) and self.fs.exists(ref_file):
            eid = self._read_ref(ref_file)
            if not self.exists(eid):
                raise StoreError(
                    f"export ref {ref!r} points at export {eid}, which is not in store {self.snapshots.url}"
                )
            return eid
        if self.exists(ref):
            return ref
        if len(ref) >= 6 and re.fullmatch(r"[0-9a-f]+", ref):
            matches = [eid for eid in self.ids() if eid.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise StoreError(f"export id prefix {ref!r} is ambiguous: {', '.join(matches)}")
        known = list(self.refs())
        hint = f" (export refs: {', '.join(known[:10])})" if known else " (the store has no export refs yet)"
        raise StoreError(f"no export or export ref named {ref!r} in store {self.snapshots.url}{hint}")

    def manifest(self, ref: str) -> dict[str, Any]:
        """An export's manifest, checked (shape, id, seal)."""
        eid = self.resolve(ref)
        path = self._path("exports", eid, "manifest.json")
        manifest = _read_json(self.fs, path, what=f"export {eid}")
        if not isinstance(manifest, dict) or manifest.get("kind") != "export" or "files" not in manifest:
            raise StoreError(f"{path}: not an export manifest")
        if manifest.get("id") != eid:
            raise StoreError(f"{path}: the manifest says id {manifest.get('id')!r} but lies in folder {eid!r}")
        if seal_of(manifest) != manifest.get("seal"):
            raise StoreError(f"{path}: the manifest was changed after it was written (its seal does not match)")
        return manifest

    def data_files(self, ref: str, fmt: str = "parquet") -> dict[str, str]:
        """``{split: full path}`` of one format, each file checked against the manifest first.

        A missing, truncated or altered file is a StoreError naming it: nothing is handed out.
        """
        if fmt not in FORMATS:
            raise WorkbenchError(f"export format {fmt!r}: expected one of {', '.join(FORMATS)}")
        manifest = self.manifest(ref)
        eid = manifest["id"]
        out = {}
        for split, formats in manifest["files"].items():
            desc = formats[fmt]
            out[split] = self._check_file(eid, desc)
        return out

    def _check_file(self, eid: str, desc: Mapping[str, Any]) -> str:
        path = self._path("exports", eid, desc["path"])
        check_recorded_file(self.fs, path, desc, checked=self._checked, owner=f"export {eid}", rows=f"{desc['rows']:,}")
        return path

    def read_rows(self, ref: str, split: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        """Rows of one split (checked file), as dicts; ``limit`` reads only the first rows."""
        import pyarrow.parquet as pq

        files = self.data_files(ref)
        if split not in files:
            raise WorkbenchError(f"export {self.resolve(ref)} has no {split!r} split (it has {', '.join(files)})")
        with self.fs.open(files[split], "rb") as f:
            # no reader threads: with `tokenizers` loaded, pyarrow's threaded read of a Python file
            # object aborts the process at exit ("terminate called without an active exception")
            table = pq.read_table(f, use_threads=False)
        if limit is not None:
            table = table.slice(0, limit)
        return table.to_pylist()

    def list(self) -> list[ExportInfo]:
        """Every export, oldest first, with its refs; an unreadable one is listed with its problem."""
        by_id: dict[str, list[str]] = defaultdict(list)
        for name, eid in self.refs().items():
            by_id[eid].append(name)
        infos = []
        for eid in self.ids():
            refs = tuple(by_id.get(eid, ()))
            try:
                m = self.manifest(eid)
            except StoreError as exc:
                infos.append(ExportInfo(eid, "", "", (), 0, "", refs, str(exc)))
                continue
            infos.append(
                ExportInfo(
                    id=eid,
                    created_at=m.get("created_at", ""),
                    snapshot=m["snapshot"]["id"],
                    tasks=tuple(m["tasks"]),
                    rows=m["rows"],
                    mix=_mix_label(m.get("mix")),
                    refs=refs,
                )
            )
        return sorted(infos, key=lambda i: (i.created_at, i.id))

    def set_ref(self, name: str, export_id: str) -> None:
        """Point ``name`` at an export, atomically (write aside, rename over)."""
        if not _REF_NAME.match(name):
            raise StoreError(f"invalid export ref name {name!r}: use letters, digits, '.', '_' or '-' (max 128)")
        if not self.exists(export_id):
            raise StoreError(f"cannot point export ref {name!r} at missing export {export_id}")
        base = self._path("export-refs")
        self.fs.makedirs(base, exist_ok=True)
        tmp = self._path("export-refs", f".{name}.{uuid.uuid4().hex}.tmp")
        with self.fs.open(tmp, "wb") as f:
            f.write(json.dumps({"id": export_id, "updated_at": _now()}, indent=1).encode())
        self.fs.mv(tmp, self._path("export-refs", f"{name}.json"))


# ---------------------------------------------------------------- export


def export_snapshot(
    ref: str,
    *,
    store: SnapshotStore | str | None,
    tasks: Sequence[str],
    mix_alpha: float | None = None,
    seed: int = 0,
    system_prompt: str | None = None,
    tokenizer: str | PreTrainedTokenizerBase | None = None,
    tag: str | None = None,
    allow_unvalidated: bool = False,
    progress: ProgressCallback | None = None,
) -> ExportResult:
    """Export snapshot ``ref`` as training rows for ``tasks``; returns the (new or existing) export.

    Refuses an unvalidated snapshot unless ``allow_unvalidated``. ``tokenizer`` (a name for
    :func:`finetune.tokenizer.load_tokenizer`, or a tokenizer) is used for token-length
    statistics; without one they are whitespace word counts, named as such. Nothing is
    written when a row cannot be made, and nothing is half-written on any error.
    """
    from curation.validate import require_validated

    exports = ExportStore(store)
    snapshots = exports.snapshots
    _check_options(mix_alpha=mix_alpha, seed=seed, system_prompt=system_prompt, tag=tag)
    task_objects = build_tasks(list(tasks), system_prompt=system_prompt)
    snapshot = require_validated(snapshots, ref, allow_unvalidated=allow_unvalidated, verb="export")
    sid = snapshot["id"]
    tok = _resolve_tokenizer(tokenizer)

    rows = _build_rows(snapshots, sid, task_objects, progress)
    if not rows:
        raise WorkbenchError(
            f"snapshot {sid} ({ref}) gives no examples for tasks {', '.join(tasks)} "
            "(no record of a source these tasks read, or no labels they need)"
        )
    before = _counts(rows)
    label_before = _label_counts(rows)
    mix_report = None
    if mix_alpha is not None:
        rows, mix_report = _mix(rows, alpha=mix_alpha, seed=seed)
    config = {
        "format_version": FORMAT_VERSION,
        "snapshot": sid,
        "tasks": {t.name: t.template_ref for t in task_objects},
        "mix": None if mix_alpha is None else {"strategy": "temperature", "alpha": float(mix_alpha)},
        "seed": int(seed),
        "system_prompt": system_prompt,
        "token_lengths": _tokenizer_identity(tok),
    }
    data_digest = hashlib.sha256()
    for row in rows:
        data_digest.update(canonical_json(_public(row)))
        data_digest.update(b"\n")
    digests = {"config": hashlib.sha256(canonical_json(config)).hexdigest(), "data": data_digest.hexdigest()}
    eid = hashlib.sha256(canonical_json(digests)).hexdigest()[:ID_LENGTH]

    if exports.exists(eid):
        manifest = exports.manifest(eid)
        reused = True
    else:
        lengths = _token_lengths(rows, tok, progress)
        manifest = {
            "kind": "export",
            "id": eid,
            "format_version": FORMAT_VERSION,
            "created_at": _now(),
            "code_version": code_version(),
            "snapshot": {
                "id": sid,
                "ref": ref,
                "status": snapshot.get("status"),
                "allow_unvalidated": bool(allow_unvalidated),
            },
            "tasks": {t.name: t.template_ref for t in task_objects},
            "templates": sorted(t.template_ref for t in task_objects),
            "system_prompt": system_prompt,
            "mix": mix_report,
            "seed": int(seed),
            "rows": len(rows),
            "counts": {"before_mix": before, "after_mix": _counts(rows)},
            "label_sources": {"before_mix": label_before, "after_mix": _label_counts(rows)},
            "head_labels": _head_counts(rows),
            "task_counters": {t.name: dict(sorted(t.counters.items())) for t in task_objects if t.counters},
            "token_lengths": lengths,
            "digests": digests,
        }
        manifest, reused = _write_export(exports, eid, rows, manifest, progress)
    if tag:
        exports.set_ref(tag, eid)
    return ExportResult(export_id=eid, manifest=manifest, reused=reused, tag=tag)


def _check_options(*, mix_alpha: float | None, seed: int, system_prompt: str | None, tag: str | None) -> None:
    if mix_alpha is not None:
        if isinstance(mix_alpha, bool) or not isinstance(mix_alpha, int | float) or not np.isfinite(mix_alpha):
            raise WorkbenchError(f"mix alpha: expected a number in [0, 1], got {mix_alpha!r}")
        if not 0.0 <= float(mix_alpha) <= 1.0:
            raise WorkbenchError(f"mix alpha: expected a number in [0, 1] (1 keeps proportions), got {mix_alpha}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise WorkbenchError(f"seed: expected an integer >= 0, got {seed!r}")
    if system_prompt is not None and not system_prompt.strip():
        raise WorkbenchError("system prompt: empty (leave it out for none)")
    if tag is not None and not _REF_NAME.match(tag):
        raise WorkbenchError(f"invalid export ref name {tag!r}: use letters, digits, '.', '_' or '-' (max 128)")


def parse_mix(spec: str | None) -> float | None:
    """``"temperature:0.5"`` -> 0.5; ``None`` / ``"none"`` -> None (no mixing)."""
    if spec is None or spec.strip().lower() in ("", "none"):
        return None
    kind, _, value = spec.partition(":")
    if kind.strip().lower() != "temperature" or not value:
        raise WorkbenchError(f"--mix {spec!r}: expected temperature:ALPHA (e.g. temperature:0.5) or none")
    try:
        alpha = float(value)
    except ValueError:
        raise WorkbenchError(f"--mix {spec!r}: {value!r} is not a number") from None
    _check_options(mix_alpha=alpha, seed=0, system_prompt=None, tag=None)
    return alpha


def _resolve_tokenizer(tokenizer: Any) -> Any:
    if tokenizer is None or not isinstance(tokenizer, str):
        return tokenizer
    from finetune.tokenizer import load_tokenizer

    return load_tokenizer(tokenizer)


def _tokenizer_identity(tok: Any) -> dict[str, Any]:
    if tok is None:
        return {"unit": WHITESPACE_PROXY}
    from finetune.tokenizer import chat_template_sha256, tokenizer_name

    return {"unit": "tokens", "tokenizer": tokenizer_name(tok), "chat_template_sha256": chat_template_sha256(tok)}


def _build_rows(
    snapshots: SnapshotStore, sid: str, tasks: list[ExportTask], progress: ProgressCallback | None
) -> list[dict[str, Any]]:
    rows = []
    seen = 0
    for record in snapshots.iter_records(sid):
        seen += 1
        for task in tasks:
            for example in task.examples(record):
                rows.append(_row(example, task, record))
        if progress is not None and seen % 500 == 0:
            progress("records", seen)
    if progress is not None:
        progress("records", seen)
    order = {t.name: i for i, t in enumerate(tasks)}
    rows.sort(key=lambda r: (SPLITS.index(r["split"]), order[r["task"]]))  # stable: record order within
    ids = Counter(r["id"] for r in rows)
    repeated = [i for i, n in ids.items() if n > 1]
    if repeated:
        raise WorkbenchError(f"export: example id {repeated[0]!r} was made twice (ids must be unique)")
    return rows


def _row(example: Example, task: ExportTask, record: Mapping[str, Any]) -> dict[str, Any]:
    if record["split"] not in SPLITS:
        raise WorkbenchError(f"record {record['id']}: split {record['split']!r} is not one of {', '.join(SPLITS)}")
    return {
        "id": example.id,
        "task": task.name,
        "messages": example.messages,
        "record_id": record["id"],
        "source": record["source"],
        "split": record["split"],
        "target_source": example.target_source,
        "template": task.template_ref,
        "heads": example.heads,
        "_targets": example.targets,
    }


def _public(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ROW_FIELDS}


def _counts(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, int]]]:
    """split -> task -> source -> rows."""
    c: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    for r in rows:
        c[r["split"]][r["task"]][r["source"]] += 1
    return {s: {t: dict(sorted(v.items())) for t, v in sorted(c[s].items())} for s in SPLITS if s in c}


def _label_counts(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, int]]]:
    """task -> split -> label source -> targets it supplied (a multi-turn row has several)."""
    c: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    for r in rows:
        c[r["task"]][r["split"]].update(r["_targets"])
    return {t: {s: dict(sorted(v.items())) for s, v in sorted(c[t].items())} for t in sorted(c)}


# ---------------------------------------------------------------- mixing


def _head_counts(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """split -> how many assistant messages carry an emotion / a strategy label for the heads."""
    c: dict[str, Counter[str]] = defaultdict(Counter)
    for r in rows:
        for h in r["heads"]:
            c[r["split"]]["emotion"] += bool(h["emotions"])
            c[r["split"]]["strategy"] += h["strategy"] is not None
    return {split: dict(sorted(v.items())) for split, v in c.items()}


def temperature_shares(sizes: Mapping[Any, int], alpha: float) -> dict[Any, float]:
    """p_i = n_i^α / Σ_j n_j^α over the groups with n_i > 0."""
    weights = {k: float(n) ** alpha for k, n in sizes.items() if n > 0}
    total = sum(weights.values())
    return {k: w / total for k, w in weights.items()}


def mixed_counts(sizes: Mapping[Any, int], alpha: float) -> dict[Any, int]:
    """Rows each group gets: N·p_i rounded by largest remainder, so they sum to N = Σ n_i."""
    shares = temperature_shares(sizes, alpha)
    total = sum(sizes[k] for k in shares)
    exact = {k: total * p for k, p in shares.items()}
    out = {k: int(np.floor(v)) for k, v in exact.items()}
    left = total - sum(out.values())
    for k in sorted(exact, key=lambda k: (-(exact[k] - out[k]), str(k)))[:left]:
        out[k] += 1
    return out


def _mix(rows: list[dict[str, Any]], *, alpha: float, seed: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    train = [r for r in rows if r["split"] == "train"]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in train:
        groups[(r["task"], r["source"])].append(r)
    sizes = {k: len(v) for k, v in groups.items()}
    report: dict[str, Any] = {
        "strategy": "temperature",
        "alpha": float(alpha),
        "seed": int(seed),
        "resampled_splits": ["train"],
        "note": "validation and test are exported as the snapshot has them, never resampled",
        "groups": {},
    }
    if not sizes:
        return rows, report
    targets = mixed_counts(sizes, alpha)
    shares = temperature_shares(sizes, alpha)
    mixed: list[dict[str, Any]] = []
    for key in sorted(groups):
        members, want = groups[key], targets[key]
        rng = np.random.default_rng([seed, *_key_ints(key)])
        n = len(members)
        if want <= n:
            picked = sorted(rng.choice(n, size=want, replace=False).tolist())
            mixed += [members[i] for i in picked]
        else:
            copies, extra = divmod(want, n)
            mixed += members
            for k in range(1, copies):
                mixed += [_copy(members[i], k) for i in range(n)]
            for i in sorted(rng.choice(n, size=extra, replace=False).tolist()):
                mixed.append(_copy(members[i], copies))
        report["groups"].setdefault(key[0], {})[key[1]] = {"before": n, "after": want, "share": round(shares[key], 6)}
    others = [r for r in rows if r["split"] != "train"]
    return mixed + others, report


def _copy(row: dict[str, Any], k: int) -> dict[str, Any]:
    return {**row, "id": f"{row['id']}~{k}"}


def _key_ints(key: tuple[str, str]) -> list[int]:
    digest = hashlib.sha256("\x00".join(key).encode()).digest()
    return [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]


def _mix_label(mix: Mapping[str, Any] | None) -> str:
    return "none" if not mix else f"{mix.get('strategy', '?')}:{mix.get('alpha')}"


# ---------------------------------------------------------------- token lengths


def _token_lengths(rows: list[dict[str, Any]], tok: Any, progress: ProgressCallback | None) -> dict[str, Any]:
    identity = _tokenizer_identity(tok)
    lengths = _lengths_with(tok, rows, progress) if tok is not None else [_words(r["messages"]) for r in rows]
    by: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for r, n in zip(rows, lengths, strict=True):
        by[r["split"]][r["task"]].append(n)
    stats = {s: {t: _stats(v) for t, v in sorted(by[s].items())} for s in SPLITS if s in by}
    return {**identity, "by_split": stats}


def _words(messages: Sequence[Mapping[str, str]]) -> int:
    return sum(len(m["content"].split()) for m in messages)


def _lengths_with(tok: Any, rows: list[dict[str, Any]], progress: ProgressCallback | None) -> list[int]:
    """Tokens of each row's rendered chat (the tokenizer's own template: what the model reads)."""
    out: list[int] = []
    batch = 512
    for start in range(0, len(rows), batch):
        texts = [tok.apply_chat_template(r["messages"], tokenize=False) for r in rows[start : start + batch]]
        encoded = tok(texts, add_special_tokens=False)["input_ids"]
        out += [len(ids) for ids in encoded]
        if progress is not None:
            progress("token lengths", len(out))
    return out


def _stats(values: list[int]) -> dict[str, float | int]:
    a = np.asarray(values, dtype=np.float64)
    return {
        "n": int(a.size),
        "mean": round(float(a.mean()), 2),
        "p50": round(float(np.percentile(a, 50)), 2),
        "p95": round(float(np.percentile(a, 95)), 2),
        "max": int(a.max()),
    }


# ---------------------------------------------------------------- writing


def _write_export(
    exports: ExportStore,
    eid: str,
    rows: list[dict[str, Any]],
    manifest: dict[str, Any],
    progress: ProgressCallback | None,
) -> tuple[dict[str, Any], bool]:
    """Write files under ``<store>/tmp/<uuid>``, then publish in one rename; (manifest, reused)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    snapshots = exports.snapshots
    fs = exports.fs
    snapshots.clean_stale_tmp()
    tmp = snapshots._path("tmp", uuid.uuid4().hex)
    fs.makedirs(f"{tmp}/data", exist_ok=True)
    _write_owner(fs, tmp)
    try:
        files: dict[str, dict[str, Any]] = {}
        schema = row_schema()
        for split in SPLITS:
            split_rows = [_public(r) for r in rows if r["split"] == split]
            if not split_rows:
                continue
            table = pa.Table.from_pylist(split_rows, schema=schema)
            entry: dict[str, Any] = {}
            out = HashingFile(fs.open(f"{tmp}/data/{split}.parquet", "wb"))
            try:
                pq.write_table(table, out, compression="zstd")
            finally:
                out.close()
            entry["parquet"] = {"path": f"data/{split}.parquet", "rows": len(split_rows), **out.record()}
            out = HashingFile(fs.open(f"{tmp}/data/{split}.jsonl", "wb"))
            try:
                buffer = io.BytesIO()
                for row in split_rows:
                    buffer.write(json.dumps(row, ensure_ascii=False).encode("utf-8"))
                    buffer.write(b"\n")
                    if buffer.tell() > 1 << 20:
                        out.write(buffer.getvalue())
                        buffer = io.BytesIO()
                out.write(buffer.getvalue())
            finally:
                out.close()
            entry["jsonl"] = {"path": f"data/{split}.jsonl", "rows": len(split_rows), **out.record()}
            files[split] = entry
            if progress is not None:
                progress("files", len(files))
        manifest = {**manifest, "files": files}
        manifest["seal"] = seal_of(manifest)
        with fs.open(f"{tmp}/manifest.json", "wb") as f:
            f.write(json.dumps(manifest, indent=1, ensure_ascii=False).encode())
        fs.makedirs(exports._path("exports"), exist_ok=True)
        if _publish(exports, tmp, eid):
            return manifest, False
    except BaseException:
        with contextlib.suppress(Exception):
            fs.rm(tmp, recursive=True)
        raise
    with contextlib.suppress(Exception):
        fs.rm(tmp, recursive=True)
    return exports.manifest(eid), True


def _publish(exports: ExportStore, tmp: str, eid: str) -> bool:
    """Move ``tmp`` to ``exports/<eid>`` in one step; False when an identical export won a race.

    As :meth:`curation.store.SnapshotWriter._publish`: one ``rename(2)`` on a local disk (which
    fails rather than nest when the target exists); on object stores the files are moved one by
    one, the manifest last, so a reader never sees a half-published export.
    """
    fs, final = exports.fs, exports.export_path(eid)
    fs.rm(f"{tmp}/{OWNER_FILE}")
    if exports.snapshots.is_local:
        for _ in range(2):
            try:
                os.rename(tmp, final)
                return True
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
            if exports.exists(eid):
                return False
            aside = exports._path("tmp", f"{uuid.uuid4().hex}-debris")
            with contextlib.suppress(OSError):
                os.rename(final, aside)
        raise StoreError(f"cannot publish export {eid}: {final} exists and could not be moved aside")
    if exports.exists(eid):
        return False
    moved = [p for p in fs.find(tmp) if not p.endswith("/manifest.json")]
    for path in [*moved, f"{tmp}/manifest.json"]:
        fs.mv(path, final + path[len(tmp) :])
    with contextlib.suppress(FileNotFoundError, OSError):
        fs.rm(tmp, recursive=True)
    return True


def _read_json(fs: Any, path: str, *, what: str) -> Any:
    try:
        with fs.open(path, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        raise StoreError(f"{what}: missing {path}") from None
    except ValueError as exc:
        raise StoreError(f"{what}: corrupt JSON in {path}: {exc}") from None
