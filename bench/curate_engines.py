"""Curate on the local engine and on Ray Data: the same steps over the same snapshots, timed.

    python bench/curate_engines.py [--data ../shared/data] [--repeat 1] [--config examples/curate.toml]

Ingests the full DailyDialog and GoEmotions into a temporary store, then runs one
curate (by default ``resplit`` of GoEmotions by text, then ``leak_free_splits``;
``--config`` for any curate TOML) on the local engine with one process, with two
worker processes, and on Ray Data; checks that all give the same snapshot id,
counters and rows, and prints the times and the ratios to one local process.
The Ray time includes starting and stopping the local Ray (2 CPUs), which is what
a user of ``--engine ray`` pays; the start alone is printed too. The machine is
shared and noisy: read the ratio, not the absolute times.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SPECS = [
    {"name": "resplit", "sources": ["goemotions"], "key": "text"},
    {"name": "leak_free_splits"},
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--repeat", type=int, default=1, help="runs per engine; the best time counts")
    parser.add_argument("--config", type=Path, help="a curate TOML instead of the built-in two steps")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray engine")
    args = parser.parse_args()

    from curation.curate import build_steps, curate, load_steps
    from curation.engines.ray_engine import import_ray, local_ray
    from curation.ingest import ingest
    from curation.store import SnapshotStore

    with tempfile.TemporaryDirectory(prefix="bench-curate-") as tmp:
        store = SnapshotStore(tmp)
        dd_root = args.data / "dailydialog" / "ijcnlp_dailydialog"
        refs = [
            ingest("dailydialog", [str(dd_root / f"{s}.zip") for s in ("train", "validation", "test")], store=store),
            ingest(
                "goemotions",
                [str(args.data / "goemotions" / f) for f in ("train.tsv", "dev.tsv", "test.tsv")],
                store=store,
            ),
        ]
        parents = [r.snapshot_id for r in refs]
        rows = sum(store.manifest(p)["rows"] for p in parents)

        def steps():
            return load_steps(args.config) if args.config else build_steps(SPECS)

        def run(engine: str, workers: int = 1):
            best, result = float("inf"), None
            for _ in range(args.repeat):
                if result is not None and result.snapshot_id:
                    shutil.rmtree(store.snapshot_path(result.snapshot_id))  # write it again, do not reuse
                t0 = time.perf_counter()
                result = curate(parents, store=store, steps=steps(), engine=engine, workers=workers)
                best = min(best, time.perf_counter() - t0)
            shutil.rmtree(store.snapshot_path(result.snapshot_id))
            return best, result

        t_local, local = run("local")
        t_two, two = run("local", workers=2)
        runs = [("local, 1 process", t_local, local), ("local, 2 processes", t_two, two)]
        t_start = 0.0
        if not args.no_ray:
            t_ray, on_ray = run("ray")
            ray = import_ray()
            t0 = time.perf_counter()
            with local_ray(ray):
                t_start = time.perf_counter() - t0
            runs.append(("ray (2 CPUs)", t_ray, on_ray))
        same = all(
            (r.snapshot_id, r.steps, r.counts) == (local.snapshot_id, local.steps, local.counts) for *_, r in runs
        )

    names = ", ".join(s.name for s in steps())
    print(f"input: {rows:,} records (DailyDialog + GoEmotions, full); steps: {names}")
    print(f"| {'engine':<20}| {'seconds':>8} | {'records/s':>10} | {'time vs 1 process':>17} |")
    print(f"|{'-' * 21}|{'-' * 10}|{'-' * 12}|{'-' * 19}|")
    for label, t, _ in runs:
        print(f"| {label:<20}| {t:>8.2f} | {rows / t:>10,.0f} | {t / t_local:>16.2f}x |")
    if not args.no_ray:
        print(f"(the Ray time includes starting Ray: ~{t_start:.1f} s)")
    print(f"same snapshot id, counters and counts: {same} ({local.snapshot_id})")
    for rep in local.steps:
        dropped = dict(rep.dropped) or "-"
        print(f"  {rep.name}: read {rep.read:,}, kept {rep.kept:,}, dropped {dropped}, counters {dict(rep.counters)}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
