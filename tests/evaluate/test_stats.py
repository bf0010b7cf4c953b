"""evaluate.stats: bootstrap intervals, paired comparisons, Holm and verdicts, checked against scipy and by hand."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
from scipy import stats as sps

from curation.errors import WorkbenchError
from evaluate.results import load_report
from evaluate.stats import (
    IMPROVED,
    NO_CHANGE,
    WORSE,
    Comparison,
    PairingError,
    StatsError,
    adjust_family,
    bootstrap_mean,
    bootstrap_proportion,
    bootstrap_statistic,
    compare_proportions,
    compare_scores,
    compare_statistic,
    compare_win_rate,
    holm,
    minimum_detectable_effect,
    sample_size_needed,
)

Z_80 = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)  # 2.8016: two-sided alpha 0.05, power 0.8


def _ids(n: int) -> list[str]:
    return [f"prompt-{i:03d}" for i in range(n)]


def _paired(base, tuned) -> tuple[dict[str, float], dict[str, float]]:
    ids = _ids(len(base))
    return dict(zip(ids, map(float, base), strict=True)), dict(zip(ids, map(float, tuned), strict=True))


def _clustered_sample(rng, k: int, m: int, spread: float = 1.0, noise: float = 0.2) -> tuple[np.ndarray, list[int]]:
    """k clusters of m items that share a cluster effect: items of one conversation are alike."""
    values = np.repeat(rng.normal(0, spread, k), m) + rng.normal(0, noise, k * m)
    return values, [i // m for i in range(k * m)]


def _json_clean(result) -> dict:
    return json.loads(json.dumps(result.to_dict(), allow_nan=False))  # raises on NaN / inf


# ---------------------------------------------------------------- one model: bootstrap intervals


def test_mean_of_standard_normals_has_an_interval_around_0_of_the_textbook_width():
    x = np.random.default_rng(0).normal(size=200)
    est = bootstrap_mean(x)
    assert est.value == pytest.approx(x.mean()) and est.n == 200 and est.method == "percentile bootstrap"
    assert est.ci_low < 0 < est.ci_high
    assert est.ci_high - est.ci_low == pytest.approx(2 * 1.96 / math.sqrt(200), rel=0.15)
    assert est.ci_low < est.value < est.ci_high


def test_percentile_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    covered = 0
    for rep in range(300):
        est = bootstrap_mean(rng.normal(5.0, 2.0, 50), resamples=400, seed=rep)
        covered += est.ci_low <= 5.0 <= est.ci_high
    assert 0.89 <= covered / 300 <= 0.99


def test_with_correlated_clusters_only_the_cluster_bootstrap_keeps_its_coverage():
    rng = np.random.default_rng(2)
    item_cover = cluster_cover = 0
    reps = 150
    for rep in range(reps):
        values, clusters = _clustered_sample(rng, k=25, m=6)  # true mean 0
        item = bootstrap_mean(values, resamples=300, seed=rep)
        cluster = bootstrap_mean(values, clusters=clusters, resamples=300, seed=rep)
        item_cover += item.ci_low <= 0 <= item.ci_high
        cluster_cover += cluster.ci_low <= 0 <= cluster.ci_high
    assert item_cover / reps < 0.75  # items of a conversation are not independent: far too narrow
    assert cluster_cover / reps > 0.87


def test_cluster_bootstrap_is_wider_than_the_item_bootstrap_when_clusters_are_alike():
    values, clusters = _clustered_sample(np.random.default_rng(3), k=40, m=5)
    item = bootstrap_mean(values)
    cluster = bootstrap_mean(values, clusters=clusters)
    assert cluster.method == "cluster percentile bootstrap" and cluster.n_clusters == 40 and cluster.n == 200
    assert cluster.value == pytest.approx(item.value)
    assert (cluster.ci_high - cluster.ci_low) > 1.5 * (item.ci_high - item.ci_low)


def test_cluster_labels_may_be_any_hashable_and_singletons_match_the_item_bootstrap():
    x = np.random.default_rng(4).normal(size=60)
    item = bootstrap_mean(x)
    singletons = bootstrap_mean(x, clusters=[f"conv-{i}" for i in range(60)])
    assert (singletons.ci_low, singletons.ci_high) == pytest.approx((item.ci_low, item.ci_high))


def test_bootstrap_is_deterministic_under_the_seed():
    x = np.random.default_rng(5).normal(size=80)
    assert bootstrap_mean(x, seed=7) == bootstrap_mean(x, seed=7)
    assert bootstrap_mean(x, seed=7).ci_low != bootstrap_mean(x, seed=8).ci_low
    outcomes = (x > 0).astype(int)
    assert bootstrap_proportion(outcomes, seed=3) == bootstrap_proportion(outcomes, seed=3)


def test_a_proportion_is_the_share_of_ones_and_all_equal_outcomes_get_the_exact_interval():
    est = bootstrap_proportion([1, 0, 1, 1, True, False, 1, 1, 0, 1])
    assert est.value == pytest.approx(0.7) and 0 <= est.ci_low < 0.7 < est.ci_high <= 1
    perfect = bootstrap_proportion([1] * 30)
    exact = sps.binomtest(30, 30).proportion_ci(0.95, method="exact")
    assert perfect.value == 1.0 and perfect.ci_high == 1.0
    assert perfect.ci_low == pytest.approx(exact.low) and perfect.ci_low < 0.9  # 30/30 is not certainty
    assert "Clopper-Pearson" in perfect.method and perfect.note
    # on clusters the exact interval counts conversations, not prompts: wider
    on_clusters = bootstrap_proportion([0] * 30, clusters=[i // 5 for i in range(30)])
    assert on_clusters.ci_high == pytest.approx(sps.binomtest(0, 6).proportion_ci(0.95, method="exact").high)


def _macro_f1(gold: np.ndarray, predicted: np.ndarray) -> float:
    scores = []
    for label in np.unique(np.concatenate([gold, predicted])):
        tp = np.sum((gold == label) & (predicted == label))
        fp = np.sum((gold != label) & (predicted == label))
        fn = np.sum((gold == label) & (predicted != label))
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def test_a_statistic_of_the_sample_resamples_rows_together():
    rng = np.random.default_rng(6)
    gold = rng.choice(["sad", "angry", "calm"], 120)
    predicted = np.where(rng.random(120) < 0.7, gold, rng.choice(["sad", "angry", "calm"], 120))
    est = bootstrap_statistic(_macro_f1, gold, predicted, resamples=300)
    assert est.value == pytest.approx(_macro_f1(gold, predicted))
    assert est.ci_low < est.value < est.ci_high and est.ci_high - est.ci_low < 0.3
    mse = bootstrap_statistic(lambda y, p: float(np.mean((y - p) ** 2)), np.zeros(50), rng.normal(size=50))
    assert mse.ci_low > 0
    with pytest.raises(StatsError, match="one row per item"):
        bootstrap_statistic(_macro_f1, gold, predicted[:10])


@pytest.mark.parametrize("fn", [bootstrap_mean, bootstrap_proportion])
def test_degenerate_samples_give_a_clear_result_never_nan(fn):
    empty = fn([])
    assert empty.value is None and empty.ci_low is None and empty.n == 0 and empty.note == "no items"
    one = fn([1])
    assert one.value == 1.0 and one.ci_low is None and one.ci_high is None and "one item" in one.note
    one_cluster = fn([1, 0, 1], clusters=["c", "c", "c"])
    assert one_cluster.ci_low is None and "one cluster" in one_cluster.note
    for est in (empty, one, one_cluster, fn([1, 1, 1])):
        _json_clean(est)


def test_all_equal_scores_give_an_interval_equal_to_the_point():
    est = bootstrap_mean([4.0] * 25)
    assert (est.value, est.ci_low, est.ci_high) == (4.0, 4.0, 4.0) and "no spread" in est.note


def test_undefined_statistics_are_left_out_and_said():
    # undefined when the resample holds no positive item: left out of the interval, never NaN
    def share_of_positives_correct(gold, ok):
        return float(np.sum(ok[gold == 1]) / np.sum(gold == 1))

    gold, ok = np.array([1, 0, 0, 0, 0, 0]), np.array([1, 1, 0, 1, 0, 1])
    est = bootstrap_statistic(share_of_positives_correct, gold, ok, resamples=200)
    assert est.value == 1.0 and "left out" in est.note
    undefined = bootstrap_statistic(share_of_positives_correct, np.zeros(5), np.ones(5), resamples=200)
    assert undefined.value is None and "undefined" in undefined.note
    _json_clean(undefined)


def test_bad_input_and_options_raise_the_workbench_error():
    with pytest.raises(StatsError, match=r"positions 1 are not"):
        bootstrap_mean([1.0, float("nan"), 2.0])
    with pytest.raises(StatsError, match="0/1 outcomes"):
        bootstrap_proportion([0, 1, 2])
    with pytest.raises(StatsError, match="resamples must be"):
        bootstrap_mean([1.0, 2.0], resamples=10)
    with pytest.raises(StatsError, match="confidence"):
        bootstrap_mean([1.0, 2.0], confidence=95)
    with pytest.raises(StatsError, match="one label per item"):
        bootstrap_mean([1.0, 2.0], clusters=["a"])
    assert issubclass(StatsError, WorkbenchError) and issubclass(PairingError, StatsError)


# ---------------------------------------------------------------- paired tests against scipy and by hand


def _judge_scores(rng, n: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Integer judge scores on a 1-5 scale (many ties and zero differences, as real judges give)."""
    base = rng.integers(1, 6, n)
    tuned = np.clip(base + rng.choice([-1, 0, 0, 1, 1], n) + round(shift), 1, 5)
    return base.astype(float), tuned.astype(float)


