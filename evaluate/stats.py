"""The statistics of an evaluation: bootstrap intervals, paired base -> tuned comparisons, Holm, plain verdicts.

Everything here is a pure function over arrays or ``{item_id: value}`` mappings: no global state, no I/O,
and every random draw comes from ``numpy.random.default_rng(seed)``, so the same inputs and seed give the same
numbers anywhere (item ids are sorted before anything is drawn, so the order of a mapping does not matter).
Results are small frozen dataclasses with ``to_dict()`` for JSON; a quantity that cannot be estimated is
``None`` with a note saying why, never NaN.

One model, one metric (:class:`Estimate`, a 95% percentile-bootstrap interval by default)
    ``bootstrap_mean(values)``
        the mean of per-item scores (judge scores, per-item squared errors, ...).
    ``bootstrap_proportion(outcomes)``
        the share of 0/1 outcomes that are 1 (accuracy, JSON validity, pass rate). When every outcome is the
        same (30/30) the bootstrap has no spread, so the exact Clopper-Pearson interval is given instead.
    ``bootstrap_statistic(statistic, *columns)``
        any statistic computed by a function over the whole sample (macro-F1 of ``(gold, predicted)``, MSE):
        rows are resampled together and ``statistic(*resampled_columns)`` is recomputed each time.

    Assumptions: items are independent draws from the population of prompts, *unless* ``clusters`` is given
    (one label per item, e.g. its conversation id): then clusters are the independent units and whole
    clusters are resampled (cluster bootstrap), which widens the interval when items of a cluster are alike.
    Means over clusters are item-weighted (the sum of the resampled items over their count). The percentile
    interval is the 2.5th-97.5th percentile of ``resamples`` bootstrap values; it is slightly too narrow for
    very small samples (n < ~20). n = 0 gives no value; n = 1 (or one cluster) a value with no interval;
    all values equal an interval equal to the point (except proportions, see above). Bootstrap replicates
    where a statistic is undefined (NaN, e.g. F1 of a class absent from the resample) are left out and counted
    in the note.

Paired comparison, base -> tuned (:class:`Comparison`; ``delta = tuned - base``)
    Both models answer the same prompts: ``base`` and ``tuned`` map item id -> value and are paired by id.
    An id present for one model only raises :class:`PairingError` naming the ids, unless ``common_only=True``
    (then only shared ids are used and ``n_dropped`` counts the others). ``clusters`` maps item id ->
    conversation id. Each comparison gives both models' estimates, the delta with its paired bootstrap
    interval (the same resampled items, or clusters, for both models), a test, the minimum detectable effect
    and the number of prompts needed, and a verdict:

    ``compare_scores`` (per-item scores)
        test: Wilcoxon signed-rank (``scipy.stats.wilcoxon``, zero differences dropped, scipy's default) or
        the paired t-test (``scipy.stats.ttest_rel``) with ``test="ttest"``.
    ``compare_proportions`` (0/1 correctness, validity, pass)
        test: exact McNemar, i.e. a two-sided binomial test (``scipy.stats.binomtest``, p = 0.5) on the
        discordant pairs (items exactly one model got right).
    ``compare_statistic`` (a statistic of the whole sample, e.g. macro-F1)
        test: paired permutation (approximate randomisation, ``scipy.stats.permutation_test``): each item's
        base and tuned answers are swapped at random; exact when 2**n <= resamples.
    ``compare_win_rate`` (a pairwise judge: tuned vs base per item: "win" / "loss" / "tie")
        win rate = wins / (wins + losses), ties excluded (``tie_rate`` in ``details``); delta = win rate - 0.5;
        test: two-sided binomial test of wins among decisive items against 0.5.

    With clusters (some cluster holding more than one item) the tests run on the clusters, the independent
    units: Wilcoxon / t on per-cluster mean differences; for 0/1 outcomes and win rates a sign-flip
    permutation test on per-cluster summed differences (McNemar and the binomial test would treat correlated
    items as independent); for a statistic, whole clusters are swapped.

Family, verdict, power
    ``holm(p_values)``
        Holm's step-down adjustment (controls the family-wise error rate); None entries are skipped.
    ``adjust_family(comparisons)``
        Holm across the metrics of one report; sets ``p_adjusted``, ``family_size`` and the verdicts.
        A comparison built alone is a family of one (``p_adjusted == p_value``): always pass every metric of
        a report through ``adjust_family``.
    verdict
        "improved" / "worse" when the adjusted p < alpha AND the delta's interval excludes 0 (direction read
        from the interval and ``higher_is_better``), otherwise "no detectable change".
    ``minimum_detectable_effect(sd, n)`` = (z_{1-alpha/2} + z_{power}) * sd / sqrt(n)
    ``sample_size_needed(sd, delta)`` = ceil(((z_{1-alpha/2} + z_{power}) * sd / delta) ** 2), None for delta 0
        normal approximation, two-sided, defaults alpha 0.05 and power 0.8; ``sd`` is the SD of the paired
        differences (0/1 differences included). With clusters both are multiplied through by the design effect
        (clustered over naive variance of the mean difference, at least 1), assuming the same cluster sizes.
        For ``compare_statistic`` the SD of the bootstrap deltas stands in for sd / sqrt(n); for win rates
        the differences are +1 / -1 per decisive item, the effect is on the win-rate scale and ``n_needed``
        counts prompts, ties included at the observed tie rate.

``Comparison.report_rows()`` gives the rows of the report format that :mod:`evaluate.results` reads.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps

from curation.errors import WorkbenchError

DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0
DEFAULT_CONFIDENCE = 0.95
DEFAULT_ALPHA = 0.05
DEFAULT_POWER = 0.8
MIN_RESAMPLES = 100

IMPROVED = "improved"
WORSE = "worse"
NO_CHANGE = "no detectable change"
VERDICTS = (IMPROVED, WORSE, NO_CHANGE)

WIN, LOSS, TIE = "win", "loss", "tie"
_WIN_CODES = {WIN: 1, LOSS: -1, TIE: 0, 1: 1, -1: -1, 0: 0}

_CHUNK_CELLS = 2_000_000  # index cells drawn at once by the vectorised bootstrap (bounds memory for large n)
_SHOWN_IDS = 10


class StatsError(WorkbenchError):
    """Input the statistics cannot use (non-numeric scores, bad options); names the metric and the items."""


class PairingError(StatsError):
    """Base and tuned results that do not cover the same item ids; names the ids on each side."""


def _finite_or_none(value: Any, name: str) -> float | None:
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite or None, got {value}")  # a bug here, not bad input
    return value


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its interval; ``ci_low`` / ``ci_high`` are None when none can be given (see ``note``)."""

    value: float | None
    ci_low: float | None
    ci_high: float | None
    n: int  # items
    method: str  # how the interval was made: "percentile bootstrap", "cluster percentile bootstrap", ...
    confidence: float = DEFAULT_CONFIDENCE
    n_clusters: int | None = None  # None when items were treated as independent
    resamples: int = 0
    note: str | None = None

    def __post_init__(self) -> None:
        for name in ("value", "ci_low", "ci_high"):
            object.__setattr__(self, name, _finite_or_none(getattr(self, name), name))
        if (self.ci_low is None) != (self.ci_high is None):
            raise ValueError("give both ci_low and ci_high, or neither")
        if self.ci_low is not None and self.ci_high is not None and self.ci_low > self.ci_high:
            raise ValueError(f"ci_low {self.ci_low} > ci_high {self.ci_high}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Comparison:
    """Base -> tuned on one metric: both estimates, the delta (tuned - base) and its interval, the test, the verdict."""

    metric: str
    kind: str  # "scores", "proportion", "statistic" or "win_rate"
    higher_is_better: bool
    base: Estimate | None  # None for a win rate (one pairwise judgement per item, no per-model value)
    tuned: Estimate | None  # for a win rate: the win rate
    delta: float | None
    delta_ci_low: float | None
    delta_ci_high: float | None
    test: str
    statistic: float | None
    p_value: float | None
    p_adjusted: float | None  # Holm-adjusted across ``family_size`` metrics (see adjust_family)
    verdict: str
    mde: float | None  # minimum detectable effect at this n (same scale as delta)
    n_needed: int | None  # prompts needed to detect the observed delta; None when delta is 0 or sd unknown
    n: int  # paired items used
    n_clusters: int | None = None
    n_dropped: int = 0  # ids present for one model only, left out with common_only=True
    family_size: int = 1
    alpha: float = DEFAULT_ALPHA
    power: float = DEFAULT_POWER
    confidence: float = DEFAULT_CONFIDENCE
    details: dict[str, float | int] = field(default_factory=dict)  # counts of the test (discordant pairs, ties)
    notes: tuple[str, ...] = ()  # why something is None, which fallback was taken

    def __post_init__(self) -> None:
        for name in ("delta", "delta_ci_low", "delta_ci_high", "statistic", "p_value", "p_adjusted", "mde"):
            object.__setattr__(self, name, _finite_or_none(getattr(self, name), name))
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["notes"] = list(self.notes)
        return out

    def report_rows(self, base_model: str = "base", tuned_model: str = "finetuned") -> list[dict[str, Any]]:
        """The metric rows of an evaluation report (evaluate.results' format); a model without a value is left out."""
        rows = []
        for model, est in ((base_model, self.base), (tuned_model, self.tuned)):
            if est is None or est.value is None:
                continue
            row: dict[str, Any] = {"metric": self.metric, "model": model, "value": est.value, "n": est.n}
            if est.ci_low is not None:
                row["ci_low"], row["ci_high"] = est.ci_low, est.ci_high
            row["higher_is_better"] = self.higher_is_better
            rows.append(row)
        return rows


# ---------------------------------------------------------------- validation


def _show(ids: Sequence[Any]) -> str:
    shown = ", ".join(str(i) for i in ids[:_SHOWN_IDS])
    return shown + (f", ... ({len(ids) - _SHOWN_IDS} more)" if len(ids) > _SHOWN_IDS else "")


def _check_options(*, confidence: float, resamples: int, alpha: float = DEFAULT_ALPHA, power: float = DEFAULT_POWER):
    for name, value in (("confidence", confidence), ("alpha", alpha), ("power", power)):
        if not 0 < value < 1:
            raise StatsError(f"{name} must be between 0 and 1, got {value!r}")
    if isinstance(resamples, bool) or not isinstance(resamples, numbers.Integral) or resamples < MIN_RESAMPLES:
        raise StatsError(f"resamples must be an integer >= {MIN_RESAMPLES}, got {resamples!r}")


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real | np.bool_) and math.isfinite(v)


