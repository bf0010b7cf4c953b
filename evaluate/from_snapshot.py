"""An evaluation read back from its snapshot: the report again, with human ratings when a review added them.

An evaluation snapshot (:func:`evaluate.run.write_snapshot`) holds everything its
report is computed from: per record (one model, one prompt) the prompt turns, the
reply, the item's suite, kind, reference and cluster, the judge-free outcome, the
model's identity and the judge's verdicts as labels. So the report can be made
again from the snapshot alone, or from a descendant of it: after ``review push``
of the evaluation snapshot (the replies are ``empathy`` items: their speaker is
``model``) and ``review pull``, the pulled snapshot carries human ``empathy``
ratings on the same reply turns, and :func:`judge_agreement` compares them with
the judge (Krippendorff's alpha and kappa, :mod:`labeling.agreement`): a judge is
audited before it is trusted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from curation.errors import WorkbenchError
from evaluate.items import EvalItem
from evaluate.judge import EPITOME, Judgement
from evaluate.scoring import Outcome


def evaluate_step(store: Any, ref: str) -> tuple[str, dict[str, Any]]:
    """(the evaluation snapshot's id, its ``evaluate`` step config): ``ref`` itself or its nearest ancestor."""
    sid = store.resolve(ref)
    seen = set()
    current = sid
    while current and current not in seen:
        seen.add(current)
        manifest = store.manifest(current)
        for step in reversed(manifest.get("steps") or []):
            if step.get("kind") == "evaluate":
                return current, dict(step["config"])
        parents = manifest.get("parents") or []
        current = parents[0] if parents else None
    raise WorkbenchError(f"snapshot {ref} ({sid}) is not an evaluation (no evaluate step in it or its ancestors)")


def load_evaluation(store: Any, ref: str) -> tuple[Any, list[dict[str, Any]]]:
    """(the :class:`~evaluate.run.Evaluation`, the records) of an evaluation snapshot or a reviewed descendant."""
    from evaluate.run import EvalOptions, Evaluation

    eval_sid, config = evaluate_step(store, ref)
    sid = store.resolve(ref)
    records = [r for r in store.iter_records(sid) if r["source"] == "evaluation"]
    if not records:
        raise WorkbenchError(f"snapshot {ref} holds no evaluation records")
    items: dict[str, EvalItem] = {}
    replies: dict[str, dict[str, str]] = {}
    outcomes: dict[str, dict[str, Outcome]] = {}
    heads: dict[str, dict[str, Outcome]] = {}
    judgements: list[Judgement] = []
    for record in records:
        ctx = record["context"]
        model, item_id = ctx["eval_model"], ctx["eval_item"]
        if item_id not in items:
            items[item_id] = _item(record)
        replies.setdefault(model, {})[item_id] = record["turns"][-1]["text"]
        outcomes.setdefault(model, {})[item_id] = _outcome(ctx["outcome"])
        if ctx.get("head_outcome"):
            heads.setdefault(model, {})[item_id] = _outcome(ctx["head_outcome"])
        judgements.extend(_judgements(record, model, item_id))
    options = config.get("options") or {}
    models = config.get("models") or {}
    order = list(models) or sorted(replies)
    base = "base" if "base" in replies and not (models.get("base") or {}).get("adapter") else None
    evaluation = Evaluation(
        export_id=str(config.get("export")),
        snapshot_id=str(store.manifest(eval_sid)["parents"][0]),
        items=sorted(items.values(), key=lambda it: (it.suite, it.id)),
        models={m: models.get(m, {"name": m}) for m in order},
        base=base,
        replies={m: replies[m] for m in order if m in replies},
        finish={},
        outcomes={m: outcomes[m] for m in order if m in outcomes},
        judgements=judgements,
        judge=dict(config.get("judge") or {}),
        decoding=dict(config.get("decoding") or {}),
        options=EvalOptions(
            suites=tuple(options.get("suites") or ()),
            limit=options.get("limit"),
            seed=int(options.get("seed", 0)),
            system_prompt=options.get("system_prompt"),
            allow_unvalidated=bool(options.get("allow_unvalidated", False)),
        ),
        evaluation_snapshot=eval_sid,
        head_outcomes=heads,
    )
    return evaluation, records


def _item(record: Mapping[str, Any]) -> EvalItem:
    ctx = record["context"]
    prompt = [{"role": t["speaker"], "content": t["text"]} for t in record["turns"][:-1]]
    if ctx.get("system_prompt"):
        prompt.insert(0, {"role": "system", "content": ctx["system_prompt"]})
    return EvalItem(
        id=ctx["eval_item"],
        suite=ctx["eval_suite"],
        kind=ctx["eval_kind"],
        prompt=tuple(prompt),
        reference=ctx.get("reference") or None,
        cluster=ctx.get("cluster") or ctx.get("prompt_record") or ctx["eval_item"],
        source=ctx.get("source", ""),
        record_id=ctx.get("prompt_record") or None,
        category=ctx.get("safety_category") or None,
    )


def _outcome(text: str) -> Outcome:
    d = json.loads(text)
    return Outcome(
        valid=bool(d["valid"]),
        correct=d.get("correct"),
        predicted=tuple(d.get("predicted") or ()),
        gold=tuple(d.get("gold") or ()),
        errors=dict(d.get("errors") or {}),
        passed=d.get("passed"),
        detail=d.get("detail") or "",
    )


def _judgements(record: Mapping[str, Any], model: str, item_id: str) -> list[Judgement]:
    out = []
    epitome: dict[str, int] = {}
    epitome_by: tuple[str, str, str] | None = None
    for lab in record["labels"]:
        source = lab["source"]
        if source not in ("llm", "model"):
            continue
        task, agent, why = lab["task"], lab["agent"], lab.get("raw") or ""
        if task == "empathy":
            out.append(Judgement("empathy", item_id, model, {"rating": int(float(lab["value"]))}, why, agent, source))
        elif task.startswith("epitome_"):
            epitome[task.removeprefix("epitome_")] = int(float(lab["value"]))
            epitome_by = (agent, source, why)
        elif task == "pairwise_vs_base":
            attrs = lab.get("attrs") or {}
            value = {
                "first": attrs.get("first"),
                "second": attrs.get("second"),
                "result": lab["value"],
                "flip": attrs.get("flip") == "true",
            }
            out.append(Judgement("pairwise", item_id, model, value, why, agent, source))
        elif task == "safety_judge":
            out.append(Judgement("safety", item_id, model, {"safe": lab["value"] == "safe"}, why, agent, source))
    if epitome_by and set(epitome) == set(EPITOME):
        out.append(Judgement("epitome", item_id, model, epitome, epitome_by[2], epitome_by[0], epitome_by[1]))
    for error in json.loads(record["context"].get("judge_errors") or "[]"):
        out.append(Judgement(error["kind"], item_id, model, None, "", error["agent"], error["source"], error["error"]))
    return out


def judge_agreement(records: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Human raters against the judge on the replies' empathy ratings; None when no human rated any."""
    from labeling.agreement import agreement

    rated = [r for r in records if any(lab["source"] == "human" and lab["task"] == "empathy" for lab in r["labels"])]
    if not rated:
        return None
    report = agreement(rated, task="empathy", top=5)["tasks"]["empathy"]
    return {
        "task": "empathy",
        "replies_rated_by_humans": len(rated),
        "coders": report["coders"],
        "human_human": report["human_human"],
        "human_judge": report["human_llm"],
    }
