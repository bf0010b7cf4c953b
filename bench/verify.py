"""What integrity costs on the full data: reading with and without checksums, and ``snapshots verify``.

Builds a store from the full raw data (all five sources ingested, curated together, labeled by the
local labeler), then times, side by side in one run (best of ``--repeat``, measures interleaved):

* reading every snapshot whole as Arrow batches, and as record dicts (what steps do), on a fresh
  store object with ``check_sums=False`` (the baseline: seal, row counts and sizes only) and with
  ``check_sums=True`` (the default: each file's sha256 once per store object);
* ``verify --quick`` (sizes, sums, footers) and ``verify`` (also recomputes every id from the data).

Ratios are against reading the same snapshots as Arrow batches without sums::

    python bench/verify.py [--data ../shared/data] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build(store, data: Path) -> None:
    from curation.curate import curate, load_steps
    from curation.ingest import ingest
    from labeling.runner import label_local
    from labeling.tasks.base import get_tasks

    inputs = {
        "dailydialog": [data / "dailydialog" / "ijcnlp_dailydialog"],
        "empatheticdialogues": [data / "empatheticdialogues" / "slices" / "train_head.csv"],
        "esconv": [data / "esconv" / "hf_thu-coai_esconv"],
        "goemotions": [data / "goemotions"],
        "openwebtext": [data / "openwebtext" / "hf_datasets_dummy" / "dummy_data"],
    }
    for source, paths in inputs.items():
        ingest(source, paths, store=store, tag=source, on_error="skip")
    curate(list(inputs), store=store, steps=load_steps(ROOT / "examples" / "curate.toml"), tag="clean")
    label_local("clean", store=store, tasks=get_tasks(["emotion", "strategy"]), tag="labeled")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("WORKBENCH_DATA") or str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    data = Path(args.data)
    if not data.is_dir():
        raise SystemExit(f"raw data not found at {data}: pass --data or set WORKBENCH_DATA")

    from curation.store import SnapshotStore

    with tempfile.TemporaryDirectory(prefix="workbench-bench-verify-") as tmp:
        t = time.perf_counter()
        build(SnapshotStore(tmp), data)
        print(f"built the full-data store in {time.perf_counter() - t:.1f} s")
        ids = SnapshotStore(tmp).snapshot_ids()
        rows = sum(SnapshotStore(tmp).manifest(s)["rows"] for s in ids)
        size = sum(p.stat().st_size for p in Path(tmp, "snapshots").rglob("*") if p.is_file())

        def read_batches(check_sums: bool) -> None:
            store = SnapshotStore(tmp, check_sums=check_sums)
            for sid in ids:
                for _ in store.iter_batches(sid, batch_size=8192):
                    pass

        def read_records(check_sums: bool) -> None:
            store = SnapshotStore(tmp, check_sums=check_sums)
            for sid in ids:
                for _ in store.iter_records(sid):
                    pass

        def verify(recompute_id: bool) -> None:
            reports = SnapshotStore(tmp).verify(recompute_id=recompute_id)
            assert all(r.ok for r in reports), [r.problems for r in reports if not r.ok]

        measures = {
            "read Arrow batches, no sums (baseline)": lambda: read_batches(False),
            "read Arrow batches, sums checked": lambda: read_batches(True),
            "read record dicts, no sums": lambda: read_records(False),
            "read record dicts, sums checked": lambda: read_records(True),
            "verify --quick (sizes, sums, footers)": lambda: verify(False),
            "verify (also recompute every id)": lambda: verify(True),
        }
        best = {name: float("inf") for name in measures}
        for _ in range(args.repeat):
            for name, fn in measures.items():
                t = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - t)

        base = best["read Arrow batches, no sums (baseline)"]
        print(f"\n{len(ids)} snapshots, {rows:,} rows, {size / 1e6:.1f} MB of files; best of {args.repeat}\n")
        print(f"| {'what':<40} | {'s':>7} | {'x baseline':>10} | {'MB/s':>7} |")
        print(f"|{'-' * 42}|{'-' * 9}|{'-' * 12}|{'-' * 9}|")
        for name, seconds in best.items():
            print(f"| {name:<40} | {seconds:7.2f} | {seconds / base:10.2f} | {size / 1e6 / seconds:7.1f} |")
        plain, summed = best["read record dicts, no sums"], best["read record dicts, sums checked"]
        print(f"\nchecksums on read cost {100 * (summed - plain) / plain:+.1f} % of reading the records as dicts")


if __name__ == "__main__":
    main()