def _is_binary(v: Any) -> bool:
    return isinstance(v, numbers.Real | np.bool_) and v in (0, 1)


def _array(values: ArrayLike, what: str, *, binary: bool = False) -> np.ndarray:
    items = list(np.asarray(values, dtype=object).ravel()) if not isinstance(values, Sequence) else list(values)
    check = _is_binary if binary else _is_number
    bad = [i for i, v in enumerate(items) if not check(v)]
    if bad:
        expected = "0/1 outcomes" if binary else "finite numbers"
        raise StatsError(f"{what}: expected {expected}; positions {_show(bad)} are not (e.g. {items[bad[0]]!r})")
    return np.asarray(items, dtype=float)


def _cluster_codes(clusters: Sequence[Hashable] | None, n: int) -> tuple[np.ndarray | None, int | None]:
    """Clusters as codes 0..k-1 in order of first appearance (deterministic), and k."""
    if clusters is None:
        return None, None
    labels = list(clusters)
    if len(labels) != n:
        raise StatsError(f"clusters: expected one label per item ({n}), got {len(labels)}")
    index: dict[Hashable, int] = {}
    try:
        codes = np.array([index.setdefault(c, len(index)) for c in labels], dtype=np.intp)
    except TypeError as exc:
        raise StatsError(f"clusters: labels must be hashable ({exc})") from None
    return codes, len(index)