def test_wilcoxon_and_paired_t_are_scipys_on_the_same_pairs():
    base, tuned = _judge_scores(np.random.default_rng(7), 40, 0)
    b, t = _paired(base, tuned)
    w = compare_scores("empathy_judge", b, t)
    expected = sps.wilcoxon(tuned, base)
    assert w.test == "wilcoxon signed-rank"
    assert w.p_value == pytest.approx(expected.pvalue) and w.statistic == pytest.approx(expected.statistic)
    assert w.details["n_zero_differences"] == int(np.sum(tuned == base))
    tt = compare_scores("empathy_judge", b, t, test="ttest")
    expected = sps.ttest_rel(tuned, base)
    assert tt.test == "paired t-test"
    assert tt.p_value == pytest.approx(expected.pvalue) and tt.statistic == pytest.approx(expected.statistic)
    assert tt.delta == pytest.approx(np.mean(tuned - base))
    assert tt.base.value == pytest.approx(base.mean()) and tt.tuned.value == pytest.approx(tuned.mean())


def test_mcnemar_is_the_exact_binomial_on_discordant_pairs_computed_by_hand():
    # 2 items only base got right, 9 only tuned got right, 19 both or neither
    base = [1] * 2 + [0] * 9 + [1] * 12 + [0] * 7
    tuned = [0] * 2 + [1] * 9 + [1] * 12 + [0] * 7
    b, t = _paired(base, tuned)
    c = compare_proportions("json_valid", b, t)
    # two-sided: 2 * P(X <= 2), X ~ Binomial(11, 1/2) = 2 * (1 + 11 + 55) / 2**11
    assert c.p_value == pytest.approx(134 / 2048, rel=1e-12)
    assert c.test == "exact McNemar" and c.statistic == 9
    assert c.details == {"base_only_correct": 2, "tuned_only_correct": 9}
    assert c.delta == pytest.approx(7 / 30) and c.base.value == pytest.approx(14 / 30)


