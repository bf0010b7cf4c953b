"""Audit metrics on hand-computed cases, and the pairing of labeler labels with gold."""

from __future__ import annotations

import math

import numpy as np
import pytest

from curation.errors import WorkbenchError
from curation.record import label, turn
from labeling.audit import (
    audit,
    cohen_kappa,
    confusion_matrix,
    multi_label_metrics,
    score_metrics,
    single_label_metrics,
    spearman,
)


def test_kappa_of_a_known_table():
    # The textbook example (Wikipedia, "Cohen's kappa"): 50 items, yes/no.
    # agreement p_o = (20 + 15) / 50 = 0.7; chance p_e = 0.5*0.6 + 0.5*0.4 = 0.5; kappa = 0.4
    assert cohen_kappa(np.array([[20, 5], [10, 15]])) == pytest.approx(0.4)
    assert cohen_kappa(np.array([[10, 0], [0, 10]])) == pytest.approx(1.0)
    assert math.isnan(cohen_kappa(np.array([[5, 0], [0, 0]])))  # one category only: undefined


def test_quadratic_kappa_by_hand():
    m = np.array([[1, 1, 0], [0, 1, 1], [0, 0, 2]])
    # weights (i-j)^2/4; observed sum w*m = (1*0.25 + 1*0.25)/... computed explicitly below
    w = np.array([[(i - j) ** 2 / 4 for j in range(3)] for i in range(3)])
    expected = np.outer(m.sum(1), m.sum(0)) / m.sum()
    assert cohen_kappa(m, weights="quadratic") == pytest.approx(1 - (w * m).sum() / (w * expected).sum())


def test_single_label_metrics_by_hand():
    gold = ["a", "a", "b", "b", "c"]
    pred = ["a", "b", "b", "b", "a"]
    m = single_label_metrics(gold, pred, ["a", "b", "c"])
    assert m["confusion"]["matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert m["accuracy"] == pytest.approx(3 / 5)
    # F1: a: P 1/2 R 1/2 -> 0.5; b: P 2/3 R 1 -> 0.8; c: 0 -> macro 1.3/3
    assert m["per_label"]["a"]["f1"] == pytest.approx(0.5)
    assert m["per_label"]["b"]["f1"] == pytest.approx(0.8)
    assert m["macro_f1"] == pytest.approx(1.3 / 3)
    # p_o = 0.6, p_e = (2*2 + 2*3 + 1*0)/25 = 0.4 -> kappa = 0.2/0.6
    assert m["kappa"] == pytest.approx(1 / 3)


def test_confusion_rejects_unknown_values():
    with pytest.raises(WorkbenchError, match="'z' is not one of the labels"):
        confusion_matrix(["a"], ["z"], ["a", "b"])


def test_multi_label_metrics_by_hand():
    gold = [{"joy"}, {"anger", "annoyance"}, {"neutral"}]
    pred = [{"joy", "love"}, {"anger"}, {"joy"}]
    m = multi_label_metrics(gold, pred, ["joy", "love", "anger", "annoyance", "neutral"], top1=["joy", "anger", "joy"])
    # tp = 2 (joy, anger), fp = 2 (love, joy on row 3), fn = 2 (annoyance, neutral) -> micro P = R = F1 = 0.5
    assert m["micro_f1"] == pytest.approx(0.5)
    assert m["exact_match"] == pytest.approx(0.0)
    assert m["top1_in_gold"] == pytest.approx(2 / 3)
    # per label: joy P 1/2 R 1 -> 2/3; anger 1; love, annoyance, neutral 0
    assert m["per_label"]["joy"]["f1"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1) / 5)


