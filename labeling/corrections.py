"""Review without Argilla: accept or correct labels (the dashboard's Review page), saved as a NEW snapshot.

:func:`review_queue` lists the *units* of a task -- a record, or one turn of it
for turn-level labels -- with their gold, machine (``llm`` / ``model``) and human
values, so a reviewer can walk through them (all, only where the machine and
gold disagree, or those the reviewer has not answered yet).

:func:`apply_reviews` writes the answers as ``human`` labels -- agent = the
reviewer's name, ``attrs`` ``status=submitted``, ``action`` (``accept`` /
``correct``) and ``via=dashboard`` -- into a new snapshot, child of the
reviewed one, through the store's writer: the reviewed snapshot is never
modified and a failed write leaves nothing behind. Gold and machine labels are
untouched; a reviewer who answers a unit again replaces their own earlier
answer on that unit and task in the new snapshot (as a response updated in
Argilla: the earlier answer stays in the parent snapshot).

Everything is validated before anything is written: the reviewer's name, the
task, each value against the task's vocabulary or scale, and every record id
and turn against the snapshot.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from curation import vocabularies
from curation.errors import WorkbenchError
from curation.record import Label, label
from curation.store import SnapshotStore
from labeling.audit import SCORE_SCALES, task_kind

Action = Literal["accept", "correct"]
Only = Literal["all", "disagreements", "unreviewed"]

ACTIONS = ("accept", "correct")
QUEUE_FILTERS = ("all", "disagreements", "unreviewed")
MACHINE_SOURCES = ("llm", "model")
VIA = "dashboard"
_REVIEWER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@:-]{0,63}$")


class ReviewInputError(WorkbenchError):
    """A review that cannot be saved: the message names the unit, the task and what was expected."""


# ------------------------------------------------------------------ the queue


@dataclass(frozen=True)
class UnitLabels:
    """One unit of a task and what each kind of coder says about it."""

    record_id: str
    turn: int | None
    source: str  # the record's source (dailydialog, ...)
    split: str
    gold: tuple[str, ...] = ()
    machine: tuple[str, ...] = ()  # best-scored first
    machine_agents: tuple[str, ...] = ()
    human: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # reviewer -> values

    @property
    def key(self) -> str:
        return self.record_id if self.turn is None else f"{self.record_id}#t{self.turn}"

    @property
    def disagrees(self) -> bool:
        """Machine and gold both present and different (as sets, for multi-label tasks)."""
        return bool(self.gold) and bool(self.machine) and set(self.gold) != set(self.machine)


def review_queue(
    records: Iterable[Mapping[str, Any]],
    task: str,
    *,
    only: Only = "all",
    reviewer: str | None = None,
) -> list[UnitLabels]:
    """The units of ``task`` that carry a machine or gold label, in record order (record-level before turns).

    ``records`` need ``id``, ``source``, ``split`` and ``labels`` (e.g.
    :func:`curation.browse.iter_label_records`). ``only="disagreements"`` keeps
    units where machine and gold differ; ``only="unreviewed"`` keeps units
    ``reviewer`` has not answered.
    """
    task_kind(task)  # raises on an unknown task
    if only not in QUEUE_FILTERS:
        raise ReviewInputError(f"review queue: expected one of {QUEUE_FILTERS}, got {only!r}")
    if only == "unreviewed" and not reviewer:
        raise ReviewInputError("review queue 'unreviewed' needs the reviewer's name")
    out: list[UnitLabels] = []
    for record in records:
        by_turn: dict[int | None, dict[str, Any]] = {}
        for lab in record["labels"]:
            if lab["task"] != task:
                continue
            unit = by_turn.setdefault(
                lab.get("turn"), {"gold": [], "machine": [], "agents": [], "human": defaultdict(list)}
            )
            if lab["source"] == "gold":
                unit["gold"].append(lab["value"])
            elif lab["source"] in MACHINE_SOURCES:
                unit["machine"].append((lab.get("score"), lab["value"]))
                unit["agents"].append(lab["agent"])
            elif lab["source"] == "human":
                unit["human"][lab["agent"]].append(lab["value"])
        for turn in sorted(by_turn, key=lambda t: -1 if t is None else t):
            given = by_turn[turn]
            if not given["gold"] and not given["machine"]:
                continue
            ranked = sorted(given["machine"], key=lambda sv: -(sv[0] if sv[0] is not None else 0.0))
            unit = UnitLabels(
                record_id=record["id"],
                turn=turn,
                source=record["source"],
                split=record["split"],
                gold=tuple(dict.fromkeys(given["gold"])),
                machine=tuple(dict.fromkeys(v for _, v in ranked)),
                machine_agents=tuple(dict.fromkeys(given["agents"])),
                human={a: tuple(dict.fromkeys(v)) for a, v in sorted(given["human"].items())},
            )
            if only == "disagreements" and not unit.disagrees:
                continue
            if only == "unreviewed" and reviewer in unit.human:
                continue
            out.append(unit)
    return out


# ------------------------------------------------------------------ reviews


@dataclass(frozen=True)
class Review:
    """A reviewer's answer on one unit: ``values`` are one label (several for multi-label emotion) or one score."""

    record_id: str
    task: str
    values: tuple[str, ...]
    turn: int | None = None
    action: Action = "correct"

    @classmethod
    def of(
        cls,
        record_id: str,
        task: str,
        value: str | float | Sequence[str],
        *,
        turn: int | None = None,
        action: Action = "correct",
    ) -> Review:
        values = (str(value),) if isinstance(value, str | int | float) else tuple(str(v) for v in value)
        return cls(record_id=record_id, task=task, values=values, turn=turn, action=action)

    @property
    def unit(self) -> tuple[str, int | None, str]:
        return (self.record_id, self.turn, self.task)


