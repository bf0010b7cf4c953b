"""``workbench evaluate``: base model against fine-tuned adapters on an export's test split, honestly.

Read top to bottom, :func:`evaluate_export` does:

1. refuse what cannot be evaluated, before anything is generated: an export whose
   snapshot was not validated (unless ``allow_unvalidated``), an export without a
   test split, a prompt whose conversation is also in the training split (the
   assertion that nothing is scored on data it trained on);
2. build the items (:mod:`evaluate.items`): prompts from the test split and the
   versioned safety suite, a deterministic sample of ``limit`` per suite;
3. generate every model's replies (:mod:`evaluate.generate`) with the same chat
   template, system prompt, decoding parameters and seed, all cached: a re-run
   regenerates nothing;
4. score what needs no judge (:mod:`evaluate.scoring`), then judge the rest
   (:mod:`evaluate.judge`: an LLM judge through labeling's cached client, or the
   local proxy, marked as such);
5. write the generations as a SNAPSHOT of the store: one record per model and
   prompt (the prompt turns, then the reply as a turn of speaker ``model``), the
   judge's verdicts as labels on it (source ``llm`` or ``model``, the judge and
   prompt version as agent), the model, adapter hash and decoding parameters in
   its provenance and context. ``snapshots show``, the dashboard's browser,
   ``review push`` to Argilla and ``review agreement`` work on it as on any
   snapshot, so humans can rate the same replies and audit the judge;
6. compute every metric with its bootstrap CI and every base-to-tuned delta with
   its paired CI, test, Holm-adjusted p-value and verdict (:mod:`evaluate.stats`),
   and write the report (:mod:`evaluate.report`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from curation.errors import WorkbenchError
from evaluate.items import SUITES, EvalItem, build_items
from evaluate.judge import Judgement, judge_requests
from evaluate.scoring import Outcome, outcome_dict, score_reply

EVALUATE_VERSION = "1"
Say = Callable[[str], None]


@dataclass(frozen=True)
class EvalOptions:
    """What an evaluation asks and how (everything here is recorded and part of the snapshot id)."""

    suites: tuple[str, ...] = SUITES
    limit: int | None = 50  # items per suite (a deterministic sample); None: all
    seed: int = 0
    system_prompt: str | None = None
    allow_unvalidated: bool = False

    def __post_init__(self) -> None:
        unknown = [s for s in self.suites if s not in SUITES]
        if not self.suites or unknown:
            raise WorkbenchError(f"suites: {unknown or '(none)'} not among {', '.join(SUITES)}")
        if self.limit is not None and self.limit < 1:
            raise WorkbenchError(f"limit: at least 1 item per suite, got {self.limit}")


@dataclass
class Evaluation:
    """Everything an evaluation produced, before statistics: the report is computed from this alone."""

    export_id: str
    snapshot_id: str
    items: list[EvalItem]
    models: dict[str, dict[str, Any]]  # name -> identity (base model, adapter hash, endpoint ...)
    base: str | None
    replies: dict[str, dict[str, str]]  # model -> item id -> reply
    finish: dict[str, dict[str, str | None]]  # model -> item id -> finish reason
    outcomes: dict[str, dict[str, Outcome]]  # model -> item id -> judge-free outcome
    judgements: list[Judgement]
    judge: dict[str, Any]
    decoding: dict[str, Any]
    options: EvalOptions
    evaluation_snapshot: str | None = None
    cache_hits: int = 0
    generated: int = 0
    head_outcomes: dict[str, dict[str, Outcome]] = field(default_factory=dict)  # model -> item id -> heads
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def clusters(self) -> dict[str, str]:
        return {it.id: it.cluster for it in self.items}


def evaluate_export(
    export_ref: str,
    *,
    store: Any,
    models: Sequence[Any],
    decoding: Any,
    judge: Any,
    cache: Any,
    options: EvalOptions = EvalOptions(),
    tag: str | None = None,
    say: Say = print,
    progress: Callable[[str, int, int], None] | None = None,
) -> Evaluation:
    """Generate, score, judge and snapshot (see the module docstring); the report is :mod:`evaluate.report`'s."""
    from finetune.export import ExportStore

    if not models:
        raise WorkbenchError("no model to evaluate: give --base-model (and --adapter), or --model-url")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise WorkbenchError(f"two models share a name: {', '.join(names)} (name adapters with NAME=PATH)")
    exports = ExportStore(store)
    export_id = exports.resolve(export_ref)
    manifest = exports.manifest(export_ref)
    snapshot = manifest["snapshot"]
    unvalidated = snapshot.get("allow_unvalidated") or snapshot.get("status") != "validated"
    if unvalidated and not options.allow_unvalidated:
        raise WorkbenchError(
            f"export {export_ref} was made from snapshot {snapshot['id']} ({snapshot.get('status')}), which "
            "was not validated: refusing to evaluate on it (pass --allow-unvalidated to do it anyway)"
        )
    files = exports.data_files(export_ref)
    if "test" not in files:
        raise WorkbenchError(
            f"export {export_ref} has no test split (has {', '.join(sorted(files))}): evaluation prompts come from "
            "the test split only"
        )
    rows = exports.read_rows(export_ref, "test")
    items = build_items(
        rows, options.suites, limit=options.limit, seed=options.seed, system_prompt=options.system_prompt
    )
    if not items:
        raise WorkbenchError(
            f"export {export_ref}: its test split gives no prompt for suites {', '.join(options.suites)}"
        )
    _check_not_trained_on(exports, export_ref, files, items)
    counts = {s: sum(1 for it in items if it.suite == s) for s in options.suites}
    say("prompts: " + ", ".join(f"{s} {n:,}" for s, n in counts.items()) + f" (test split of export {export_id})")

    templates = {m.name: _identity(m).get("chat_template_sha256") for m in models if not getattr(m, "url", None)}
    if len(set(templates.values())) > 1:
        shown = ", ".join(f"{name} {sha[:12] if sha else None}" for name, sha in templates.items())
        raise WorkbenchError(
            f"the models do not share one chat template ({shown}): a comparison would measure the template too; "
            "give them the same tokenizer"
        )
    from evaluate.generate import generate

    generations = generate(
        list(models), [it.messages for it in items], decoding, cache=cache, progress=_bar(progress, "generate")
    )
    replies: dict[str, dict[str, str]] = {}
    finish: dict[str, dict[str, str | None]] = {}
    hits = sent = 0
    for model in models:
        completions = generations[model.name]
        replies[model.name] = {it.id: c.content for it, c in zip(items, completions, strict=True)}
        finish[model.name] = {it.id: c.finish_reason for it, c in zip(items, completions, strict=True)}
        hits += sum(1 for c in completions if c.cached)
        sent += sum(1 for c in completions if not c.cached)
    say(f"replies: {sent:,} generated, {hits:,} from the cache")
    outcomes = {name: {it.id: score_reply(it, by_item[it.id]) for it in items} for name, by_item in replies.items()}
    from evaluate.heads_eval import has_heads, head_outcomes

    heads = {m.name: head_outcomes(m, items, batch_size=decoding.batch_size) for m in models if has_heads(m)}
    heads = {name: got for name, got in heads.items() if got}
    for name, got in heads.items():
        say(f"heads of {name}: {len(got):,} classification prompts")

    base = next((m.name for m in models if getattr(m, "adapter", None) is None and m.name == "base"), None)
    requests = judge_requests(items, replies, base=base, kinds=judge.kinds)
    judgements = judge.judge(requests, progress=_bar(progress, "judge", len(requests)))
    failed = sum(1 for j in judgements if j.error and j.source == "llm")
    if failed:
        say(f"warning: {failed:,} of {len(judgements):,} judge answers could not be used (shown in the report)")

    evaluation = Evaluation(
        export_id=export_id,
        snapshot_id=snapshot["id"],
        items=items,
        models={m.name: _identity(m) for m in models},
        base=base,
        replies=replies,
        finish=finish,
        outcomes=outcomes,
        judgements=judgements,
        judge={"name": judge.name, "kind": judge.source, "description": judge.description},
        decoding=decoding.params() if hasattr(decoding, "params") else dict(decoding),
        options=options,
        cache_hits=hits,
        generated=sent,
        head_outcomes=heads,
    )
    evaluation.evaluation_snapshot = write_snapshot(store, evaluation, tag=tag)
    say(f"evaluation snapshot {evaluation.evaluation_snapshot}" + (f" (ref {tag})" if tag else ""))
    return evaluation


