"""The Argilla round trip: push a snapshot's units for review, pull the answers into a NEW snapshot.

``push`` turns the units of some tasks (a record for record-level tasks, a turn
for turn-level ones: what :meth:`labeling.tasks.base.Task.items` yields) into
Argilla records whose client id is the record id, or ``<record id>#t<turn>``;
the machine label of each question becomes its suggestion (value, score,
agent), gold labels become ``gold_*`` metadata, and the pushed snapshot is
written into every record's ``snapshot`` metadata. Records are upserted by id
in batches, so pushing twice -- or re-running a push that failed half way --
duplicates nothing.

``pull`` reads every record of the dataset with its responses (submitted, draft,
discarded) and writes a new snapshot, child of the pushed one, in which every
answer is a ``human`` label: agent = the annotator's username, ``created_at`` =
the response's last update, ``attrs`` = ``status``, ``argilla_user_id``,
``argilla_dataset``, ``argilla_record_id`` (and ``confidence`` where asked).
Labels an earlier pull wrote (in the parent) are merged by (task, turn, agent):
the newest response wins, except that a newer draft or discard never replaces a
submitted answer (both are kept, each with its status). Every raw response, also
those that give no label (a discard with no values), is kept in the snapshot's
``review.responses`` table. The snapshot is written by the store's writer
(temporary folder, then rename), so a pull that fails leaves nothing behind.

Every call to the server is retried with exponential backoff on connection
errors, timeouts, 429 and 5xx; then a :class:`ReviewError` names the server and
what failed. The SDK's own transport retries are turned off so this policy is
the only one.

Why the records are read as JSON from ``GET /api/v1/datasets/{id}/records``
(through the SDK's authenticated HTTP client) rather than as ``rg.Record``:
the SDK's response model drops the responses' timestamps, and a discarded
response with no values cannot be represented by it at all.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
import os
import random
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from curation.errors import WorkbenchError
from curation.record import Label, Record, label
from curation.store import SnapshotStore
from labeling.review.settings import (
    CONFIDENCE_QUESTION,
    FIELD_CONTEXT,
    FIELD_CONVERSATION,
    FIELD_INSTRUCTIONS,
    FIELD_TEXT,
    QuestionSpec,
    ReviewSettings,
    build_settings,
    gold_metadata,
    known_questions,
)
from labeling.tasks.base import Task, get_tasks
from labeling.tasks.dialogue import SITUATION_KEYS, situation, truncate

if TYPE_CHECKING:
    import argilla as rg

T = TypeVar("T")
Progress = Callable[[int, int], None]  # (done, total)

DEFAULT_WORKSPACE = "workbench"
MACHINE_SOURCES = ("llm", "model")  # preference order for the suggestion
PULLED_ATTR = "argilla_user_id"  # marks a human label that a pull wrote
MAX_MESSAGE_CHARS = 20_000  # argilla-server's ChatField message limit
MAX_CHAT_MESSAGES = 200
_ASSISTANT_SPEAKERS = {"supporter", "listener", "assistant", "bot", "system"}
_USER_SPEAKERS = {"seeker", "speaker", "user", "author"}
_AGENT_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_:./ ")


class ReviewError(WorkbenchError):
    """The Argilla server could not be reached, refused, or failed; the message names it and what failed.

    ``cli_hint`` is the end of the message that names a command-line option (``; pass --from REF``);
    ``reason`` is the message without it, for the dashboard, whose pages say what to do there instead.
    """

    def __init__(self, message: str, *, cli_hint: str = "") -> None:
        super().__init__(message + cli_hint)
        self.reason = message


class UnknownParentError(ReviewError):
    """A pull cannot tell which snapshot of this store its dataset was pushed from: the caller names the parent."""


# ------------------------------------------------------------------ credentials


@dataclass(frozen=True)
class Credentials:
    """Where the Argilla server is and the key to it (never printed: ``api_key`` is not in the repr)."""

    api_url: str
    api_key: str = field(repr=False)
    origin: str = "arguments"  # where they came from, for error messages


def credentials_file(environ: Mapping[str, str] | None = None) -> Path:
    """``$WORKBENCH_HOME/argilla/credentials.json`` (``WORKBENCH_HOME`` defaults to ``~/.cache/workbench``)."""
    from labeling.review.server.manager import default_home

    return default_home(environ) / "credentials.json"


def resolve_credentials(
    api_url: str | None = None, api_key: str | None = None, *, environ: Mapping[str, str] | None = None
) -> Credentials:
    """The server and key: arguments, else ``ARGILLA_API_URL`` / ``ARGILLA_API_KEY``, else the local server's file.

    The file written by ``workbench review serve`` is read only to complete what
    is missing, and its key is never sent to another URL than its own.
    """
    env = os.environ if environ is None else environ
    url = api_url or env.get("ARGILLA_API_URL") or None
    key = api_key or env.get("ARGILLA_API_KEY") or None
    origin = "--api-url/--api-key" if api_url or api_key else "ARGILLA_API_URL/ARGILLA_API_KEY"
    if url and key:
        return Credentials(url.rstrip("/"), key, origin)
    path = credentials_file(env)
    saved: dict[str, Any] = {}
    if path.is_file():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ReviewError(f"{path}: cannot read the Argilla credentials ({exc})") from None
        if not isinstance(saved, dict) or not saved.get("api_url") or not saved.get("api_key"):
            raise ReviewError(f"{path}: expected a JSON object with 'api_url' and 'api_key'")
    if saved:
        saved_url = str(saved["api_url"]).rstrip("/")
        if url is None or url.rstrip("/") == saved_url:
            return Credentials(saved_url, key or str(saved["api_key"]), f"credentials file {path}")
    if url and not key:
        raise ReviewError(
            f"no API key for the Argilla server at {url}: set ARGILLA_API_KEY", cli_hint=" or pass --api-key"
        )
    raise ReviewError(
        f"no Argilla server configured (no credentials file at {path}): run `workbench review serve`, "
        "or set ARGILLA_API_URL and ARGILLA_API_KEY",
        cli_hint=" (or pass --api-url / --api-key)",
    )


# ------------------------------------------------------------------ retries


@dataclass(frozen=True)
class Retry:
    """Retry policy of every server call: ``attempts`` tries, full-jitter exponential backoff between them."""

    attempts: int = 4
    backoff: float = 0.5  # the first backoff ceiling, seconds; doubles each retry
    max_backoff: float = 8.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.backoff < 0 or self.max_backoff < 0:
            raise WorkbenchError("review retry: attempts >= 1 and non-negative backoffs are required")

    def delay(self, retry: int) -> float:
        return random.uniform(0.0, min(self.max_backoff, self.backoff * 2**retry))


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _status(exc: BaseException) -> int | None:
    code = getattr(exc, "status_code", None)
    if code is None and getattr(exc, "response", None) is not None:
        code = getattr(exc.response, "status_code", None)
    return code if isinstance(code, int) else None


def _transient(exc: BaseException) -> bool:
    import httpx

    for e in _causes(exc):
        if isinstance(e, httpx.TransportError):  # connection refused / reset, timeouts, protocol errors
            return True
        code = _status(e)
        if code is not None:
            return code == 429 or code >= 500
    return False


def _from_server(exc: BaseException) -> bool:
    """Whether the failure came from the server or the SDK talking to it (not a bug of ours)."""
    import httpx
    from argilla._exceptions import ArgillaError

    return any(isinstance(e, httpx.HTTPError | ArgillaError) for e in _causes(exc))


def _describe(exc: BaseException) -> str:
    """A short reason: the HTTP status and the server's detail, or the connection error."""
    import httpx

    for e in _causes(exc):
        if isinstance(e, httpx.TransportError):
            return f"{type(e).__name__}: {' '.join(str(e).split())}" if str(e) else type(e).__name__
        code = _status(e)
        if code is not None:
            text = e.response.text if isinstance(e, httpx.HTTPStatusError) else str(e).split("Details:", 1)[-1]
            detail = " ".join(text.split())  # one line
            hint = " (this needs an owner or admin API key)" if code == 403 else ""
            return f"HTTP {code}: {detail[:300]}{hint}"
    return f"{type(exc).__name__}: {str(exc)[:300]}"


