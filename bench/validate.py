"""Validation speed on the full data: ingest all five sources, curate them together, validate.

Reports seconds for building the frames plus running the GX suites, and for the whole
``validate`` call (which also streams every record into the new validated snapshot)::

    python bench/validate.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("WORKBENCH_DATA") or str(ROOT.parent / "shared" / "data"))
    args = ap.parse_args()
    data = Path(args.data)
    if not data.is_dir():
        raise SystemExit(f"raw data not found at {data}: pass --data or set WORKBENCH_DATA")

    from curation.curate import curate, load_steps
    from curation.ingest import ingest
    from curation.store import SnapshotStore
    from curation.validate import SuiteConfig, build_frames, run_suites, validate

    inputs = {
        "dailydialog": [data / "dailydialog" / "ijcnlp_dailydialog"],
        "empatheticdialogues": [data / "empatheticdialogues" / "slices" / "train_head.csv"],
        "esconv": [data / "esconv" / "hf_thu-coai_esconv"],
        "goemotions": [data / "goemotions"],
        "openwebtext": [data / "openwebtext" / "hf_datasets_dummy" / "dummy_data"],
    }
    with tempfile.TemporaryDirectory(prefix="workbench-bench-validate-") as tmp:
        store = SnapshotStore(tmp)
        for source, paths in inputs.items():
            t = time.perf_counter()
            r = ingest(source, paths, store=store, tag=source, on_error="skip")
            print(f"ingest {source:<20} {r.kept:>8,} records  {time.perf_counter() - t:6.1f} s")
        t = time.perf_counter()
        c = curate(list(inputs), store=store, steps=load_steps(ROOT / "examples" / "curate.toml"), tag="clean")
        print(f"curate {'(five sources)':<20} {c.rows:>8,} records  {time.perf_counter() - t:6.1f} s")

        config = SuiteConfig()
        sid = store.resolve("clean")
        t = time.perf_counter()
        frames = build_frames(store, sid, config)
        t_frames = time.perf_counter() - t
        t = time.perf_counter()
        outcomes = run_suites(frames, config)
        t_suites = time.perf_counter() - t
        print(f"frames {len(frames.records):,} records, {len(frames.labels):,} labels: {t_frames:.2f} s")
        print(f"GX suites, {len(outcomes)} expectations: {t_suites:.2f} s")
        t = time.perf_counter()
        result = validate("clean", store=store, config=config)
        total = time.perf_counter() - t
        failed = ", ".join(f"{o.check} ({o.observed})" for o in result.failed) or "none"
        print(
            f"validate (incl. writing the validated snapshot): {total:.2f} s;"
            f" success={result.success}; failed: {failed}"
        )


if __name__ == "__main__":
    main()
