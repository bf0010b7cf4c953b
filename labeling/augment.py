"""Augmentation to a target distribution: generate examples for minority classes, verify, dedup, snapshot.

``workbench augment labeled --task emotion --target examples/targets.toml --model M`` reads the
targets of one task, counts that task's classes in the TRAIN split of the input snapshot, and fills
each class's deficit with generated examples:

1. **generate**: few-shot prompts (``labeling/prompts/augment-<task>-v1.toml``) show real train
   examples of the class, drawn with a fixed seed, and ask for ``per_request`` new ones as JSON
   (``{"examples": [{"text": ...}]}``; a seeker / supporter exchange for strategy and empathy).
   Requests go through :func:`labeling.batch.complete_many`: cached, concurrent, budgeted;
2. **dedup**: a generated example that is a near duplicate (MinHash + LSH of
   :mod:`curation.steps.dedup`, estimated Jaccard >= ``dedup_threshold``) of any input record (every
   split: a copy of a test example must not enter train) or of another generated one is dropped;
3. **verify**: each remaining example is re-labeled with the task's own labeler (the LLM task prompt
   through the same client, or the offline :class:`~labeling.local.LocalLabeler` with
   ``verify="local"``) and kept only if that label is the target class (emotion: the target is among
   the labels; traits / empathy: the score falls in the target bucket);
4. stop at the target or the budget; up to ``rounds`` rounds refill what verification rejected.

**Counting rule** (what "before" counts, per train record):
emotion and strategy count the ``gold`` labels; traits and empathy, which have no gold, count the
record's ``llm`` labels, or its ``model`` labels (the local labeler) when it has no ``llm`` label of
that task. A synthetic record counts its generated label only (``attrs["augment"] == "generated"``),
so re-augmenting an augmented snapshot sees what earlier runs added. A record with several labels
of the task counts once per distinct class. ``sources`` (per task, in the targets file) restricts the
records counted and the few-shot pool.

Kept records are synthetic (``provenance(synthetic=True, generator="<model>@<prompt_version>")``, the
completion's cache key as ``file``), in split ``train`` only, with id ``<source>:train:syn-<hash12>``
(``source``: the source of most of the request's few-shot examples; hash of the text). Their labels:
the generated label (source ``llm``, agent the generator, ``attrs["augment"] = "generated"``) and
the verification label(s) (``attrs["augment"] = "verification"``).

The new snapshot (parent = input) holds every input record plus the kept ones; its manifest step
``augment`` records the targets, model, provider (never the key), prompt versions, counters and the
per-class distribution before and after.

**Failing loudly**: nothing is published when the endpoint refuses the key or the model or is
unreachable (:class:`~labeling.completion.EndpointError`), when more than ``max_failure_share`` of a
batch's requests (generation or verification) failed or came back unparseable (a generation answer
with no usable example; :class:`~labeling.batch.TooManyFailures`), or past ``deadline`` seconds
(:class:`~labeling.batch.DeadlineExceeded`); what was received stays cached for a re-run. Labels carry
the time their completion was made, so the same run twice gives the same snapshot id.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from curation import vocabularies
from curation.errors import InputError, WorkbenchError
from curation.record import Label, Record, label, make_id, provenance, text_of, turn
from curation.store import SnapshotStore
from labeling.tasks.base import ParseError, Task, get_tasks
from labeling.tasks.traits import SCALE as TRAIT_SCALE
from labeling.tasks.traits import TRAITS, trait_task

AUGMENT_VERSION = "v1"
AUGMENT_TASKS = ("emotion", "strategy", "traits", "empathy")
CLASS_TASKS = ("emotion", "strategy")  # classes are vocabulary labels, counted from gold
SCORE_SCALES = {"traits": TRAIT_SCALE, "empathy": (1, 5)}  # classes are score buckets, counted from llm/model
DIALOGUE_TASKS = ("strategy", "empathy")  # an example is a seeker turn and the labeled supporter turn
GENERATED = "generated"
VERIFICATION = "verification"
SHOT_CHARS = 600  # a few-shot example is cut to this many characters

Verify = Literal["llm", "local"]
ProgressCallback = Callable[[dict[str, Any]], None]


class TargetError(InputError):
    """A targets file that does not say what is expected; names the file and the key."""


# ------------------------------------------------------------------ targets


@dataclass(frozen=True)
class TaskTargets:
    """The targets of one task, as the targets file declares them (resolved to counts by :meth:`resolve`).

    ``min_count`` / ``min_share``: every class (every vocabulary label; every trait x bucket) at least
    this many / this share of the task's train labels. ``counts`` / ``shares``: per class. A class's
    target is the largest that applies. Classes: vocabulary labels (emotion, strategy), ``"lo-hi"``
    buckets (empathy) or ``"<trait>:lo-hi"`` (traits).
    """

    task: str
    min_count: int = 0
    min_share: float = 0.0
    counts: Mapping[str, int] = field(default_factory=dict)
    shares: Mapping[str, float] = field(default_factory=dict)
    buckets: tuple[tuple[int, int], ...] = ()
    traits: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()  # empty: every source

    @property
    def classes(self) -> tuple[str, ...]:
        if self.task in CLASS_TASKS:
            return tuple(vocabularies.load(self.task).labels)
        names = [_bucket_name(b) for b in self.buckets]
        if self.task == "traits":
            return tuple(f"{t}:{b}" for t in self.traits for b in names)
        return tuple(names)

    def resolve(self, before: Mapping[str, int]) -> dict[str, int]:
        """Target count per class, given the counts before (shares are of the task's train labels before)."""
        total = sum(before.values())
        out = {}
        for cls in self.classes:
            want = max(
                self.min_count,
                math.ceil(self.min_share * total),
                self.counts.get(cls, 0),
                math.ceil(self.shares.get(cls, 0.0) * total),
            )
            out[cls] = want
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "min_count": self.min_count,
            "min_share": self.min_share,
            "counts": dict(sorted(self.counts.items())),
            "shares": dict(sorted(self.shares.items())),
            "buckets": [list(b) for b in self.buckets],
            "traits": list(self.traits),
            "sources": list(self.sources),
        }


