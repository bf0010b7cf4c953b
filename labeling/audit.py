"""How good is a labeler before you trust it: its labels against gold labels on the same records.

:func:`audit` pairs a labeler's labels (source ``llm`` or ``model``, optionally
one agent) with the gold labels of the same task, record and turn, samples the
pairs (``sample``, fixed ``seed``) and computes:

single-label tasks (strategy, act, ...)
    accuracy, macro-F1, Cohen's kappa, per-label precision / recall / F1 and the
    confusion matrix (rows gold, columns predicted).
multi-label emotion
    micro- and macro-F1, exact match, per-label F1, and "top-1 in gold set"
    accuracy (the labeler's highest-scored label is one of the gold labels), plus
    the single-label metrics of the top-1 label on items with exactly one gold label.
scores (empathy, trait.*)
    MAE, RMSE, Pearson and Spearman correlation, and Cohen's kappa (plain and
    quadratic-weighted) on the values rounded to the scale.

Granularity: a prediction pairs with the gold label of the same (record, turn).
Where the gold is record-level but the labeler rated turns (ESConv's seeker
survey of the supporter's empathy vs per-turn empathy ratings), scores are
averaged over the record's turns and the pair is counted as ``aggregated``.

Everything returned is plain data (dicts, lists, floats); the CLI prints it.
The arithmetic is numpy, in the small public helpers below.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence, Set
from typing import Any

import numpy as np

from curation import vocabularies
from curation.errors import WorkbenchError
from curation.record import Record

PREDICTION_SOURCES = ("llm", "model", "human")
SCORE_SCALES = {"empathy": (1, 5), "trait": (1, 10)}

Key = tuple[str, int | None]


# ------------------------------------------------------------------ metrics


def confusion_matrix(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """Counts with rows = gold label, columns = predicted label, in ``labels`` order."""
    index = {lab: i for i, lab in enumerate(labels)}
    unknown = sorted({v for v in (*gold, *pred) if v not in index})
    if unknown:
        raise WorkbenchError(f"confusion matrix: value {unknown[0]!r} is not one of the labels")
    if len(gold) != len(pred):
        raise WorkbenchError(f"confusion matrix: {len(gold)} gold values but {len(pred)} predictions")
    m = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(m, ([index[g] for g in gold], [index[p] for p in pred]), 1)
    return m


def cohen_kappa(confusion: np.ndarray, *, weights: str | None = None) -> float:
    """Cohen's kappa of a confusion matrix; ``weights="quadratic"`` for ordinal scales. NaN when undefined."""
    m = np.asarray(confusion, dtype=np.float64)
    n = m.sum()
    if n == 0:
        return float("nan")
    k = m.shape[0]
    if weights is None:
        w = 1.0 - np.eye(k)
    elif weights == "quadratic":
        i = np.arange(k)
        w = (i[:, None] - i[None, :]) ** 2 / max(1, (k - 1) ** 2)
    else:
        raise WorkbenchError(f"kappa weights: expected None or 'quadratic', got {weights!r}")
    expected = np.outer(m.sum(axis=1), m.sum(axis=0)) / n
    denom = (w * expected).sum()
    if denom == 0:
        return float("nan")  # both raters used one and the same category
    return float(1.0 - (w * m).sum() / denom)