def _where(r: Review) -> str:
    return f"record {r.record_id}" + (f" turn {r.turn}" if r.turn is not None else "") + f", task {r.task}"


def _score_scale(task: str) -> tuple[int, int]:
    return SCORE_SCALES["trait" if task.startswith("trait.") else task]


def _check_review(r: Review) -> list[tuple[str, float | None]]:
    """The (value, score) labels a review becomes; raises naming the unit on a bad value."""
    if r.action not in ACTIONS:
        raise ReviewInputError(f"{_where(r)}: action must be one of {ACTIONS}, got {r.action!r}")
    if r.turn is not None and (not isinstance(r.turn, int) or r.turn < 0):
        raise ReviewInputError(f"{_where(r)}: turn must be a non-negative index, got {r.turn!r}")
    try:
        kind = task_kind(r.task)
    except WorkbenchError as exc:
        raise ReviewInputError(f"{_where(r)}: {exc}") from None
    values = list(dict.fromkeys(r.values))
    if not values:
        raise ReviewInputError(f"{_where(r)}: no value given")
    if kind == "score":
        if len(values) != 1:
            raise ReviewInputError(f"{_where(r)}: expected one score, got {len(values)}")
        low, high = _score_scale(r.task)
        try:
            number = float(values[0])
        except ValueError:
            raise ReviewInputError(f"{_where(r)}: expected a number on {low}..{high}, got {values[0]!r}") from None
        if not (math.isfinite(number) and low <= number <= high):
            raise ReviewInputError(f"{_where(r)}: expected a number on {low}..{high}, got {values[0]!r}")
        text = str(int(number)) if number.is_integer() else f"{number:g}"
        return [(text, number)]
    vocab = vocabularies.load(r.task)
    unknown = [v for v in values if v not in vocab.labels]
    if unknown:
        raise ReviewInputError(
            f"{_where(r)}: {unknown[0]!r} is not in vocabulary {r.task!r} (expected one of: {', '.join(vocab.labels)})"
        )
    if kind == "single_label" and len(values) != 1:
        raise ReviewInputError(f"{_where(r)}: {r.task} takes one label, got {len(values)}: {', '.join(values)}")
    return [(v, None) for v in values]