def _bar(progress: Callable[[str, int, int], None] | None, stage: str, total: int = 0) -> Callable[[int], None] | None:
    if progress is None:
        return None
    done = [0]

    def step(n: int = 1) -> None:
        done[0] += n
        progress(stage, done[0], total)

    return step


def _identity(model: Any) -> dict[str, Any]:
    identity = model.identity() if callable(getattr(model, "identity", None)) else getattr(model, "identity", {})
    return dict(identity or {"name": model.name})


def _check_not_trained_on(exports: Any, ref: str, files: Mapping[str, Any], items: Sequence[EvalItem]) -> None:
    """No prompt's conversation may appear in the export's training split."""
    if "train" not in files:
        return
    trained = {str(r["record_id"]) for r in exports.read_rows(ref, "train")}
    leaked = sorted({it.record_id for it in items if it.record_id and it.record_id in trained})
    if leaked:
        raise WorkbenchError(
            f"export {ref}: {len(leaked)} test conversation(s) are also in its training split (e.g. {leaked[0]}); "
            "the splits leak and an evaluation on them would score the model on data it learnt from"
        )


# ---- the evaluation snapshot ----------------------------------------------------------------------------


def write_snapshot(store: Any, ev: Evaluation, *, tag: str | None) -> str:
    """The generations (one record per model and prompt) with judge verdicts as labels; returns its id."""
    from curation.record import provenance
    from curation.store import SnapshotStore

    snapshots = store if isinstance(store, SnapshotStore) else SnapshotStore(store)
    by_item: dict[str, list[Judgement]] = {}
    for j in ev.judgements:
        by_item.setdefault(f"{j.model}\x00{j.item_id}", []).append(j)
    step = {
        "kind": "evaluate",
        "config": {
            "version": EVALUATE_VERSION,
            "export": ev.export_id,
            "models": ev.models,
            "decoding": ev.decoding,
            "judge": ev.judge,
            "options": asdict(ev.options),
        },
        "counters": {"records": len(ev.items) * len(ev.replies), "judgements": len(ev.judgements)},
    }
    with snapshots.writer(step=step, parents=[ev.snapshot_id]) as writer:
        for model, replies in ev.replies.items():
            for item in ev.items:
                record = _record(item, model, replies[item.id], ev, by_item.get(f"{model}\x00{item.id}", []))
                record["provenance"] = provenance(
                    f"evaluation:{ev.export_id}:{item.id}",
                    adapter="evaluate",
                    adapter_version=EVALUATE_VERSION,
                    synthetic=True,
                    generator=model,
                )
                writer.add(record)
        sid = writer.commit()
    if tag:
        snapshots.set_ref(tag, sid)
    return sid


