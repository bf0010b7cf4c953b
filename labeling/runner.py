"""Label a snapshot into a NEW snapshot: LLM labels (source ``llm``) or the local labeler's (``model``).

Gold labels are never touched: new labels are appended beside them. The new
snapshot's manifest step records the labeler, the model, the provider (never the
key), the tasks with their prompt versions, and the counters (items, labeled,
cache hits, requests sent, parse failures, tokens, cost, items left unlabeled by
the budget).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from curation.errors import WorkbenchError
from curation.record import Label, from_batch
from curation.store import SnapshotStore
from labeling.tasks.base import Task

ProgressCallback = Callable[[dict[str, Any]], None]


@dataclass
class LabelResult:
    snapshot_id: str | None  # None for a dry run
    parent: str
    counters: Counter[str] = field(default_factory=Counter)
    estimate: dict[str, Any] = field(default_factory=dict)  # dry run: requests, tokens, $
    reused: bool = False
    tag: str | None = None


#: What a label layer reads of its parent's records: no turns.
LAYER_READ_COLUMNS = ("id", "source", "split", "labels")


def write_labeled(
    store: SnapshotStore,
    parent: str,
    new_labels: dict[str, list[Label]],
    *,
    step: dict[str, Any],
    tag: str | None,
    artifacts: dict[str, Any] | None = None,
) -> tuple[str, bool]:
    """A label layer over ``parent`` with ``new_labels`` appended by record id (see :mod:`curation.store`).

    The parent is streamed with only the columns a layer needs (id, source, split, labels): its turns
    are neither read nor copied, and the new snapshot stores just the labelled records' labels.
    """
    with store.writer(step=step, parents=[parent], layer=True) as writer:
        pos = 0
        for batch in store.iter_batches(parent, columns=LAYER_READ_COLUMNS, batch_size=4096):
            ids = batch.column("id").to_pylist()
            hits = [i for i, rid in enumerate(ids) if rid in new_labels]
            if hits:
                rows = from_batch(batch.take(hits))
                for i, record in zip(hits, rows, strict=True):
                    writer.set_labels(pos + i, record, [*record["labels"], *new_labels[record["id"]]])
            pos += batch.num_rows
        for name, table in (artifacts or {}).items():
            writer.attach(f"label.{name}", table)
        sid = writer.commit()
        reused = writer.reused
    if tag:
        store.set_ref(tag, sid)
    store.set_ref("latest", sid)
    return sid, reused


def label_local(
    ref: str,
    *,
    store: SnapshotStore,
    tasks: Sequence[Task],
    tag: str | None = None,
    train_from: Sequence[str] = (),
    progress: ProgressCallback | None = None,
) -> LabelResult:
    """Label with the offline local labeler, trained on the gold labels of ``train_from`` (default: ``ref``)."""
    from labeling.local import LocalLabeler

    parent = store.resolve(ref)
    train_refs = [store.resolve(r) for r in train_from] or [parent]

    def train_records() -> Any:
        for sid in train_refs:
            for rec in store.iter_records(sid):
                if rec["split"] == "train":
                    yield rec

    labeler = LocalLabeler()
    labeler.fit(train_records(), [t.name for t in tasks])
    counters: Counter[str] = Counter()
    step = {
        "kind": "label",
        "config": {
            "labeler": "local",
            "tasks": [t.name for t in tasks],
            "agents": labeler.agents(),
            "trained_on": train_refs,
        },
    }
    # Predict batch by batch straight into a label layer: memory holds one batch, not every new label.
    with store.writer(step=step, parents=[parent], layer=True) as writer:
        pos = 0
        for batch in store.iter_batches(parent, batch_size=1000):
            records = from_batch(batch)
            predicted = labeler.label_many(records)
            for i, record in enumerate(records):
                labels = predicted.get(record["id"])
                if labels:
                    writer.set_labels(pos + i, record, [*record["labels"], *labels])
                    counters["records_labeled"] += 1
                    for lab in labels:
                        counters[f"labels.{lab['task']}"] += 1
            pos += len(records)
            counters["records"] += len(records)
            if progress:
                progress(dict(counters))
        writer.steps[0]["counters"] = dict(sorted(counters.items()))
        sid = writer.commit()
        reused = writer.reused
    if tag:
        store.set_ref(tag, sid)
    store.set_ref("latest", sid)
    return LabelResult(sid, parent, counters, reused=reused, tag=tag)


def fitted_on(store: SnapshotStore, ref: str) -> dict[str, Any]:
    """What the labelers in ``ref``'s lineage learnt from: ``{"agents": {agent: record ids}, "steps": [...]}``.

    The local labeler fits on the gold of the train split of the snapshots its label step names
    (``trained_on``); its labels on those records are memorised, so they must not score it.
    """
    from labeling.local import TRAINED_TASKS

    by_agent: dict[str, set[str]] = {}
    steps = []
    seen: set[str] = set()
    pending = [store.resolve(ref)]
    ids_of: dict[str, set[str]] = {}
    while pending:
        sid = pending.pop()
        if sid in seen:
            continue
        seen.add(sid)
        manifest = store.manifest(sid)
        for step in manifest.get("steps") or []:
            config = step.get("config") or {}
            if step.get("kind") != "label" or config.get("labeler") != "local":
                continue
            trained = [str(t) for t in config.get("trained_on") or []]
            ids: set[str] = set()
            for tsid in trained:
                if tsid not in ids_of:
                    ids_of[tsid] = {
                        rid
                        for batch in store.iter_batches(tsid, columns=["id", "split"])
                        for rid, split in zip(
                            batch.column("id").to_pylist(), batch.column("split").to_pylist(), strict=True
                        )
                        if split == "train"
                    }
                ids |= ids_of[tsid]
            for task, agent in (config.get("agents") or {}).items():
                if task in TRAINED_TASKS:  # the heuristics (traits, empathy) learn from nothing
                    by_agent.setdefault(str(agent), set()).update(ids)
            steps.append({"snapshot": sid, "trained_on": trained, "records": len(ids), "split": "train"})
        pending.extend(manifest.get("parents") or [])
    return {"agents": by_agent, "steps": steps}


def audit_snapshot(
    store: SnapshotStore,
    ref: str,
    *,
    task: str,
    label_source: str | None = None,
    sample: int = 0,
    split: str | None = None,
    include_fitted: bool = False,
) -> dict[str, Any]:
    """:func:`labeling.audit.audit` over a snapshot's records, optionally one split (e.g. held-out test).

    A labeler is not scored on the records it was fitted on (:func:`fitted_on`) unless
    ``include_fitted``; the report says what it was computed on and what was left out.
    """
    from labeling.audit import audit

    records = [r for r in store.iter_records(ref) if split is None or r["split"] == split]
    if task == "traits":
        raise WorkbenchError("audit one trait at a time: --task trait.formality, trait.empathy, ...")
    fitted = fitted_on(store, ref)
    exclude = None if include_fitted else fitted["agents"]
    report = audit(records, task, source=label_source, sample=sample or None, exclude=exclude)
    memorised = sorted(a for a in report["agents"] if fitted["agents"].get(a))
    report["computed_on"] = {
        "split": split or "all",
        "pairs": report["n"],
        "coders": report["agents"],
        "fitted_records_left_out": report["excluded"],
        "includes_fitted": include_fitted and bool(memorised),
    }
    if include_fitted and memorised:
        report["warning_fitted"] = (
            f"includes the records {', '.join(memorised)} was fitted on: its labels there are memorised gold, "
            "so these figures overstate it"
        )
    return report


def open_cache(store: SnapshotStore) -> Any:
    """The completion cache of a store (``<store>/cache/completions.sqlite`` for a local store)."""
    from labeling.cache import CompletionCache, default_cache_path

    return CompletionCache(default_cache_path(store.url))


def label_llm(
    ref: str,
    *,
    store: SnapshotStore,
    tasks: Sequence[Task],
    model: str,
    base_url: str | None = None,
    tag: str | None = None,
    dry_run: bool = False,
    max_cost: float | None = None,
    concurrency: int = 8,
    progress: Callable[[Any], None] | None = None,
    free: bool | None = None,
    max_failure_share: float = 0.1,
    deadline: float | None = None,
    timeout: float = 30.0,
) -> LabelResult:
    """Label with an OpenAI-compatible endpoint; every completion is cached as it arrives.

    ``free=None`` treats a localhost endpoint as costing nothing; ``free=False`` prices it
    anyway (a local proxy in front of a paid API).

    A completion that does not parse is counted and kept (raw, with the reason) in the
    snapshot's ``label.failures`` table; requests the budget did not allow are counted as
    ``unlabeled_budget``: the snapshot is consistent either way, and a re-run with a
    larger budget sends only what is missing.

    Nothing is published (and ``latest`` does not move) when the run fails: the endpoint
    refuses the key or the model, or is unreachable
    (:class:`~labeling.completion.EndpointError`); more than ``max_failure_share`` of the
    items failed, requests and unparseable answers together
    (:class:`~labeling.batch.TooManyFailures`); ``deadline`` seconds passed
    (:class:`~labeling.batch.DeadlineExceeded`). What was received stays in the cache, so
    a re-run resumes. ``timeout``: seconds per HTTP attempt.

    Each label's ``created_at`` is when its completion was made (kept by the cache), so
    labeling the same snapshot twice with the same configuration gives the same snapshot.
    """
    import asyncio
    from contextlib import aclosing

    import pyarrow as pa

    from labeling.batch import CompletionRequest, FailureLimit, complete_many, estimate_many
    from labeling.client import LLMClient
    from labeling.completion import Completion
    from labeling.pricing import PriceTable
    from labeling.tasks.base import ParseError

    limit = FailureLimit(max_failure_share)
    parent = store.resolve(ref)
    if not dry_run:
        from labeling.client import require_api_key

        require_api_key(base_url)  # before the pass over the records, not after it
    work = [(task, item) for rec in store.iter_records(parent) for task in tasks for item in task.items(rec)]
    requests = [
        CompletionRequest(
            task.messages(item),
            json_schema=task.json_schema(),
            prompt_version=task.prompt_version,
            schema_name=task.name.replace(".", "_"),
        )
        for task, item in work
    ]
    prices = PriceTable.load()
    results: dict[int, Any] = {}  # index -> Failure, or (completion, labels | ParseError)

    def parse(i: int, res: Any) -> None:
        if not isinstance(res, Completion):
            results[i] = res
            return
        task, item = work[i]
        try:
            results[i] = (res, task.parse(res.content, item, agent=f"{model}@{task.prompt_version}"))
        except ParseError as exc:
            results[i] = (res, exc)
            limit.parse_failed(str(exc), example=res.content)  # raises past --max-failures

    async def run() -> tuple[Any, Any, str, dict[str, Any]]:
        async with LLMClient(
            model=model, base_url=base_url, concurrency=concurrency, timeout=timeout, dry_run=dry_run, free=free
        ) as client:
            with open_cache(store) as cache:
                if dry_run:
                    return estimate_many(client, cache, requests, prices=prices), None, client.provider, {}
                last: list[Any] = [None]

                def on_progress(p: Any) -> None:
                    last[0] = p
                    if progress:
                        progress(p)

                stream = complete_many(
                    client,
                    cache,
                    requests,
                    max_cost=max_cost,
                    prices=prices,
                    on_progress=on_progress,
                    failure_limit=limit,
                    deadline=deadline,
                )
                async with aclosing(stream) as it:
                    async for i, res in it:
                        parse(i, res)
                return None, last[0], client.provider, dict(client.params)

    estimate, final, provider, params = asyncio.run(run())
    if dry_run:
        return LabelResult(None, parent, Counter(items=len(work)), estimate=_asdict(estimate))

    counters: Counter[str] = Counter(items=len(work))
    new_labels: dict[str, list[Label]] = {}
    failures: list[dict[str, Any]] = []
    for i, (task, item) in enumerate(work):
        got = results.get(i)
        if not isinstance(got, tuple):
            kind = getattr(got, "kind", "missing")
            counters["unlabeled_budget" if kind == "budget" else f"failed_{kind}"] += 1
            continue
        res, labels = got
        if isinstance(labels, ParseError):
            counters["parse_failures"] += 1
            failures.append(
                {
                    "record_id": item.record_id,
                    "turn": item.turn,
                    "task": task.name,
                    "reason": str(labels),
                    "raw": res.content,
                    "cache_key": res.key,
                }
            )
            continue
        for lab in labels:
            lab["created_at"] = res.created_at  # when the completion was made: the same on every re-run
            lab["attrs"] = {**(lab.get("attrs") or {}), "cache_key": res.key}
        new_labels.setdefault(item.record_id, []).extend(labels)
        counters["items_labeled"] += 1
        counters[f"labels.{task.name}"] += len(labels)
    if final is not None:
        counters.update(
            {
                "cache_hits": final.cache_hits,
                "requests_sent": final.sent,
                "prompt_tokens": final.prompt_tokens,
                "completion_tokens": final.completion_tokens,
            }
        )
    step = {
        "kind": "label",
        "config": {
            "labeler": "llm",
            "provider": provider,  # the endpoint's identity, never the key
            "model": model,
            "tasks": {t.name: t.prompt_version for t in tasks},
            "params": params,
        },
        "counters": dict(sorted(counters.items())),
        "cost_usd": getattr(final, "cost_usd", None),
        "budget_usd": max_cost,
        "max_failure_share": max_failure_share,
    }
    artifacts = {"failures": pa.Table.from_pylist(failures)} if failures else {}
    sid, reused = write_labeled(store, parent, new_labels, step=step, tag=tag, artifacts=artifacts)
    result = LabelResult(sid, parent, counters, reused=reused, tag=tag)
    result.estimate = {"cost_usd": getattr(final, "cost_usd", None), "saved_usd": getattr(final, "saved_usd", None)}
    return result


def _asdict(obj: Any) -> dict[str, Any]:
    from dataclasses import asdict, is_dataclass

    return asdict(obj) if is_dataclass(obj) else dict(obj)
