"""Krippendorff's alpha on the published worked examples, and agreement on real GoEmotions records."""

from __future__ import annotations

import copy
import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from curation.adapters import get_adapter
from curation.adapters.base import collect
from curation.errors import WorkbenchError
from curation.record import label, validate_record
from labeling.agreement import agreement, coincidence_matrix, krippendorff_alpha, unit_disagreement

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data" / "goemotions"

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", Annenberg School for Communication,
# https://repository.upenn.edu/asc_papers/43 -- section C: four observers, 12 units, values 1..5, missing data.
# Rows are observers A..D, columns units 1..12; None = the observer did not code the unit.
KRIPPENDORFF_C = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]


def _units(matrix):
    return list(zip(*matrix, strict=True))


def test_alpha_on_krippendorffs_worked_example_with_missing_data():
    units = _units(KRIPPENDORFF_C)
    o, values = coincidence_matrix(units)
    # The paper's coincidence matrix: margins n_c = 9, 13, 10, 5, 3 and n = 40 pairable values
    # (unit 12 has one value and drops out); e.g. o_11 = 7, o_12 = 4/3, o_55 = 3.
    assert values == [1, 2, 3, 4, 5]
    assert o.sum(axis=1).tolist() == pytest.approx([9, 13, 10, 5, 3])
    assert o[0, 0] == pytest.approx(7) and o[0, 1] == pytest.approx(4 / 3) and o[4, 4] == pytest.approx(3)
    assert np.allclose(o, o.T)
    assert krippendorff_alpha(units, level="nominal") == pytest.approx(0.743, abs=5e-4)  # paper: 0.743
    assert krippendorff_alpha(units, level="interval") == pytest.approx(0.849, abs=5e-4)  # paper: 0.849


def test_alpha_on_krippendorffs_two_observer_examples():
    # Section A: binary data, two observers, 10 units: alpha = 0.095.
    a = [0, 1, 0, 0, 0, 0, 0, 0, 1, 0]
    b = [1, 1, 1, 0, 0, 1, 0, 0, 0, 0]
    assert krippendorff_alpha(_units([a, b])) == pytest.approx(0.095, abs=5e-4)
    # Section B: nominal data, two observers, 12 units: alpha = 0.692.
    assert krippendorff_alpha(_units([list("aabbdcccedda"), list("babbbccceddd")])) == pytest.approx(0.692, abs=5e-4)


def test_alpha_edge_cases():
    assert math.isnan(krippendorff_alpha([[1], [2]]))  # nothing pairable
    assert math.isnan(krippendorff_alpha([["a", "a"], ["a", "a"]]))  # one value everywhere: undefined
    assert krippendorff_alpha([["a", "a"], ["b", "b"]]) == pytest.approx(1.0)
    assert krippendorff_alpha([[1.0, float("nan"), 1.0], [2.0, 2.0, None]], level="interval") == pytest.approx(1.0)
    with pytest.raises(WorkbenchError, match="level"):
        krippendorff_alpha([[1, 2]], level="ordinal")
    with pytest.raises(WorkbenchError, match="numbers"):
        krippendorff_alpha([["a", "b"], ["b", "b"]], level="interval")
    assert unit_disagreement(["a", "b", "b"], level="nominal") == pytest.approx(2 / 3)
    assert unit_disagreement([1.0, 3.0], level="interval") == pytest.approx(4.0)
    assert unit_disagreement([{"joy"}, {"joy", "anger"}], level="multi_label") == pytest.approx(1.0)


def _alpha_by_pairs(units, delta):
    """Alpha from its definition over pairs of values (no coincidence matrix): 1 - D_o / D_e."""
    pairable = [[v for v in u if v is not None] for u in units]
    pairable = [u for u in pairable if len(u) >= 2]
    n = sum(len(u) for u in pairable)
    d_o = sum(sum(delta(a, b) for a, b in itertools.permutations(u, 2)) / (len(u) - 1) for u in pairable) / n
    every = [v for u in pairable for v in u]
    d_e = sum(delta(a, b) for a, b in itertools.permutations(every, 2)) / (n * (n - 1))
    return 1 - d_o / d_e