class ArgillaConnection:
    """A logged-in SDK client (``.client``) and the retry policy every call to it goes through (``.call``)."""

    def __init__(self, client: rg.Argilla, credentials: Credentials, retry: Retry, sleep: Callable[[float], None]):
        self.client = client
        self.url = credentials.api_url
        self.retry = retry
        self.sleep = sleep

    def call(self, what: str, fn: Callable[[], T]) -> T:
        return _with_retries(what, fn, url=self.url, retry=self.retry, sleep=self.sleep)

    def get_json(self, what: str, path: str, params: Mapping[str, Any] | None = None) -> Any:
        def get() -> Any:
            response = self.client.api.http_client.get(path, params=params)
            response.raise_for_status()
            return response.json()

        return self.call(what, get)


def _with_retries(
    what: str, fn: Callable[[], T], *, url: str, retry: Retry, sleep: Callable[[float], None] = time.sleep
) -> T:
    for attempt in range(retry.attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the SDK warns on lookups that find nothing: we handle None
                return fn()
        except ReviewError:
            raise
        except Exception as exc:
            if not _from_server(exc):
                raise
            if not _transient(exc):
                raise ReviewError(f"Argilla at {url}: {what} failed: {_describe(exc)}") from exc
            if attempt + 1 == retry.attempts:
                raise ReviewError(
                    f"Argilla at {url}: {what} failed after {retry.attempts} attempts: {_describe(exc)}"
                ) from exc
            sleep(retry.delay(attempt))
    raise AssertionError("unreachable")


def connect(
    credentials: Credentials,
    *,
    retry: Retry = Retry(),
    timeout: int = 60,
    sleep: Callable[[float], None] = time.sleep,
) -> ArgillaConnection:
    """An SDK client for the server (its own transport retries off: ours are the policy), checked by a login."""
    import argilla as rg
    from argilla._exceptions import ArgillaCredentialsError

    def login() -> rg.Argilla:
        try:
            return rg.Argilla(api_url=credentials.api_url, api_key=credentials.api_key, timeout=timeout, retries=0)
        except ArgillaCredentialsError:
            raise ReviewError(
                f"Argilla at {credentials.api_url} rejected the API key (from {credentials.origin})"
            ) from None

    client = _with_retries("login", login, url=credentials.api_url, retry=retry, sleep=sleep)
    return ArgillaConnection(client, credentials, retry, sleep)


# ------------------------------------------------------------------ units


@dataclass(frozen=True)
class ReviewUnit:
    """One Argilla record: a record (``turn`` None) or one turn of it, and the tasks that label it."""

    id: str
    record_id: str
    turn: int | None
    tasks: tuple[str, ...]


def unit_id(record_id: str, turn: int | None) -> str:
    """The Argilla client id of a unit: the record id, or ``<record id>#t<turn>``."""
    return record_id if turn is None else f"{record_id}#t{turn}"


def parse_unit_id(uid: str) -> tuple[str, int | None]:
    head, sep, tail = uid.rpartition("#t")
    if sep and tail.isdigit():
        return head, int(tail)
    return uid, None


def review_units(record: Record, tasks: Sequence[Task]) -> list[ReviewUnit]:
    """The units of one record for ``tasks``, record-level first, then by turn; tasks in the order given."""
    by_turn: dict[int | None, list[str]] = {}
    for task in tasks:
        for item in task.items(record):
            names = by_turn.setdefault(item.turn, [])
            if task.name not in names:
                names.append(task.name)
    order = sorted(by_turn, key=lambda t: -1 if t is None else t)
    return [ReviewUnit(unit_id(record["id"], t), record["id"], t, tuple(by_turn[t])) for t in order]


def sample_rank(uid: str, seed: int = 0) -> int:
    """A unit's place in the seeded random order that ``--sample`` takes the first N of."""
    return int.from_bytes(hashlib.blake2b(f"{seed}:{uid}".encode(), digest_size=8).digest(), "big")


def select_units(units: Iterable[ReviewUnit], *, sample: int = 0, seed: int = 0) -> list[ReviewUnit]:
    """Every unit (``sample`` 0), or the ``sample`` units first in the seeded order: deterministic."""
    if sample < 0:
        raise WorkbenchError(f"review sample: expected 0 (all) or more, got {sample}")
    if not sample:
        return list(units)
    return heapq.nsmallest(sample, units, key=lambda u: (sample_rank(u.id, seed), u.id))


# ------------------------------------------------------------------ records -> Argilla


def argilla_agent(agent: str) -> str:
    """An agent as argilla-server accepts it: ``model@prompt_version`` -> ``model:prompt_version``.

    The server's pattern allows letters, digits, ``-_:./`` and spaces; ``@`` becomes
    ``:`` and anything else ``-``.
    """
    out = "".join(c if c in _AGENT_OK else (":" if c == "@" else "-") for c in agent).strip()
    return out[:200] or "unknown"


def chat_role(speaker: str, first_speaker: str) -> str:
    """``user`` or ``assistant`` for one of our speakers (the helper / responder is the assistant)."""
    s = speaker.lower()
    if s in _ASSISTANT_SPEAKERS:
        return "assistant"
    if s in _USER_SPEAKERS:
        return "user"
    return "user" if speaker == first_speaker else "assistant"


def _messages(record: Record, end: int | None) -> list[dict[str, str]]:
    turns = record["turns"][: None if end is None else end + 1]
    first = record["turns"][0]["speaker"]
    msgs = [
        {"role": chat_role(t["speaker"], first), "content": truncate(t["text"], MAX_MESSAGE_CHARS) or "(empty)"}
        for t in turns
    ]
    return msgs[-MAX_CHAT_MESSAGES:]


def _context_text(record: Record) -> str | None:
    ctx = situation(record)
    lines = [f"{k.replace('_', ' ').capitalize()}: {ctx[k]}" for k in SITUATION_KEYS if k in ctx]
    return "\n".join(lines) or None


def _instructions(record: Record, unit: ReviewUnit) -> str:
    what = ", ".join(unit.tasks)
    if unit.turn is not None:
        speaker = record["turns"][unit.turn]["speaker"]
        return f"Label the last message (turn {unit.turn}, {speaker}): {what}."
    if len(record["turns"]) == 1:
        return f"Label the text: {what}."
    return f"Label the whole conversation: {what}."


def _unit_labels(record: Record, task: str, turn: int | None, sources: Collection[str]) -> list[Label]:
    return [
        lab for lab in record["labels"] if lab["task"] == task and lab.get("turn") == turn and lab["source"] in sources
    ]


def _gold_value(record: Record, q: QuestionSpec, turn: int | None) -> Any:
    """The unit's gold labels for a question (the record's, when a turn has none: e.g. ESConv's survey)."""
    gold = _unit_labels(record, q.label_task, turn, ("gold",))
    if not gold and turn is not None:
        gold = _unit_labels(record, q.label_task, None, ("gold",))
    if not gold:
        return None
    if q.kind == "rating":
        values = [_rating(lab["value"], lab.get("score")) for lab in gold]
        values = [v for v in values if v is not None]
        return values[0] if values else None
    values = sorted({lab["value"] for lab in gold})
    return values if q.kind == "multi_label" or len(values) > 1 else values[0]


def _rating(value: str, score: float | None) -> int | None:
    try:
        x = float(score if score is not None else value)
    except (TypeError, ValueError):
        return None
    return math.floor(x + 0.5) if math.isfinite(x) else None


def _newest_agent(labels: Sequence[Label]) -> str:
    """The agent whose labels are newest (then the first name): one suggestion per question."""
    newest: dict[str, datetime] = {}
    floor = datetime.min.replace(tzinfo=UTC)
    for lab in labels:
        at = lab.get("created_at") or floor
        newest[lab["agent"]] = max(newest.get(lab["agent"], floor), at)
    return min(newest, key=lambda a: (-newest[a].timestamp() if newest[a] != floor else math.inf, a))


def _clip(score: float | None) -> float | None:
    return None if score is None or not math.isfinite(score) else min(1.0, max(0.0, float(score)))


def suggestion_for(
    record: Record, q: QuestionSpec, turn: int | None, *, min_score: float = 0.0
) -> dict[str, Any] | None:
    """The suggestion of question ``q`` for a unit: an ``llm`` label, else a ``model`` label; None if neither.

    ``min_score``: a label whose confidence is below it is not suggested (multi-label: such values are
    left out; nothing left, no suggestion), so annotators are not anchored on noise. A label without a
    confidence, and a rating, is suggested as it is.

    ``{"question_name", "value", "score", "agent"}``. Multi-label: every label the
    chosen agent gave, scores alongside (all or none: Argilla wants one per value).
    Rating: the value as an integer and no score (a label's score there is the
    rating itself, not a confidence).
    """
    for source in MACHINE_SOURCES:
        labels = _unit_labels(record, q.label_task, turn, (source,))
        if labels:
            break
    else:
        return None
    agent = _newest_agent(labels)
    mine = [lab for lab in labels if lab["agent"] == agent]
    if q.kind == "rating":
        value = _rating(mine[0]["value"], mine[0].get("score"))
        if value is None or str(value) not in q.options:
            return None
        return {"question_name": q.name, "value": value, "score": None, "agent": argilla_agent(agent)}
    best: dict[str, float | None] = {}
    for lab in mine:
        if lab["value"] not in q.options:
            continue
        s = _clip(lab.get("score"))
        if s is not None and s < min_score:
            continue
        if lab["value"] not in best or (s or 0.0) > (best[lab["value"]] or 0.0):
            best[lab["value"]] = s
    if not best:
        return None
    ranked = sorted(best.items(), key=lambda kv: (-(kv[1] if kv[1] is not None else -1.0), q.options.index(kv[0])))
    if q.kind == "label":
        value, score = ranked[0]
        return {"question_name": q.name, "value": value, "score": score, "agent": argilla_agent(agent)}
    scores = [s for _, s in ranked]
    return {
        "question_name": q.name,
        "value": [v for v, _ in ranked],
        "score": None if any(s is None for s in scores) else scores,
        "agent": argilla_agent(agent),
    }


def unit_payload(
    record: Record, unit: ReviewUnit, settings: ReviewSettings, *, snapshot: str | None = None
) -> dict[str, Any]:
    """One unit as plain data: ``id``, ``fields``, ``metadata``, ``suggestions`` (what becomes an ``rg.Record``)."""
    fields: dict[str, Any] = {FIELD_INSTRUCTIONS: _instructions(record, unit)}
    if len(record["turns"]) == 1:
        fields[FIELD_TEXT] = record["turns"][0]["text"] or "(empty)"
    else:
        fields[FIELD_CONVERSATION] = _messages(record, unit.turn)
    context = _context_text(record)
    if context:
        fields[FIELD_CONTEXT] = context
    metadata: dict[str, Any] = {
        "record_id": record["id"],
        "source": record["source"],
        "split": record["split"],
        "tasks": list(unit.tasks),
    }
    if unit.turn is not None:
        metadata["turn"] = unit.turn
    if snapshot:
        metadata["snapshot"] = snapshot
    suggestions = []
    for task in unit.tasks:
        for q in settings.questions_of(task):
            gold = _gold_value(record, q, unit.turn)
            if gold is not None:
                metadata[gold_metadata(q.name)] = gold
            s = suggestion_for(record, q, unit.turn, min_score=settings.min_suggestion_score)
            if s is not None:
                suggestions.append(s)
    return {"id": unit.id, "fields": fields, "metadata": metadata, "suggestions": suggestions}


def to_argilla_records(
    records: Iterable[Record],
    tasks: Sequence[Task | str],
    *,
    settings: ReviewSettings | None = None,
    snapshot: str | None = None,
    units: Collection[str] | None = None,
) -> list[rg.Record]:
    """``rg.Record`` objects for the units of ``records`` (only those whose ids are in ``units``, if given)."""
    import argilla as rg

    task_objs = [t if isinstance(t, Task) else get_tasks([t])[0] for t in tasks]
    settings = settings or build_settings(task_objs, snapshot=snapshot)
    out = []
    for record in records:
        for unit in review_units(record, task_objs):
            if units is not None and unit.id not in units:
                continue
            p = unit_payload(record, unit, settings, snapshot=snapshot)
            out.append(
                rg.Record(
                    id=p["id"],
                    fields=p["fields"],
                    metadata=p["metadata"],
                    suggestions=[rg.Suggestion(**s) for s in p["suggestions"]],
                )
            )
    return out


# ------------------------------------------------------------------ push


@dataclass
class PushResult:
    dataset: str
    workspace: str
    api_url: str
    snapshot: str
    records: int  # units sent
    available: int  # units the snapshot has for the tasks
    created: bool  # the dataset was created by this push
    settings: ReviewSettings
    counters: Counter[str] = field(default_factory=Counter)


def _workspace(server: ArgillaConnection, name: str | None) -> Any:
    """The named workspace (created if missing), else the user's first, else a new ``workbench`` one."""
    import argilla as rg

    client = server.client

    def find() -> Any:
        if name is not None:
            ws = client.workspaces(name=name)
            return ws if ws is not None else rg.Workspace(name=name, client=client).create()
        existing = client.workspaces.list()
        if existing:
            return existing[0]
        return rg.Workspace(name=DEFAULT_WORKSPACE, client=client).create()

    return server.call(f"finding workspace {name or '(default)'}", find)


def _find_dataset(server: ArgillaConnection, name: str, workspace_id: Any = None) -> Any | None:
    """The dataset model named ``name`` (in that workspace, if given); an error if several workspaces have one."""
    models = server.call("listing datasets", lambda: server.client.api.datasets.list())
    found = [m for m in models if m.name == name and (workspace_id is None or m.workspace_id == workspace_id)]
    if len(found) > 1:
        raise ReviewError(
            f"Argilla at {server.url}: {len(found)} datasets are named {name!r} (in different workspaces)",
            cli_hint="; pass --workspace",
        )
    return found[0] if found else None


def _ensure_dataset(server: ArgillaConnection, name: str, ws: Any, settings: ReviewSettings) -> tuple[Any, bool]:
    import argilla as rg

    client = server.client

    def ensure() -> tuple[Any, bool]:
        model = _find_dataset(server, name, ws.id)
        if model is not None and model.status != "ready":
            # A creation that died half way (the SDK could not roll it back): it holds no records.
            client.api.datasets.delete(model.id)
            model = None
        if model is not None:
            return client.datasets(id=model.id).get(), False
        dataset = rg.Dataset(name=name, workspace=ws, settings=settings.to_argilla(client), client=client)
        return dataset.create(), True

    return server.call(f"creating dataset {name!r}", ensure)


def _check_compatible(server: ArgillaConnection, dataset: Any, settings: ReviewSettings) -> None:
    have = {q.name for q in dataset.settings.questions}
    missing = [q.name for q in settings.questions if q.name != CONFIDENCE_QUESTION and q.name not in have]
    if missing:
        raise ReviewError(
            f"Argilla at {server.url}: dataset {dataset.name!r} exists without the questions {missing} "
            f"(it has {sorted(have)}); push these tasks under another --name"
        )
    if dataset.settings.distribution.min_submitted != settings.overlap:
        import argilla as rg

        def update() -> None:
            dataset.settings.distribution = rg.TaskDistribution(min_submitted=settings.overlap)
            dataset.update()

        server.call(f"setting the overlap of dataset {dataset.name!r}", update)


def push(
    ref: str,
    *,
    store: SnapshotStore,
    tasks: Sequence[Task | str],
    name: str,
    credentials: Credentials,
    workspace: str | None = None,
    sample: int = 0,
    seed: int = 0,
    overlap: int = 1,
    show_gold: bool = False,
    min_suggestion_score: float = 0.5,
    units: Collection[str] | None = None,
    batch_size: int = 100,
    retry: Retry = Retry(),
    progress: Progress | None = None,
) -> PushResult:
    """Push the units of ``tasks`` in snapshot ``ref`` to dataset ``name``.

    ``units`` restricts the push to those unit ids (``<record id>`` or ``<record id>#t<turn>``,
    e.g. a selection made in the dashboard); ``sample`` then takes a seeded sample of N of them.
    """
    if not 1 <= batch_size <= 500:
        raise WorkbenchError(f"review push batch size: expected 1..500 (the server's bulk limit), got {batch_size}")
    task_objs = [t if isinstance(t, Task) else get_tasks([t])[0] for t in tasks]
    build_settings(task_objs, overlap=overlap, min_suggestion_score=min_suggestion_score)  # check before reading
    parent = store.resolve(ref)
    every = [u for rec in store.iter_records(parent) for u in review_units(rec, task_objs)]
    available = len(every)
    if units is not None:
        asked = set(units)
        unknown = sorted(asked - {u.id for u in every})
        if unknown:
            names = ", ".join(t.name for t in task_objs)
            raise ReviewError(
                f"{len(unknown)} of the units asked for are not units of {names} in snapshot {parent}: "
                + ", ".join(unknown[:3])
                + (", ..." if len(unknown) > 3 else "")
            )
        every = [u for u in every if u.id in asked]
    chosen = select_units(every, sample=sample, seed=seed)
    if not chosen:
        names = ", ".join(t.name for t in task_objs)
        raise ReviewError(f"nothing to review: snapshot {parent} has no units for {names}")
    required = set.intersection(*(set(u.tasks) for u in chosen))
    settings = build_settings(
        task_objs,
        overlap=overlap,
        required=required,
        snapshot=parent,
        show_gold=show_gold,
        min_suggestion_score=min_suggestion_score,
    )

    server = connect(credentials, retry=retry)
    ws = _workspace(server, workspace)
    dataset, created = _ensure_dataset(server, name, ws, settings)
    if not created:
        _check_compatible(server, dataset, settings)

    wanted = {u.id for u in chosen}
    counters: Counter[str] = Counter()
    total, done = len(chosen), 0
    batch: list[rg.Record] = []

    def send(batch: list[rg.Record]) -> None:
        nonlocal done
        for rec in batch:
            rec.dataset = dataset
        # bulk_upsert is what Dataset.records.log calls per batch, without its tqdm bar; upsert by client id.
        models = [rec.api_model() for rec in batch]
        server.call(
            f"pushing records {done + 1}-{done + len(batch)} of {total} to dataset {name!r} "
            f"({done} already there; re-run the same command to finish: records are upserted by id)",
            lambda: server.client.api.records.bulk_upsert(dataset.id, models),
        )
        done += len(batch)
        counters["suggestions"] += sum(len(list(rec.suggestions)) for rec in batch)
        if progress:
            progress(done, total)

    for record in store.iter_records(parent):
        for rec in to_argilla_records([record], task_objs, settings=settings, snapshot=parent, units=wanted):
            batch.append(rec)
            if len(batch) >= batch_size:
                send(batch)
                batch = []
    if batch:
        send(batch)
    counters["records"] = done
    return PushResult(
        dataset=name,
        workspace=ws.name,
        api_url=server.url,
        snapshot=parent,
        records=done,
        available=available,
        created=created,
        settings=settings,
        counters=counters,
    )


# ------------------------------------------------------------------ Argilla -> labels


@dataclass
class PulledResponses:
    """What the responses of a dataset say, as labels per record id, plus every raw response."""

    labels: dict[str, list[Label]] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per response, for review.responses
    annotators: set[str] = field(default_factory=set)
    counters: Counter[str] = field(default_factory=Counter)


def _timestamp(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        at = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _unit_of(record_json: Mapping[str, Any]) -> tuple[str, int | None]:
    meta = record_json.get("metadata") or {}
    external = str(record_json.get("external_id") or "")
    rid, turn = parse_unit_id(external)
    if isinstance(meta.get("record_id"), str):
        rid = meta["record_id"]
        turn = meta.get("turn") if isinstance(meta.get("turn"), int) else None
    return rid, turn


def responses_to_labels(
    records: Iterable[Mapping[str, Any]],
    *,
    dataset: str,
    users: Mapping[str, str] | None = None,
    questions: Mapping[str, QuestionSpec] | None = None,
) -> PulledResponses:
    """Human labels from Argilla records as the REST API returns them (``include=responses``).

    Each answer to a known question becomes one label (one per chosen label of a
    multi-label question): source ``human``, agent = the annotator's username
    (``users`` maps user ids to names; the id where unknown), ``created_at`` = the
    response's ``updated_at``, ``attrs`` = status, user id, dataset, Argilla
    record id (and ``confidence`` where answered). Values outside a question's
    options are counted (``invalid_values``) and skipped.
    """
    users = users or {}
    questions = questions or known_questions()
    out = PulledResponses()
    for rec in records:
        responses = rec.get("responses") or []
        out.counters["records"] += 1
        if not responses:
            continue
        rid, turn = _unit_of(rec)
        external = str(rec.get("external_id") or "")
        for resp in responses:
            user_id = str(resp.get("user_id"))
            agent = users.get(user_id, user_id)
            status = str(resp.get("status"))
            values = resp.get("values") or {}
            created = _timestamp(resp.get("updated_at")) or _timestamp(resp.get("inserted_at"))
            out.counters["responses"] += 1
            out.counters[f"responses.{status}"] += 1
            out.annotators.add(agent)
            out.rows.append(
                {
                    "dataset": dataset,
                    "argilla_record_id": external,
                    "record_id": rid,
                    "turn": turn,
                    "user_id": user_id,
                    "username": agent,
                    "status": status,
                    "values": json.dumps(values, sort_keys=True, ensure_ascii=False),
                    "inserted_at": str(resp.get("inserted_at") or ""),
                    "updated_at": str(resp.get("updated_at") or ""),
                }
            )
            attrs = {"status": status, PULLED_ATTR: user_id, "argilla_dataset": dataset, "argilla_record_id": external}
            confidence = (values.get(CONFIDENCE_QUESTION) or {}).get("value")
            if isinstance(confidence, str):
                attrs["confidence"] = confidence
            given = 0
            for qname, answer in sorted(values.items()):
                q = questions.get(qname)
                if q is None or q.label_task is None:
                    if q is None:
                        out.counters["unknown_questions"] += 1
                    continue
                for value, score in _answer_values(q, (answer or {}).get("value")):
                    if value is None:
                        out.counters["invalid_values"] += 1
                        continue
                    lab = label(
                        q.label_task,
                        value,
                        source="human",
                        agent=agent,
                        score=score,
                        turn=turn,
                        created_at=created,
                        attrs=attrs,
                    )
                    out.labels.setdefault(rid, []).append(lab)
                    given += 1
            out.counters["labels"] += given
            if not given:
                out.counters["responses_without_labels"] += 1
    return out


def _answer_values(q: QuestionSpec, value: Any) -> list[tuple[str | None, float | None]]:
    """(label value, score) pairs of one answer; (None, None) marks a value outside the options."""
    if value is None:
        return []
    if q.kind == "rating":
        if isinstance(value, bool) or not isinstance(value, int) or str(value) not in q.options:
            return [(None, None)]
        return [(str(value), float(value))]
    items = value if isinstance(value, list) else [value]
    if q.kind == "label" and len(items) != 1:
        return [(None, None)]
    out: list[tuple[str | None, float | None]] = []
    for v in dict.fromkeys(items):
        out.append((v, None) if isinstance(v, str) and v in q.options else (None, None))
    return out


def _is_pulled(lab: Label) -> bool:
    return lab["source"] == "human" and PULLED_ATTR in (lab.get("attrs") or {})


def merge_pulled_labels(existing: Sequence[Label], pulled: Sequence[Label]) -> list[Label]:
    """The record's labels with ``pulled`` merged in: one answer per (task, turn, agent), newest first.

    Among the answers for a key -- earlier pulls' (in ``existing``) and this
    pull's, one answer being the labels of one response (same ``created_at`` and
    status) -- the newest is kept; if it is not submitted, the newest submitted
    one is kept too (a draft started after submitting never loses the
    submission). Other labels (gold, machine, human labels from elsewhere) are
    untouched.
    """
    if not pulled:
        return list(existing)
    floor = datetime.min.replace(tzinfo=UTC)
    groups: dict[tuple, dict[tuple, list[Label]]] = defaultdict(dict)  # key -> answer -> labels
    for lab in [*(x for x in existing if _is_pulled(x)), *pulled]:
        key = (lab["task"], lab.get("turn"), lab["agent"])
        answer = (lab.get("created_at") or floor, (lab.get("attrs") or {}).get("status", "submitted"))
        bucket = groups[key].setdefault(answer, [])
        if all((x["value"], x.get("score")) != (lab["value"], lab.get("score")) for x in bucket):
            bucket.append(lab)
    keep: list[Label] = []
    for answers in groups.values():
        ordered = sorted(answers, key=lambda a: (a[0], a[1] == "submitted"), reverse=True)
        chosen = [ordered[0]]
        if ordered[0][1] != "submitted":
            submitted = [a for a in ordered if a[1] == "submitted"]
            chosen += submitted[:1]
        for answer in chosen:
            keep.extend(answers[answer])
    return [*(x for x in existing if not _is_pulled(x)), *keep]


# ------------------------------------------------------------------ pull


@dataclass
class PullResult:
    snapshot_id: str
    parent: str
    dataset: str
    api_url: str
    responses: int
    annotators: list[str]
    labels: int
    tag: str | None = None
    reused: bool = False
    counters: Counter[str] = field(default_factory=Counter)


_RESPONSE_COLUMNS = (
    ("dataset", "string"),
    ("argilla_record_id", "string"),
    ("record_id", "string"),
    ("turn", "int32"),
    ("user_id", "string"),
    ("username", "string"),
    ("status", "string"),
    ("values", "string"),
    ("inserted_at", "string"),
    ("updated_at", "string"),
)


def _fetch_records(server: ArgillaConnection, dataset: Any, *, page_size: int, progress: Progress | None) -> list[dict]:
    """Every record of the dataset with its responses, paged; re-read if a page boundary moved meanwhile."""
    path = f"/api/v1/datasets/{dataset.id}/records"
    for _ in range(3):
        by_id: dict[str, dict] = {}
        offset, total = 0, None
        while total is None or offset < total:
            page = server.get_json(
                f"reading records {offset + 1}-{offset + page_size} of dataset {dataset.name!r}",
                path,
                {"include": ["responses"], "offset": offset, "limit": page_size},
            )
            total = int(page.get("total", 0))
            items = page.get("items") or []
            for item in items:
                by_id[str(item["id"])] = item
            if not items:
                break
            offset += len(items)
            if progress:
                progress(min(offset, total), total)
        # The list is ordered by insertion time only: a page boundary inside a tie could skip a record.
        if len(by_id) >= (total or 0):
            return list(by_id.values())
    raise ReviewError(
        f"Argilla at {server.url}: dataset {dataset.name!r} reported {total} records but {len(by_id)} could be "
        "read (it changed while reading?); run pull again"
    )


def _usernames(server: ArgillaConnection, user_ids: Collection[str]) -> dict[str, str]:
    from argilla._exceptions import ForbiddenError

    names: dict[str, str] = {}
    try:
        for u in server.call("listing users", lambda: server.client.api.users.list()):
            names[str(u.id)] = u.username
    except ReviewError as exc:
        if not isinstance(exc.__cause__, ForbiddenError):
            raise
    for uid in sorted(set(user_ids) - set(names)):
        try:
            names[uid] = server.call(f"reading user {uid}", lambda uid=uid: server.client.api.users.get(uid)).username
        except ReviewError as exc:
            if _status(exc.__cause__ or exc) not in (403, 404):
                raise
    return names


def pull(
    name: str,
    *,
    store: SnapshotStore,
    credentials: Credentials,
    workspace: str | None = None,
    parent: str | None = None,
    tag: str | None = None,
    retry: Retry = Retry(),
    page_size: int = 500,
    progress: Progress | None = None,
) -> PullResult:
    """Every response of dataset ``name`` as ``human`` labels in a NEW snapshot, child of the pushed one."""
    import pyarrow as pa

    if not 1 <= page_size <= 1000:
        raise WorkbenchError(f"review pull page size: expected 1..1000, got {page_size}")
    server = connect(credentials, retry=retry)
    ws_id = None
    if workspace is not None:
        ws = server.call(f"finding workspace {workspace!r}", lambda: server.client.workspaces(name=workspace))
        if ws is None:
            raise ReviewError(f"Argilla at {server.url}: no workspace {workspace!r}")
        ws_id = ws.id
    model = _find_dataset(server, name, ws_id)
    if model is None:
        where = f" in workspace {workspace!r}" if workspace else ""
        raise ReviewError(
            f"Argilla at {server.url}: no dataset {name!r}{where} (push one with `workbench review push`)"
        )
    records = _fetch_records(server, model, page_size=page_size, progress=progress)

    if parent is None:
        pushed = sorted({str((r.get("metadata") or {}).get("snapshot")) for r in records} - {"None"})
        if len(pushed) != 1:
            found = ", ".join(pushed) if pushed else "none"
            raise UnknownParentError(
                f"dataset {name!r} does not name one pushed snapshot (found: {found})", cli_hint="; pass --from REF"
            )
        parent_id = pushed[0]
        if not store.exists(parent_id):
            raise UnknownParentError(
                f"dataset {name!r} was pushed from snapshot {parent_id}, which is not in store {store.url}",
                cli_hint="; pass --from REF",
            )
    else:
        parent_id = store.resolve(parent)

    user_ids = {str(r["user_id"]) for rec in records for r in rec.get("responses") or []}
    users = _usernames(server, user_ids)
    pulled = responses_to_labels(records, dataset=name, users=users)

    counters = Counter(pulled.counters)
    seen: set[str] = set()
    step = {
        "kind": "review",
        "config": {
            "dataset": name,
            "dataset_id": str(model.id),
            "workspace_id": str(model.workspace_id),
            "api_url": server.url,
        },
    }
    # A label layer: only the answered records are read (by id) and only their labels written.
    found = store.find_records(parent_id, pulled.labels)
    with store.writer(step=step, parents=[parent_id], layer=True) as writer:
        for pos, record in sorted(found.values(), key=lambda pr: pr[0]):
            new = pulled.labels[record["id"]]
            seen.add(record["id"])
            n_turns = len(record["turns"])
            fits = [lab for lab in new if lab.get("turn") is None or 0 <= lab["turn"] < n_turns]
            counters["labels_outside_turns"] += len(new) - len(fits)
            writer.set_labels(pos, record, merge_pulled_labels(record["labels"], fits))
        counters["unmatched_records"] = len(set(pulled.labels) - seen)
        rows = sorted(pulled.rows, key=lambda r: (r["argilla_record_id"], r["user_id"]))
        schema = pa.schema([(n, getattr(pa, t)()) for n, t in _RESPONSE_COLUMNS])
        writer.attach("review.responses", pa.Table.from_pylist(rows, schema=schema))
        writer.steps[-1]["counters"] = dict(sorted((k, v) for k, v in counters.items() if v))
        sid = writer.commit()
        reused = writer.reused
    if tag:
        store.set_ref(tag, sid)
    store.set_ref("latest", sid)
    return PullResult(
        snapshot_id=sid,
        parent=parent_id,
        dataset=name,
        api_url=server.url,
        responses=pulled.counters["responses"],
        annotators=sorted(pulled.annotators),
        labels=pulled.counters["labels"],
        tag=tag,
        reused=reused,
        counters=counters,
    )


# ------------------------------------------------------------------ status


@dataclass
class DatasetStatus:
    """Where the review of one Argilla dataset stands: records done, and each annotator's answers."""

    name: str
    workspace: str
    records: int
    completed: int
    pending: int
    min_submitted: int | None
    annotators: dict[str, dict[str, int]]  # username -> {"submitted": n, "draft": n, "discarded": n}
    snapshots: list[str]  # the snapshot(s) its records were pushed from
    updated_at: str | None = None

    @property
    def responses(self) -> int:
        return sum(sum(by_status.values()) for by_status in self.annotators.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "workspace": self.workspace,
            "records": self.records,
            "completed": self.completed,
            "pending": self.pending,
            "min_submitted": self.min_submitted,
            "responses": self.responses,
            "annotators": self.annotators,
            "snapshots": self.snapshots,
            "updated_at": self.updated_at,
        }


def review_status(
    credentials: Credentials, *, workspace: str | None = None, retry: Retry = Retry()
) -> list[DatasetStatus]:
    """Every dataset the key can see (or those of ``workspace``), with its progress, newest first.

    From argilla-server's progress endpoints, as its web UI shows them: records completed
    (enough submitted answers for the task distribution) and pending, and per annotator
    the records they submitted, saved as draft or discarded; plus the snapshot ids the
    records came from (the ``snapshot`` metadata a push writes).
    """
    server = connect(credentials, retry=retry)
    workspaces = {w["id"]: w["name"] for w in server.get_json("listing workspaces", "/api/v1/me/workspaces")["items"]}
    datasets = server.get_json("listing datasets", "/api/v1/me/datasets")["items"]
    out = []
    for ds in datasets:
        ws_name = workspaces.get(ds["workspace_id"], str(ds["workspace_id"]))
        if workspace is not None and ws_name != workspace:
            continue
        if ds.get("status") != "ready":
            continue  # a draft dataset (created, never published) has no progress to show
        what = f"reading the progress of dataset {ds['name']!r}"
        progress = server.get_json(what, f"/api/v1/datasets/{ds['id']}/progress")
        users = server.get_json(what, f"/api/v1/datasets/{ds['id']}/users/progress")["users"]
        annotators = {}
        for user in users:
            counts = Counter()
            for part in ("completed", "pending"):
                for status, n in (user.get(part) or {}).items():
                    counts[status] += n
            annotators[user["username"]] = {s: counts[s] for s in ("submitted", "draft", "discarded")}
        snapshots: list[str] = []
        props = server.get_json(what, f"/api/v1/me/datasets/{ds['id']}/metadata-properties")["items"]
        for prop in props:
            if prop["name"] == "snapshot":
                metrics = server.get_json(what, f"/api/v1/metadata-properties/{prop['id']}/metrics")
                snapshots = sorted(v["term"] for v in metrics.get("values", []))
        out.append(
            DatasetStatus(
                name=ds["name"],
                workspace=ws_name,
                records=int(progress.get("total", 0)),
                completed=int(progress.get("completed", 0)),
                pending=int(progress.get("pending", 0)),
                min_submitted=(ds.get("distribution") or {}).get("min_submitted"),
                annotators=annotators,
                snapshots=snapshots,
                updated_at=ds.get("updated_at"),
            )
        )
    out.sort(key=lambda d: d.updated_at or "", reverse=True)
    return out