def test_win_rate_excludes_ties_and_tests_wins_against_losses():
    outcomes = {f"p{i}": o for i, o in enumerate(["win"] * 14 + ["loss"] * 4 + ["tie"] * 2)}
    c = compare_win_rate("pairwise_judge", outcomes)
    assert c.tuned.value == pytest.approx(14 / 18) and c.delta == pytest.approx(14 / 18 - 0.5)
    assert c.details == {"wins": 14, "losses": 4, "ties": 2, "tie_rate": pytest.approx(0.1)}
    # two-sided: 2 * P(X >= 14), X ~ Binomial(18, 1/2)
    by_hand = 2 * sum(math.comb(18, j) for j in range(14, 19)) / 2**18
    assert c.p_value == pytest.approx(by_hand) == sps.binomtest(14, 18).pvalue
    assert c.base is None and c.verdict == IMPROVED
    numeric = compare_win_rate("pairwise_judge", {k: {"win": 1, "loss": -1, "tie": 0}[v] for k, v in outcomes.items()})
    assert numeric.p_value == c.p_value and numeric.delta_ci_low == c.delta_ci_low
    with pytest.raises(StatsError, match=r"items p3 are not"):
        compare_win_rate("pairwise_judge", {**outcomes, "p3": "draw"})


def test_a_statistic_comparison_uses_scipys_paired_permutation_test():
    rng = np.random.default_rng(8)
    base, tuned = (rng.random(40) < 0.55).astype(int), (rng.random(40) < 0.8).astype(int)
    b, t = _paired(base, tuned)
    c = compare_statistic("accuracy", b, t, np.mean, resamples=500, seed=3)
    direct = sps.permutation_test(
        (tuned, base), lambda x, y: np.mean(x) - np.mean(y), permutation_type="samples", n_resamples=500, rng=3
    )
    assert c.test == "paired permutation"
    assert c.p_value == pytest.approx(direct.pvalue) and c.delta == pytest.approx(direct.statistic)


