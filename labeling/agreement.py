"""How much do coders agree: human with human, human with LLM, LLM with gold.

:func:`agreement` reads the labels of a task from records and, per task, compares
coders on the same *units* -- a unit is ``(record id, turn)``, ``turn`` being
``None`` for record-level labels. A coder is ``source:agent`` (``human:alice``,
``llm:gpt-4o-mini@emotion-v3``, ``gold:goemotions``). Three comparisons:

``human_human``
    every human coder; Krippendorff's alpha over all of them (units rated by any
    two or more), Cohen's kappa per pair.
``human_llm``
    each human against each machine coder (source ``llm`` or ``model``): alpha and
    kappa per pair; the comparison's ``alpha`` is the mean of the pair alphas.
``llm_gold``
    each machine coder against gold, the same way.

Levels: nominal alpha for single-label tasks, interval alpha for scores
(``empathy``, ``trait.*``; kappa there is on the values rounded onto the scale,
plain and quadratic-weighted, as in :mod:`labeling.audit`). Multi-label emotion:
every ``(unit, label)`` for each label of the vocabulary is a binary nominal unit
("chosen" / "not chosen"), so a coder who rated a unit says "not chosen" for
every label it left out; kappa is on the same binary units.

Alpha is computed from the coincidence matrix (Krippendorff 2011, "Computing
Krippendorff's Alpha-Reliability", section C); units with fewer than two values
are not pairable and drop out, which is how missing values are handled. Each
comparison lists the units that disagree most (mean disagreement over pairs of
coders, worst first) with every coder's value, for the dashboard.

Every alpha carries a 95 % bootstrap interval (``alpha_ci``: records resampled with replacement,
the turns of one conversation together, 1,000 times, percentile interval; the same resamples for
every pair of a task, so a comparison's mean of pair alphas gets its interval too). It is computed
from each unit's share of the coincidence matrix, so a resample costs a weighted sum, not a recount.
``split`` keeps only the records of one split.

Only answers count: a label whose ``attrs`` carry a ``status`` other than
``submitted`` (a draft or a discarded record pulled from Argilla) is skipped.

Where one coder gave several values to one unit of a single-label task, its
best-scored value counts and the report counts the conflict; several score
labels are averaged. A record-level score unit (ESConv's survey empathy, one per
conversation) also takes each machine coder's mean of its per-turn ratings of
that record, as the audit pairs them (``aggregated_units`` counts them), so the
agreement and the audit of the same labels never contradict each other.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence, Set
from typing import Any, Literal

import numpy as np

from curation import vocabularies
from curation.errors import WorkbenchError
from curation.record import Record
from labeling.audit import SCORE_SCALES, cohen_kappa, confusion_matrix, task_kind

Level = Literal["nominal", "interval"]
Unit = tuple[str, int | None]

LEVELS = ("nominal", "interval")
MACHINE_SOURCES = ("llm", "model")
COMPARISONS = ("human_human", "human_llm", "llm_gold")

_CHOSEN, _NOT_CHOSEN = "1", "0"


# ------------------------------------------------------------------ alpha


def _present(values: Iterable[Any]) -> list[Any]:
    """The values actually given: ``None`` and NaN mean "this coder did not rate the unit"."""
    return [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]


def coincidence_matrix(units: Iterable[Sequence[Any]]) -> tuple[np.ndarray, list[Any]]:
    """Krippendorff's coincidence matrix of ``units`` (each the values its coders gave) and its value order.

    Each pairable unit (two or more values) contributes every ordered pair of its
    values with weight ``1 / (m_u - 1)``; the margins are the values' counts.
    """
    pairable = [vs for vs in (_present(u) for u in units) if len(vs) >= 2]
    values = sorted({v for vs in pairable for v in vs})
    index = {v: i for i, v in enumerate(values)}
    counts = np.zeros((len(pairable), len(values)), dtype=np.float64)
    for row, vs in enumerate(pairable):
        for v in vs:
            counts[row, index[v]] += 1
    if not pairable:
        return np.zeros((0, 0)), values
    weight = 1.0 / (counts.sum(axis=1) - 1.0)
    o = np.einsum("uc,uk,u->ck", counts, counts, weight) - np.diag((counts * weight[:, None]).sum(axis=0))
    return o, values


def _delta(values: Sequence[Any], level: Level) -> np.ndarray:
    """Squared difference function between every pair of values."""
    if level == "nominal":
        return 1.0 - np.eye(len(values))
    try:
        x = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise WorkbenchError(f"interval alpha: values must be numbers, got {values[:3]!r}") from None
    return (x[:, None] - x[None, :]) ** 2


def krippendorff_alpha(units: Iterable[Sequence[Any]], *, level: Level = "nominal") -> float:
    """Krippendorff's alpha of ``units`` (each the values its coders gave; ``None`` = missing).

    ``1 - (n - 1) * sum(o_ck * d_ck) / sum(n_c * n_k * d_ck)``; NaN when undefined
    (fewer than two pairable values, or every value the same).
    """
    if level not in LEVELS:
        raise WorkbenchError(f"alpha level: expected one of {LEVELS}, got {level!r}")
    o, values = coincidence_matrix(units)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    if n < 2:
        return float("nan")
    delta = _delta(values, level)
    expected = (np.outer(n_c, n_c) * delta).sum()
    if expected == 0:
        return float("nan")
    return float(1.0 - (n - 1.0) * (o * delta).sum() / expected)


def unit_disagreement(values: Sequence[Any], *, level: Level | Literal["multi_label"]) -> float:
    """Mean disagreement over the pairs of values of one unit (labels that differ, for label sets)."""
    vs = _present(values)
    if len(vs) < 2:
        return 0.0
    pairs = list(itertools.combinations(vs, 2))
    # plain sums: this runs once per unit, and numpy's mean costs more than the arithmetic on a few pairs
    if level == "multi_label":
        return sum(len(set(a) ^ set(b)) for a, b in pairs) / len(pairs)
    if level == "interval":
        return sum((float(a) - float(b)) ** 2 for a, b in pairs) / len(pairs)
    return sum(a != b for a, b in pairs) / len(pairs)


# ------------------------------------------------------------------ report


def agreement(
    records: Iterable[Record],
    *,
    task: str | Sequence[str] | None = None,
    top: int = 20,
    exclude: Mapping[str, Set[str]] | None = None,
    split: str | None = None,
) -> dict[str, Any]:
    """Human-human, human-LLM and LLM-gold agreement per task, from the records' labels.

    ``task`` is one task or several (``emotion``, ``strategy``, ``empathy``,
    ``trait.formality``, ...); by default every task the records carry labels
    for. ``top`` is how many of the most disagreeing units each comparison lists.
    ``exclude`` maps a machine agent to the record ids it was fitted on: its labels there
    (memorised gold) are left out and counted in ``excluded_labels``.
    """
    if top < 0:
        raise WorkbenchError(f"agreement top: expected 0 or more, got {top}")
    wanted = [task] if isinstance(task, str) else (list(task) if task is not None else None)
    kinds = {t: task_kind(t) for t in wanted} if wanted is not None else {}
    raw: dict[str, dict[Unit, dict[str, list[tuple[str, float | None]]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    n_records = 0
    excluded = 0
    for record in records:
        if split is not None and record.get("split") != split:
            continue
        n_records += 1
        for lab in record["labels"]:
            name = lab["task"]
            if wanted is not None and name not in kinds:
                continue
            if wanted is None and name not in kinds:
                try:
                    kinds[name] = task_kind(name)
                except WorkbenchError:
                    continue  # a label task with no agreement level (no vocabulary, no scale)
            attrs = lab.get("attrs") or {}
            if not isinstance(attrs, dict):
                attrs = dict(attrs)  # a map column read as Arrow pairs (curation.browse.iter_label_records)
            if attrs.get("status", "submitted") != "submitted":
                continue  # a review draft or discard (see labeling.review.sync) is not an answer
            if exclude and lab["source"] in MACHINE_SOURCES and record["id"] in exclude.get(lab["agent"], ()):
                excluded += 1
                continue  # what the labeler learnt from: never scored on it
            coder = f"{lab['source']}:{lab['agent']}"
            raw[name][(record["id"], lab.get("turn"))][coder].append((lab["value"], lab.get("score")))
    tasks = {name: _task_report(name, kinds[name], raw.get(name, {}), top=top) for name in (wanted or sorted(raw))}
    return {"records": n_records, "split": split, "tasks": tasks, "excluded_labels": excluded}


def _task_report(
    task: str, kind: str, raw: dict[Unit, dict[str, list[tuple[str, float | None]]]], *, top: int
) -> dict[str, Any]:
    ratings, conflicts = _resolve(raw, kind)
    aggregated = _turns_to_records(ratings) if kind == "score" else 0
    coders = sorted({c for by_coder in ratings.values() for c in by_coder})
    humans = [c for c in coders if c.startswith("human:")]
    machines = [c for c in coders if c.split(":", 1)[0] in MACHINE_SOURCES]
    gold = [c for c in coders if c.startswith("gold:")]
    ctx = _Context(task, kind, ratings, confidence=_confidences(raw))
    return {
        "task": task,
        "kind": kind,
        "level": "interval" if kind == "score" else "nominal",
        "units": len(ratings),
        "coders": {"human": humans, "llm": machines, "gold": gold},
        "conflicts": conflicts,
        "aggregated_units": aggregated,
        "human_human": ctx.within(humans, top=top),
        "human_llm": ctx.across(humans, machines, top=top),
        "llm_gold": ctx.across(machines, gold, top=top),
    }


def _confidences(raw: dict[Unit, dict[str, list[tuple[str, float | None]]]]) -> dict[Unit, float]:
    """Per unit, the highest confidence a machine coder gave its label there (0 when none gave one)."""
    out: dict[Unit, float] = {}
    for unit, by_coder in raw.items():
        scores = [
            float(score)
            for coder, given in by_coder.items()
            if coder.split(":", 1)[0] in MACHINE_SOURCES
            for _, score in given
            if score is not None
        ]
        out[unit] = max(scores) if scores else 0.0
    return out


def _resolve(raw: dict[Unit, dict[str, list[tuple[str, float | None]]]], kind: str) -> tuple[dict[Unit, dict], int]:
    """One value per (unit, coder): a label set, a mean score, or the best-scored label."""
    ratings: dict[Unit, dict[str, Any]] = {}
    conflicts = 0
    for unit, by_coder in raw.items():
        resolved: dict[str, Any] = {}
        for coder, given in by_coder.items():
            if kind == "multi_label":
                resolved[coder] = frozenset(v for v, _ in given)
            elif kind == "score":
                resolved[coder] = float(np.mean([_number(v, s) for v, s in given]))
            else:
                ranked = sorted(given, key=lambda vs: -(vs[1] if vs[1] is not None else 0.0))
                conflicts += len({v for v, _ in given}) > 1
                resolved[coder] = ranked[0][0]
        ratings[unit] = resolved
    return ratings, conflicts


def _turns_to_records(ratings: dict[Unit, dict[str, Any]]) -> int:
    """Give record-level units (ESConv's survey empathy: one gold rating per conversation) each machine coder's
    mean of its per-turn ratings of that record, as the audit compares them; returns how many values were added.

    Without it, record-level gold and per-turn machine ratings share no unit and every agreement between them
    reads "0 units" while the audit of the same labels pairs them.
    """
    per_record: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (rid, turn), by_coder in ratings.items():
        if turn is None:
            continue
        for coder, value in by_coder.items():
            if coder.split(":", 1)[0] in MACHINE_SOURCES:
                per_record[rid][coder].append(float(value))
    added = 0
    for (rid, turn), by_coder in ratings.items():
        if turn is not None or not any(c.split(":", 1)[0] not in MACHINE_SOURCES for c in by_coder):
            continue
        for coder, values in per_record.get(rid, {}).items():
            if coder not in by_coder:
                by_coder[coder] = float(np.mean(values))
                added += 1
    return added


def _number(value: str, score: float | None) -> float:
    if score is not None:
        return float(score)
    try:
        return float(value)
    except ValueError:
        raise WorkbenchError(f"agreement: score label value {value!r} is not a number") from None


def _round_onto(scores: Sequence[float], low: int, high: int) -> list[str]:
    """Scores rounded half up onto the integer scale (as the audit does), as category names."""
    return [str(int(v)) for v in np.clip(np.floor(np.asarray(scores, dtype=np.float64) + 0.5), low, high)]


def _interval(boot: np.ndarray, confidence: float = 0.95) -> dict[str, Any] | None:
    """The percentile interval of bootstrap alphas (None when too few resamples are defined)."""
    finite = boot[np.isfinite(boot)]
    if finite.size < max(10, boot.size // 2):
        return None
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return {
        "low": float(low),
        "high": float(high),
        "confidence": confidence,
        "resamples": int(boot.size),
        "over": "records",
    }


class _Context:
    """The ratings of one task, and the arithmetic that turns coders' values into alpha, kappa and worst units."""

    def __init__(
        self, task: str, kind: str, ratings: dict[Unit, dict[str, Any]], *, confidence: dict[Unit, float] | None = None
    ) -> None:
        self.task, self.kind, self.ratings = task, kind, ratings
        self.confidence = confidence or {}
        self.level: Level = "interval" if kind == "score" else "nominal"
        self.labels = vocabularies.load(task).labels if kind != "score" else ()

    def _alpha_units(self, coders: Sequence[str]) -> list[list[Any]]:
        units = []
        for by_coder in self.ratings.values():
            given = [by_coder[c] for c in coders if c in by_coder]
            if len(given) < 2:
                continue
            if self.kind == "multi_label":
                units.extend([_CHOSEN if lab in s else _NOT_CHOSEN for s in given] for lab in self.labels)
            else:
                units.append(given)
        return units

    def alpha(self, coders: Sequence[str]) -> float:
        if self.kind == "multi_label":
            return self._binary_alpha(coders)
        return krippendorff_alpha(self._alpha_units(coders), level=self.level)

    def _chosen(self, coders: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Per unit rated by two or more of ``coders``: how many rated it, and how many chose each label."""
        index = {lab: i for i, lab in enumerate(self.labels)}
        raters: list[int] = []
        rows: list[int] = []
        cols: list[int] = []
        for by_coder in self.ratings.values():
            given = [by_coder[c] for c in coders if c in by_coder]
            if len(given) < 2:
                continue
            row = len(raters)
            raters.append(len(given))
            for chosen in given:
                for lab in chosen:
                    if lab in index:
                        rows.append(row)
                        cols.append(index[lab])
        ones = np.zeros((len(raters), len(self.labels)), dtype=np.float64)
        np.add.at(ones, (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)), 1.0)
        return np.asarray(raters, dtype=np.float64), ones

    def _binary_alpha(self, coders: Sequence[str]) -> float:
        """Nominal alpha over the binary (unit, label) units of a multi-label task, in closed form.

        The same number as :func:`krippendorff_alpha` over ``_alpha_units`` (a unit per label,
        each coder saying chosen / not chosen), without building millions of small lists: a
        binary unit with ``m`` values, ``k`` of them "chosen", adds ``k(k-1)/(m-1)`` to o_11,
        ``(m-k)(m-k-1)/(m-1)`` to o_00 and ``k(m-k)/(m-1)`` to each of o_01 and o_10.
        """
        m, ones = self._chosen(coders)
        if not len(m):
            return float("nan")
        zeros = m[:, None] - ones
        w = 1.0 / (m - 1.0)[:, None]
        o11 = float((ones * (ones - 1.0) * w).sum())
        o00 = float((zeros * (zeros - 1.0) * w).sum())
        o01 = float((ones * zeros * w).sum())
        o = np.array([[o00, o01], [o01, o11]])
        n_c = o.sum(axis=1)
        n = n_c.sum()
        delta = 1.0 - np.eye(2)
        expected = (np.outer(n_c, n_c) * delta).sum()
        if n < 2 or expected == 0:
            return float("nan")
        return float(1.0 - (n - 1.0) * (o * delta).sum() / expected)

    def _alpha_parts(self, coders: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Each pairable unit's share of alpha: its observed disagreement (sum of o_ck * d_ck) and its values'
        counts (the margins it adds), the distance matrix, and the unit's record (its resampling cluster).

        ``alpha = 1 - (n - 1) * sum_u D_u / (n_c d n_c)`` with ``n_c = sum_u M_u``: a weighted sum over units
        gives the alpha of any resample of them.
        """
        records: list[str] = []
        d_rows: list[float] = []
        m_rows: list[np.ndarray] = []
        if self.kind == "multi_label":
            index = {lab: i for i, lab in enumerate(self.labels)}
            delta = 1.0 - np.eye(2)
            for (rid, _turn), by_coder in self.ratings.items():
                given = [by_coder[c] for c in coders if c in by_coder]
                m = len(given)
                if m < 2:
                    continue
                k = np.zeros(len(self.labels))
                for chosen in given:
                    for lab in chosen:
                        if lab in index:
                            k[index[lab]] += 1
                records.append(rid)
                d_rows.append(float((2.0 * k * (m - k)).sum() / (m - 1)))
                m_rows.append(np.array([float((m - k).sum()), float(k.sum())]))
            return np.asarray(d_rows), np.asarray(m_rows).reshape(-1, 2), delta, np.asarray(records, dtype=object)
        units = []
        for (rid, _turn), by_coder in self.ratings.items():
            given = _present(by_coder[c] for c in coders if c in by_coder)
            if len(given) >= 2:
                units.append(given)
                records.append(rid)
        values = sorted({v for vs in units for v in vs})
        index = {v: i for i, v in enumerate(values)}
        delta = _delta(values, self.level) if values else np.zeros((0, 0))
        counts = np.zeros((len(units), len(values)))
        for row, vs in enumerate(units):
            for v in vs:
                counts[row, index[v]] += 1
        if not units:
            return np.zeros(0), counts, delta, np.asarray(records, dtype=object)
        weight = 1.0 / (counts.sum(axis=1) - 1.0)
        # sum over ordered pairs i != j of d(v_i, v_j), per unit: counts d counts^T minus the diagonal (d_cc = 0)
        d = np.einsum("uc,ck,uk->u", counts, delta, counts) * weight
        return d, counts, delta, np.asarray(records, dtype=object)

    def alpha_intervals(
        self, groups: Sequence[Sequence[str]], *, resamples: int = 1000, seed: int = 0
    ) -> list[np.ndarray]:
        """Bootstrap alphas of each group of coders, on the same resamples of records (rows: resamples)."""
        records = sorted({rid for rid, _ in self.ratings})
        code = {rid: i for i, rid in enumerate(records)}
        k = len(records)
        parts = []
        for coders in groups:
            d, m, delta, recs = self._alpha_parts(coders)
            codes = np.fromiter((code[r] for r in recs), dtype=np.int64, count=len(recs))
            d_k = np.bincount(codes, weights=d, minlength=k)
            m_k = np.zeros((k, m.shape[1]))
            np.add.at(m_k, codes, m)
            parts.append((d_k, m_k, delta))
        rng = np.random.default_rng(seed)
        out = [np.empty(resamples) for _ in groups]
        for start in range(0, resamples, 100):
            r = min(100, resamples - start)
            w = rng.multinomial(k, np.full(k, 1.0 / k), size=r).astype(np.float64) if k else np.zeros((r, 0))
            for g, (d_k, m_k, delta) in enumerate(parts):
                observed = w @ d_k
                n_c = w @ m_k
                n = n_c.sum(axis=1)
                expected = np.einsum("rc,ck,rk->r", n_c, delta, n_c)
                with np.errstate(divide="ignore", invalid="ignore"):
                    alpha = 1.0 - (n - 1.0) * observed / expected
                alpha[(n < 2) | (expected == 0)] = np.nan
                out[g][start : start + r] = alpha
        return out

    def pair(self, a: str, b: str) -> dict[str, Any]:
        both = [(r[a], r[b]) for r in self.ratings.values() if a in r and b in r]
        out: dict[str, Any] = {"a": a, "b": b, "n": len(both), "alpha": self.alpha([a, b])}
        if self.kind == "multi_label":
            # binary units (unit, label): the 2x2 table of "chosen" by a against b, counted without lists
            labels = set(self.labels)
            a1 = sum(len(sa & labels) for sa, _ in both)
            b1 = sum(len(sb & labels) for _, sb in both)
            both1 = sum(len(sa & sb & labels) for sa, sb in both)
            total = len(both) * len(self.labels)
            m = np.array([[total - a1 - b1 + both1, b1 - both1], [a1 - both1, both1]], dtype=np.int64)
            out["kappa"] = cohen_kappa(m)
            levels = ["not chosen", "chosen"]
        elif self.kind == "score":
            low, high = SCORE_SCALES["trait" if self.task.startswith("trait.") else self.task]
            levels = [str(v) for v in range(low, high + 1)]
            ra = _round_onto([x for x, _ in both], low, high)
            rb = _round_onto([y for _, y in both], low, high)
            m = confusion_matrix(ra, rb, levels)
            out["kappa"] = cohen_kappa(m)
            out["kappa_quadratic"] = cohen_kappa(m, weights="quadratic")
        else:
            levels = list(self.labels)
            m = confusion_matrix([x for x, _ in both], [y for _, y in both], levels)
            out["kappa"] = cohen_kappa(m)
        # rows: coder a's values, columns: coder b's (binary per (unit, label) for multi-label tasks)
        out["confusion"] = {"labels": levels, "matrix": m.tolist()}
        return out

    def within(self, coders: Sequence[str], *, top: int) -> dict[str, Any] | None:
        if len(coders) < 2:
            return None
        combos = list(itertools.combinations(coders, 2))
        pairs = [self.pair(a, b) for a, b in combos]
        boots = self.alpha_intervals([list(coders), *[[a, b] for a, b in combos]])
        for p, boot in zip(pairs, boots[1:], strict=True):
            p["alpha_ci"] = _interval(boot)
        units = self._units(coders, lambda present: len(present) >= 2)
        return {
            "coders": list(coders),
            "units": len(units),
            "alpha": self.alpha(coders),
            "alpha_ci": _interval(boots[0]),
            "alpha_over": "all coders",
            "pairs": pairs,
            "disagreements": self._worst(units, coders, top=top),
        }

    def across(self, left: Sequence[str], right: Sequence[str], *, top: int) -> dict[str, Any] | None:
        if not left or not right:
            return None
        combos = list(itertools.product(left, right))
        pairs = [self.pair(a, b) for a, b in combos]
        boots = self.alpha_intervals([[a, b] for a, b in combos])
        for p, boot in zip(pairs, boots, strict=True):
            p["alpha_ci"] = _interval(boot)
        defined = [i for i, p in enumerate(pairs) if not math.isnan(p["alpha"])]
        alphas = [pairs[i]["alpha"] for i in defined]
        with warnings.catch_warnings():  # a resample where no pair is defined: NaN, left out of the interval
            warnings.simplefilter("ignore", RuntimeWarning)
            mean_boot = np.nanmean(np.vstack([boots[i] for i in defined]), axis=0) if defined else np.full(1, np.nan)
        coders = [*left, *right]
        units = self._units(coders, lambda present: bool(present & set(left)) and bool(present & set(right)))
        return {
            "coders": coders,
            "units": len(units),
            "alpha": float(np.mean(alphas)) if alphas else float("nan"),
            "alpha_ci": _interval(mean_boot),
            "alpha_over": "mean of pairs",
            "pairs": pairs,
            "disagreements": self._worst(units, coders, top=top, across=(left, right)),
        }

    def _units(self, coders: Sequence[str], keep: Any) -> list[Unit]:
        wanted = set(coders)
        return [u for u, by_coder in self.ratings.items() if keep(wanted & set(by_coder))]

    def _worst(
        self,
        units: list[Unit],
        coders: Sequence[str],
        *,
        top: int,
        across: tuple[Sequence[str], Sequence[str]] | None = None,
    ) -> list[dict[str, Any]]:
        """Units by disagreement, worst first; ``across`` = (left, right) counts only left-right pairs of coders.

        ``disagreement`` is the mean disagreement over the pairs of coders (single label: the share of pairs
        that differ, so two coders who differ score 1). Equal ones are ordered by ``machine_confidence``, the
        highest confidence a machine coder gave its label on the unit: a confident machine label that a
        human or gold contradicts is the most telling, and comes first.
        """
        level = "multi_label" if self.kind == "multi_label" else self.level
        rows = []
        for unit in units:
            given = {c: self.ratings[unit][c] for c in coders if c in self.ratings[unit]}
            if across is None:
                score = unit_disagreement(list(given.values()), level=level)
            else:
                left, right = across
                cross = [
                    unit_disagreement([given[a], given[b]], level=level)
                    for a in left
                    for b in right
                    if a in given and b in given
                ]
                score = sum(cross) / len(cross) if cross else 0.0
            if score > 0:
                rows.append((score, self.confidence.get(unit, 0.0), len(set(given.values())), unit, given))
        rows.sort(key=lambda r: (-r[0], -r[1], -r[2], r[3][0], -1 if r[3][1] is None else r[3][1]))
        return [
            {
                "record_id": rid,
                "turn": turn,
                "disagreement": score,
                "machine_confidence": confidence,
                "distinct": distinct,
                "values": {c: sorted(v) if isinstance(v, frozenset) else v for c, v in given.items()},
            }
            for score, confidence, distinct, (rid, turn), given in rows[:top]
        ]
