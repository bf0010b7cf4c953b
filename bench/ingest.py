"""Ingest throughput: our adapters beside a straightforward baseline doing the same parse.

    python bench/ingest.py [--data ../shared/data] [--owt-docs 100000] [--repeat 3] [--only SOURCE ...]

For each source the adapter and its baseline run side by side in one run, each
in a fresh subprocess (so peak RSS is its own), best of ``--repeat``; the table
gives records/s, MB/s of input and the ratio ours / baseline. Baselines are the
parse a notebook would write: pandas ``read_csv`` for the CSV/TSV sources,
``json.loads`` per line for ESConv, split-on-``__eou__`` for DailyDialog. They
build plain dicts and skip everything we add (validation of labels against
vocabularies, mapping, provenance, error location), so a ratio under 1 is the
price of those. For OpenWebText the bound is ``xz -dc`` on the same archive
(decompression alone), beside the standard library's ``tarfile`` stream mode.

The machine is shared and noisy: read the ratios, not the absolute times.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))


# ----------------------------------------------------------------- workers (run in a subprocess)


def _ours(source: str, paths: list[str]) -> int:
    from curation.adapters import Rejected, get_adapter

    n = 0
    for item in get_adapter(source).read([Path(p) for p in paths]):
        if isinstance(item, Rejected):
            raise SystemExit(f"unexpected rejection in benchmark input: {item.error()}")
        n += 1
    return n


def _ingest(source: str, paths: list[str]) -> int:
    """The whole ingest: adapter + schema validation + Parquet snapshot."""
    from curation.ingest import ingest
    from curation.store import SnapshotStore

    with tempfile.TemporaryDirectory() as d:
        return ingest(source, paths, store=SnapshotStore(d)).kept


def _baseline_dailydialog(paths: list[str]) -> int:
    root = Path(paths[0])
    n = 0
    for split in ("train", "validation", "test"):
        folder = root / split
        with (
            open(folder / f"dialogues_{split}.txt", encoding="utf-8") as t,
            open(folder / f"dialogues_act_{split}.txt", encoding="utf-8") as a,
            open(folder / f"dialogues_emotion_{split}.txt", encoding="utf-8") as e,
        ):
            for i, (tl, al, el) in enumerate(zip(t, a, e, strict=True)):
                utts = [u.strip() for u in tl.split("__eou__")][:-1]
                acts, emos = al.split(), el.split()
                _ = {
                    "id": f"{split}:{i}",
                    "turns": [{"text": u, "act": x, "emotion": y} for u, x, y in zip(utts, acts, emos, strict=False)],
                }
                n += 1
    return n


def _baseline_goemotions(paths: list[str]) -> int:
    import pandas as pd

    names = (Path(paths[0]) / "emotions.txt").read_text().split("\n")
    n = 0
    for split in ("train", "dev", "test"):
        df = pd.read_csv(Path(paths[0]) / f"{split}.tsv", sep="\t", header=None, names=["text", "labels", "id"])
        for text, labels, cid in zip(df["text"], df["labels"], df["id"], strict=True):
            _ = {"id": f"{split}:{cid}", "text": text, "labels": [names[int(x)] for x in str(labels).split(",")]}
            n += 1
    return n


def _baseline_esconv(paths: list[str]) -> int:
    n = 0
    for name in ("train.txt", "valid.txt", "test.txt"):
        with open(Path(paths[0]) / name, encoding="utf-8") as f:
            for line in f:
                d = json.loads(line)
                _ = {
                    "situation": d["situation"],
                    "problem_type": d["problem_type"],
                    "turns": [
                        {"speaker": t["speaker"], "text": t["text"], "strategy": t.get("strategy")} for t in d["dialog"]
                    ],
                }
                n += 1
    return n


def _baseline_empatheticdialogues(paths: list[str]) -> int:
    import pandas as pd

    df = pd.read_csv(paths[0], on_bad_lines="skip")
    df["utterance"] = df["utterance"].str.replace("_comma_", ",")
    n = 0
    for conv_id, g in df.groupby("conv_id", sort=False):
        g = g.sort_values("utterance_idx")
        _ = {"id": conv_id, "emotion": g["context"].iloc[0], "turns": g["utterance"].tolist()}
        n += 1
    return n


def _baseline_openwebtext_tarfile(paths: list[str]) -> int:
    import lzma
    import tarfile

    n = 0
    with lzma.open(paths[0]) as xz, tarfile.open(fileobj=xz, mode="r|") as tar:
        for member in tar:
            if member.isfile():
                f = tar.extractfile(member)
                assert f is not None
                f.read().decode("utf-8")
                n += 1
            tar.members = []  # without this tarfile keeps every member: memory grows with input
    return n


BASELINES = {
    "dailydialog": ("split on __eou__", _baseline_dailydialog),
    "goemotions": ("pandas read_csv", _baseline_goemotions),
    "esconv": ("json.loads per line", _baseline_esconv),
    "empatheticdialogues": ("pandas read_csv+groupby", _baseline_empatheticdialogues),
    "openwebtext": ("tarfile stream mode", _baseline_openwebtext_tarfile),
}


# ----------------------------------------------------------------- driver


def _run_with_rss(impl: str, source: str, paths: list[str]) -> dict:
    """Run a worker and read its own peak RSS (ru_maxrss of that child only)."""
    pid = os.fork()
    if pid == 0:  # child: become the worker
        os.execv(sys.executable, [sys.executable, __file__, "--worker", impl, source, *paths, "--out", _OUT])
    _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{impl} {source} failed")
    result = json.loads(Path(_OUT).read_text())
    result["rss_mb"] = usage.ru_maxrss / 1024
    return result


_OUT = os.path.join(tempfile.gettempdir(), f"wb-bench-{os.getpid()}.json")


def _xz_dc(archive: str) -> dict:
    start = time.perf_counter()
    with open(os.devnull, "wb") as null:
        subprocess.run(["xz", "-dc", archive], stdout=null, check=True)
    return {"records": None, "seconds": time.perf_counter() - start, "rss_mb": float("nan")}


def _input_bytes(paths: list[str]) -> int:
    total = 0
    for p in map(Path, paths):
        total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
    return total


def _prepare(data: Path, work: Path, owt_docs: int, ed_copies: int) -> dict[str, tuple[list[str], int]]:
    """Benchmark inputs: the full raw files, plus larger inputs built from the real slices."""
    inputs: dict[str, tuple[list[str], int]] = {}
    dd = data / "dailydialog" / "ijcnlp_dailydialog"
    # The split folders only, so ours and the baseline parse the same files.
    dd_split = work / "ijcnlp_dailydialog"
    for split in ("train", "validation", "test"):
        shutil.copytree(dd / split, dd_split / split)
    inputs["dailydialog"] = ([str(dd_split)], sum(f.stat().st_size for f in dd_split.rglob("dialogues_*.txt")))
    ge = data / "goemotions"
    inputs["goemotions"] = ([str(ge)], sum((ge / f).stat().st_size for f in ("train.tsv", "dev.tsv", "test.tsv")))
    es = data / "esconv" / "hf_thu-coai_esconv"
    inputs["esconv"] = ([str(es)], sum((es / f).stat().st_size for f in ("train.txt", "valid.txt", "test.txt")))

    # EmpatheticDialogues: only a 95 KB slice of train.csv is here; repeat its conversations
    # under fresh conv ids (hit:N_conv:M keeps its shape) to get a measurable input.
    head = (data / "empatheticdialogues" / "slices" / "train_head.csv").read_text(encoding="utf-8").split("\n")
    header, rows = head[0], [r for r in head[1:] if r]
    ed = work / "train.csv"
    with open(ed, "w", encoding="utf-8") as f:
        f.write(header + "\n")
        for c in range(ed_copies):
            for r in rows:
                conv, rest = r.split(",", 1)
                hit, num = conv.split("_conv:")
                f.write(f"{hit}{c:04d}_conv:{int(num) + 100_000 * (c + 1)},{rest}\n")
    inputs["empatheticdialogues"] = ([str(ed)], ed.stat().st_size)

    # OpenWebText: an urlsf-style chunk (xz tar) of N ~1.1 KB documents of words drawn from
    # the 4 real ones (bench/owt_tar_speed.py builds it; that script compares tar readers in depth).
    sys.path.insert(0, str(HERE))
    from owt_tar_speed import build_archive

    archive, text_bytes = build_archive(work, owt_docs, 1100)
    inputs["openwebtext"] = ([str(archive)], text_bytes)
    return inputs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("WORKBENCH_DATA") or str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--owt-docs", type=int, default=60_000, help="documents in the generated OpenWebText chunk")
    ap.add_argument("--ed-copies", type=int, default=60, help="copies of the ED slice (95 KB each)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per implementation; the best counts")
    ap.add_argument("--only", nargs="*", help="sources to run")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        impl, source, *paths = args.worker
        # Imports happen before the clock starts: we time the parse, not interpreter start-up.
        if impl in ("ours", "ingest"):
            import curation.ingest  # noqa: F401
            from curation.adapters import registry

            registry()
        else:
            import pandas  # noqa: F401
        start = time.perf_counter()
        if impl == "ours":
            n = _ours(source, paths)
        elif impl == "ingest":
            n = _ingest(source, paths)
        else:
            n = BASELINES[source][1](paths)
        Path(args.out).write_text(json.dumps({"records": n, "seconds": time.perf_counter() - start}))
        return

    data = Path(args.data)
    if not data.is_dir():
        raise SystemExit(f"raw data not found at {data}: pass --data or set WORKBENCH_DATA")
    with tempfile.TemporaryDirectory() as tmp:
        inputs = _prepare(data, Path(tmp), args.owt_docs, args.ed_copies)
        rows = []
        for source, (paths, nbytes) in inputs.items():
            if args.only and source not in args.only:
                continue
            impls = [
                ("ours (adapter)", "ours"),
                ("ours (ingest+parquet)", "ingest"),
                (BASELINES[source][0], "baseline"),
            ]
            results = {}
            for label, impl in impls:
                best = None
                for _ in range(args.repeat):
                    r = _run_with_rss(impl, source, paths)
                    best = r if best is None or r["seconds"] < best["seconds"] else best
                results[label] = best
            if source == "openwebtext":
                results["xz -dc (bound)"] = min(
                    (_xz_dc(paths[0]) for _ in range(args.repeat)), key=lambda r: r["seconds"]
                )
            base = results[BASELINES[source][0]] if source != "openwebtext" else results["xz -dc (bound)"]
            for label, r in results.items():
                rows.append(
                    {
                        "source": source,
                        "impl": label,
                        "records": r["records"],
                        "MB": nbytes / 1e6,
                        "seconds": r["seconds"],
                        "rec_s": (r["records"] or 0) / r["seconds"],
                        "MB_s": nbytes / 1e6 / r["seconds"],
                        "ratio": base["seconds"] / r["seconds"],
                        "rss_mb": r["rss_mb"],
                    }
                )
    _print(rows)
    Path(_OUT).unlink(missing_ok=True)


def _print(rows: list[dict]) -> None:
    head = (
        f"| {'source':<20}| {'implementation':<24}| {'records':>9} | {'MB':>7} | {'s':>7} | {'records/s':>10} |"
        f" {'MB/s':>7} | {'speed vs baseline':>17} | {'peak RSS MB':>11} |"
    )
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for r in rows:
        rec = f"{r['records']:,}" if r["records"] is not None else "-"
        recs = f"{r['rec_s']:,.0f}" if r["records"] is not None else "-"
        rss = f"{r['rss_mb']:.0f}" if r["rss_mb"] == r["rss_mb"] else "-"
        print(
            f"| {r['source']:<20}| {r['impl']:<24}| {rec:>9} | {r['MB']:>7.1f} | {r['seconds']:>7.2f} | {recs:>10} |"
            f" {r['MB_s']:>7.1f} | {r['ratio']:>16.2f}x | {rss:>11} |"
        )
    print(
        "\nMB = input text (for OpenWebText: document text inside the archive). speed vs baseline = baseline time /"
        " this time (OpenWebText: against `xz -dc`, the decompression bound). Best of --repeat runs."
    )


if __name__ == "__main__":
    main()