def _pair(metric: str, base: Mapping[str, Any], tuned: Mapping[str, Any], common_only: bool) -> tuple[list[str], int]:
    """The shared item ids, sorted (so the mapping order never changes a result), and how many were dropped."""
    only_base = sorted(set(base) - set(tuned), key=str)
    only_tuned = sorted(set(tuned) - set(base), key=str)
    if (only_base or only_tuned) and not common_only:
        parts = []
        if only_base:
            parts.append(f"{len(only_base)} only in base: {_show(only_base)}")
        if only_tuned:
            parts.append(f"{len(only_tuned)} only in tuned: {_show(only_tuned)}")
        raise PairingError(
            f"metric {metric!r}: base and tuned are not paired ({'; '.join(parts)}); "
            "pass common_only=True to compare the shared ids only"
        )
    return sorted(set(base) & set(tuned), key=str), len(only_base) + len(only_tuned)


def _values(metric: str, model: str, data: Mapping[str, Any], ids: list[str], *, binary: bool) -> np.ndarray:
    check = _is_binary if binary else _is_number
    bad = [i for i in ids if not check(data[i])]
    if bad:
        expected = "0/1 outcomes" if binary else "finite numbers"
        raise StatsError(
            f"metric {metric!r}, {model}: expected {expected}; items {_show(bad)} are not (e.g. {data[bad[0]]!r})"
        )
    return np.array([float(data[i]) for i in ids], dtype=float)


def _pair_clusters(
    metric: str, ids: list[str], clusters: Mapping[str, Hashable] | None
) -> tuple[np.ndarray | None, int | None]:
    if clusters is None:
        return None, None
    missing = [i for i in ids if i not in clusters]
    if missing:
        raise StatsError(f"metric {metric!r}: no cluster (conversation) for items {_show(missing)}")
    return _cluster_codes([clusters[i] for i in ids], len(ids))


# ---------------------------------------------------------------- bootstrap


