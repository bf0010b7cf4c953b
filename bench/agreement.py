"""Multi-label agreement: closed-form binary alpha against the generic coincidence matrix, side by side.

Emotion is multi-label (28 labels), so its alpha is over binary (unit, label) units. The
generic path builds one small list per (unit, label) and a coincidence matrix from them;
the closed form counts, per unit, how many coders chose each label (numpy) and sums the
2x2 coincidences directly. Both must give the same alpha; the table prints seconds and
the ratio, then the whole ``agreement()`` call as the dashboard and the CLI make it::

    python bench/agreement.py [--store /tmp/wbfull/store] [--ref labeled]

Without --store it builds a store from the example slices (labeled offline).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _example_store(tmp: str) -> tuple[object, str]:
    from curation.curate import build_steps, curate
    from curation.ingest import ingest
    from curation.store import SnapshotStore
    from labeling.runner import label_local
    from labeling.tasks.base import get_tasks

    ex = ROOT / "examples" / "data"
    store = SnapshotStore(str(Path(tmp) / "store"))
    ingest("goemotions", [ex / "goemotions"], store=store, tag="ge-raw")
    ingest("dailydialog", [ex / "dailydialog" / "ijcnlp_dailydialog"], store=store, tag="dd-raw")
    curate(["ge-raw", "dd-raw"], store=store, steps=build_steps([{"name": "normalize"}]), tag="clean")
    label_local("clean", store=store, tasks=get_tasks(["emotion"]), tag="labeled")
    return store, "labeled"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", help="A store with a labeled snapshot (e.g. the full data, see bench/dashboard.py).")
    ap.add_argument("--ref", default="labeled")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from curation.store import SnapshotStore
    from labeling.agreement import _Context, _resolve, agreement, krippendorff_alpha

    with tempfile.TemporaryDirectory() as tmp:
        if args.store:
            store, ref = SnapshotStore(args.store), args.ref
        else:
            store, ref = _example_store(tmp)
        records = list(store.iter_records(ref))
        raw: dict = {}
        for rec in records:
            for lab in rec["labels"]:
                if lab["task"] == "emotion":
                    unit = raw.setdefault((rec["id"], lab["turn"]), {})
                    unit.setdefault(f"{lab['source']}:{lab['agent']}", []).append((lab["value"], lab["score"]))
        ratings, _ = _resolve(raw, "multi_label")
        ctx = _Context("emotion", "multi_label", ratings)
        coders = sorted({c for by in ratings.values() for c in by})
        machine = [c for c in coders if c.startswith(("llm:", "model:"))]
        gold = [c for c in coders if c.startswith("gold:")]
        pairs = [(m, g) for m in machine for g in gold]

        def best(fn) -> tuple[float, list[float]]:
            times, out = [], []
            for _ in range(args.repeat):
                t = time.perf_counter()
                out = [fn(list(p)) for p in pairs]
                times.append(time.perf_counter() - t)
            return min(times), out

        t_generic, a_generic = best(lambda cs: krippendorff_alpha(ctx._alpha_units(cs), level="nominal"))
        t_closed, a_closed = best(ctx._binary_alpha)
        assert all(abs(x - y) < 1e-9 or (x != x and y != y) for x, y in zip(a_generic, a_closed, strict=True))
        t = time.perf_counter()
        agreement(records, task="emotion", top=20)
        t_all = time.perf_counter() - t

    print(f"snapshot {ref}: {len(records):,} records, {len(ratings):,} emotion units, {len(pairs)} machine-gold pairs")
    print(f"{'alpha over binary units':<34}{'seconds':>10}{'ratio':>8}")
    print(f"{'generic coincidence (baseline)':<34}{t_generic:>10.3f}{1.0:>8.2f}")
    print(f"{'closed form (numpy counts)':<34}{t_closed:>10.3f}{t_generic / t_closed:>8.1f}")
    print(f"agreement(task='emotion') end to end: {t_all:.2f} s; alphas identical: yes")


if __name__ == "__main__":
    main()