def test_alpha_matches_the_pair_definition():
    units = _units(KRIPPENDORFF_C)
    assert krippendorff_alpha(units) == pytest.approx(_alpha_by_pairs(units, lambda a, b: float(a != b)))
    interval = _alpha_by_pairs(units, lambda a, b: float(a - b) ** 2)
    assert krippendorff_alpha(units, level="interval") == pytest.approx(interval)


# ------------------------------------------------------------------ records


@pytest.fixture(scope="module")
def goemotions():
    records, rejected = collect(get_adapter("goemotions"), [EXAMPLES / "test.tsv"])
    assert not rejected
    return records[:20]


def _gold(record) -> list[str]:
    return sorted(lab["value"] for lab in record["labels"] if lab["task"] == "emotion" and lab["source"] == "gold")


def _other(emotions: list[str]) -> list[str]:
    return ["anger"] if "neutral" in emotions else ["neutral"]


def _with_raters(records):
    """Three SIMULATED human raters (not real annotations) with controlled disagreement, plus one LLM.

    r1 copies gold; r2 copies gold except records 0-3 (it says "neutral", or "anger" where gold is neutral);
    r3 copies gold except records 0-1 (same substitute) and does not rate records 10-19 (missing data);
    the LLM copies gold except records 5-9. Empathy: r1 gives 1 + i % 5, r2 the same but one point lower
    on records 0-4, r3 the same as r1 on records 0-9 only.
    """
    out = []
    for i, rec in enumerate(copy.deepcopy(records)):
        gold = _gold(rec)
        raters = {"r1": gold, "r2": _other(gold) if i < 4 else gold}
        if i < 10:
            raters["r3"] = _other(gold) if i < 2 else gold
        for agent, emotions in raters.items():
            rec["labels"] += [label("emotion", e, source="human", agent=agent) for e in emotions]
        llm = _other(gold) if 5 <= i < 10 else gold
        rec["labels"] += [label("emotion", e, source="llm", agent="gpt@emotion-v1", score=0.9) for e in llm]
        empathy = 1 + i % 5
        rec["labels"].append(label("empathy", str(empathy), source="human", agent="r1"))
        rec["labels"].append(
            label("empathy", str(max(1, empathy - 1) if i < 5 else empathy), source="human", agent="r2")
        )
        if i < 10:
            rec["labels"].append(label("empathy", str(empathy), source="human", agent="r3"))
        validate_record(rec)
        out.append(rec)
    return out


