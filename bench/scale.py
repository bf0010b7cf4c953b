"""How the data steps grow with the data: time, peak memory and bytes written at 1x, 2x, 4x (8x) GoEmotions.

GoEmotions (all 54,263 comments, ``$WORKBENCH_DATA/goemotions``) is replicated k times: copy c > 0 of
a comment gets the id ``<id>c<c>`` and `` (<c>)`` appended to its text, so nothing is an exact
duplicate (near duplicates are, and near_dedup drops them: that is work the curate step does).
For each scale, in a fresh store, each stage runs as the user runs it, in its own process, timed
with its peak RSS (``resource.getrusage`` of the child) and the bytes it added to the store:

* ``ingest``: ``workbench ingest goemotions``;
* ``curate``: ``workbench curate --config examples/curate.toml``;
* ``label``: ``workbench label --labeler local --task emotion``;
* ``review save (2)``: two answers saved as the dashboard's Review page saves them
  (:func:`labeling.corrections.apply_reviews`), timed inside a process that has loaded what the
  dashboard's has (pandas: pyarrow imports it on a first ``from_pylist``, ~0.4 s once per process);
* ``run (first)`` / ``run (repeat)``: ``workbench run`` of a pipeline of the same three stages, in a
  new store, then again unchanged (the stage cache answers the repeat).

The table prints each figure and its growth against 1x; the targets of issue 15 are a 2-label save
under 0.5 s and 1 MB at 4x, a repeat run >= 10x faster than the first, and curate's and label's
peak RSS at 4x within 1.3x of 1x. Usage::

    python bench/scale.py [--scales 1,2,4] [--run-scales 1] [--stages curate,label,review,run] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHILD_RSS = """
import resource, runpy, sys
sys.argv = sys.argv[1:]
try:
    if sys.argv[0].endswith(".py"):
        runpy.run_path(sys.argv[0], run_name="__main__")
    else:
        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
finally:
    print("BENCH_RSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def replicate(src: Path, out: Path, k: int) -> int:
    """GoEmotions' three TSVs (and its label files) with every comment k times; returns the comment count."""
    out.mkdir(parents=True)
    for extra in ("emotions.txt", "ekman_mapping.json", "sentiment_dict.json"):
        if (src / extra).exists():
            shutil.copy(src / extra, out / extra)
    n = 0
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        lines = (src / name).read_text(encoding="utf-8").splitlines()
        rows = []
        for c in range(k):
            for line in lines:
                text, labels, cid = line.split("\t")
                rows.append(f"{text} ({c})\t{labels}\t{cid}c{c}" if c else line)
        (out / name).write_text("\n".join(rows) + "\n", encoding="utf-8")
        n += len(rows)
    return n


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def timed(cmd: list[str], *, store: Path, cwd: Path) -> dict[str, float]:
    """Run a python module (``-m``) or script in a child; wall time, its peak RSS, bytes added to the store."""
    env = {**os.environ, "WORKBENCH_STORE": str(store), "COLUMNS": "200", "NO_COLOR": "1"}
    before = tree_bytes(store)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD_RSS, *cmd], capture_output=True, text=True, env=env, cwd=cwd, check=False
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    rss = max((int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("BENCH_RSS_KB")), default=0)
    return {"s": wall, "rss_mb": rss / 1024, "written_mb": (tree_bytes(store) - before) / 1e6, "out": proc.stdout}