def test_holm_matches_a_hand_computed_example():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> raised to 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1
    assert holm([0.02, None, 0.04]) == [pytest.approx(0.04), None, pytest.approx(0.04)]  # None is not in the family
    assert holm([]) == []
    with pytest.raises(StatsError):
        holm([1.5])


def test_adjust_family_applies_holm_across_the_report_and_revisits_verdicts():
    rng = np.random.default_rng(9)
    base = rng.normal(3, 0.5, 60)
    one = compare_scores("a", *_paired(base, base + 0.8 + rng.normal(0, 0.3, 60)))
    assert one.verdict == IMPROVED and one.family_size == 1 and one.p_adjusted == one.p_value
    borderline = replace(one, metric="b", p_value=0.02, p_adjusted=0.02)
    nothing = replace(one, metric="c", p_value=0.6, p_adjusted=0.6, delta_ci_low=-0.1)
    family = adjust_family([borderline, one, nothing])
    assert [c.metric for c in family] == ["b", "a", "c"] and all(c.family_size == 3 for c in family)
    assert family[0].p_adjusted == pytest.approx(0.04) and family[0].verdict == IMPROVED
    assert family[2].verdict == NO_CHANGE
    four = adjust_family([*family, replace(one, metric="d", p_value=0.03)])
    assert four[0].p_adjusted == pytest.approx(0.06) and four[0].verdict == NO_CHANGE  # 0.02 alone no longer suffices
    with pytest.raises(StatsError, match="more than once"):
        adjust_family([one, one])


# ---------------------------------------------------------------- verdicts, MDE and the must-pass cases