def test_emotion_agreement_on_goemotions_records(goemotions):
    records = _with_raters(goemotions)
    report = agreement(records, task=["emotion", "empathy"], top=5)
    assert report["records"] == 20
    emo = report["tasks"]["emotion"]
    assert emo["kind"] == "multi_label" and emo["level"] == "nominal" and emo["units"] == 20
    assert emo["coders"] == {"human": ["human:r1", "human:r2", "human:r3"], "llm": ["llm:gpt@emotion-v1"],
                             "gold": ["gold:goemotions"]}  # fmt: skip

    hh = emo["human_human"]
    assert hh["units"] == 20  # r3's missing records are still rated by r1 and r2
    # independent check: (unit, label) binary units, alpha from the pair definition
    from curation import vocabularies

    labels = vocabularies.load("emotion").labels
    sets = {a: [] for a in ("r1", "r2", "r3")}
    for rec in records:
        for a in sets:
            given = {lab["value"] for lab in rec["labels"] if lab["source"] == "human" and lab["agent"] == a}
            sets[a].append(given or None)  # every rater who rated a record chose a label
    binary = [
        [None if sets[a][i] is None else int(lab in sets[a][i]) for a in sets] for i in range(20) for lab in labels
    ]
    assert hh["alpha"] == pytest.approx(_alpha_by_pairs(binary, lambda x, y: float(x != y)))
    assert hh["alpha"] == pytest.approx(0.8562, abs=1e-4)

    pairs = {(p["a"], p["b"]): p for p in hh["pairs"]}
    r1r2 = pairs[("human:r1", "human:r2")]
    assert r1r2["n"] == 20
    assert pairs[("human:r1", "human:r3")]["n"] == 10 and pairs[("human:r2", "human:r3")]["n"] == 10
    assert r1r2["kappa"] == pytest.approx(0.8259, abs=1e-4)
    assert r1r2["alpha"] == pytest.approx(0.8260, abs=1e-4)  # 2-coder alpha and kappa nearly agree on 560 units
    # records 0-1 disagree with r1 for both r2 and r3; records 2-3 only r2 does
    worst = hh["disagreements"]
    assert [w["record_id"] for w in worst[:2]] == sorted(r["id"] for r in records[:2])
    assert {w["record_id"] for w in worst} == {r["id"] for r in records[:4]}
    assert set(worst[0]["values"]) == {"human:r1", "human:r2", "human:r3"}
    assert worst[0]["turn"] is None

    hl = emo["human_llm"]
    assert [(p["a"], p["b"]) for p in hl["pairs"]] == [(f"human:r{i}", "llm:gpt@emotion-v1") for i in (1, 2, 3)]
    assert hl["alpha"] == pytest.approx(np.mean([p["alpha"] for p in hl["pairs"]]))
    # human-LLM ranks units by human-vs-LLM pairs only: records 5-9 (the LLM's errors) come first
    assert {w["record_id"] for w in hl["disagreements"][:5]} == {r["id"] for r in records[5:10]}

    lg = emo["llm_gold"]
    (pair,) = lg["pairs"]
    assert pair["n"] == 20 and pair["kappa"] == pytest.approx(0.7823, abs=1e-4)
    # r1 copies gold, so r1 against the LLM is the LLM against gold
    assert hl["pairs"][0]["kappa"] == pytest.approx(pair["kappa"]) and lg["alpha"] == pytest.approx(pair["alpha"])
    assert {w["record_id"] for w in lg["disagreements"]} == {r["id"] for r in records[5:10]}


def test_empathy_interval_agreement_on_goemotions_records(goemotions):
    report = agreement(_with_raters(goemotions), task="empathy")
    emp = report["tasks"]["empathy"]
    assert emp["kind"] == "score" and emp["level"] == "interval"
    assert emp["llm_gold"] is None and emp["human_llm"] is None  # no LLM or gold empathy on GoEmotions
    hh = emp["human_human"]
    units = [
        [1 + i % 5, (max(1, 1 + i % 5 - 1) if i < 5 else 1 + i % 5), (1 + i % 5) if i < 10 else None] for i in range(20)
    ]
    assert hh["alpha"] == pytest.approx(_alpha_by_pairs(units, lambda a, b: float(a - b) ** 2))
    assert hh["alpha"] == pytest.approx(0.9607, abs=1e-4)
    pairs = {(p["a"], p["b"]): p for p in hh["pairs"]}
    assert pairs[("human:r1", "human:r3")]["kappa"] == pytest.approx(1.0)
    assert pairs[("human:r1", "human:r2")]["kappa_quadratic"] < 1.0
    assert hh["disagreements"][0]["values"]["human:r1"] - hh["disagreements"][0]["values"]["human:r2"] == 1.0


