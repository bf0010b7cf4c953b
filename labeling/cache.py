"""The completion cache: every paid completion, content-addressed, written the moment it arrives.

Key = sha256 of the canonical JSON of (provider identity, model, prompt template version, generation
parameters, messages, response format: the JSON schema or plain text), see :func:`completion_key`.
The value is the raw content (never parsed: changing a parser re-parses cached completions without
sending anything), the usage, the model, the prompt version, the response format the server honoured
and when it was made. The API key is never part of a key or a row.

Storage is one SQLite file in WAL mode with ``synchronous=NORMAL``: each completion is one committed
transaction, so a ``kill -9`` loses at most the requests in flight (a WAL commit survives a process
crash; only an OS crash or power loss can take back the last commits). Several processes may share
the file (SQLite locks; writers wait up to ``busy_timeout``). Within a process one connection is
shared by threads and coroutines behind a lock.

The file also remembers, per (provider, model), which response format the server accepted, so a
later run does not probe again.

**Requests in flight are shared between processes** (table ``inflight``): before sending, a run
claims the key (:meth:`~CompletionCache.claim`). A key another live run holds is not sent again: the
caller defers it and later takes the completion from the cache once it is there. A claim names its
holder (``pid@host`` and a random token) and carries a lease the holder renews while it works; a
holder that died (same host, its pid gone) or stopped renewing (``kill -9``, a frozen process on
another machine) loses its claims, so nothing waits forever.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from curation.errors import WorkbenchError
from curation.liveness import process_alive
from labeling.completion import RESPONSE_FORMATS, Completion, ResponseFormatKind, is_local_provider
from labeling.pricing import PriceTable

CACHE_SCHEMA_VERSION = 1
CACHE_FILENAME = "completions.sqlite"
DEFAULT_LEASE = 60.0  # seconds a claim lives without being renewed

_SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    key               TEXT PRIMARY KEY,
    provider          TEXT NOT NULL,
    model             TEXT NOT NULL,
    prompt_version    TEXT NOT NULL,
    content           TEXT NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    finish_reason     TEXT,
    response_format   TEXT NOT NULL,
    created_at        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS completions_model ON completions (model, prompt_version);
CREATE TABLE IF NOT EXISTS response_formats (
    provider        TEXT NOT NULL,
    model           TEXT NOT NULL,
    response_format TEXT NOT NULL,
    probed_at       TEXT NOT NULL,
    PRIMARY KEY (provider, model)
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS inflight (
    key         TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    host        TEXT NOT NULL,
    started_at  REAL NOT NULL,
    lease_until REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS inflight_owner ON inflight (owner);
"""
_COMPLETION_COLUMNS = (
    "key, content, prompt_tokens, completion_tokens, finish_reason, response_format, model, created_at"
)


