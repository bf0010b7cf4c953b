"""How fast the OpenWebText reader streams an xz tar chunk, against its bounds.

Builds an archive in the distributed format (an xz-compressed tar of
``NNNNNNN-<md5>.txt`` documents) from the 4 real OpenWebText documents of the
HF dummy data: each generated document is words drawn at random (fixed seed)
from those documents, so the text compresses like prose rather than like 4
documents repeated (which xz would shrink to nothing). Then, side by side,
each in its own process so that its peak RSS is its own:

* ``xz -dc > /dev/null``    -- the practical bound (single-threaded, as the issue measures)
* ``lzma only``             -- Python's ``lzma`` decompressing the stream, discarding it
* ``tarfile r|xz``          -- the standard library's stream mode, reading every member
* ``iter_tar (ours)``       -- :func:`curation.adapters.openwebtext.iter_tar` over ``xz_chunks``
* ``iter_tar over xz pipe`` -- the same parser fed by an ``xz -dc`` subprocess
* ``adapter records``       -- the whole adapter: records built (hash split, ids, dicts)

Throughput is MB/s of document text (the same byte count for every row).
Usage: ``python bench/owt_tar_speed.py [--docs 60000] [--doc-bytes 1100] [--keep DIR]``.
The default run takes about a minute and a half on 2 cores.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import lzma
import random
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REAL_DOCS = Path("openwebtext/hf_datasets_dummy/dummy_data/openwebtext")
METHODS = ("xz", "lzma", "tarfile", "ours_inline", "ours", "ours_xz_pipe", "adapter")
LABELS = {
    "xz": "xz -dc > /dev/null",
    "lzma": "lzma only (no tar parsing)",
    "tarfile": "tarfile r|xz stream mode",
    "ours_inline": "iter_tar, lzma inline",
    "ours": "iter_tar, lzma in a thread (ours)",
    "ours_xz_pipe": "iter_tar over xz -dc pipe",
    "adapter": "adapter records (ours, full)",
}


def _find_real_docs() -> list[Path]:
    for base in (REPO / "examples/data/openwebtext", REPO.parent / "shared/data", Path("/work/shared/data")):
        docs = sorted((base / REAL_DOCS).glob("*/*.txt")) if (base / REAL_DOCS).is_dir() else []
        if docs:
            return docs
    sys.exit("the 4 real OpenWebText documents were not found (expected shared/data/" + str(REAL_DOCS) + ")")


def build_archive(out_dir: Path, n_docs: int, doc_bytes: int) -> tuple[Path, int]:
    """Write ``urlsf_subset99-1_data.xz`` with ``n_docs`` documents; returns (path, text bytes)."""
    words = " ".join(p.read_text(encoding="utf-8") for p in _find_real_docs()).split()
    rng = random.Random(0)
    tar_path = out_dir / "urlsf_subset99-1_data.tar"
    text_bytes = 0
    with tarfile.open(tar_path, "w", format=tarfile.GNU_FORMAT) as tar:
        for i in range(n_docs):
            n_words = max(1, int(rng.uniform(0.5, 1.5) * doc_bytes / 6))
            drawn = rng.choices(words, k=n_words)
            paragraphs = [" ".join(drawn[j : j + 60]) for j in range(0, n_words, 60)]
            data = "\n\n".join(paragraphs).encode("utf-8")
            info = tarfile.TarInfo(f"{i:07d}-{hashlib.md5(data).hexdigest()}.txt")
            info.size, info.mtime, info.mode = len(data), 1555555555, 0o644
            tar.addfile(info, io.BytesIO(data))
            text_bytes += len(data)
    xz_path = out_dir / "urlsf_subset99-1_data.xz"
    if shutil.which("xz"):
        with xz_path.open("wb") as dst:
            subprocess.run(["xz", "-T0", "-6", "-c", str(tar_path)], stdout=dst, check=True)
        tar_path.unlink()
    else:
        with tar_path.open("rb") as src, lzma.open(xz_path, "wb", preset=6) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        tar_path.unlink()
    return xz_path, text_bytes


# ------------------------------------------------------------ measured runs


def _run_method(method: str, archive: Path) -> dict[str, float]:
    from curation.adapters.openwebtext import OpenWebTextAdapter, iter_tar, prefetch, xz_chunks

    members = 0
    start = time.perf_counter()
    if method == "xz":
        subprocess.run(["xz", "-dc", str(archive)], stdout=subprocess.DEVNULL, check=True)
    elif method == "lzma":
        with archive.open("rb") as f:
            for _ in xz_chunks(f):
                pass
    elif method == "tarfile":
        with tarfile.open(archive, "r|xz") as tar:
            for info in tar:
                fileobj = tar.extractfile(info)
                if fileobj is not None:
                    fileobj.read()
                    members += 1
    elif method == "ours_inline":
        with archive.open("rb") as f:
            for _name, _offset, _data in iter_tar(xz_chunks(f)):
                members += 1
    elif method == "ours":
        with archive.open("rb") as f:
            for _name, _offset, _data in iter_tar(prefetch(xz_chunks(f))):
                members += 1
    elif method == "ours_xz_pipe":
        with subprocess.Popen(["xz", "-dc", str(archive)], stdout=subprocess.PIPE) as proc:
            pipe = proc.stdout
            assert pipe is not None
            chunks = iter(lambda: pipe.read(1 << 20), b"")  # buffered: blocks for a full MiB
            for _name, _offset, _data in iter_tar(chunks):
                members += 1
    elif method == "adapter":
        for _record in OpenWebTextAdapter().read([archive]):
            members += 1
    seconds = time.perf_counter() - start
    who = resource.RUSAGE_CHILDREN if method == "xz" else resource.RUSAGE_SELF
    return {"seconds": seconds, "members": members, "maxrss_mb": resource.getrusage(who).ru_maxrss / 1024}


def measure(archive: Path, text_bytes: int, methods: tuple[str, ...] = METHODS) -> list[dict[str, object]]:
    """Run each method in a fresh process; rows of {method, seconds, mb_s, maxrss_mb, members}."""
    rows = []
    for method in methods:
        if method in ("xz", "ours_xz_pipe") and not shutil.which("xz"):
            continue
        out = subprocess.run(
            [sys.executable, __file__, "--child", method, str(archive)], capture_output=True, text=True, check=True
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["method"] = method
        result["mb_s"] = text_bytes / result["seconds"] / 1e6
        rows.append(result)
    return rows


def print_table(rows: list[dict[str, object]], archive: Path, n_docs: int, text_bytes: int) -> None:
    base = next((r["mb_s"] for r in rows if r["method"] == "xz"), None)
    print(
        f"\narchive {archive.name}: {n_docs:,} documents, {text_bytes / 1e6:.1f} MB of text, "
        f"{archive.stat().st_size / 1e6:.1f} MB compressed"
    )
    print(f"{'method':32} {'seconds':>8} {'MB/s text':>10} {'vs xz -dc':>10} {'peak RSS MB':>12}")
    for r in rows:
        ratio = f"{r['mb_s'] / base:.0%}" if base else "-"
        print(f"{LABELS[r['method']]:32} {r['seconds']:8.2f} {r['mb_s']:10.1f} {ratio:>10} {r['maxrss_mb']:12.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=60_000, help="documents in the generated archive")
    parser.add_argument("--doc-bytes", type=int, default=1100, help="mean document size in bytes")
    parser.add_argument("--keep", type=Path, help="build (or reuse) the archive in this folder instead of a temp dir")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {METHODS}")
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "ARCHIVE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_run_method(args.child[0], Path(args.child[1]))))
        return
    methods = tuple(m for m in args.methods.split(",") if m)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        meta = folder / f"bench-{args.docs}-{args.doc_bytes}.json"
        if meta.exists():
            info = json.loads(meta.read_text())
            archive, text_bytes = Path(info["archive"]), info["text_bytes"]
        else:
            t0 = time.perf_counter()
            archive, text_bytes = build_archive(folder, args.docs, args.doc_bytes)
            print(f"built {archive.name} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
            if args.keep:
                meta.write_text(json.dumps({"archive": str(archive), "text_bytes": text_bytes}))
        rows = measure(archive, text_bytes, methods)
        print_table(rows, archive, args.docs, text_bytes)


if __name__ == "__main__":
    main()