def test_mde_and_n_needed_follow_the_normal_approximation():
    assert minimum_detectable_effect(1.0, 100) == pytest.approx(Z_80 / 10)
    assert minimum_detectable_effect(1.0, 100, design_effect=4) == pytest.approx(2 * Z_80 / 10)
    assert sample_size_needed(0.25, 0.033) == math.ceil((Z_80 * 0.25 / 0.033) ** 2) == 451
    assert sample_size_needed(0.25, -0.033) == 451
    assert sample_size_needed(0.25, 0.0) is None and minimum_detectable_effect(0.0, 30) is None
    assert minimum_detectable_effect(1.0, 1) is None


@pytest.mark.parametrize("sd", [0.2, 0.3])
def test_seed_report_002_plus_0_033_on_30_prompts_is_no_detectable_change(sd):
    # judge scores on a 0-1 scale; paired differences with SD `sd` and mean exactly +0.033, as report 002 claimed
    rng = np.random.default_rng(2)
    base = np.clip(rng.normal(0.6, 0.15, 30), 0.05, 0.95)
    noise = rng.normal(size=30)
    diff = (noise - noise.mean()) / noise.std(ddof=1) * sd + 0.033
    b, t = _paired(base, base + diff)
    c = compare_scores("empathy_judge", b, t)
    assert c.delta == pytest.approx(0.033) and c.n == 30
    assert c.verdict == NO_CHANGE
    assert c.delta_ci_low < 0 < c.delta_ci_high and c.p_value > 0.05
    assert c.mde == pytest.approx(Z_80 * sd / math.sqrt(30)) and c.mde > 0.033
    assert c.n_needed == math.ceil((Z_80 * sd / 0.033) ** 2) and c.n_needed >= 250  # hundreds of prompts


def test_a_large_gain_is_improved_and_a_large_loss_is_worse():
    rng = np.random.default_rng(10)
    base = rng.normal(3.0, 0.6, 60)
    gain = compare_scores("empathy_judge", *_paired(base, base + 0.8 + rng.normal(0, 0.3, 60)))
    assert gain.verdict == IMPROVED and gain.delta_ci_low > 0.6 and gain.p_value < 1e-6
    assert gain.n_needed < 60 and gain.mde < 0.8
    loss = compare_scores("empathy_judge", *_paired(base, base - 0.8 + rng.normal(0, 0.3, 60)), test="ttest")
    assert loss.verdict == WORSE and loss.delta_ci_high < 0


def test_for_a_lower_is_better_metric_a_decrease_is_improved():
    rng = np.random.default_rng(11)
    truth = rng.normal(size=60)
    base_pred, tuned_pred = truth + rng.normal(0, 1.0, 60), truth + rng.normal(0, 0.3, 60)
    per_item = compare_scores(
        "mse", *_paired((base_pred - truth) ** 2, (tuned_pred - truth) ** 2), higher_is_better=False
    )
    assert per_item.delta < 0 and per_item.verdict == IMPROVED
    worse = compare_scores("mse", *_paired((tuned_pred - truth) ** 2, (base_pred - truth) ** 2), higher_is_better=False)
    assert worse.verdict == WORSE

    def mse(y, p):
        return float(np.mean((y - p) ** 2))

    ids = _ids(60)
    b = {i: (y, p) for i, y, p in zip(ids, truth, base_pred, strict=True)}
    t = {i: (y, p) for i, y, p in zip(ids, truth, tuned_pred, strict=True)}
    whole = compare_statistic("mse", b, t, mse, higher_is_better=False, resamples=300)
    assert whole.delta == pytest.approx(per_item.delta) and whole.verdict == IMPROVED