REVIEW_SAVE = """
import json, sys, time
import pandas  # loaded in the dashboard's process already (pyarrow's from_pylist imports it on first use)
from curation.store import SnapshotStore
from labeling.corrections import Review, apply_reviews
store = SnapshotStore()
ids = []
for batch in store.iter_batches("labeled", columns=["id"], batch_size=4096):
    ids = batch.column(0).to_pylist()[:2]
    break
reviews = [Review.of(ids[0], "emotion", "joy"), Review.of(ids[1], "emotion", ["sadness", "grief"])]
start = time.perf_counter()
sid = apply_reviews(store, "labeled", reviews, reviewer="bench")
print(json.dumps({"save_s": time.perf_counter() - start, "snapshot": sid}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", default="1,2,4")
    ap.add_argument("--run-scales", default="1", help="scales at which to time a first and a repeated workbench run")
    ap.add_argument(
        "--stages", default="curate,label,review,run", help="which stages after ingest to measure (ingest always runs)"
    )
    ap.add_argument("--data", default=os.environ.get("WORKBENCH_DATA", str(ROOT.parent / "shared" / "data")))
    args = ap.parse_args()
    src = Path(args.data) / "goemotions"
    scales = [int(s) for s in args.scales.split(",")]
    wanted = set(args.stages.split(","))
    run_scales = {int(s) for s in args.run_scales.split(",") if s} if "run" in wanted else set()
    rows: dict[int, dict[str, dict[str, float]]] = {}
    comments: dict[int, int] = {}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        tmp_path = Path(tmp)
        for k in scales:
            data = tmp_path / f"ge{k}"
            n = comments[k] = replicate(src, data, k)
            store = tmp_path / f"store{k}"
            wb = ["ui.cli"]
            r: dict[str, dict[str, float]] = {}
            r["ingest"] = timed([*wb, "ingest", "goemotions", str(data), "--tag", "raw"], store=store, cwd=ROOT)
            if wanted & {"curate", "label", "review"}:
                r["curate"] = timed(
                    [*wb, "curate", "raw", "--config", str(ROOT / "examples" / "curate.toml"), "--tag", "clean"],
                    store=store,
                    cwd=ROOT,
                )
            if wanted & {"label", "review"}:
                r["label"] = timed(
                    [*wb, "label", "clean", "--task", "emotion", "--labeler", "local", "--tag", "labeled"],
                    store=store,
                    cwd=ROOT,
                )
            if "review" in wanted:
                script = tmp_path / "review_save.py"
                script.write_text(REVIEW_SAVE, encoding="utf-8")
                saved = timed([str(script)], store=store, cwd=ROOT)
                saved["s"] = json.loads(saved["out"].strip().splitlines()[-1])["save_s"]  # the save, not the imports
                r["review save (2)"] = saved
            if k in run_scales:
                cfg = tmp_path / f"pipeline{k}.toml"
                cfg.write_text(
                    f'[[ingest]]\nsource = "goemotions"\npaths = ["{data}"]\ntag = "raw"\n'
                    f'[curate]\ninputs = ["raw"]\nconfig = "{ROOT / "examples" / "curate.toml"}"\ntag = "clean"\n'
                    '[label]\ninput = "clean"\ntasks = ["emotion"]\ntag = "labeled"\n',
                    encoding="utf-8",
                )
                run_store = tmp_path / f"run-store{k}"
                r["run (first)"] = timed([*wb, "run", "--config", str(cfg)], store=run_store, cwd=ROOT)
                r["run (repeat)"] = timed([*wb, "run", "--config", str(cfg)], store=run_store, cwd=ROOT)
            rows[k] = r
            print(f"{k}x ({n:,} comments) done", file=sys.stderr, flush=True)
            shutil.rmtree(store, ignore_errors=True)
    base = scales[0]
    sizes = ", ".join(f"{k}x = {comments[k]:,}" for k in scales)
    print(f"\nGoEmotions comments replicated ({sizes}); one process per stage; peak = the child's max RSS\n")
    head = "| stage | " + " | ".join(f"{k}x s | {k}x peak MB | {k}x written MB" for k in scales) + " |"
    print(head)
    print("|" + "---|" * (1 + 3 * len(scales)))
    stages = [s for s in rows[base] if all(s in rows[k] for k in scales)]
    for st in stages:
        cells = []
        for k in scales:
            v = rows[k][st]
            cells += [f"{v['s']:.2f}", f"{v['rss_mb']:.0f}", f"{v['written_mb']:.2f}"]
        print(f"| {st} | " + " | ".join(cells) + " |")
    top = scales[-1]
    print(f"\ngrowth {base}x -> {top}x (data x{top // base}):")
    for st in stages:
        a, b = rows[base][st], rows[top][st]
        print(
            f"  {st:16s} time x{b['s'] / max(a['s'], 1e-9):.2f}  peak RSS x{b['rss_mb'] / max(a['rss_mb'], 1e-9):.2f}"
            f"  written x{b['written_mb'] / max(a['written_mb'], 1e-9):.2f}"
        )
    for k in sorted(run_scales & set(scales)):
        first, repeat = rows[k]["run (first)"]["s"], rows[k]["run (repeat)"]["s"]
        print(f"  {k}x workbench run: first {first:.1f} s, repeat {repeat:.2f} s -> {first / repeat:.1f}x faster")
    if "review save (2)" in rows[top]:
        save = rows[top]["review save (2)"]
        print(f"  review save of 2 labels at {top}x: {save['s']:.3f} s, {save['written_mb'] * 1e3:.0f} kB written")
    print(f"  (resource limits: {resource.getrlimit(resource.RLIMIT_AS)}; machine is shared, ratios hold better)")


if __name__ == "__main__":
    main()
