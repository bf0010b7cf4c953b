"""Near-duplicate detection benchmark: our numpy MinHash beside datasketch and datatrove.

Corpus: all full text of the raw data (DailyDialog dialogues, GoEmotions comments, ESConv dialogues,
the EmpatheticDialogues slice) plus a planted set with known ground truth: ``--planted`` copies of
random corpus texts, each word replaced with probability ``--replace`` (default 2 %). Every
implementation uses word 5-grams, 128 permutations, 16 bands x 8 rows, and runs in its own
subprocess (so peak RSS is its own), from texts in memory to duplicate clusters:

* ``ours``        :func:`curation.steps.dedup.minhash_signatures` + :func:`lsh_clusters`
* ``ours-step``   the ``near_dedup`` step as the curate runner drives it (signature batches of
                  1,000 records into an Arrow table, then ``decide``)
* ``datasketch``  ``MinHash.update_batch`` + ``MinHashLSH``, candidates verified at the same threshold
* ``datatrove``   ``MinhashDedupSignature`` (``str.split`` word tokenizer) + ``MinhashDedupBuckets`` +
                  ``MinhashDedupCluster``, single worker, on a local JSONL folder (no verification
                  step: datatrove treats every bucket collision as a duplicate)

Reported: docs/s, peak RSS, recall of the planted pairs (overall and per true-Jaccard bucket),
precision (share of reported duplicate pairs, member vs its cluster's first member, whose true
5-gram Jaccard reaches the threshold), and how many of DailyDialog's exact duplicate copies were
found. datasketch and datatrove are NOT project dependencies; install them for the bench only::

    pip install datasketch datatrove xxhash regex tokenizers orjson

A missing one is skipped with a note. Usage::

    python bench/dedup.py [--data ../shared/data] [--planted 2000] [--only ours,datasketch]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
NGRAM, NUM_PERM, BANDS, ROWS, THRESHOLD, SEED = 5, 128, 16, 8, 0.7, 1
IMPLEMENTATIONS = ("ours", "ours-step", "datasketch", "datatrove")
INSTALL = {
    "datasketch": "pip install datasketch",
    "datatrove": "pip install datatrove 'xxhash<4' regex tokenizers orjson",
}
BUCKETS = ((0.0, 0.5), (0.5, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.0), (1.0, 1.01))


# ------------------------------------------------------------------ corpus


def build_corpus(
    data: Path, planted: int, replace: float, seed: int
) -> tuple[list[str], list[str], list[tuple[int, int]]]:
    """Texts, their sources, and the planted (original, copy) index pairs."""
    from curation.adapters import get_adapter
    from curation.adapters.base import collect
    from curation.record import text_of
    from curation.steps.dedup import normalize_text

    inputs = {
        "dailydialog": [data / "dailydialog" / "ijcnlp_dailydialog" / s for s in ("train", "validation", "test")],
        "goemotions": [data / "goemotions"],
        "esconv": [data / "esconv" / "hf_thu-coai_esconv"],
        "empatheticdialogues": [data / "empatheticdialogues" / "slices" / "train_head.csv"],
    }
    texts, sources = [], []
    for source, paths in inputs.items():
        records, _ = collect(get_adapter(source), paths)
        for r in records:
            t = text_of(r)
            if normalize_text(t, strip_punctuation=True):  # every implementation gets the same non-empty texts
                texts.append(t)
                sources.append(source)
    rng = random.Random(seed)
    vocab = sorted({w for t in rng.sample(texts, 5000) for w in t.split()})
    pairs = []
    for i in rng.sample(range(len(texts)), planted):
        words = texts[i].split()
        edited = [rng.choice(vocab) if rng.random() < replace else w for w in words]
        pairs.append((i, len(texts)))
        texts.append(" ".join(edited))
        sources.append("planted")
    return texts, sources, pairs


def shingle_set(text: str) -> set[str]:
    from curation.steps.dedup import normalize_text

    w = normalize_text(text, strip_punctuation=True).split()
    return {" ".join(w[i : i + NGRAM]) for i in range(max(len(w) - NGRAM + 1, 1))}


def true_jaccard(a: str, b: str) -> float:
    x, y = shingle_set(a), shingle_set(b)
    return len(x & y) / len(x | y) if x | y else 1.0


# ------------------------------------------------------------------ implementations (run in a child)


def run_ours(texts: list[str], work: Path) -> np.ndarray:
    from curation.steps.dedup import lsh_clusters, minhash_signatures

    sig = np.concatenate(
        [
            minhash_signatures(texts[i : i + 1000], num_perm=NUM_PERM, ngram=NGRAM, seed=SEED)
            for i in range(0, len(texts), 1000)
        ]
    )
    return lsh_clusters(sig, bands=BANDS, rows=ROWS, threshold=THRESHOLD).labels


def run_ours_step(texts: list[str], work: Path) -> np.ndarray:
    import pyarrow as pa

    from curation.steps.dedup import NearDedup

    step = NearDedup(
        NearDedup.Config(ngram=NGRAM, num_perm=NUM_PERM, bands=BANDS, rows=ROWS, threshold=THRESHOLD, seed=SEED)
    )
    records = [
        {"id": f"bench:train:{i}", "source": "bench", "split": "train", "turns": [{"text": t}]}
        for i, t in enumerate(texts)
    ]
    tables = [step.signatures_batch(records[i : i + 1000]) for i in range(0, len(records), 1000)]
    decisions = step.decide(pa.concat_tables(tables))
    labels = np.arange(len(texts))
    for row in decisions.artifacts["clusters"].to_pylist():
        labels[int(row["id"].rsplit(":", 1)[1])] = int(row["kept_id"].rsplit(":", 1)[1])
    return labels


def _union_find_labels(n: int, pairs) -> np.ndarray:
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(i) for i in range(n)])


def run_datasketch(texts: list[str], work: Path) -> np.ndarray:
    from datasketch import MinHash, MinHashLSH

    from curation.steps.dedup import normalize_text

    lsh = MinHashLSH(num_perm=NUM_PERM, params=(BANDS, ROWS))
    sigs = []
    for i, t in enumerate(texts):
        w = normalize_text(t, strip_punctuation=True).split()
        m = MinHash(num_perm=NUM_PERM, seed=SEED)
        m.update_batch([" ".join(w[j : j + NGRAM]).encode() for j in range(max(len(w) - NGRAM + 1, 1))])
        lsh.insert(i, m)
        sigs.append(m)
    pairs = []
    for i, m in enumerate(sigs):
        for j in lsh.query(m):
            if j > i and m.jaccard(sigs[j]) >= THRESHOLD:
                pairs.append((i, j))
    return _union_find_labels(len(texts), pairs)


def run_datatrove(texts: list[str], work: Path) -> np.ndarray:
    import logging
    import struct

    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.utils.word_tokenizers import WhitespaceTokenizer

    class SplitTokenizer(WhitespaceTokenizer):
        # datatrove 0.10's WhitespaceTokenizer splits words with spaCy's "xx" model; this is the
        # plain str.split() tokenizer the ~4,000 docs/s figure of the issue refers to (its fastest).
        def word_tokenize(self, text: str) -> list[str]:
            return text.split()

    logging.disable(logging.WARNING)
    try:
        from loguru import logger

        logger.remove()
    except ImportError:
        pass
    config = MinhashConfig(n_grams=NGRAM, num_buckets=BANDS, hashes_per_bucket=ROWS, seed=SEED)
    folder = work / "datatrove"
    run = dict(tasks=1, workers=1, skip_completed=False)
    LocalPipelineExecutor(
        pipeline=[
            JsonlReader(str(work / "input")),
            MinhashDedupSignature(str(folder / "sigs"), config=config, language=SplitTokenizer()),
        ],
        logging_dir=str(folder / "logs1"),
        **run,
    ).run()
    LocalPipelineExecutor(
        pipeline=[MinhashDedupBuckets(str(folder / "sigs"), str(folder / "buckets"), config=config)],
        logging_dir=str(folder / "logs2"),
        **{**run, "tasks": BANDS},
    ).run()
    LocalPipelineExecutor(
        pipeline=[
            MinhashDedupCluster(str(folder / "buckets"), str(folder / "remove"), config=config, save_cluster_id=True)
        ],
        logging_dir=str(folder / "logs3"),
        **run,
    ).run()
    labels = np.arange(len(texts))
    for f in (folder / "remove").glob("*.clusters"):
        values = struct.unpack(f"<{f.stat().st_size // 4}I", f.read_bytes())
        for doc, cluster in zip(values[0::2], values[1::2], strict=True):
            labels[doc] = len(texts) + cluster  # any label shared by the cluster's members
    return labels


RUNNERS = {"ours": run_ours, "ours-step": run_ours_step, "datasketch": run_datasketch, "datatrove": run_datatrove}


def child(name: str, work: Path) -> None:
    texts = json.loads((work / "texts.json").read_text())
    start = time.perf_counter()
    labels = RUNNERS[name](texts, work)
    elapsed = time.perf_counter() - start
    np.save(work / f"{name}.labels.npy", np.asarray(labels, dtype=np.int64))
    rss = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    )
    print(json.dumps({"seconds": elapsed, "peak_rss_mb": rss / 1024}))


# ------------------------------------------------------------------ scoring (parent)


def score(
    labels: np.ndarray,
    texts: list[str],
    planted: list[tuple[int, int]],
    planted_j: list[float],
    exact: list[tuple[int, int]],
) -> dict:
    found = [labels[a] == labels[b] for a, b in planted]
    per_bucket = {}
    for lo, hi in BUCKETS:
        idx = [k for k, j in enumerate(planted_j) if lo <= j < hi]
        per_bucket[f"{lo:.1f}-{min(hi, 1.0):.1f}" if hi <= 1 else "1.0"] = (sum(found[k] for k in idx), len(idx))
    above = [k for k, j in enumerate(planted_j) if j >= THRESHOLD]
    # Precision: every reported pair (member, first member of its cluster), checked by true Jaccard.
    first: dict[int, int] = {}
    reported = []
    for i, lab in enumerate(labels.tolist()):
        if lab in first:
            reported.append((first[lab], i))
        else:
            first[lab] = i
    correct = sum(true_jaccard(texts[a], texts[b]) >= THRESHOLD for a, b in reported)
    return {
        "recall": float(np.mean(found)),
        "recall_above_threshold": float(np.mean([found[k] for k in above])) if above else float("nan"),
        "per_bucket": per_bucket,
        "reported_pairs": len(reported),
        "precision": correct / len(reported) if reported else float("nan"),
        "exact_found": sum(labels[a] == labels[b] for a, b in exact),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data", type=Path, default=Path(os.environ.get("WORKBENCH_DATA", ROOT.parent / "shared" / "data"))
    )
    parser.add_argument("--planted", type=int, default=2000)
    parser.add_argument("--replace", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default=",".join(IMPLEMENTATIONS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.work)
        return

    texts, sources, planted = build_corpus(args.data, args.planted, args.replace, args.seed)
    planted_j = [true_jaccard(texts[a], texts[b]) for a, b in planted]
    seen: dict[str, int] = {}
    exact = []
    for i, (t, s) in enumerate(zip(texts, sources, strict=True)):
        if s == "dailydialog":
            if t in seen:
                exact.append((seen[t], i))
            else:
                seen[t] = i
    print(f"corpus: {len(texts):,} docs ({', '.join(f'{s} {sources.count(s):,}' for s in dict.fromkeys(sources))})")
    above = sum(j >= THRESHOLD for j in planted_j)
    print(f"planted pairs: {len(planted):,}, {above:,} with true 5-gram Jaccard >= {THRESHOLD}")
    print(f"DailyDialog exact duplicate copies: {len(exact):,}")
    print(
        f"settings: word {NGRAM}-grams, {NUM_PERM} permutations, {BANDS} bands x {ROWS} rows, threshold {THRESHOLD}\n"
    )

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-dedup-") as tmp:
        work = Path(tmp)
        (work / "texts.json").write_text(json.dumps(texts))
        (work / "input").mkdir()
        with open(work / "input" / "corpus.jsonl", "w", encoding="utf-8") as f:
            for i, t in enumerate(texts):
                f.write(json.dumps({"id": str(i), "text": t}) + "\n")
        for name in args.only.split(","):
            module = {"datasketch": "datasketch", "datatrove": "datatrove"}.get(name)
            if module and subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True).returncode:
                print(f"skipped {name}: not installed ({INSTALL[name]})")
                continue
            proc = subprocess.run(
                [sys.executable, __file__, "--child", name, "--work", str(work)], capture_output=True, text=True
            )
            if proc.returncode:
                print(f"{name} failed:\n{proc.stderr[-2000:]}")
                continue
            stats = json.loads(proc.stdout.strip().splitlines()[-1])
            labels = np.load(work / f"{name}.labels.npy")
            results[name] = {**stats, **score(labels, texts, planted, planted_j, exact)}
            print(f"ran {name}: {stats['seconds']:.1f} s", flush=True)

    if not results:
        return
    base = results.get("datatrove") or next(iter(results.values()))
    base_name = "datatrove" if "datatrove" in results else next(iter(results))
    n = len(texts)
    print()
    head = "| implementation | docs/s | vs " + base_name + " | peak RSS MB | RSS vs " + base_name
    head += " | recall (all planted) | recall (J≥0.7) | precision | reported pairs | DD exact copies |"
    print(head)
    print("|" + "|".join(["---"] * (head.count("|") - 1)) + "|")
    for name, r in results.items():
        print(
            f"| {name} | {n / r['seconds']:,.0f} | {base['seconds'] / r['seconds']:.1f}× | {r['peak_rss_mb']:,.0f} | "
            f"{r['peak_rss_mb'] / base['peak_rss_mb']:.2f}× | {r['recall']:.3f} | {r['recall_above_threshold']:.3f} | "
            f"{r['precision']:.3f} | {r['reported_pairs']:,} | {r['exact_found']}/{len(exact)} |"
        )
    print("\nrecall per true-Jaccard bucket (found / planted pairs in the bucket):\n")
    buckets = list(next(iter(results.values()))["per_bucket"])
    print("| implementation | " + " | ".join(f"J {b}" for b in buckets) + " |")
    print("|" + "|".join(["---"] * (len(buckets) + 1)) + "|")
    for name, r in results.items():
        cells = [f"{f}/{t} ({f / t:.2f})" if t else "–" for f, t in r["per_bucket"].values()]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