def completion_key(
    *,
    provider: str,
    model: str,
    prompt_version: str,
    params: Mapping[str, Any],
    messages: Sequence[Mapping[str, Any]],
    json_schema: Mapping[str, Any] | None,
) -> str:
    """The content address of a completion request (hex sha256 of canonical JSON).

    ``params`` are the generation parameters that change the answer (temperature, max_tokens, seed,
    ...; ``None`` values are dropped so adding an unset option keeps old keys). The response format
    part is the JSON schema when one is asked for, else ``"text"``; which format the server actually
    honoured (a fallback) is stored in the row, not in the key, so a key is known before probing.
    """
    material = {
        "v": CACHE_SCHEMA_VERSION,
        "provider": provider,
        "model": model,
        "prompt_version": prompt_version,
        "params": {k: v for k, v in sorted(params.items()) if v is not None},
        "messages": list(messages),
        "response_format": {"json_schema": json_schema} if json_schema is not None else "text",
    }
    canonical = json.dumps(material, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _completion_of(row: Sequence[Any]) -> Completion:
    key, content, p_tok, c_tok, finish, fmt, model, created_at = row
    made = datetime.fromisoformat(created_at) if created_at else None
    if made is not None and made.tzinfo is None:
        made = made.replace(tzinfo=UTC)
    return Completion(content, p_tok, c_tok, finish, fmt, cached=True, key=key, model=model, created_at=made)


def default_cache_path(store_url: str | None) -> Path:
    """``<store>/cache/completions.sqlite`` for a local store, else ``~/.cache/workbench/completions.sqlite``.

    SQLite needs a local file, so a store on object storage keeps its cache in the user cache folder
    (``$XDG_CACHE_HOME`` when set).
    """
    if store_url:
        local = store_url[len("file://") :] if store_url.startswith("file://") else store_url
        if "://" not in local:
            return Path(local).expanduser() / "cache" / CACHE_FILENAME
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "workbench" / CACHE_FILENAME


@dataclass(frozen=True)
class CacheGroup:
    """Cached completions of one (provider, model, prompt version)."""

    provider: str
    model: str
    prompt_version: str
    rows: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None  # what they cost = what re-running them saves; None: model has no price


@dataclass(frozen=True)
class Claim:
    """The answer to :meth:`CompletionCache.claim`.

    ``claimed``: send it (then put the completion and release the claim); ``held``: another live run is
    sending it (``holder`` names it); ``done``: it is in the cache now (``completion``).
    """

    status: Literal["claimed", "held", "done"]
    completion: Completion | None = None
    holder: str | None = None


@dataclass(frozen=True)
class CacheStats:
    path: str
    rows: int
    size_bytes: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float  # of the groups with a known price
    unpriced_rows: int  # rows whose model has no price (their cost is unknown, not counted)
    groups: list[CacheGroup] = field(default_factory=list)


class CompletionCache:
    """A SQLite completion cache (see the module docstring); use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 30.0) -> None:
        self.path = Path(path).expanduser()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
            self._check_version()
        except sqlite3.DatabaseError as exc:
            raise WorkbenchError(f"completion cache {self.path}: {exc}") from exc
        self._lock = threading.Lock()

    def _check_version(self) -> None:
        row = self._conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
        if row is None:
            self._conn.execute(
                "INSERT OR IGNORE INTO meta (name, value) VALUES ('schema_version', ?)", (str(CACHE_SCHEMA_VERSION),)
            )
        elif int(row[0]) != CACHE_SCHEMA_VERSION:
            raise WorkbenchError(
                f"completion cache {self.path} has schema version {row[0]}, this workbench reads "
                f"{CACHE_SCHEMA_VERSION}: use another --cache path"
            )

    # -- lifecycle
    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> CompletionCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM completions").fetchone()[0]

    # -- completions
    def get(self, key: str) -> Completion | None:
        return self.get_many([key]).get(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, Completion]:
        """The cached completions among ``keys`` (``cached=True``), by key."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, Completion] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT {_COMPLETION_COLUMNS} FROM completions WHERE key IN ({marks})", chunk
                ).fetchall()
                for row in rows:
                    found[row[0]] = _completion_of(row)
        return found

    def put(self, completion: Completion, *, provider: str, prompt_version: str) -> Completion:
        """Store one completion now (its own committed transaction); a key already stored is kept.

        Returns the completion as stored: ``completion`` itself, or, when another run stored this key
        first, that row's content and time (so this run's labels match what a re-run will read).
        """
        made = completion.created_at or datetime.now(UTC)
        created_at = made.astimezone(UTC).isoformat(timespec="seconds")
        with self._lock:
            inserted = self._conn.execute(
                "INSERT OR IGNORE INTO completions (key, provider, model, prompt_version, content, prompt_tokens, "
                "completion_tokens, finish_reason, response_format, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    completion.key,
                    provider,
                    completion.model,
                    prompt_version,
                    completion.content,
                    completion.prompt_tokens,
                    completion.completion_tokens,
                    completion.finish_reason,
                    completion.response_format_used,
                    created_at,
                ),
            ).rowcount
            if inserted:
                return completion
            row = self._conn.execute(
                f"SELECT {_COMPLETION_COLUMNS} FROM completions WHERE key = ?", (completion.key,)
            ).fetchone()
        return replace(_completion_of(row), cached=False, attempts=completion.attempts)

    # -- requests in flight, shared between processes
    @staticmethod
    def new_owner() -> str:
        """A claim holder's name for one run: ``pid@host#token`` (a process may hold several runs)."""
        return f"{os.getpid()}@{socket.gethostname()}#{secrets.token_hex(4)}"

    def claim(self, key: str, owner: str, *, lease: float = DEFAULT_LEASE) -> Claim:
        """Take ``key`` to send it, unless it is cached already or another live run holds it (one transaction)."""
        now = time.time()
        pid_text, _, rest = owner.partition("@")
        host = rest.rpartition("#")[0]
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                row = self._conn.execute(
                    f"SELECT {_COMPLETION_COLUMNS} FROM completions WHERE key = ?", (key,)
                ).fetchone()
                if row is not None:
                    claim = Claim("done", completion=_completion_of(row))
                else:
                    held = self._conn.execute(
                        "SELECT owner, pid, host, lease_until FROM inflight WHERE key = ?", (key,)
                    ).fetchone()
                    if held is not None and held[0] != owner and held[3] > now and process_alive(held[1], held[2]):
                        claim = Claim("held", holder=held[0])
                    else:
                        self._conn.execute(
                            "INSERT OR REPLACE INTO inflight (key, owner, pid, host, started_at, lease_until) "
                            "VALUES (?, ?, ?, ?, ?, ?)",
                            (key, owner, int(pid_text), host, now, now + lease),
                        )
                        claim = Claim("claimed")
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return claim

    def release(self, key: str, owner: str) -> None:
        """Give up the claim on ``key`` (after its completion is stored, or after it failed)."""
        with self._lock:
            self._conn.execute("DELETE FROM inflight WHERE key = ? AND owner = ?", (key, owner))

    def release_all(self, owner: str) -> None:
        """Give up every claim of a run (it ends, is cancelled or failed)."""
        with self._lock:
            self._conn.execute("DELETE FROM inflight WHERE owner = ?", (owner,))

    def renew(self, owner: str, *, lease: float = DEFAULT_LEASE) -> None:
        """Extend the lease of every claim of a run (its heartbeat)."""
        with self._lock:
            self._conn.execute("UPDATE inflight SET lease_until = ? WHERE owner = ?", (time.time() + lease, owner))

    def in_flight(self) -> list[tuple[str, str]]:
        """(key, owner) of every claim in the file."""
        with self._lock:
            return [tuple(r) for r in self._conn.execute("SELECT key, owner FROM inflight ORDER BY key")]

    # -- what a server accepts
    def response_format(self, provider: str, model: str) -> ResponseFormatKind | None:
        """The response format this (provider, model) accepted when last probed, if ever."""
        with self._lock:
            row = self._conn.execute(
                "SELECT response_format FROM response_formats WHERE provider = ? AND model = ?", (provider, model)
            ).fetchone()
        return row[0] if row and row[0] in RESPONSE_FORMATS else None

    def remember_response_format(self, provider: str, model: str, kind: ResponseFormatKind) -> None:
        probed_at = datetime.now(UTC).isoformat(timespec="seconds")
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO response_formats (provider, model, response_format, probed_at) "
                "VALUES (?, ?, ?, ?)",
                (provider, model, kind, probed_at),
            )

    # -- maintenance
    def stats(self, prices: PriceTable | None = None) -> CacheStats:
        """Rows, tokens and cost (what a full re-run would have paid) per (provider, model, prompt version)."""
        prices = prices or PriceTable.load()
        with self._lock:
            rows = self._conn.execute(
                "SELECT provider, model, prompt_version, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens) "
                "FROM completions GROUP BY provider, model, prompt_version ORDER BY provider, model, prompt_version"
            ).fetchall()
        groups = []
        for provider, model, version, count, p_tok, c_tok in rows:
            cost = prices.cost(model, p_tok, c_tok, local=is_local_provider(provider))
            groups.append(CacheGroup(provider, model, version, count, p_tok, c_tok, cost))
        size = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
        return CacheStats(
            path=str(self.path),
            rows=sum(g.rows for g in groups),
            size_bytes=size,
            prompt_tokens=sum(g.prompt_tokens for g in groups),
            completion_tokens=sum(g.completion_tokens for g in groups),
            cost_usd=sum(g.cost_usd for g in groups if g.cost_usd is not None),
            unpriced_rows=sum(g.rows for g in groups if g.cost_usd is None),
            groups=groups,
        )

    def prune(
        self,
        *,
        model: str | None = None,
        prompt_version: str | None = None,
        older_than: timedelta | datetime | None = None,
    ) -> int:
        """Delete the completions matching every given filter (all of them when none is given); returns the count."""
        where, args = [], []
        if model is not None:
            where.append("model = ?")
            args.append(model)
        if prompt_version is not None:
            where.append("prompt_version = ?")
            args.append(prompt_version)
        if older_than is not None:
            cutoff = datetime.now(UTC) - older_than if isinstance(older_than, timedelta) else older_than
            if cutoff.tzinfo is None:
                cutoff = cutoff.replace(tzinfo=UTC)
            where.append("created_at < ?")
            args.append(cutoff.astimezone(UTC).isoformat(timespec="seconds"))
        sql = "DELETE FROM completions" + (f" WHERE {' AND '.join(where)}" if where else "")
        with self._lock:
            deleted = self._conn.execute(sql, args).rowcount
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return deleted
