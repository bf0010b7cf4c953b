"""From an :class:`~evaluate.run.Evaluation` to per-prompt samples, one per metric and model.

Every metric is a sample of per-prompt values (so its CI, the paired base-to-tuned
delta and the test all come from the same numbers, and each value goes back to one
reply), or a statistic over per-prompt pairs (macro-F1) bootstrapped the same way:

==========================  =====================================================  ==========
metric                      per-prompt value                                       better
==========================  =====================================================  ==========
empathy_rating              the judge's 1-5 rating                                 higher
epitome_<mechanism>         the judge's 0-2 for emotional reactions, ...           higher
pairwise_vs_base            win / loss / tie of the pair, judged in both orders;   higher
                            the win rate is wins / (wins + losses)
pairwise_order_flip         1 when the two orders disagree (position bias)         -
traits_json_valid           1 when the answer holds all six traits                 higher
traits_mse                  mean squared error over the six traits, on the         lower
                            prompts where EVERY model's answer parses (seed
                            004's fair table); ``traits_mse_own``: each model's
                            own valid answers (not paired)
emotion_accuracy            1 when the predicted set equals the gold set           higher
emotion_macro_f1            macro-F1 over the labels present (statistic)           higher
emotion_valid               1 when the answer parses                               higher
strategy_accuracy / _f1 /   the same for the ``[strategy]`` tag                    higher
_valid
<kind>_head_accuracy / _f1  the same from a run's heads (no paired comparison:       higher
                            the base has none)
safety_rules_pass           1 when the reply passes its category's rules           higher
safety_judge_pass           1 when the judge calls it safe                         higher
==========================  =====================================================  ==========

A prompt the judge could not rate is missing from that metric's sample for that
model (and from paired comparisons), and counted in ``missing``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from curation import vocabularies
from evaluate.judge import EPITOME
from evaluate.scoring import TRAITS


@dataclass
class Sample:
    """One metric: per-prompt values of each model (``values[model][item_id]``)."""

    metric: str
    suite: str
    higher_is_better: bool | None
    kind: str  # "mean": a mean of per-prompt values (0/1 for rates); "macro_f1": a statistic over (gold, pred)
    values: dict[str, dict[str, Any]]
    paired: bool = True  # compare base and tuned prompt by prompt
    description: str = ""
    missing: dict[str, int] = field(default_factory=dict)
    labels: tuple[str, ...] = ()  # macro_f1: the label set


def samples(ev: Any) -> list[Sample]:
    """Every metric the evaluation supports, in report order (empty samples left out)."""
    out: list[Sample] = []
    items = {it.id: it for it in ev.items}
    models = list(ev.replies)
    judged: dict[tuple[str, str], dict[str, Any]] = {}
    missing: Counter[tuple[str, str]] = Counter()
    for j in ev.judgements:
        if j.value is None:
            missing[(j.kind, j.model)] += 1
        else:
            judged.setdefault((j.kind, j.model), {})[j.item_id] = j.value

    def add(metric, suite, better, values, **kw) -> None:
        if any(values.get(m) for m in values) or any(kw.get("missing", {}).values()):
            out.append(Sample(metric, suite, better, kw.pop("kind", "mean"), values, **kw))

    empathy_ids = [i for i, it in items.items() if it.suite == "empathy"]
    if empathy_ids:
        add(
            "empathy_rating",
            "empathy",
            True,
            {m: {i: v["rating"] for i, v in judged.get(("empathy", m), {}).items()} for m in models},
            description="judge rating 1-5 (seed 002's rubric)",
            missing={m: missing[("empathy", m)] for m in models},
        )
        for mech in EPITOME:
            add(
                f"epitome_{mech}",
                "empathy",
                True,
                {m: {i: v[mech] for i, v in judged.get(("epitome", m), {}).items()} for m in models},
                description=f"EPITOME {mech.replace('_', ' ')} 0-2",
                missing={m: missing[("epitome", m)] for m in models},
            )
        for m in models:
            pairs = judged.get(("pairwise", m), {})
            if not pairs:
                continue
            add(
                f"pairwise_vs_{ev.base}",
                "empathy",
                True,
                {m: {i: v["result"] for i, v in pairs.items()}},
                kind="win_rate",
                paired=False,
                description=f"{m} against {ev.base}, judged in both orders: a win only when both orders agree",
                missing={m: missing[("pairwise", m)]},
            )
            add(
                f"pairwise_order_flip_vs_{ev.base}",
                "empathy",
                None,
                {m: {i: float(v["flip"]) for i, v in pairs.items()}},
                paired=False,
                description="pairs whose two orders disagree (the judge's position bias)",
            )

    traits = [i for i, it in items.items() if it.kind == "traits"]
    if traits:
        outcomes = ev.outcomes
        add("traits_json_valid", "traits", True, {m: {i: float(outcomes[m][i].valid) for i in traits} for m in models})
        common = [i for i in traits if all(outcomes[m][i].valid for m in models)]
        add(
            "traits_mse",
            "traits",
            False,
            {m: {i: float(np.mean([outcomes[m][i].errors[t] for t in TRAITS])) for i in common} for m in models},
            description="mean squared error over the six traits, prompts where every model's answer parses",
        )
        add(
            "traits_mse_own",
            "traits",
            False,
            {
                m: {
                    i: float(np.mean([outcomes[m][i].errors[t] for t in TRAITS]))
                    for i in traits
                    if outcomes[m][i].valid
                }
                for m in models
            },
            paired=False,
            description="mean squared error over the six traits, each model's own valid answers",
        )

    for kind, vocab_name in (("emotion", "emotion"), ("strategy", "strategy")):
        ids = [i for i, it in items.items() if it.kind == kind]
        if not ids:
            continue
        outcomes = ev.outcomes
        add(
            f"{kind}_accuracy",
            "classification",
            True,
            {m: {i: float(bool(outcomes[m][i].correct)) for i in ids} for m in models},
            description="exact match with the gold label set" if kind == "emotion" else "the gold strategy",
        )
        add(
            f"{kind}_macro_f1",
            "classification",
            True,
            {m: {i: (_joined(outcomes[m][i].gold), _joined(outcomes[m][i].predicted)) for i in ids} for m in models},
            kind="macro_f1",
            labels=vocabularies.load(vocab_name).labels,
            description="macro-F1 over the labels present in the gold (an unparseable answer predicts nothing)",
        )
        add(f"{kind}_valid", "classification", True, {m: {i: float(outcomes[m][i].valid) for i in ids} for m in models})

    for model, by_item in (getattr(ev, "head_outcomes", None) or {}).items():
        for kind in ("emotion", "strategy"):
            ids = [i for i in by_item if items[i].kind == kind]
            if not ids:
                continue
            add(
                f"{kind}_head_accuracy",
                "classification",
                True,
                {model: {i: float(bool(by_item[i].correct)) for i in ids}},
                paired=False,
                description=f"the run's {kind} head (exact match); the base has no heads, so no comparison",
            )
            add(
                f"{kind}_head_macro_f1",
                "classification",
                True,
                {model: {i: (_joined(by_item[i].gold), _joined(by_item[i].predicted)) for i in ids}},
                kind="macro_f1",
                labels=vocabularies.load(kind).labels,
                paired=False,
                description=f"the run's {kind} head, macro-F1 over the labels present in the gold",
            )

    safety = [i for i, it in items.items() if it.kind == "safety"]
    if safety:
        add(
            "safety_rules_pass",
            "safety",
            True,
            {m: {i: float(bool(ev.outcomes[m][i].passed)) for i in safety} for m in models},
            description="the suite's rules: points to help where needed, no harmful help",
        )
        add(
            "safety_judge_pass",
            "safety",
            True,
            {m: {i: float(v["safe"]) for i, v in judged.get(("safety", m), {}).items()} for m in models},
            description="the judge calls the reply safe",
            missing={m: missing[("safety", m)] for m in models},
        )
    return out


def macro_f1(pairs: Sequence[tuple[Sequence[str], Sequence[str]]], labels: Sequence[str]) -> float:
    """Macro-F1 over the labels present in the gold of ``pairs`` ((gold, predicted) label sets)."""
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    present: set[str] = set()
    for gold, predicted in pairs:
        g, p = set(gold), set(predicted)
        present |= g
        for label in g & p:
            tp[label] += 1
        for label in p - g:
            fp[label] += 1
        for label in g - p:
            fn[label] += 1
    scores = [_f1(tp[x], fp[x], fn[x]) for x in labels if x in present]
    return float(np.mean(scores)) if scores else 0.0


def per_class_f1(pairs: Sequence[tuple[Sequence[str], Sequence[str]]], labels: Sequence[str]) -> dict[str, dict]:
    """F1, support (gold count) and predicted count per label."""
    out = {}
    for x in labels:
        tp = sum(1 for g, p in pairs if x in g and x in p)
        fp = sum(1 for g, p in pairs if x not in g and x in p)
        fn = sum(1 for g, p in pairs if x in g and x not in p)
        if tp + fn + fp:
            out[x] = {"f1": _f1(tp, fp, fn), "support": tp + fn, "predicted": tp + fp}
    return out


def confusion(pairs: Sequence[tuple[Sequence[str], Sequence[str]]], labels: Sequence[str]) -> dict[str, Any]:
    """Gold (first label) by predicted (first label, or ``(none)`` for an unparseable answer) counts."""
    rows = [x for x in labels if any(g and g[0] == x for g, _ in pairs)]
    cols = [x for x in labels if any(p and p[0] == x for _, p in pairs)] + ["(none)"]
    matrix = [[0] * len(cols) for _ in rows]
    for gold, predicted in pairs:
        if not gold:
            continue
        r = rows.index(gold[0])
        c = cols.index(predicted[0]) if predicted else len(cols) - 1
        matrix[r][c] += 1
    return {"gold": rows, "predicted": cols, "counts": matrix}


def _f1(tp: int, fp: int, fn: int) -> float:
    d = 2 * tp + fp + fn
    return 2 * tp / d if d else 0.0


def _joined(labels: Sequence[str]) -> str:
    return "|".join(labels)


def split_pairs(gold: Sequence[str], predicted: Sequence[str]) -> list[tuple[list[str], list[str]]]:
    """``(gold, predicted)`` label sets from the ``|``-joined columns of a macro-F1 sample."""
    return [(g.split("|") if g else [], p.split("|") if p else []) for g, p in zip(gold, predicted, strict=True)]


def macro_f1_statistic(labels: Sequence[str]) -> Callable[[Sequence[str], Sequence[str]], float]:
    """macro-F1 as a function of the gold and predicted columns (what the bootstrap resamples)."""
    return lambda gold, predicted: macro_f1(split_pairs(gold, predicted), labels)


def trait_table(ev: Any) -> dict[str, dict[str, Any]]:
    """Per-trait MSE per model, on the common valid subset and on each model's own (seed 004's two tables)."""
    ids = [it.id for it in ev.items if it.kind == "traits"]
    models = list(ev.replies)
    common = [i for i in ids if all(ev.outcomes[m][i].valid for m in models)]
    table: dict[str, dict[str, Any]] = {}
    for m in models:
        own = [i for i in ids if ev.outcomes[m][i].valid]
        table[m] = {
            "common": {t: _mean([ev.outcomes[m][i].errors[t] for i in common]) for t in TRAITS},
            "own": {t: _mean([ev.outcomes[m][i].errors[t] for i in own]) for t in TRAITS},
            "n_common": len(common),
            "n_own": len(own),
            "n": len(ids),
        }
    return table


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None


def failures(ev: Any, *, per_kind: int = 3) -> list[dict[str, Any]]:
    """Examples of what went wrong, per model and kind: unparseable answers, broken rules, judge errors."""
    items = {it.id: it for it in ev.items}
    out: list[dict[str, Any]] = []
    for m, by_item in ev.outcomes.items():
        shown: Counter[str] = Counter()
        for i, o in by_item.items():
            it = items[i]
            what = None
            if not o.valid:
                what = f"{it.kind}: unparseable"
            elif o.passed is False:
                what = f"safety ({it.category}): rule failed"
            if what and shown[what] < per_kind:
                shown[what] += 1
                out.append({"model": m, "item": i, "what": what, "detail": o.detail, "reply": ev.replies[m][i][:400]})
    for j in ev.judgements:
        if j.error and sum(1 for f in out if f["what"] == f"judge {j.kind}: {j.source}") < per_kind:
            out.append({"model": j.model, "item": j.item_id, "what": f"judge {j.kind}: {j.source}", "detail": j.error})
    return out


def judged_counts(ev: Any) -> Mapping[str, Any]:
    total: Counter[str] = Counter(j.kind for j in ev.judgements)
    bad: Counter[str] = Counter(j.kind for j in ev.judgements if j.value is None)
    return {k: {"requests": total[k], "unusable": bad[k]} for k in total}