def test_multi_label_kappa_and_alpha_by_hand(goemotions):
    a, b = copy.deepcopy(goemotions[:2])
    for rec in (a, b):
        rec["labels"] = []
    a["labels"] += [
        label("emotion", "joy", source="human", agent="x"),
        label("emotion", "anger", source="human", agent="y"),
    ]
    b["labels"] += [
        label("emotion", "joy", source="human", agent="x"),
        label("emotion", "joy", source="human", agent="y"),
    ]
    hh = agreement([a, b], task="emotion")["tasks"]["emotion"]["human_human"]
    # 2 units x 28 labels = 56 binary units; x and y differ on 2 of them (joy and anger of the first record).
    # kappa: p_o = 54/56, p_e = (2/56)^2 + (54/56)^2 -> 104/216; alpha: 1 - 111 * 4 / (2 * 4 * 108) = 420/864.
    assert hh["pairs"][0]["kappa"] == pytest.approx(104 / 216)
    assert hh["alpha"] == pytest.approx(420 / 864)
    assert hh["disagreements"][0]["values"] == {"human:x": ["joy"], "human:y": ["anger"]}


def test_each_pair_carries_its_confusion_matrix(goemotions):
    """Rows: coder a's values, columns: coder b's; single-label over the vocabulary, binary for label sets."""
    a, b, c = copy.deepcopy(goemotions[:3])
    for rec, (x, y) in zip((a, b, c), [("Question", "Question"), ("Question", "Others"), ("Others", "Others")],
                           strict=True):  # fmt: skip
        rec["labels"] = [
            label("strategy", x, source="human", agent="x"),
            label("strategy", y, source="human", agent="y"),
        ]
    (pair,) = agreement([a, b, c], task="strategy")["tasks"]["strategy"]["human_human"]["pairs"]
    conf = pair["confusion"]
    assert conf["labels"] == list(vocabularies_labels("strategy"))
    q, o = conf["labels"].index("Question"), conf["labels"].index("Others")
    assert conf["matrix"][q][q] == 1 and conf["matrix"][q][o] == 1 and conf["matrix"][o][o] == 1
    assert sum(map(sum, conf["matrix"])) == 3

    for rec in (a, b):
        rec["labels"] = []
    a["labels"] += [label("emotion", "joy", source="human", agent="x"), label("emotion", "anger", source="human",
                                                                                agent="y")]  # fmt: skip
    b["labels"] += [label("emotion", "joy", source="human", agent="x"), label("emotion", "joy", source="human",
                                                                                agent="y")]  # fmt: skip
    (pair,) = agreement([a, b], task="emotion")["tasks"]["emotion"]["human_human"]["pairs"]
    # 56 binary units: both chose joy once; x alone chose joy once, y alone anger once; 53 chosen by neither
    assert pair["confusion"] == {"labels": ["not chosen", "chosen"], "matrix": [[53, 1], [1, 1]]}


def vocabularies_labels(task: str) -> tuple[str, ...]:
    from curation import vocabularies

    return vocabularies.load(task).labels


def test_only_submitted_human_answers_count(goemotions):
    """Drafts and discarded records pulled from Argilla carry attrs status; they are not answers."""
    a, b = copy.deepcopy(goemotions[:2])
    for rec in (a, b):
        rec["labels"] = [
            label("strategy", "Question", source="human", agent="x", attrs={"status": "submitted"}),
            label("strategy", "Question", source="human", agent="y"),  # no status: a submitted answer
        ]
    b["labels"][1] = label("strategy", "Others", source="human", agent="y")
    counted = agreement([a, b], task="strategy")["tasks"]["strategy"]["human_human"]
    # 2 units, x: Q Q, y: Q O -> n = 4 values (Q 3, O 1); alpha = 1 - 3 * 2 / (16 - 10) = 0.
    assert counted["alpha"] == pytest.approx(0.0) and counted["coders"] == ["human:x", "human:y"]
    for rec in (a, b):
        rec["labels"] += [
            label("strategy", "Others", source="human", agent="x", attrs={"status": "draft"}),
            label("strategy", "Information", source="human", agent="z", attrs={"status": "discarded"}),
            label("strategy", "Information", source="human", agent="w", attrs={"status": "draft"}),
        ]
    report = agreement([a, b], task="strategy")["tasks"]["strategy"]
    assert report["coders"]["human"] == ["human:x", "human:y"] and report["conflicts"] == 0
    assert report["human_human"]["alpha"] == pytest.approx(counted["alpha"])
    assert report["human_human"]["pairs"] == counted["pairs"]