def _prf(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
        recall = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    return precision, recall, f1


def single_label_metrics(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 (over labels present in gold or predictions), kappa, per-label P/R/F1, confusion."""
    m = confusion_matrix(gold, pred, labels)
    n = int(m.sum())
    tp = np.diag(m).astype(np.float64)
    fp = m.sum(axis=0) - tp
    fn = m.sum(axis=1) - tp
    precision, recall, f1 = _prf(tp, fp, fn)
    present = (m.sum(axis=0) + m.sum(axis=1)) > 0
    return {
        "n": n,
        "accuracy": float(tp.sum() / n) if n else float("nan"),
        "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
        "kappa": cohen_kappa(m),
        "per_label": {
            lab: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(m[i].sum()),
            }
            for i, lab in enumerate(labels)
            if present[i]
        },
        "confusion": {"labels": list(labels), "matrix": m.tolist()},
    }


def multi_label_metrics(
    gold: Sequence[set[str]], pred: Sequence[set[str]], labels: Sequence[str], *, top1: Sequence[str] | None = None
) -> dict[str, Any]:
    """Micro/macro-F1, exact match, per-label F1; with ``top1`` (the best label per item) top-1-in-gold accuracy."""
    if len(gold) != len(pred):
        raise WorkbenchError(f"multi-label metrics: {len(gold)} gold sets but {len(pred)} predictions")
    index = {lab: i for i, lab in enumerate(labels)}
    g = np.zeros((len(gold), len(labels)), dtype=bool)
    p = np.zeros_like(g)
    for row, (gs, ps) in enumerate(zip(gold, pred, strict=True)):
        for v in gs:
            g[row, index[v]] = True
        for v in ps:
            p[row, index[v]] = True
    tp = (g & p).sum(axis=0).astype(np.float64)
    fp = (~g & p).sum(axis=0).astype(np.float64)
    fn = (g & ~p).sum(axis=0).astype(np.float64)
    precision, recall, f1 = _prf(tp, fp, fn)
    _, _, micro = _prf(np.array([tp.sum()]), np.array([fp.sum()]), np.array([fn.sum()]))
    present = (g.sum(axis=0) + p.sum(axis=0)) > 0
    out: dict[str, Any] = {
        "n": len(gold),
        "micro_f1": float(micro[0]),
        "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
        "exact_match": float((g == p).all(axis=1).mean()) if len(gold) else float("nan"),
        "per_label": {
            lab: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(g[:, i].sum()),
            }
            for i, lab in enumerate(labels)
            if present[i]
        },
    }
    if top1 is not None:
        hits = [t in gs for t, gs in zip(top1, gold, strict=True)]
        out["top1_in_gold"] = float(np.mean(hits)) if hits else float("nan")
    return out


def _rank(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank), as Spearman's rho needs."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def pearson(a: Sequence[float], b: Sequence[float]) -> float:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    return pearson(_rank(np.asarray(a, dtype=np.float64)), _rank(np.asarray(b, dtype=np.float64)))


def score_metrics(gold: Sequence[float], pred: Sequence[float], *, scale: tuple[int, int]) -> dict[str, Any]:
    """MAE, RMSE, Pearson, Spearman, and kappa (plain, quadratic) on values rounded onto ``scale``."""
    g, p = np.asarray(gold, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    if len(g) != len(p):
        raise WorkbenchError(f"score metrics: {len(g)} gold scores but {len(p)} predictions")
    low, high = scale
    levels = [str(v) for v in range(low, high + 1)]
    gr = [str(int(v)) for v in np.clip(np.floor(g + 0.5), low, high)]
    pr = [str(int(v)) for v in np.clip(np.floor(p + 0.5), low, high)]
    m = confusion_matrix(gr, pr, levels)
    return {
        "n": len(g),
        "mae": float(np.abs(g - p).mean()) if len(g) else float("nan"),
        "rmse": float(np.sqrt(((g - p) ** 2).mean())) if len(g) else float("nan"),
        "pearson": pearson(g, p),
        "spearman": spearman(g, p),
        "kappa": cohen_kappa(m),
        "kappa_quadratic": cohen_kappa(m, weights="quadratic"),
        "gold_mean": float(g.mean()) if len(g) else float("nan"),
        "pred_mean": float(p.mean()) if len(p) else float("nan"),
        "confusion": {"labels": levels, "matrix": m.tolist()},
    }


# ------------------------------------------------------------------ pairing


def task_kind(task: str) -> str:
    """``multi_label``, ``single_label`` or ``score`` for a label task name."""
    if task == "empathy" or task.startswith("trait."):
        return "score"
    if task in vocabularies.TASK_VOCABULARIES:
        return "multi_label" if vocabularies.load(task).multi_label else "single_label"
    raise WorkbenchError(f"audit: unknown task {task!r} (expected a label vocabulary, 'empathy' or 'trait.<name>')")


def _scale(task: str) -> tuple[int, int]:
    return SCORE_SCALES["trait" if task.startswith("trait.") else task]


def audit(
    records: Iterable[Record],
    task: str,
    *,
    source: str | None = None,
    agent: str | None = None,
    sample: int | None = None,
    seed: int = 0,
    exclude: Mapping[str, Set[str]] | None = None,
    resamples: int = 1000,
) -> dict[str, Any]:
    """A labeler's ``task`` labels against gold on the same records, on up to ``sample`` pairs.

    ``exclude`` maps an agent to the record ids it must not be scored on (those it was fitted on:
    its labels there are memorised gold); they are left out and counted (``excluded``). The main
    metrics carry a 95 % bootstrap CI (``ci``; conversations resampled, ``resamples`` times).

    ``source`` (``llm`` / ``model`` / ``human``) and ``agent`` select the labeler;
    by default every non-gold label counts, and if several agents labeled the same
    items the report says so (pick one with ``agent``). ``task`` is a label task
    (``emotion``, ``strategy``, ``empathy``, ``trait.formality``, ...); the
    ``traits`` task has no gold in any source.
    """
    if source is not None and source not in PREDICTION_SOURCES:
        raise WorkbenchError(f"audit source: expected one of {PREDICTION_SOURCES}, got {source!r}")
    if sample is not None and sample < 1:
        raise WorkbenchError(f"audit sample: expected a positive size, got {sample}")
    kind = task_kind(task)
    gold: dict[Key, list[str]] = defaultdict(list)
    pred: dict[Key, list[tuple[str, float | None]]] = defaultdict(list)
    agents: set[str] = set()
    n_records = 0
    excluded: set[Key] = set()
    for record in records:
        n_records += 1
        rid = record["id"]
        for lab in record["labels"]:
            if lab["task"] != task:
                continue
            key = (rid, lab.get("turn"))
            if lab["source"] == "gold":
                gold[key].append(lab["value"])
            elif (source is None or lab["source"] == source) and (agent is None or lab["agent"] == agent):
                if exclude and rid in exclude.get(lab["agent"], ()):
                    excluded.add(key)
                    continue
                pred[key].append((lab["value"], lab.get("score")))
                agents.add(lab["agent"])
    pairs, aggregated = _pair(gold, pred, kind)
    keys = sorted(pairs, key=lambda k: (k[0], -1 if k[1] is None else k[1]))
    if sample is not None and len(keys) > sample:
        chosen = np.random.default_rng(seed).choice(len(keys), size=sample, replace=False)
        keys = [keys[i] for i in sorted(chosen)]
    report: dict[str, Any] = {
        "task": task,
        "kind": kind,
        "source": source,
        "agents": sorted(agents),
        "records": n_records,
        "gold_items": len(gold),
        "predicted_items": len(pred),
        "paired": len(pairs),
        "aggregated": sum(1 for k in keys if k in aggregated),
        "sample": sample,
        "seed": seed,
        "n": len(keys),
        "excluded": len(excluded),
    }
    if len(agents) > 1 and agent is None:
        report["warning"] = (
            f"{len(agents)} labelers labeled these items and are scored together; choose one to audit it alone"
        )
    if not keys:
        report["metrics"] = None
        return report
    if kind == "single_label":
        labels = vocabularies.load(task).labels
        report["metrics"] = single_label_metrics([pairs[k][0][0] for k in keys], [pairs[k][1][0] for k in keys], labels)
    elif kind == "multi_label":
        labels = vocabularies.load(task).labels
        gold_sets = [set(pairs[k][0]) for k in keys]
        pred_lists = [pairs[k][1] for k in keys]
        report["metrics"] = multi_label_metrics(
            gold_sets, [set(p) for p in pred_lists], labels, top1=[p[0] for p in pred_lists]
        )
        single = [i for i, g in enumerate(gold_sets) if len(g) == 1]
        report["metrics"]["single_gold"] = single_label_metrics(
            [next(iter(gold_sets[i])) for i in single], [pred_lists[i][0] for i in single], labels
        )
    else:
        report["metrics"] = score_metrics(
            [float(pairs[k][0][0]) for k in keys], [float(pairs[k][1][0]) for k in keys], scale=_scale(task)
        )
    report["ci"] = _intervals(kind, task, keys, pairs, resamples=resamples, seed=seed)
    return report


def _intervals(
    kind: str,
    task: str,
    keys: Sequence[Key],
    pairs: Mapping[Key, tuple[list[Any], list[Any]]],
    *,
    resamples: int,
    seed: int,
) -> dict[str, dict[str, Any]]:
    """95 % bootstrap intervals of the headline metrics, resampling records (several turns of one conversation
    are not independent)."""
    from evaluate.stats import bootstrap_statistic

    clusters = [k[0] for k in keys]
    index = np.arange(len(keys))
    out: dict[str, dict[str, Any]] = {}
    if kind == "single_label":
        labels = vocabularies.load(task).labels
        gold = [pairs[k][0][0] for k in keys]
        pred = [pairs[k][1][0] for k in keys]
        for name in ("accuracy", "macro_f1", "kappa"):
            est = bootstrap_statistic(
                lambda i, name=name: single_label_metrics([gold[j] for j in i], [pred[j] for j in i], labels)[name],
                index,
                clusters=clusters,
                resamples=resamples,
                seed=seed,
            )
            out[name] = est.to_dict()
    elif kind == "multi_label":
        labels = vocabularies.load(task).labels
        gold_sets = [set(pairs[k][0]) for k in keys]
        preds = [set(pairs[k][1]) for k in keys]
        top1 = [pairs[k][1][0] for k in keys]
        for name in ("micro_f1", "macro_f1", "exact_match", "top1_in_gold"):
            est = bootstrap_statistic(
                lambda i, name=name: multi_label_metrics(
                    [gold_sets[j] for j in i], [preds[j] for j in i], labels, top1=[top1[j] for j in i]
                )[name],
                index,
                clusters=clusters,
                resamples=resamples,
                seed=seed,
            )
            out[name] = est.to_dict()
    else:
        gold_scores = np.array([float(pairs[k][0][0]) for k in keys])
        pred_scores = np.array([float(pairs[k][1][0]) for k in keys])
        errors = np.abs(gold_scores - pred_scores)
        est = bootstrap_statistic(
            lambda i: float(errors[i].mean()), index, clusters=clusters, resamples=resamples, seed=seed
        )
        out["mae"] = est.to_dict()
        scale = _scale(task)
        for name in ("rmse", "pearson", "spearman", "kappa", "kappa_quadratic"):
            est = bootstrap_statistic(
                lambda i, name=name: score_metrics(gold_scores[i], pred_scores[i], scale=scale)[name],
                index,
                clusters=clusters,
                resamples=resamples,
                seed=seed,
            )
            out[name] = est.to_dict()
    return out


def _pair(
    gold: dict[Key, list[str]], pred: dict[Key, list[tuple[str, float | None]]], kind: str
) -> tuple[dict[Key, tuple[list[Any], list[Any]]], set[Key]]:
    """(gold values, predicted values best first) per key with both; record-level gold vs turn scores averaged."""
    pairs: dict[Key, tuple[list[Any], list[Any]]] = {}
    for key, values in gold.items():
        if key in pred:
            ranked = sorted(pred[key], key=lambda vs: -(vs[1] if vs[1] is not None else 0.0))
            predicted = list(dict.fromkeys(v for v, _ in ranked))
            if kind == "score":
                predicted = [float(np.mean([_number(v, s) for v, s in pred[key]]))]
            pairs[key] = (values, predicted)
    aggregated: set[Key] = set()
    if kind == "score":
        by_record: dict[str, list[float]] = defaultdict(list)
        for (rid, turn), values in pred.items():
            if turn is not None:
                by_record[rid].extend(_number(v, s) for v, s in values)
        for key, values in gold.items():
            rid, turn = key
            if turn is None and key not in pairs and by_record.get(rid):
                pairs[key] = (values, [float(np.mean(by_record[rid]))])
                aggregated.add(key)
    for key, (values, _) in pairs.items():
        if kind == "score":
            pairs[key] = ([float(np.mean([_number(v, None) for v in values]))], pairs[key][1])
    return pairs, aggregated


def _number(value: str, score: float | None) -> float:
    if score is not None:
        return float(score)
    try:
        return float(value)
    except ValueError:
        raise WorkbenchError(f"audit: score label value {value!r} is not a number") from None