def test_macro_f1_comparison_detects_a_better_classifier():
    rng = np.random.default_rng(12)
    labels = ["sad", "angry", "calm", "anxious"]
    gold = rng.choice(labels, 150)
    base_pred = np.where(rng.random(150) < 0.5, gold, rng.choice(labels, 150))
    tuned_pred = np.where(rng.random(150) < 0.85, gold, rng.choice(labels, 150))
    ids = _ids(150)
    b = {i: (g, p) for i, g, p in zip(ids, gold, base_pred, strict=True)}
    t = {i: (g, p) for i, g, p in zip(ids, gold, tuned_pred, strict=True)}
    c = compare_statistic("emotion_macro_f1", b, t, _macro_f1, resamples=300)
    assert c.delta == pytest.approx(_macro_f1(gold, tuned_pred) - _macro_f1(gold, base_pred))
    assert c.verdict == IMPROVED and c.delta_ci_low > 0 and c.mde is not None and c.n_needed is not None
    assert c.base.value == pytest.approx(_macro_f1(gold, base_pred))
    same = compare_statistic("emotion_macro_f1", b, b, _macro_f1, resamples=300)
    assert same.p_value == 1.0 and same.delta == 0 and same.verdict == NO_CHANGE


# ---------------------------------------------------------------- clusters, pairing, degenerate comparisons


def test_clustered_comparisons_test_the_clusters_and_need_more_prompts():
    rng = np.random.default_rng(13)
    k, m = 20, 5
    base, cluster_of = _clustered_sample(rng, k, m)
    # the fine-tune's effect differs by conversation: differences are alike within a conversation
    tuned = base + 0.1 + np.repeat(rng.normal(0, 0.3, k), m) + rng.normal(0, 0.05, k * m)
    b, t = _paired(base, tuned)
    clusters = {i: f"conv-{c}" for i, c in zip(_ids(k * m), cluster_of, strict=True)}
    flat = compare_scores("empathy_judge", b, t)
    nested = compare_scores("empathy_judge", b, t, clusters=clusters)
    assert nested.test == "wilcoxon signed-rank on cluster means" and nested.n_clusters == k
    d = (tuned - base).reshape(k, m).mean(axis=1)
    assert nested.p_value == pytest.approx(sps.wilcoxon(d).pvalue)
    assert nested.delta == pytest.approx(flat.delta)
    assert nested.delta_ci_high - nested.delta_ci_low > 1.5 * (flat.delta_ci_high - flat.delta_ci_low)
    assert nested.mde > 1.5 * flat.mde and nested.n_needed > 2 * flat.n_needed
    # 0/1 outcomes on clusters: McNemar would treat a conversation's prompts as independent
    outcomes = {i: int(v > 0) for i, v in b.items()}
    better = {i: int(v > -0.3) for i, v in t.items()}
    p = compare_proportions("pass", outcomes, better, clusters=clusters, resamples=500)
    assert p.test == "sign-flip permutation on cluster sums" and p.statistic == sum(better.values()) - sum(
        outcomes.values()
    )
    sums = np.array([better[i] - outcomes[i] for i in _ids(k * m)]).reshape(k, m).sum(axis=1)
    direct = sps.permutation_test(
        (sums, np.zeros(k)),
        lambda x, y, axis: np.sum(x - y, axis=axis),
        permutation_type="samples",
        vectorized=True,
        n_resamples=500,
        rng=0,
    )
    assert p.p_value == pytest.approx(direct.pvalue)
    w = compare_win_rate("judge", {i: "win" if t[i] > b[i] else "loss" for i in b}, clusters=clusters, resamples=500)
    assert w.test == "sign-flip permutation on cluster sums" and 0 <= w.p_value <= 1
    with pytest.raises(StatsError, match=r"no cluster \(conversation\) for items prompt-000"):
        compare_scores("empathy_judge", b, t, clusters={k: v for k, v in clusters.items() if k != "prompt-000"})