def _record(item: EvalItem, model: str, reply: str, ev: Evaluation, judgements: Sequence[Judgement]) -> dict[str, Any]:
    from curation.record import label

    turns = [{"speaker": m["role"], "text": m["content"] or " "} for m in item.prompt if m["role"] != "system"] or [
        {"speaker": "user", "text": " "}
    ]
    turns.append({"speaker": "model", "text": reply if reply.strip() else "(empty reply)"})
    reply_turn = len(turns) - 1
    outcome = ev.outcomes[model][item.id]
    identity = ev.models[model]
    context = {
        "eval_model": model,
        "eval_item": item.id,
        "eval_suite": item.suite,
        "eval_kind": item.kind,
        "source": item.source,
        "prompt_record": item.record_id or "",
        "cluster": item.cluster,
        "reference": item.reference or "",
        "outcome": json.dumps(outcome_dict(outcome), sort_keys=True),
        "model_identity": json.dumps(identity, sort_keys=True),
        "decoding": json.dumps(ev.decoding, sort_keys=True),
    }
    head = ev.head_outcomes.get(model, {}).get(item.id)
    if head is not None:
        context["head_outcome"] = json.dumps(outcome_dict(head), sort_keys=True)
    system = [m["content"] for m in item.prompt if m["role"] == "system"]
    if system:
        context["system_prompt"] = system[0]
    if item.category:
        context["safety_category"] = item.category
    errors = [
        {"kind": j.kind, "agent": j.agent, "source": j.source, "error": j.error} for j in judgements if j.value is None
    ]
    if errors:
        context["judge_errors"] = json.dumps(errors, sort_keys=True)
    labels = []
    for j in judgements:
        if j.value is None:
            continue
        attrs = None
        if j.kind == "pairwise":
            attrs = {
                "first": str(j.value["first"]),
                "second": str(j.value["second"]),
                "flip": str(j.value["flip"]).lower(),
            }
        for task, value, score in _label_values(j):  # no created_at: the same inputs give the same snapshot id
            labels.append(
                label(
                    task,
                    value,
                    score=score,
                    source=j.source,
                    agent=j.agent,
                    turn=reply_turn,
                    raw=j.rationale or None,
                    attrs=attrs,
                )
            )
    digest = hashlib.sha256(f"{model}\x00{item.id}".encode()).hexdigest()[:16]
    return {
        "id": f"evaluation:test:{digest}",
        "source": "evaluation",
        "split": "test",
        "context": context,
        "turns": turns,
        "labels": labels,
    }


def _label_values(j: Judgement) -> list[tuple[str, str, float | None]]:
    value = j.value or {}
    if j.kind == "empathy":
        return [("empathy", str(value["rating"]), float(value["rating"]))]
    if j.kind == "epitome":
        return [(f"epitome_{k}", str(v), float(v)) for k, v in value.items()]
    if j.kind == "pairwise":
        return [("pairwise_vs_base", str(value["result"]), None)]
    if j.kind == "safety":
        return [("safety_judge", "safe" if value["safe"] else "unsafe", 1.0 if value["safe"] else 0.0)]
    return []