def _units(values: np.ndarray, codes: np.ndarray | None, k: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Per resampling unit: the sum of its values and its number of items (items themselves when unclustered)."""
    if codes is None:
        return values, np.ones_like(values)
    return np.bincount(codes, weights=values, minlength=k), np.bincount(codes, minlength=k).astype(float)


def _bootstrap_ratio(num: np.ndarray, den: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap replicates of sum(num) / sum(den), resampling units (items or clusters) with replacement."""
    k = len(num)
    out = np.empty(resamples)
    rows = max(1, _CHUNK_CELLS // k)
    for start in range(0, resamples, rows):
        b = min(rows, resamples - start)
        idx = rng.integers(0, k, size=(b, k))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start : start + b] = num[idx].sum(axis=1) / den[idx].sum(axis=1)
    return out


def _call(statistic: Callable[..., float], columns: Sequence[np.ndarray]) -> float:
    with np.errstate(invalid="ignore", divide="ignore"):
        value = statistic(*columns)
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise StatsError(f"the statistic must return a number, got {value!r}") from None
    return value if math.isfinite(value) else math.nan


def _bootstrap_general(
    compute: Callable[[np.ndarray], float],
    n: int,
    codes: np.ndarray | None,
    k: int | None,
    resamples: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Bootstrap replicates of ``compute(item_indices)``, resampling items or whole clusters."""
    members = None if codes is None else [np.flatnonzero(codes == c) for c in range(k or 0)]
    units = n if members is None else len(members)
    out = np.empty(resamples)
    for r in range(resamples):
        pick = rng.integers(0, units, size=units)
        out[r] = compute(pick if members is None else np.concatenate([members[j] for j in pick]))
    return out


def _percentile(boot: np.ndarray, confidence: float) -> tuple[float | None, float | None, int]:
    """The percentile interval of the finite replicates, and how many were not finite."""
    finite = boot[np.isfinite(boot)]
    if finite.size == 0:
        return None, None, int(boot.size)
    low, high = np.quantile(finite, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high), int(boot.size - finite.size)


def _method(codes: np.ndarray | None) -> str:
    return "percentile bootstrap" if codes is None else "cluster percentile bootstrap"


def _left_out(dropped: int, resamples: int) -> str | None:
    return f"{dropped} of {resamples} resamples gave an undefined statistic and were left out" if dropped else None


def _mean_estimate(
    x: np.ndarray,
    codes: np.ndarray | None,
    k: int | None,
    *,
    confidence: float,
    resamples: int,
    seed: int,
    proportion: bool = False,
) -> Estimate:
    n = len(x)
    common = {"n": n, "confidence": confidence, "n_clusters": k}
    if n == 0:
        return Estimate(None, None, None, method="none", note="no items", **common)
    value = float(x.mean())
    if n == 1:
        return Estimate(value, None, None, method="none", note="one item: no interval", **common)
    if k == 1:
        return Estimate(value, None, None, method="none", note="one cluster: no interval", **common)
    if np.ptp(x) == 0:
        if proportion:
            # 30/30 correct is not certainty: the exact binomial interval, on clusters when clustered (conservative)
            units = n if k is None else k
            ci = sps.binomtest(units if value else 0, units).proportion_ci(confidence, method="exact")
            note = "all outcomes equal: the bootstrap has no spread"
            return Estimate(value, ci.low, ci.high, method="exact binomial (Clopper-Pearson)", note=note, **common)
        note = "all values equal: the bootstrap has no spread"
        return Estimate(value, value, value, method="degenerate", note=note, **common)
    num, den = _units(x, codes, k)
    boot = _bootstrap_ratio(num, den, resamples, np.random.default_rng(seed))
    low, high, _ = _percentile(boot, confidence)  # a ratio of sums over >= 1 item is always defined
    return Estimate(value, low, high, method=_method(codes), resamples=resamples, **common)


def bootstrap_mean(
    values: ArrayLike,
    *,
    clusters: Sequence[Hashable] | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> Estimate:
    """The mean of per-item scores with a (cluster) percentile-bootstrap interval; see the module docstring."""
    _check_options(confidence=confidence, resamples=resamples)
    x = _array(values, "values")
    codes, k = _cluster_codes(clusters, len(x))
    return _mean_estimate(x, codes, k, confidence=confidence, resamples=resamples, seed=seed)


def bootstrap_proportion(
    outcomes: ArrayLike,
    *,
    clusters: Sequence[Hashable] | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> Estimate:
    """The share of 0/1 outcomes that are 1, with a (cluster) percentile-bootstrap interval (exact when all equal)."""
    _check_options(confidence=confidence, resamples=resamples)
    x = _array(outcomes, "outcomes", binary=True)
    codes, k = _cluster_codes(clusters, len(x))
    return _mean_estimate(x, codes, k, confidence=confidence, resamples=resamples, seed=seed, proportion=True)


def _statistic_estimate(
    statistic: Callable[..., float],
    columns: list[np.ndarray],
    codes: np.ndarray | None,
    k: int | None,
    *,
    confidence: float,
    resamples: int,
    seed: int,
) -> Estimate:
    n = len(columns[0])
    common = {"n": n, "confidence": confidence, "n_clusters": k}
    if n == 0:
        return Estimate(None, None, None, method="none", note="no items", **common)
    value = _call(statistic, columns)
    if math.isnan(value):
        return Estimate(None, None, None, method="none", note="the statistic is undefined on this sample", **common)
    if n == 1 or k == 1:
        return Estimate(value, None, None, method="none", note=f"one {'item' if n == 1 else 'cluster'}", **common)
    boot = _bootstrap_general(
        lambda idx: _call(statistic, [c[idx] for c in columns]), n, codes, k, resamples, np.random.default_rng(seed)
    )
    low, high, dropped = _percentile(boot, confidence)
    notes = [_left_out(dropped, resamples)]
    if low is not None and low == high:
        notes.append("the bootstrap has no spread (the statistic is the same on every resample)")
    note = "; ".join(n for n in notes if n) or None
    return Estimate(value, low, high, method=_method(codes), resamples=resamples, note=note, **common)


def _columns(columns: Sequence[ArrayLike]) -> list[np.ndarray]:
    if not columns:
        raise StatsError("give the statistic at least one column")
    arrays = [np.asarray(c) for c in columns]
    lengths = {len(a) for a in arrays}
    if len(lengths) != 1:
        raise StatsError(f"columns must have one row per item; got lengths {sorted(lengths)}")
    return arrays


def bootstrap_statistic(
    statistic: Callable[..., float],
    *columns: ArrayLike,
    clusters: Sequence[Hashable] | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> Estimate:
    """``statistic(*columns)`` (e.g. macro-F1 of gold, predicted) with a bootstrap interval over resampled rows."""
    _check_options(confidence=confidence, resamples=resamples)
    arrays = _columns(columns)
    codes, k = _cluster_codes(clusters, len(arrays[0]))
    return _statistic_estimate(statistic, arrays, codes, k, confidence=confidence, resamples=resamples, seed=seed)


# ---------------------------------------------------------------- tests, power, verdict


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values, in the input order; None entries are skipped (not in the family)."""
    present = [(float(p), i) for i, p in enumerate(p_values) if p is not None]
    for p, i in present:
        if not 0 <= p <= 1:
            raise StatsError(f"p-value {i} must be in [0, 1], got {p!r}")
    m = len(present)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - rank) * p))  # monotone: never below a smaller p's adjustment
        adjusted[i] = running
    return adjusted


def _z(alpha: float, power: float) -> float:
    return float(sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power))


def minimum_detectable_effect(
    sd: float, n: int, *, alpha: float = DEFAULT_ALPHA, power: float = DEFAULT_POWER, design_effect: float = 1.0
) -> float | None:
    """(z_{1-alpha/2} + z_power) * sd * sqrt(design_effect / n); None when n < 2 or sd is 0 or not finite."""
    if n < 2 or not math.isfinite(sd) or sd <= 0:
        return None
    return _z(alpha, power) * sd * math.sqrt(design_effect / n)