def check_reviewer(reviewer: str) -> str:
    """The reviewer's name, stripped; it becomes the labels' agent, so it must be a short plain name."""
    name = (reviewer or "").strip()
    if not _REVIEWER.match(name):
        raise ReviewInputError(
            f"reviewer name {reviewer!r}: expected 1-64 characters, letters, digits, spaces and ._@:- "
            "(starting with a letter or digit)"
        )
    return name


def apply_reviews(
    store: SnapshotStore,
    ref: str,
    reviews: Sequence[Review],
    *,
    reviewer: str,
    tag: str | None = None,
    now: datetime | None = None,
) -> str:
    """Write ``reviews`` by ``reviewer`` as human labels into a new snapshot, child of ``ref``; returns its id.

    The new snapshot's step (``kind: review``) records the reviewer and the tasks,
    and counts reviews, ``accept`` / ``correct`` answers, records changed and
    earlier answers of the same reviewer ``replaced``. ``tag`` names it (and
    ``latest`` points at it, as after every write).
    """
    name = check_reviewer(reviewer)
    if not reviews:
        raise ReviewInputError("no reviews to save")
    created = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    planned: dict[str, list[tuple[Review, list[tuple[str, float | None]]]]] = defaultdict(list)
    seen: set[tuple[str, int | None, str]] = set()
    for r in reviews:
        labels = _check_review(r)
        if r.unit in seen:
            raise ReviewInputError(f"{_where(r)}: reviewed twice in one batch (keep one answer per unit)")
        seen.add(r.unit)
        planned[r.record_id].append((r, labels))
    parent = store.resolve(ref)
    counters: Counter[str] = Counter(reviews=len(reviews))
    counters.update(r.action for r in reviews)
    step = {
        "kind": "review",
        "config": {"via": VIA, "reviewer": name, "tasks": sorted({r.task for r in reviews})},
    }
    # A label layer: only the reviewed records are read (by id) and only their labels written.
    found = store.find_records(parent, planned)
    missing = sorted(set(planned) - set(found))
    if missing:
        raise ReviewInputError(
            f"record {missing[0]!r} is not in snapshot {parent}"
            + (f" (and {len(missing) - 1} more reviewed records)" if len(missing) > 1 else "")
        )
    with store.writer(step=step, parents=[parent], layer=True) as writer:
        for pos, record in sorted(found.values(), key=lambda pr: pr[0]):
            writer.set_labels(pos, record, _relabel(record, planned[record["id"]], name, created, counters))
            counters["records"] += 1
        writer.steps[0]["counters"] = dict(sorted(counters.items()))
        sid = writer.commit()
    if tag:
        store.set_ref(tag, sid)
    store.set_ref("latest", sid)
    return sid


def _relabel(
    record: Mapping[str, Any],
    todo: Sequence[tuple[Review, list[tuple[str, float | None]]]],
    reviewer: str,
    created: datetime,
    counters: Counter[str],
) -> list[Label]:
    n_turns = len(record["turns"])
    replaced_units = set()
    new: list[Label] = []
    for r, values in todo:
        if r.turn is not None and r.turn >= n_turns:
            raise ReviewInputError(f"{_where(r)}: turn {r.turn} outside 0..{n_turns - 1}")
        replaced_units.add((r.task, r.turn))
        attrs = {"status": "submitted", "action": r.action, "via": VIA}
        new.extend(
            label(
                r.task, value, source="human", agent=reviewer, score=score, turn=r.turn, created_at=created, attrs=attrs
            )
            for value, score in values
        )
    kept = []
    for lab in record["labels"]:
        if lab["source"] == "human" and lab["agent"] == reviewer and (lab["task"], lab.get("turn")) in replaced_units:
            counters["replaced"] += 1
            continue
        kept.append(lab)
    return [*kept, *new]
