"""Curate on the local engine and on Ray Data: the same steps over the same snapshots, timed.

    python bench/curate_engines.py [--data ../shared/data] [--repeat 1]

Ingests the full DailyDialog and GoEmotions into a temporary store, then runs one
curate (``resplit`` of GoEmotions by text, then ``leak_free_splits``) on each
engine, checks that both give the same snapshot id, counters and rows, and prints
the times and the ratio Ray / local. The Ray time includes starting and stopping the
local Ray (2 CPUs), which is what a user of ``--engine ray`` pays; the start alone is
printed too. The machine is shared and noisy: read the ratio, not the absolute times.
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
    args = parser.parse_args()

    from curation.curate import build_steps, curate
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

        def run(engine: str):
            best, result = float("inf"), None
            for _ in range(args.repeat):
                if result is not None and result.snapshot_id:
                    shutil.rmtree(store.snapshot_path(result.snapshot_id))  # write it again, do not reuse
                t0 = time.perf_counter()
                result = curate(parents, store=store, steps=build_steps(SPECS), engine=engine)
                best = min(best, time.perf_counter() - t0)
            return best, result

        t_local, local = run("local")
        shutil.rmtree(store.snapshot_path(local.snapshot_id))
        t_ray, on_ray = run("ray")

        ray = import_ray()
        t0 = time.perf_counter()
        with local_ray(ray):
            t_start = time.perf_counter() - t0
        same = (on_ray.snapshot_id, on_ray.steps, on_ray.counts) == (local.snapshot_id, local.steps, local.counts)

    print(f"input: {rows:,} records (DailyDialog + GoEmotions, full); steps: {', '.join(s['name'] for s in SPECS)}")
    print(f"{'engine':<8}{'seconds':>10}{'records/s':>12}")
    print(f"{'local':<8}{t_local:>10.2f}{rows / t_local:>12,.0f}")
    print(f"{'ray':<8}{t_ray:>10.2f}{rows / t_ray:>12,.0f}   (of which starting Ray: ~{t_start:.1f} s)")
    print(f"ratio ray / local: {t_ray / t_local:.2f}x the time")
    print(f"same snapshot id, counters and counts: {same} ({local.snapshot_id})")
    for rep in local.steps:
        dropped = dict(rep.dropped) or "-"
        print(f"  {rep.name}: read {rep.read:,}, kept {rep.kept:,}, dropped {dropped}, counters {dict(rep.counters)}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