def sample_size_needed(
    sd: float, delta: float, *, alpha: float = DEFAULT_ALPHA, power: float = DEFAULT_POWER, design_effect: float = 1.0
) -> int | None:
    """ceil(((z_{1-alpha/2} + z_power) * sd / delta) ** 2 * design_effect); None when delta or sd is 0."""
    if delta == 0 or not math.isfinite(delta) or not math.isfinite(sd) or sd <= 0:
        return None
    return max(2, math.ceil((_z(alpha, power) * sd / delta) ** 2 * design_effect))


def _design_effect(d: np.ndarray, codes: np.ndarray, k: int) -> float:
    """Variance of the mean difference with clusters (ratio estimator) over the naive sd**2 / n, at least 1."""
    n = len(d)
    sums, sizes = _units(d, codes, k)
    clustered = k / (k - 1) * float(np.sum((sums - sizes * d.mean()) ** 2)) / n**2
    naive = float(d.var(ddof=1)) / n
    return max(1.0, clustered / naive)


def _detectability(
    d: np.ndarray, delta: float | None, codes: np.ndarray | None, k: int | None, *, alpha: float, power: float
) -> tuple[float | None, int | None, list[str]]:
    """MDE and n needed from the paired differences ``d`` (see the module docstring)."""
    n = len(d)
    if n < 2:
        return None, None, ["fewer than 2 pairs: no SD of the differences, so no MDE or n needed"]
    sd = float(d.std(ddof=1))
    if sd == 0:
        return None, None, ["the paired differences are all equal: MDE and n needed are not estimable"]
    deff = 1.0
    if codes is not None and k is not None:
        if k < 2:
            return None, None, ["one cluster: MDE and n needed are not estimable"]
        deff = _design_effect(d, codes, k)
    mde = minimum_detectable_effect(sd, n, alpha=alpha, power=power, design_effect=deff)
    needed = sample_size_needed(sd, delta or 0.0, alpha=alpha, power=power, design_effect=deff)
    notes = ["the observed delta is 0: no number of prompts detects it"] if needed is None else []
    return mde, needed, notes


def _verdict(
    p_adjusted: float | None, low: float | None, high: float | None, higher_is_better: bool, alpha: float
) -> str:
    if p_adjusted is None or low is None or high is None or not p_adjusted < alpha:
        return NO_CHANGE
    if low > 0:
        up = True
    elif high < 0:
        up = False
    else:
        return NO_CHANGE  # significant test but the interval touches 0: not claimed
    return IMPROVED if up == higher_is_better else WORSE


def adjust_family(comparisons: Sequence[Comparison]) -> list[Comparison]:
    """Holm across the metrics of one report: new comparisons with ``p_adjusted``, ``family_size`` and verdicts."""
    names = [c.metric for c in comparisons]
    twice = sorted({m for m in names if names.count(m) > 1})
    if twice:
        raise StatsError(f"a family names each metric once; named more than once: {_show(twice)}")
    alphas = {c.alpha for c in comparisons}
    if len(alphas) > 1:
        raise StatsError(f"a family shares one alpha; got {sorted(alphas)}")
    adjusted = holm([c.p_value for c in comparisons])
    size = sum(p is not None for p in adjusted)
    return [
        replace(
            c,
            p_adjusted=p,
            family_size=size,
            verdict=_verdict(p, c.delta_ci_low, c.delta_ci_high, c.higher_is_better, c.alpha),
        )
        for c, p in zip(comparisons, adjusted, strict=True)
    ]


