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


def write_labeled(
    store: SnapshotStore,
    parent: str,
    new_labels: dict[str, list[Label]],
    *,
    step: dict[str, Any],
    tag: str | None,
) -> tuple[str, bool]:
    """Stream the parent's records into a new snapshot with ``new_labels`` appended by record id."""
    with store.writer(step=step, parents=[parent]) as writer:
        for record in store.iter_records(parent):
            extra = new_labels.get(record["id"])
            if extra:
                record = {**record, "labels": [*record["labels"], *extra]}
            writer.add(record)
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
    new_labels: dict[str, list[Label]] = {}
    for batch in store.iter_batches(parent, batch_size=1000):
        records = from_batch(batch)
        for rid, labels in labeler.label_many(records).items():
            if labels:
                new_labels[rid] = labels
                counters["records_labeled"] += 1
                for lab in labels:
                    counters[f"labels.{lab['task']}"] += 1
        counters["records"] += len(records)
        if progress:
            progress(dict(counters))
    step = {
        "kind": "label",
        "config": {
            "labeler": "local",
            "tasks": [t.name for t in tasks],
            "agents": labeler.agents(),
            "trained_on": train_refs,
        },
        "counters": dict(sorted(counters.items())),
    }
    sid, reused = write_labeled(store, parent, new_labels, step=step, tag=tag)
    return LabelResult(sid, parent, counters, reused=reused, tag=tag)


def audit_snapshot(
    store: SnapshotStore,
    ref: str,
    *,
    task: str,
    label_source: str | None = None,
    sample: int = 0,
    split: str | None = None,
) -> dict[str, Any]:
    """:func:`labeling.audit.audit` over a snapshot's records, optionally one split (e.g. held-out test)."""
    from labeling.audit import audit

    records = [r for r in store.iter_records(ref) if split is None or r["split"] == split]
    if task == "traits":
        raise WorkbenchError("audit one trait at a time: --task trait.formality, trait.empathy, ...")
    return audit(records, task, source=label_source, sample=sample or None)