def test_unknown_task_and_empty_input():
    with pytest.raises(WorkbenchError, match="unknown task"):
        agreement([], task="nope")
    assert agreement([], task="emotion")["tasks"]["emotion"]["human_human"] is None


def test_worst_units_rank_a_confident_contradicted_machine_label_first():
    """Every single-label disagreement between two coders scores 1: the tie is broken by the machine's confidence."""

    def record(n: int, machine: str, score: float, gold: str) -> dict:
        return {
            "id": f"esconv:test:{n}",
            "labels": [
                label("strategy", gold, source="gold", agent="esconv", turn=1),
                label("strategy", machine, source="model", agent="local", score=score, turn=1),
            ],
        }

    records = [
        record(1, "Question", 0.31, "Others"),
        record(2, "Information", 0.93, "Question"),
        record(3, "Question", 0.62, "Question"),  # agrees: not listed
        record(4, "Others", 0.55, "Information"),
    ]
    worst = agreement(records, task="strategy")["tasks"]["strategy"]["llm_gold"]["disagreements"]
    assert [w["record_id"] for w in worst] == ["esconv:test:2", "esconv:test:4", "esconv:test:1"]
    assert [w["disagreement"] for w in worst] == [1.0, 1.0, 1.0]
    assert [w["machine_confidence"] for w in worst] == [0.93, 0.55, 0.31]


def test_every_alpha_carries_a_bootstrap_interval_from_the_same_units(goemotions):
    """The resampling weights of each unit reproduce the point alpha (weights 1), and the interval covers it."""
    from labeling.agreement import _confidences, _Context, _resolve

    records = _with_raters(goemotions)
    report = agreement(records, task=["emotion", "empathy"])
    for task in ("emotion", "empathy"):
        hh = report["tasks"][task]["human_human"]
        for comp in [hh, *hh["pairs"]]:
            ci = comp["alpha_ci"]
            assert ci["resamples"] == 1000 and ci["over"] == "records"
            assert ci["low"] <= comp["alpha"] <= ci["high"]
        assert hh["alpha_ci"]["low"] < hh["alpha"] < hh["alpha_ci"]["high"]  # 20 records: a wide interval
    hl = report["tasks"]["emotion"]["human_llm"]
    assert hl["alpha_ci"]["low"] <= hl["alpha"] <= hl["alpha_ci"]["high"]
    # the per-unit shares give exactly the alpha the coincidence matrix gives
    for task, kind in (("emotion", "multi_label"), ("empathy", "score")):
        raw: dict = {}
        for rec in records:
            for lab in rec["labels"]:
                if lab["task"] == task:
                    coder = f"{lab['source']}:{lab['agent']}"
                    raw.setdefault((rec["id"], lab.get("turn")), {}).setdefault(coder, []).append(
                        (lab["value"], lab.get("score"))
                    )
        ratings, _ = _resolve(raw, kind)
        ctx = _Context(task, kind, ratings, confidence=_confidences(raw))
        for coders in (["human:r1", "human:r2", "human:r3"], ["human:r1", "human:r2"]):
            d, m, delta, _ = ctx._alpha_parts(coders)
            n_c = m.sum(axis=0)
            alpha = 1 - (n_c.sum() - 1) * d.sum() / (n_c @ delta @ n_c)
            assert alpha == pytest.approx(ctx.alpha(coders), abs=1e-12)


def test_agreement_of_one_split(goemotions):
    records = _with_raters(goemotions)
    for i, rec in enumerate(records):
        rec["split"] = "test" if i < 10 else "train"
    report = agreement(records, task="emotion", split="test")
    assert report["records"] == 10 and report["split"] == "test"
    assert report["tasks"]["emotion"]["human_human"]["units"] == 10