def _bucket_name(bucket: tuple[int, int]) -> str:
    return f"{bucket[0]}-{bucket[1]}"


def load_targets(path: str | Path, task: str) -> TaskTargets:
    """The targets of ``task`` from a TOML file (see ``examples/targets.toml``); errors name the file and key."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TargetError("no such targets file", file=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise TargetError(f"not valid TOML: {exc}", file=str(path)) from None
    return parse_targets(data, task, file=str(path))


def parse_targets(data: Mapping[str, Any], task: str, *, file: str = "<targets>") -> TaskTargets:
    """Validate the ``[task]`` table of a parsed targets file."""
    if task not in AUGMENT_TASKS:
        raise WorkbenchError(f"augment: unknown task {task!r} (expected one of: {', '.join(AUGMENT_TASKS)})")
    unknown = sorted(k for k in data if k not in AUGMENT_TASKS)
    if unknown:
        raise TargetError(f"key {unknown[0]!r}: not a task (expected tables {', '.join(AUGMENT_TASKS)})", file=file)
    table = data.get(task)
    if not isinstance(table, Mapping):
        raise TargetError(f"key {task!r}: no [{task}] table of targets", file=file)

    def fail(key: str, message: str) -> TargetError:
        return TargetError(f"key '{task}.{key}': {message}", file=file)

    scored = task in SCORE_SCALES
    allowed = {"min_count", "min_share", "classes", "sources"} | ({"buckets", "min_per_bucket"} if scored else set())
    if task == "traits":
        allowed.add("traits")
    for key in table:
        if key not in allowed:
            raise fail(key, f"unknown key (expected one of: {', '.join(sorted(allowed))})")

    def count(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise fail(key, f"expected a count (an integer >= 0), got {value!r}")
        return value

    def share(key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, float) or not 0 < value <= 1:
            raise fail(key, f"expected a share (a float in (0, 1]), got {value!r}")
        return value

    min_count = max(
        count("min_count", table.get("min_count", 0)), count("min_per_bucket", table.get("min_per_bucket", 0))
    )
    min_share = share("min_share", table["min_share"]) if "min_share" in table else 0.0
    sources = table.get("sources", [])
    if not isinstance(sources, list) or not all(isinstance(s, str) and s for s in sources):
        raise fail("sources", f"expected a list of source names, got {sources!r}")

    buckets: tuple[tuple[int, int], ...] = ()
    traits: tuple[str, ...] = ()
    if scored:
        low, high = SCORE_SCALES[task]
        raw = table.get("buckets")
        if raw is None:
            raise fail("buckets", f"required: score buckets on the {low}..{high} scale, e.g. [[1, 3], [4, 7], [8, 10]]")
        if not isinstance(raw, list) or not raw:
            raise fail("buckets", f"expected a non-empty list of [low, high] pairs, got {raw!r}")
        seen: set[int] = set()
        parsed = []
        for i, b in enumerate(raw):
            ok = isinstance(b, list) and len(b) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in b)
            if not ok or not low <= b[0] <= b[1] <= high:
                raise fail(f"buckets[{i}]", f"expected [low, high] with {low} <= low <= high <= {high}, got {b!r}")
            span = set(range(b[0], b[1] + 1))
            if span & seen:
                raise fail(f"buckets[{i}]", f"{b!r} overlaps another bucket")
            seen |= span
            parsed.append((b[0], b[1]))
        buckets = tuple(parsed)
        if task == "traits":
            raw_traits = table.get("traits", list(TRAITS))
            if not isinstance(raw_traits, list) or not raw_traits:
                raise fail("traits", f"expected a non-empty list of traits, got {raw_traits!r}")
            for t in raw_traits:
                if t not in TRAITS:
                    raise fail("traits", f"{t!r} is not a trait (expected one of: {', '.join(TRAITS)})")
            traits = tuple(raw_traits)

    spec = TaskTargets(task=task, min_share=min_share, buckets=buckets, traits=traits, sources=tuple(sources))
    known = spec.classes
    counts: dict[str, int] = {}
    shares: dict[str, float] = {}
    classes = table.get("classes", {})
    if not isinstance(classes, Mapping):
        raise fail("classes", f"expected a table of class = count or share, got {classes!r}")
    for name, value in classes.items():
        if name not in known:
            shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
            raise fail(f"classes.{name}", f"not a class of {task} (expected one of: {shown})")
        if isinstance(value, float):
            shares[name] = share(f"classes.{name}", value)
        else:
            counts[name] = count(f"classes.{name}", value)
    if not (min_count or min_share or counts or shares):
        raise fail("min_count", "no target given: set min_count, min_share or [classes]")
    return TaskTargets(
        task=task,
        min_count=min_count,
        min_share=min_share,
        counts=counts,
        shares=shares,
        buckets=buckets,
        traits=traits,
        sources=tuple(sources),
    )


# ------------------------------------------------------------------ counting and few-shot pools


@dataclass(frozen=True)
class Shot:
    """One real example of a class, as a prompt shows it (dialogue tasks: the turn before and the labeled turn)."""

    record_id: str
    source: str
    text: str
    before: str = ""
    speakers: tuple[str, ...] = ("author",)


def _class_of(spec: TaskTargets, lab: Label) -> str | None:
    """The target class a label counts for (None: not one of this task's classes)."""
    if spec.task in CLASS_TASKS:
        return lab["value"] if lab["task"] == spec.task else None
    if spec.task == "traits":
        if not lab["task"].startswith("trait."):
            return None
        trait = lab["task"].removeprefix("trait.")
        if trait not in spec.traits:
            return None
        bucket = _bucket_of(spec, lab)
        return f"{trait}:{bucket}" if bucket else None
    if lab["task"] != spec.task or lab.get("turn") is None:  # empathy: per-response ratings only
        return None
    return _bucket_of(spec, lab)


def _bucket_of(spec: TaskTargets, lab: Label) -> str | None:
    try:
        score = int(float(lab["score"] if lab.get("score") is not None else lab["value"]))
    except (TypeError, ValueError):
        return None
    for b in spec.buckets:
        if b[0] <= score <= b[1]:
            return _bucket_name(b)
    return None


def counted_labels(spec: TaskTargets, record: Record) -> list[tuple[str, Label]]:
    """(class, label) of the labels that count for ``record`` under the counting rule (module docstring)."""
    labels = record["labels"]
    if record["provenance"].get("synthetic"):
        chosen = [lab for lab in labels if (lab.get("attrs") or {}).get("augment") == GENERATED]
    elif spec.task in CLASS_TASKS:
        chosen = [lab for lab in labels if lab["source"] == "gold"]
    else:
        mine = [lab for lab in labels if _class_of(spec, lab) is not None]
        by_task: dict[str, list[Label]] = {}
        for lab in mine:
            by_task.setdefault(lab["task"], []).append(lab)
        chosen = []
        for labs in by_task.values():
            llm = [lab for lab in labs if lab["source"] == "llm"]
            chosen += llm or [lab for lab in labs if lab["source"] == "model"]
    out, seen = [], set()
    for lab in chosen:
        cls = _class_of(spec, lab)
        key = (cls, lab.get("turn"))
        if cls is not None and key not in seen:
            seen.add(key)
            out.append((cls, lab))
    return out


def _shot(spec: TaskTargets, record: Record, lab: Label) -> Shot:
    turns = record["turns"]
    t = lab.get("turn")
    if spec.task in DIALOGUE_TASKS and t is not None:
        prev = turns[t - 1] if t > 0 else None
        return Shot(
            record["id"],
            record["source"],
            _cut(turns[t]["text"]),
            _cut(prev["text"]) if prev else "",
            ((prev["speaker"] if prev else "seeker"), turns[t]["speaker"]),
        )
    if t is not None:
        return Shot(record["id"], record["source"], _cut(turns[t]["text"]), speakers=(turns[t]["speaker"],))
    speaker = turns[0]["speaker"] if len(turns) == 1 else "author"
    return Shot(record["id"], record["source"], _cut(text_of(record)), speakers=(speaker,))


def _cut(text: str) -> str:
    if len(text) <= SHOT_CHARS:
        return text
    return text[:SHOT_CHARS].rsplit(" ", 1)[0] + " [...]"


def distribution(spec: TaskTargets, records: Iterable[Record]) -> tuple[Counter[str], dict[str, list[Shot]]]:
    """Per-class counts in the train split (the counting rule) and the real few-shot examples of each class."""
    counts: Counter[str] = Counter()
    pools: dict[str, list[Shot]] = {}
    for record in records:
        if record["split"] != "train" or (spec.sources and record["source"] not in spec.sources):
            continue
        for cls, lab in counted_labels(spec, record):
            counts[cls] += 1
            if not record["provenance"].get("synthetic"):
                pools.setdefault(cls, []).append(_shot(spec, record, lab))
    for pool in pools.values():
        pool.sort(key=lambda s: (s.record_id, s.text))
    return counts, pools


# ------------------------------------------------------------------ prompts and generated examples


def prompt_version(task: str) -> str:
    return f"augment-{task}-{AUGMENT_VERSION}"


def generation_schema(task: str) -> dict[str, Any]:
    """The JSON schema of a generation answer: ``{"examples": [...]}``."""
    if task in DIALOGUE_TASKS:
        props: dict[str, Any] = {
            "seeker": {"type": "string", "description": "what the help seeker says"},
            "supporter": {"type": "string", "description": "the supporter's reply: the example itself"},
        }
    else:
        props = {"text": {"type": "string", "description": "the new example"}}
    if task in SCORE_SCALES:
        low, high = SCORE_SCALES[task]
        props["score"] = {
            "type": "integer",
            "minimum": low,
            "maximum": high,
            "description": f"the score you intend, {low}..{high}",
        }
    item = {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}
    return {
        "type": "object",
        "properties": {"examples": {"type": "array", "items": item}},
        "required": ["examples"],
        "additionalProperties": False,
    }


def _class_description(spec: TaskTargets, cls: str) -> str:
    if spec.task == "emotion":
        return f"the emotion {cls!r}"
    if spec.task == "strategy":
        return f"the support strategy {cls!r}"
    if spec.task == "traits":
        trait, bucket = cls.split(":")
        return f"a {trait.replace('_', ' ')} score of {bucket.replace('-', ' to ')} (on 1..10)"
    return f"an empathy rating of {cls.replace('-', ' to ')} (on 1..5)"


def _render_shots(spec: TaskTargets, shots: Sequence[Shot]) -> str:
    blocks = []
    for i, s in enumerate(shots, 1):
        if spec.task in DIALOGUE_TASKS:
            blocks.append(
                f"Example {i}:\n{s.speakers[0]}: {s.before or '(start of conversation)'}\n{s.speakers[1]}: {s.text}"
            )
        else:
            blocks.append(f"Example {i}:\n<<<\n{s.text}\n>>>")
    return "\n\n".join(blocks)


@dataclass(frozen=True)
class _GenRequest:
    cls: str
    shots: tuple[Shot, ...]
    source: str


@dataclass
class Candidate:
    """One generated example on its way to being kept or dropped."""

    cls: str
    source: str
    turns: list[dict[str, Any]]
    label_turn: int | None
    score: int | None
    key: str  # the generation completion's cache key
    index: int  # its position in that completion's examples
    created_at: datetime | None = None  # when the generation completion was made

    @property
    def text(self) -> str:
        return "\n".join(t["text"] for t in self.turns)


def _parse_generation(
    spec: TaskTargets, req: _GenRequest, content: str, key: str, created_at: datetime | None = None
) -> tuple[list[Candidate], list[str]]:
    """Candidates from one generation completion, and the reasons of the examples that did not parse."""
    from labeling.tasks.parsing import extract_json_object

    try:
        obj = extract_json_object(content)
    except ParseError as exc:
        return [], [str(exc)]
    examples = obj.get("examples")
    if not isinstance(examples, list):
        return [], ["'examples' must be a list"]
    out, failures = [], []
    speakers = req.shots[0].speakers
    for i, ex in enumerate(examples):
        if not isinstance(ex, Mapping):
            failures.append(f"example {i} is not an object")
            continue
        score = None
        if spec.task in SCORE_SCALES:
            low, high = SCORE_SCALES[spec.task]
            raw = ex.get("score")
            if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
                failures.append(f"example {i}: score must be an integer {low}..{high}, got {raw!r:.20}")
                continue
            score = raw
        if spec.task in DIALOGUE_TASKS:
            seeker, supporter = ex.get("seeker"), ex.get("supporter")
            if not (isinstance(seeker, str) and seeker.strip() and isinstance(supporter, str) and supporter.strip()):
                failures.append(f"example {i}: 'seeker' and 'supporter' must be non-empty strings")
                continue
            first = speakers[0] if len(speakers) == 2 else "seeker"
            second = speakers[1] if len(speakers) == 2 else "supporter"
            turns = [turn(first, seeker.strip()), turn(second, supporter.strip())]
            label_turn: int | None = 1
        else:
            text = ex.get("text")
            if not isinstance(text, str) or not text.strip():
                failures.append(f"example {i}: 'text' must be a non-empty string")
                continue
            turns = [turn(speakers[0], text.strip())]
            label_turn = None
        out.append(Candidate(req.cls, req.source, turns, label_turn, score, key, i, created_at))
    return out, failures


# ------------------------------------------------------------------ near duplicates


class NearDuplicateIndex:
    """Texts seen so far (the input and the kept examples); answers which new texts are near duplicates.

    MinHash signatures (:func:`curation.steps.dedup.minhash_signatures`, word n-grams) and LSH
    candidates (:func:`~curation.steps.dedup.lsh_clusters`, 32 bands x 4 rows: a pair at the default
    threshold 0.7 is a candidate with probability > 0.99), verified by estimated Jaccard.
    """

    def __init__(self, texts: Iterable[str], *, threshold: float, ngram: int = 3, seed: int = 1) -> None:
        import numpy as np

        from curation.steps.dedup import minhash_signatures

        if not 0 < threshold <= 1:
            raise WorkbenchError(f"augment: dedup_threshold must be in (0, 1], got {threshold}")
        self.threshold, self.ngram, self.seed = threshold, ngram, seed
        self._np = np
        self._minhash = minhash_signatures
        self.signatures = self._sign(list(texts))

    def _sign(self, texts: list[str]) -> Any:
        return self._minhash(texts, num_perm=128, ngram=self.ngram, seed=self.seed)

    def duplicates(self, texts: Sequence[str]) -> list[bool]:
        """For each new text: a near duplicate of a known text or of an earlier text of this list?"""
        from curation.steps.dedup import lsh_clusters

        if not texts:
            return []
        np = self._np
        new = self._sign(list(texts))
        known = self.signatures.shape[0]
        found = lsh_clusters(np.vstack([self.signatures, new]), bands=32, rows=4, threshold=self.threshold)
        dup = [False] * len(texts)
        for _, b in found.pairs:  # pairs are (i, j) with i < j: the later text j is the copy
            if b >= known:
                dup[int(b) - known] = True
        return dup

    def add(self, texts: Sequence[str]) -> None:
        if texts:
            self.signatures = self._np.vstack([self.signatures, self._sign(list(texts))])


# ------------------------------------------------------------------ verification


def _verification_record(c: Candidate) -> Record:
    return {
        "id": make_id(c.source, "train", f"syn-{text_hash(c.text)}"),
        "source": c.source,
        "split": "train",
        "context": {},
        "turns": c.turns,  # type: ignore[typeddict-item]
        "labels": [],
        "provenance": provenance(f"completion:{c.key}", adapter="augment", adapter_version=AUGMENT_VERSION),
    }


def _verified_class(spec: TaskTargets, c: Candidate, labels: Sequence[Label]) -> bool:
    """Whether the verification labels put the example in its target class."""
    if spec.task == "traits":
        trait = c.cls.split(":")[0]
        labels = [lab for lab in labels if lab["task"] == trait_task(trait)]
    else:
        labels = [lab for lab in labels if lab["task"] == spec.task and lab.get("turn") == c.label_turn]
    return any(_class_of(spec, lab) == c.cls for lab in labels)


def text_hash(text: str) -> str:
    """The 12 hex digits of a synthetic record's id (sha256 of the text)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


# ------------------------------------------------------------------ the run


@dataclass
class ClassReport:
    before: int = 0
    target: int = 0
    requested: int = 0  # examples asked for
    generated: int = 0  # examples that parsed
    verified: int = 0
    rejected_label: int = 0
    rejected_duplicate: int = 0
    kept: int = 0
    no_examples: bool = False  # a deficit, but no real example to show the generator

    @property
    def after(self) -> int:
        return self.before + self.kept


@dataclass
class AugmentResult:
    snapshot_id: str
    parent: str
    task: str
    classes: dict[str, ClassReport]
    counters: Counter[str]
    budget_stopped: bool = False
    cost_usd: float | None = None
    reused: bool = False
    tag: str | None = None


def augment(
    ref: str,
    *,
    store: SnapshotStore,
    task: str,
    targets: TaskTargets | str | Path,
    model: str,
    base_url: str | None = None,
    verify: Verify = "llm",
    max_cost: float | None = None,
    tag: str | None = None,
    per_request: int = 5,
    shots: int = 4,
    rounds: int = 3,
    oversample: float = 1.5,
    dedup_threshold: float = 0.7,
    seed: int = 0,
    concurrency: int = 8,
    temperature: float | None = 0.7,
    free: bool | None = None,
    progress: ProgressCallback | None = None,
    max_failure_share: float = 0.1,
    deadline: float | None = None,
    timeout: float = 30.0,
) -> AugmentResult:
    """Augment the train split of ``ref`` towards ``targets`` for ``task`` into a new snapshot (module docstring).

    Every completion is cached: a re-run with the same arguments sends nothing that was sent before, so
    a run stopped by ``max_cost`` continues where it stopped when given more budget. ``max_failure_share``
    (per batch of requests), ``deadline`` (seconds for the whole run) and ``timeout`` (seconds per HTTP
    attempt): see the module docstring, "Failing loudly".
    """
    if verify not in ("llm", "local"):
        raise WorkbenchError(f"augment: verify must be 'llm' or 'local', got {verify!r}")
    for name, value, low in (("per_request", per_request, 1), ("shots", shots, 1), ("rounds", rounds, 1)):
        if value < low:
            raise WorkbenchError(f"augment: {name} must be >= {low}, got {value}")
    if oversample < 1:
        raise WorkbenchError(f"augment: oversample must be >= 1, got {oversample}")
    if max_cost is not None and max_cost < 0:
        raise WorkbenchError(f"augment: max_cost must be >= 0 dollars, got {max_cost}")
    if deadline is not None and deadline <= 0:
        raise WorkbenchError(f"augment: deadline must be > 0 seconds, got {deadline}")
    from labeling.batch import FailureLimit

    FailureLimit(max_failure_share)  # checks the share before anything is read or sent
    from labeling.client import require_api_key

    store.resolve(ref)  # an unknown ref, then a missing key: one line each, before any work
    require_api_key(base_url)
    ends_at = None if deadline is None else time.monotonic() + deadline
    spec = targets if isinstance(targets, TaskTargets) else load_targets(targets, task)
    if spec.task != task:
        raise WorkbenchError(f"augment: the targets are for task {spec.task!r}, not {task!r}")
    from labeling.prompts import load_prompt

    template = load_prompt(prompt_version(task))
    (label_task,) = get_tasks([task])

    parent = store.resolve(ref)
    records = list(store.iter_records(parent))
    before, pools = distribution(spec, records)
    if not before and task in SCORE_SCALES:
        raise WorkbenchError(
            f"augment: no {task} labels (llm or model) in the train split of {ref!r}: label it first "
            f"(workbench label {ref} --task {task})"
        )
    wanted = spec.resolve(before)
    report = {cls: ClassReport(before=before.get(cls, 0), target=wanted[cls]) for cls in spec.classes}
    for cls, rep in report.items():
        rep.no_examples = rep.target > rep.before and not pools.get(cls)
    dedup = NearDuplicateIndex((text_of(r) for r in records), threshold=dedup_threshold)
    counters: Counter[str] = Counter()
    generator = f"{model}@{template.version}"
    kept: list[Record] = []
    local_labeler = _fit_local(label_task, records) if verify == "local" else None

    def need(cls: str) -> int:
        rep = report[cls]
        return max(0, rep.target - rep.before - rep.kept)

    def gen_requests(round_no: int) -> list[_GenRequest]:
        out = []
        for cls in spec.classes:
            missing, pool = need(cls), pools.get(cls)
            if not missing or not pool:
                continue
            n = math.ceil(missing * oversample / per_request)
            for i in range(n):
                rng = random.Random(f"{seed}:{task}:{cls}:{round_no}:{i}")
                chosen = tuple(rng.sample(pool, min(shots, len(pool))))
                by_source = Counter(s.source for s in chosen).most_common()
                top = min(src for src, k in by_source if k == by_source[0][1])
                out.append(_GenRequest(cls, chosen, top))
                report[cls].requested += per_request
        return out

    async def run() -> tuple[str, dict[str, Any], float | None, bool]:
        from contextlib import aclosing

        from labeling.batch import CompletionRequest, DeadlineExceeded, complete_many
        from labeling.client import LLMClient
        from labeling.completion import Completion
        from labeling.pricing import PriceTable
        from labeling.runner import open_cache

        prices = PriceTable.load()
        spent: float | None = 0.0
        stopped = False
        async with LLMClient(
            model=model,
            base_url=base_url,
            concurrency=concurrency,
            temperature=temperature,
            free=free,
            timeout=timeout,
        ) as client:
            with open_cache(store) as cache:

                async def batch(requests: list[Any]) -> tuple[dict[int, Any], FailureLimit]:
                    nonlocal spent, stopped
                    left = None if max_cost is None else max(0.0, max_cost - (spent or 0.0))
                    time_left = None if ends_at is None else ends_at - time.monotonic()
                    if time_left is not None and time_left <= 0:
                        raise DeadlineExceeded(
                            f"{client.endpoint}: the deadline of {deadline:g} s passed; the completions received "
                            "are cached: a re-run resumes"
                        )
                    limit = FailureLimit(max_failure_share)
                    results: dict[int, Any] = {}
                    last: list[Any] = [None]

                    def on_progress(p: Any) -> None:
                        last[0] = p

                    stream = complete_many(
                        client,
                        cache,
                        requests,
                        max_cost=left,
                        prices=prices,
                        on_progress=on_progress,
                        failure_limit=limit,
                        deadline=time_left,
                    )
                    async with aclosing(stream) as it:
                        async for i, res in it:
                            results[i] = res
                    p = last[0]
                    if p is not None:
                        counters["cache_hits"] += p.cache_hits
                        counters["requests_sent"] += p.sent
                        counters["prompt_tokens"] += p.prompt_tokens
                        counters["completion_tokens"] += p.completion_tokens
                        counters["request_failures"] += p.failures
                        spent = None if spent is None or p.cost_usd is None else spent + p.cost_usd
                        stopped = stopped or p.budget_stopped
                    return results, limit

                for round_no in range(rounds):
                    if stopped:
                        break
                    reqs = gen_requests(round_no)
                    if not reqs:
                        break
                    counters["rounds"] += 1
                    messages = [
                        template.render(
                            class_description=_class_description(spec, r.cls),
                            target=r.cls,
                            examples=_render_shots(spec, r.shots),
                            n=str(per_request),
                            batch=f"{round_no}.{i}",
                        )
                        for i, r in enumerate(reqs)
                    ]
                    schema = generation_schema(task)
                    results, limit = await batch(
                        [
                            CompletionRequest(
                                m, json_schema=schema, prompt_version=template.version, schema_name="examples"
                            )
                            for m in messages
                        ]
                    )
                    candidates: list[Candidate] = []
                    for i, req in enumerate(reqs):
                        res = results.get(i)
                        if not isinstance(res, Completion):
                            kind = getattr(res, "kind", "missing")
                            counters[
                                "generation_not_sent_budget" if kind == "budget" else f"generation_failed_{kind}"
                            ] += 1
                            continue
                        got, failures = _parse_generation(spec, req, res.content, res.key, res.created_at)
                        counters["generation_parse_failures"] += len(failures)
                        if not got:  # an answer with no usable example is a failed request
                            limit.parse_failed(failures[0] if failures else "no examples", example=res.content)
                        candidates += got[:per_request]
                        report[req.cls].generated += len(got[:per_request])
                    # near duplicates of the input, of kept examples and of each other
                    dups = dedup.duplicates([c.text for c in candidates])
                    fresh = []
                    for c, is_dup in zip(candidates, dups, strict=True):
                        if is_dup:
                            report[c.cls].rejected_duplicate += 1
                        else:
                            fresh.append(c)
                    dedup.add([c.text for c in fresh])
                    verified = await _verify(fresh, batch, label_task, local_labeler, model, counters)
                    for c, labels in zip(fresh, verified, strict=True):
                        if labels is None:
                            continue
                        if not _verified_class(spec, c, labels) or not _generated_in_class(spec, c):
                            report[c.cls].rejected_label += 1
                            continue
                        report[c.cls].verified += 1
                        if need(c.cls) <= 0:
                            counters["surplus"] += 1
                            continue
                        kept.append(_synthetic_record(spec, c, labels, generator))
                        report[c.cls].kept += 1
                    if progress:
                        progress({"round": round_no, "kept": len(kept), **counters})
                return client.provider, dict(client.params), spent, stopped

    provider, params, spent, stopped = asyncio.run(run())
    ids = Counter(r["id"] for r in kept)
    if any(n > 1 for n in ids.values()):  # identical text twice: dedup should have caught it; never write both
        seen: set[str] = set()
        kept = [r for r in kept if not (r["id"] in seen or seen.add(r["id"]))]  # type: ignore[func-returns-value]
    existing = {r["id"] for r in records}
    clash = [r for r in kept if r["id"] in existing]
    if clash:
        raise WorkbenchError(f"augment: synthetic id {clash[0]['id']} already in {ref!r} (dedup threshold too high?)")

    for rep in report.values():
        counters["requested"] += rep.requested
        counters["generated"] += rep.generated
        counters["verified"] += rep.verified
        counters["rejected_label"] += rep.rejected_label
        counters["rejected_duplicate"] += rep.rejected_duplicate
        counters["kept"] += rep.kept
    counters["budget_stopped"] = int(stopped)
    step = {
        "kind": "augment",
        "config": {
            "task": task,
            "targets": spec.to_json(),
            "model": model,
            "provider": provider,  # the endpoint's identity, never the key
            "params": params,
            "prompt_versions": {
                "generate": template.version,
                "verify": _verify_agent(label_task, local_labeler, model),
            },
            "verify": verify,
            "per_request": per_request,
            "shots": shots,
            "rounds": rounds,
            "oversample": oversample,
            "dedup_threshold": dedup_threshold,
            "seed": seed,
        },
        "counters": dict(sorted(counters.items())),
        "classes": {
            cls: {
                "before": rep.before,
                "target": rep.target,
                "generated": rep.generated,
                "verified": rep.verified,
                "rejected_label": rep.rejected_label,
                "rejected_duplicate": rep.rejected_duplicate,
                "kept": rep.kept,
                "after": rep.after,
                **({"no_examples": True} if rep.no_examples else {}),
            }
            for cls, rep in report.items()
        },
        "distribution_before": {cls: rep.before for cls, rep in report.items() if rep.before},
        "distribution_after": {cls: rep.after for cls, rep in report.items() if rep.after},
        "cost_usd": spent,
        "budget_usd": max_cost,
    }
    # A layer: the parent's records are kept by reference; only the generated ones are written.
    with store.writer(step=step, parents=[parent], layer=True) as writer:
        for record in kept:
            writer.add(record)
        sid = writer.commit()
        reused = writer.reused
    if tag:
        store.set_ref(tag, sid)
    store.set_ref("latest", sid)
    return AugmentResult(sid, parent, task, report, counters, stopped, spent, reused, tag)


def _generated_in_class(spec: TaskTargets, c: Candidate) -> bool:
    """For score tasks the generator states the score it meant: it must be in the target bucket too."""
    if c.score is None:
        return True
    bucket = c.cls.split(":")[-1]
    low, high = (int(v) for v in bucket.split("-"))
    return low <= c.score <= high


def _fit_local(task: Task, records: Sequence[Record]) -> Any:
    from labeling.local import LocalLabeler

    return LocalLabeler().fit((r for r in records if r["split"] == "train"), [task])


def _verify_agent(task: Task, local_labeler: Any, model: str) -> str:
    if local_labeler is not None:
        return local_labeler.agents()[task.name]
    return f"{model}@{task.prompt_version}"


async def _verify(
    candidates: Sequence[Candidate],
    batch: Callable[[list[Any]], Any],
    task: Task,
    local_labeler: Any,
    model: str,
    counters: Counter[str],
) -> list[list[Label] | None]:
    """The verification labels of each candidate (None: not verified: budget, failure or parse error)."""
    records = [_verification_record(c) for c in candidates]
    if local_labeler is not None:
        by_id = local_labeler.label_many(records)
        return [
            [{**lab, "attrs": {**lab["attrs"], "augment": VERIFICATION}} for lab in by_id[r["id"]]] for r in records
        ]

    from labeling.batch import CompletionRequest
    from labeling.completion import Completion

    work = [(n, item) for n, r in enumerate(records) for item in task.items(r) if item.turn == candidates[n].label_turn]
    requests = [
        CompletionRequest(
            task.messages(item),
            json_schema=task.json_schema(),
            prompt_version=task.prompt_version,
            schema_name=task.name.replace(".", "_"),
        )
        for _, item in work
    ]
    if not requests:
        return [None] * len(records)
    results, limit = await batch(requests)
    out: list[list[Label] | None] = [None] * len(records)
    agent = f"{model}@{task.prompt_version}"
    for i, (n, item) in enumerate(work):
        res = results.get(i)
        if not isinstance(res, Completion):
            kind = getattr(res, "kind", "missing")
            counters["unverified_budget" if kind == "budget" else f"unverified_{kind}"] += 1
            continue
        try:
            labels = task.parse(res.content, item, agent=agent)
        except ParseError as exc:
            counters["verification_parse_failures"] += 1
            limit.parse_failed(str(exc), example=res.content)  # raises past the limit
            continue
        for lab in labels:
            lab["created_at"] = res.created_at
            lab["attrs"] = {**(lab.get("attrs") or {}), "cache_key": res.key, "augment": VERIFICATION}
        out[n] = labels
    return out


def _synthetic_record(spec: TaskTargets, c: Candidate, verification: list[Label], generator: str) -> Record:
    attrs = {"augment": GENERATED, "target": c.cls, "cache_key": c.key}
    if spec.task in CLASS_TASKS:
        generated = label(
            spec.task, c.cls, source="llm", agent=generator, turn=c.label_turn, created_at=c.created_at, attrs=attrs
        )
    else:
        name = trait_task(c.cls.split(":")[0]) if spec.task == "traits" else spec.task
        generated = label(
            name,
            str(c.score),
            source="llm",
            agent=generator,
            score=float(c.score or 0),
            turn=c.label_turn,
            created_at=c.created_at,
            attrs=attrs,
        )
    record = _verification_record(c)
    record["labels"] = [generated, *verification]
    record["provenance"] = provenance(
        f"completion:{c.key}",
        line=c.index,
        adapter="augment",
        adapter_version=AUGMENT_VERSION,
        synthetic=True,
        generator=generator,
    )
    return record


__all__ = [
    "AugmentResult",
    "ClassReport",
    "NearDuplicateIndex",
    "TargetError",
    "TaskTargets",
    "augment",
    "counted_labels",
    "distribution",
    "load_targets",
    "parse_targets",
]