def test_score_metrics_by_hand():
    m = score_metrics([1, 2, 3, 4, 5], [2, 2, 3, 5, 5], scale=(1, 5))
    assert m["mae"] == pytest.approx(2 / 5)
    assert m["rmse"] == pytest.approx(math.sqrt(2 / 5))
    assert m["pearson"] == pytest.approx(np.corrcoef([1, 2, 3, 4, 5], [2, 2, 3, 5, 5])[0, 1])
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [1, 1, 2, 2]) == pytest.approx(np.corrcoef([1, 2, 3, 4], [1.5, 1.5, 3.5, 3.5])[0, 1])
    assert m["confusion"]["labels"] == ["1", "2", "3", "4", "5"]


def _rec(rid, turns, labels):
    return {
        "id": rid,
        "source": rid.split(":")[0],
        "split": "test",
        "context": {},
        "turns": [turn(s, t) for s, t in turns],
        "labels": labels,
        "provenance": {},
    }


def _strategy_records():
    turns = [("seeker", "hi"), ("supporter", "how are you?"), ("seeker", "sad"), ("supporter", "sorry")]
    recs = []
    for i, (g1, p1, g3, p3) in enumerate(
        [("Question", "Question", "Others", "Others"), ("Question", "Others", "Information", "Information")]
    ):
        recs.append(
            _rec(
                f"esconv:test:{i}",
                turns,
                [
                    label("strategy", g1, source="gold", agent="esconv", turn=1),
                    label("strategy", g3, source="gold", agent="esconv", turn=3),
                    label("strategy", p1, source="model", agent="m", turn=1),
                    label("strategy", p3, source="model", agent="m", turn=3),
                    label("strategy", "Question", source="llm", agent="gpt@strategy-v1", turn=3),
                ],
            )
        )
    return recs


def test_audit_pairs_by_record_and_turn_and_filters_the_labeler():
    report = audit(_strategy_records(), "strategy", source="model")
    assert report["n"] == 4 and report["agents"] == ["m"]
    assert report["metrics"]["accuracy"] == pytest.approx(3 / 4)
    llm = audit(_strategy_records(), "strategy", agent="gpt@strategy-v1")
    assert llm["n"] == 2 and llm["metrics"]["accuracy"] == pytest.approx(0.0)
    both = audit(_strategy_records(), "strategy")
    assert "warning" in both


def test_audit_sample_is_seeded():
    recs = _strategy_records()
    a = audit(recs, "strategy", source="model", sample=2, seed=1)
    b = audit(recs, "strategy", source="model", sample=2, seed=1)
    assert a["n"] == 2 and a["metrics"] == b["metrics"]
    with pytest.raises(WorkbenchError, match="sample"):
        audit(recs, "strategy", sample=0)


def test_audit_emotion_multi_label_and_empathy_aggregation():
    ge = _rec(
        "goemotions:test:a",
        [("author", "yay")],
        [
            label("emotion", "joy", source="gold", agent="goemotions"),
            label("emotion", "excitement", source="gold", agent="goemotions"),
            label("emotion", "excitement", source="model", agent="m", score=0.9),
            label("emotion", "joy", source="model", agent="m", score=0.5),
        ],
    )
    report = audit([ge], "emotion", source="model")
    assert report["kind"] == "multi_label"
    assert report["metrics"]["exact_match"] == 1.0 and report["metrics"]["top1_in_gold"] == 1.0
    es = _rec(
        "esconv:test:1",
        [("seeker", "hi"), ("supporter", "sorry"), ("seeker", "ok"), ("supporter", "great")],
        [
            label("empathy", "5", score=5.0, source="gold", agent="esconv:seeker_survey"),
            label("empathy", "4", score=4.0, source="model", agent="m", turn=1),
            label("empathy", "2", score=2.0, source="model", agent="m", turn=3),
        ],
    )
    report = audit([es], "empathy", source="model")
    assert report["aggregated"] == 1 and report["metrics"]["mae"] == pytest.approx(2.0)  # |5 - mean(4, 2)|


def test_audit_rejects_unknown_task_and_source():
    with pytest.raises(WorkbenchError, match="unknown task"):
        audit([], "vibes")
    with pytest.raises(WorkbenchError, match="source"):
        audit([], "strategy", source="gold")
    assert audit([], "strategy")["metrics"] is None