def _sum_difference(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
    return np.sum(x - y, axis=axis)


def _sign_flip(unit_sums: np.ndarray, resamples: int, seed: int) -> tuple[float, float]:
    """Paired permutation test on per-cluster summed differences: each cluster's sign flipped at random."""
    if not np.any(unit_sums):
        return 0.0, 1.0
    res = sps.permutation_test(
        (unit_sums, np.zeros_like(unit_sums)),
        _sum_difference,
        permutation_type="samples",
        vectorized=True,
        n_resamples=resamples,
        rng=seed,
    )
    return float(res.statistic), float(res.pvalue)


def _clustered(codes: np.ndarray | None, k: int | None, n: int) -> bool:
    """Whether some cluster holds more than one item (otherwise the item-level tests are the cluster tests)."""
    return codes is not None and k is not None and k < n


# ---------------------------------------------------------------- comparisons


def _empty(metric: str, kind: str, higher_is_better: bool, test: str, dropped: int, opts: dict[str, Any]) -> Comparison:
    return Comparison(
        metric=metric,
        kind=kind,
        higher_is_better=higher_is_better,
        base=None,
        tuned=None,
        delta=None,
        delta_ci_low=None,
        delta_ci_high=None,
        test=test,
        statistic=None,
        p_value=None,
        p_adjusted=None,
        verdict=NO_CHANGE,
        mde=None,
        n_needed=None,
        n=0,
        n_dropped=dropped,
        alpha=opts["alpha"],
        power=opts["power"],
        confidence=opts["confidence"],
        notes=("no paired items",),
    )


def _finish(
    *,
    metric: str,
    kind: str,
    higher_is_better: bool,
    base: Estimate | None,
    tuned: Estimate | None,
    delta: Estimate,
    test: str,
    statistic: float | None,
    p_value: float | None,
    mde: float | None,
    n_needed: int | None,
    n: int,
    n_clusters: int | None,
    n_dropped: int,
    opts: dict[str, Any],
    details: dict[str, float | int],
    notes: list[str],
) -> Comparison:
    if delta.note:
        notes = [f"delta: {delta.note}", *notes]
    return Comparison(
        metric=metric,
        kind=kind,
        higher_is_better=higher_is_better,
        base=base,
        tuned=tuned,
        delta=delta.value,
        delta_ci_low=delta.ci_low,
        delta_ci_high=delta.ci_high,
        test=test,
        statistic=statistic,
        p_value=p_value,
        p_adjusted=p_value,
        verdict=_verdict(p_value, delta.ci_low, delta.ci_high, higher_is_better, opts["alpha"]),
        mde=mde,
        n_needed=n_needed,
        n=n,
        n_clusters=n_clusters,
        n_dropped=n_dropped,
        alpha=opts["alpha"],
        power=opts["power"],
        confidence=opts["confidence"],
        details=details,
        notes=tuple(notes),
    )


def _score_test(
    b: np.ndarray, t: np.ndarray, codes: np.ndarray | None, k: int | None, test: str
) -> tuple[str, float | None, float | None, list[str]]:
    """Wilcoxon or paired t on items, or on per-cluster means when clustered."""
    suffix = ""
    if _clustered(codes, k, len(b)):
        (b_sums, sizes), (t_sums, _) = _units(b, codes, k), _units(t, codes, k)
        b, t = b_sums / sizes, t_sums / sizes
        suffix = " on cluster means"
    d = t - b
    notes: list[str] = []
    if test == "ttest":
        if len(d) < 2:
            return "paired t-test" + suffix, None, None, ["fewer than 2 pairs: no t-test"]
        if np.ptp(d) > 0:
            res = sps.ttest_rel(t, b)
            return "paired t-test" + suffix, float(res.statistic), float(res.pvalue), notes
        if np.any(d):
            notes.append("the differences are all equal: t is undefined, Wilcoxon used instead")
    name = "wilcoxon signed-rank" + suffix
    if not np.any(d):
        return name, None, 1.0, [*notes, "all paired differences are 0"]
    res = sps.wilcoxon(t, b)
    return name, float(res.statistic), float(res.pvalue), notes


def compare_scores(
    metric: str,
    base: Mapping[str, float],
    tuned: Mapping[str, float],
    *,
    higher_is_better: bool = True,
    test: Literal["wilcoxon", "ttest"] = "wilcoxon",
    clusters: Mapping[str, Hashable] | None = None,
    common_only: bool = False,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> Comparison:
    """Mean per-item score, base -> tuned, paired by item id: bootstrap interval of the delta, Wilcoxon or t."""
    _check_options(confidence=confidence, resamples=resamples, alpha=alpha, power=power)
    if test not in ("wilcoxon", "ttest"):
        raise StatsError(f"metric {metric!r}: test must be 'wilcoxon' or 'ttest', got {test!r}")
    opts = {"alpha": alpha, "power": power, "confidence": confidence}
    ids, dropped = _pair(metric, base, tuned, common_only)
    test_name = "wilcoxon signed-rank" if test == "wilcoxon" else "paired t-test"
    if not ids:
        return _empty(metric, "scores", higher_is_better, test_name, dropped, opts)
    b = _values(metric, "base", base, ids, binary=False)
    t = _values(metric, "tuned", tuned, ids, binary=False)
    codes, k = _pair_clusters(metric, ids, clusters)
    boot = {"confidence": confidence, "resamples": resamples, "seed": seed}
    d = t - b
    delta = _mean_estimate(d, codes, k, **boot)
    test_name, statistic, p, notes = _score_test(b, t, codes, k, test)
    mde, needed, more = _detectability(d, delta.value, codes, k, alpha=alpha, power=power)
    return _finish(
        metric=metric,
        kind="scores",
        higher_is_better=higher_is_better,
        base=_mean_estimate(b, codes, k, **boot),
        tuned=_mean_estimate(t, codes, k, **boot),
        delta=delta,
        test=test_name,
        statistic=statistic,
        p_value=p,
        mde=mde,
        n_needed=needed,
        n=len(ids),
        n_clusters=k,
        n_dropped=dropped,
        opts=opts,
        details={"n_zero_differences": int(np.sum(d == 0))},
        notes=notes + more,
    )


def compare_proportions(
    metric: str,
    base: Mapping[str, bool | int],
    tuned: Mapping[str, bool | int],
    *,
    higher_is_better: bool = True,
    clusters: Mapping[str, Hashable] | None = None,
    common_only: bool = False,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> Comparison:
    """Share of 0/1 outcomes, base -> tuned, paired by item id: bootstrap interval of the delta, exact McNemar."""
    _check_options(confidence=confidence, resamples=resamples, alpha=alpha, power=power)
    opts = {"alpha": alpha, "power": power, "confidence": confidence}
    ids, dropped = _pair(metric, base, tuned, common_only)
    if not ids:
        return _empty(metric, "proportion", higher_is_better, "exact McNemar", dropped, opts)
    b = _values(metric, "base", base, ids, binary=True)
    t = _values(metric, "tuned", tuned, ids, binary=True)
    codes, k = _pair_clusters(metric, ids, clusters)
    boot = {"confidence": confidence, "resamples": resamples, "seed": seed}
    d = t - b
    delta = _mean_estimate(d, codes, k, **boot)
    base_only, tuned_only = int(np.sum((b == 1) & (t == 0))), int(np.sum((b == 0) & (t == 1)))
    notes: list[str] = []
    if _clustered(codes, k, len(ids)):
        test_name = "sign-flip permutation on cluster sums"
        statistic, p = _sign_flip(_units(d, codes, k)[0], resamples, seed)
    elif base_only + tuned_only == 0:
        test_name, statistic, p = "exact McNemar", None, 1.0
        notes.append("no discordant pairs: the models agree on every item")
    else:
        test_name = "exact McNemar"
        statistic = float(tuned_only)
        p = float(sps.binomtest(tuned_only, base_only + tuned_only, 0.5).pvalue)
    mde, needed, more = _detectability(d, delta.value, codes, k, alpha=alpha, power=power)
    return _finish(
        metric=metric,
        kind="proportion",
        higher_is_better=higher_is_better,
        base=_mean_estimate(b, codes, k, proportion=True, **boot),
        tuned=_mean_estimate(t, codes, k, proportion=True, **boot),
        delta=delta,
        test=test_name,
        statistic=statistic,
        p_value=p,
        mde=mde,
        n_needed=needed,
        n=len(ids),
        n_clusters=k,
        n_dropped=dropped,
        opts=opts,
        details={"base_only_correct": base_only, "tuned_only_correct": tuned_only},
        notes=notes + more,
    )


def _record_columns(metric: str, model: str, data: Mapping[str, Any], ids: list[str]) -> list[np.ndarray]:
    """Per-item records (a tuple of fields, or one value) as one array per field."""
    rows = [tuple(v) if isinstance(v, tuple | list) else (v,) for v in (data[i] for i in ids)]
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise StatsError(
            f"metric {metric!r}, {model}: every item needs the same number of fields, got {sorted(widths)}"
        )
    return [np.asarray(col) for col in zip(*rows, strict=True)]


def _swap_test(
    statistic: Callable[..., float],
    bcols: list[np.ndarray],
    tcols: list[np.ndarray],
    codes: np.ndarray | None,
    k: int | None,
    resamples: int,
    seed: int,
) -> float:
    """Two-sided p of the paired permutation test: each unit's (item's or cluster's) answers swapped at random.

    scipy permutes the two elements of each pair; the pairs here are unit labels (u, u + units), so the
    statistic reads which units were swapped and recomputes the delta on the swapped answers.
    """
    units = len(bcols[0]) if codes is None else int(k or 0)
    unit_of_item = np.arange(units) if codes is None else codes

    def swapped_delta(x: np.ndarray, y: np.ndarray) -> float:
        swap = (x != np.arange(units))[unit_of_item]
        sb = [np.where(swap, tc, bc) for bc, tc in zip(bcols, tcols, strict=True)]
        st = [np.where(swap, bc, tc) for bc, tc in zip(bcols, tcols, strict=True)]
        return _call(statistic, st) - _call(statistic, sb)

    res = sps.permutation_test(
        (np.arange(units), np.arange(units) + units),
        swapped_delta,
        permutation_type="samples",
        vectorized=False,
        n_resamples=resamples,
        rng=seed,
    )
    return float(res.pvalue)


def compare_statistic(
    metric: str,
    base: Mapping[str, Any],
    tuned: Mapping[str, Any],
    statistic: Callable[..., float],
    *,
    higher_is_better: bool = True,
    clusters: Mapping[str, Hashable] | None = None,
    common_only: bool = False,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> Comparison:
    """A whole-sample statistic, base -> tuned: ``base[id]`` is the item's record (e.g. ``(gold, predicted)``),
    ``statistic(*fields)`` computes the metric; paired bootstrap interval of the delta, paired permutation test."""
    _check_options(confidence=confidence, resamples=resamples, alpha=alpha, power=power)
    opts = {"alpha": alpha, "power": power, "confidence": confidence}
    ids, dropped = _pair(metric, base, tuned, common_only)
    test_name = "paired permutation"
    if not ids:
        return _empty(metric, "statistic", higher_is_better, test_name, dropped, opts)
    bcols = _record_columns(metric, "base", base, ids)
    tcols = _record_columns(metric, "tuned", tuned, ids)
    if len(bcols) != len(tcols):
        raise StatsError(f"metric {metric!r}: base records have {len(bcols)} fields, tuned {len(tcols)}")
    codes, k = _pair_clusters(metric, ids, clusters)
    n = len(ids)
    boot = {"confidence": confidence, "resamples": resamples, "seed": seed}
    base_est = _statistic_estimate(statistic, bcols, codes, k, **boot)
    tuned_est = _statistic_estimate(statistic, tcols, codes, k, **boot)

    def delta_on(idx: np.ndarray) -> float:
        return _call(statistic, [c[idx] for c in tcols]) - _call(statistic, [c[idx] for c in bcols])

    notes: list[str] = []
    observed = delta_on(np.arange(n))
    common = {"n": n, "confidence": confidence, "n_clusters": k}
    mde = needed = statistic_value = p = None
    if math.isnan(observed):
        delta = Estimate(None, None, None, method="none", note="the statistic is undefined on this sample", **common)
    elif n == 1 or k == 1:
        delta = Estimate(observed, None, None, method="none", note=f"one {'item' if n == 1 else 'cluster'}", **common)
    else:
        reps = _bootstrap_general(delta_on, n, codes, k, resamples, np.random.default_rng(seed))
        low, high, left_out = _percentile(reps, confidence)
        delta = Estimate(
            observed,
            low,
            high,
            method=_method(codes),
            resamples=resamples,
            note=_left_out(left_out, resamples),
            **common,
        )
        se = float(np.std(reps[np.isfinite(reps)], ddof=1)) if np.sum(np.isfinite(reps)) > 1 else 0.0
        if se > 0:
            # the bootstrap SE stands in for sd / sqrt(n): MDE = z * se, n needed = n * (z * se / delta) ** 2
            mde = minimum_detectable_effect(se * math.sqrt(n), n, alpha=alpha, power=power)
            needed = sample_size_needed(se * math.sqrt(n), observed, alpha=alpha, power=power)
        else:
            notes.append("the bootstrap deltas have no spread: MDE and n needed are not estimable")
        if _clustered(codes, k, n):
            test_name = "paired permutation of clusters"
        if all(np.array_equal(bc, tc) for bc, tc in zip(bcols, tcols, strict=True)):
            statistic_value, p = 0.0, 1.0
            notes.append("the two models' records are identical")
        else:
            statistic_value, p = observed, _swap_test(statistic, bcols, tcols, codes, k, resamples, seed)
    return _finish(
        metric=metric,
        kind="statistic",
        higher_is_better=higher_is_better,
        base=base_est,
        tuned=tuned_est,
        delta=delta,
        test=test_name,
        statistic=statistic_value,
        p_value=p,
        mde=mde,
        n_needed=needed,
        n=n,
        n_clusters=k,
        n_dropped=dropped,
        opts=opts,
        details={},
        notes=notes,
    )


def compare_win_rate(
    metric: str,
    outcomes: Mapping[str, str | int],
    *,
    clusters: Mapping[str, Hashable] | None = None,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> Comparison:
    """Pairwise win rate of tuned over base (``outcomes[id]`` is "win" / "loss" / "tie", or 1 / -1 / 0):
    wins / (wins + losses) with a bootstrap interval, delta = win rate - 0.5, two-sided binomial test."""
    _check_options(confidence=confidence, resamples=resamples, alpha=alpha, power=power)
    opts = {"alpha": alpha, "power": power, "confidence": confidence}
    ids = sorted(outcomes, key=str)
    bad = [i for i in ids if not isinstance(outcomes[i], Hashable) or outcomes[i] not in _WIN_CODES]
    if bad:
        raise StatsError(
            f"metric {metric!r}: outcomes must be 'win', 'loss', 'tie' (or 1, -1, 0); items {_show(bad)} are not "
            f"(e.g. {outcomes[bad[0]]!r})"
        )
    if not ids:
        return _empty(metric, "win_rate", True, "binomial (wins vs losses)", 0, opts)
    s = np.array([_WIN_CODES[outcomes[i]] for i in ids], dtype=float)  # +1 win, -1 loss, 0 tie
    codes, k = _pair_clusters(metric, ids, clusters)
    n = len(ids)
    wins, losses = int(np.sum(s == 1)), int(np.sum(s == -1))
    decisive = wins + losses
    tie_rate = 1 - decisive / n
    details: dict[str, float | int] = {"wins": wins, "losses": losses, "ties": n - decisive, "tie_rate": tie_rate}
    common = {"n": n, "confidence": confidence, "n_clusters": k}
    notes: list[str] = []
    test_name = "binomial (wins vs losses)"
    statistic = p = mde = needed = None
    if decisive == 0:
        rate = Estimate(None, None, None, method="none", note="every comparison is a tie: no win rate", **common)
        delta = rate
    else:
        value = wins / decisive
        num, den = _units((s == 1).astype(float), codes, k)[0], _units(np.abs(s), codes, k)[0]
        low = high = None
        method, note, used = "none", None, 0
        if n == 1 or k == 1:
            note = f"one {'item' if n == 1 else 'cluster'}: no interval"
        elif wins in (0, decisive):
            # all decisive comparisons went one way: the bootstrap has no spread, the exact interval is honest
            units = int(np.sum(den > 0))  # items, or clusters with a decisive comparison
            ci = sps.binomtest(units if wins else 0, units).proportion_ci(confidence, method="exact")
            low, high = ci.low, ci.high
            method, note = "exact binomial (Clopper-Pearson)", "all decisive comparisons went one way"
        else:
            low, high, _ = _percentile(_bootstrap_ratio(num, den, resamples, np.random.default_rng(seed)), confidence)
            method, used = _method(codes), resamples
        rate = Estimate(value, low, high, method=method, note=note, resamples=used, **common)
        shifted = (None, None) if low is None or high is None else (low - 0.5, high - 0.5)
        delta = Estimate(value - 0.5, *shifted, method=method, note=note, resamples=used, **common)
        mask = s != 0
        d = s[mask]  # +1 / -1 per decisive item
        dcodes, dk = (None, None) if codes is None else _cluster_codes(list(codes[mask]), len(d))
        if _clustered(codes, k, n):
            test_name = "sign-flip permutation on cluster sums"
            statistic, p = _sign_flip(_units(s, codes, k)[0], resamples, seed)
        else:
            statistic, p = float(wins), float(sps.binomtest(wins, decisive, 0.5).pvalue)
        # on the +1/-1 scale the effect is 2 * (win rate - 0.5); n needed counts prompts, ties included
        mde_d, needed_d, more = _detectability(d, float(d.mean()), dcodes, dk, alpha=alpha, power=power)
        mde = None if mde_d is None else mde_d / 2
        needed = None if needed_d is None else math.ceil(needed_d / (1 - tie_rate))
        notes += more
    return _finish(
        metric=metric,
        kind="win_rate",
        higher_is_better=True,
        base=None,
        tuned=rate,
        delta=delta,
        test=test_name,
        statistic=statistic,
        p_value=p,
        mde=mde,
        n_needed=needed,
        n=n,
        n_clusters=k,
        n_dropped=0,
        opts=opts,
        details=details,
        notes=notes,
    )