def test_unpaired_ids_raise_naming_them_unless_restricted_to_the_common_ids():
    b = {"a": 1.0, "b": 2.0, "c": 3.0, "only-base": 4.0}
    t = {"a": 1.5, "b": 2.5, "c": 2.0, "only-tuned": 1.0}
    with pytest.raises(PairingError, match="1 only in base: only-base; 1 only in tuned: only-tuned") as err:
        compare_scores("empathy_judge", b, t)
    assert "empathy_judge" in str(err.value) and isinstance(err.value, WorkbenchError)
    c = compare_scores("empathy_judge", b, t, common_only=True)
    assert c.n == 3 and c.n_dropped == 2
    none_shared = compare_proportions("pass", {"x": 1}, {"y": 0}, common_only=True)
    assert none_shared.n == 0 and none_shared.n_dropped == 2 and none_shared.verdict == NO_CHANGE
    assert none_shared.delta is None and none_shared.notes == ("no paired items",)
    with pytest.raises(StatsError, match=r"tuned: expected 0/1 outcomes; items b are not"):
        compare_proportions("pass", {"a": 1, "b": 0}, {"a": 1, "b": 0.5})
    with pytest.raises(StatsError, match="test must be"):
        compare_scores("empathy_judge", b, b, test="sign")


def test_the_order_of_the_mappings_does_not_change_a_result():
    rng = np.random.default_rng(14)
    b, t = _paired(*_judge_scores(rng, 30, 1))
    forward = compare_scores("empathy_judge", b, t, seed=5)
    backward = compare_scores("empathy_judge", dict(reversed(b.items())), dict(reversed(t.items())), seed=5)
    assert forward == backward


def test_degenerate_comparisons_give_a_verdict_and_no_nan():
    identical = compare_scores("empathy_judge", {"a": 3.0, "b": 4.0}, {"a": 3.0, "b": 4.0}, test="ttest")
    assert identical.p_value == 1.0 and identical.delta == 0 and identical.verdict == NO_CHANGE
    assert identical.mde is None and identical.n_needed is None and identical.notes
    single = compare_scores("empathy_judge", {"a": 3.0}, {"a": 4.0}, test="ttest")
    assert single.p_value is None and single.delta_ci_low is None and single.verdict == NO_CHANGE
    agree = compare_proportions("pass", {"a": 1, "b": 0}, {"a": 1, "b": 0})
    assert agree.p_value == 1.0 and "no discordant pairs" in " ".join(agree.notes)
    ties = compare_win_rate("judge", {"a": "tie", "b": "tie"})
    assert ties.tuned.value is None and ties.p_value is None and ties.details["tie_rate"] == 1.0
    sweep = compare_win_rate("judge", {f"p{i}": "win" for i in range(12)})
    assert sweep.tuned.ci_low == pytest.approx(sps.binomtest(12, 12).proportion_ci(0.95, method="exact").low)
    assert sweep.verdict == IMPROVED
    empty = compare_win_rate("judge", {})
    for c in (identical, single, agree, ties, sweep, empty, compare_scores("x", {}, {})):
        _json_clean(c)
    assert adjust_family([identical, replace(single, metric="other")])[1].p_adjusted is None


def test_comparisons_serialise_to_json_and_to_the_report_format(tmp_path):
    rng = np.random.default_rng(15)
    b, t = _paired(*_judge_scores(rng, 30, 1))
    family = adjust_family(
        [
            compare_scores("empathy_judge", b, t),
            compare_win_rate("pairwise", {i: "win" if t[i] >= b[i] else "loss" for i in b}),
        ]
    )
    data = _json_clean(family[0])
    assert data["base"]["n"] == 30 and data["family_size"] == 2 and isinstance(data["notes"], list)
    rows = [row for c in family for row in c.report_rows()]
    assert [(r["metric"], r["model"]) for r in rows] == [
        ("empathy_judge", "base"),
        ("empathy_judge", "finetuned"),
        ("pairwise", "finetuned"),
    ]
    path = tmp_path / "eval.json"
    path.write_text(json.dumps({"models": {"base": "tiny", "finetuned": "runs/x"}, "metrics": rows}))
    table = {row["metric"]: row for row in load_report(path).table()}
    assert table["empathy_judge"]["finetuned - base"] == pytest.approx(family[0].delta)
    assert isinstance(family[0], Comparison)
