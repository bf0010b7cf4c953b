"""The local Argilla server's in-process search engine at scale, against the database-only listing.

Starts ``workbench review serve`` in a temporary home (its own Redis port), logs N records
with suggestions into one dataset (the SDK, as ``review push`` does), answers a tenth of
them as an annotator, then times what the web UI asks the search engine for -- the
annotator's pending queue, a text search, a metadata filter, progress, metrics -- side by
side with ``GET /records`` (a plain database page, no search engine) as the ratio's
baseline. Finally restarts the server and reads how long rebuilding the index from the
database took (the launcher logs it)::

    python bench/review_server.py [--records 5000]
"""

from __future__ import annotations

import argparse
import re
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "labeling"))

from argilla_local import LocalArgilla  # noqa: E402

WORDS = [
    "thank",
    "you",
    "so",
    "much",
    "I",
    "feel",
    "sad",
    "happy",
    "angry",
    "about",
    "the",
    "game",
    "today",
    "my",
    "friend",
    "work",
    "family",
    "dog",
]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    import argilla as rg
    import numpy as np

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        server = LocalArgilla(Path(tmp) / "home").start()
        try:
            client = rg.Argilla(api_url=server.api_url, api_key=server.api_key)
            server.workspace_id("workbench")
            settings = rg.Settings(
                fields=[rg.ChatField(name="conversation")],
                questions=[rg.LabelQuestion(name="emotion", labels=["joy", "sadness", "anger", "neutral"])],
                metadata=[rg.TermsMetadataProperty(name="source"), rg.IntegerMetadataProperty(name="n")],
            )
            ds = rg.Dataset(name="bench", workspace="workbench", settings=settings, client=client).create()
            records = [
                rg.Record(
                    id=f"bench:{i}",
                    fields={"conversation": [{"role": "user", "content": " ".join(rng.choice(WORDS, 12))}]},
                    metadata={"source": ["dd", "ed", "ge"][i % 3], "n": i},
                    suggestions=[rg.Suggestion("emotion", ["joy", "sadness", "anger", "neutral"][i % 4], score=0.5)],
                )
                for i in range(args.records)
            ]
            t = time.perf_counter()
            ds.records.log(records, batch_size=500)
            log_s = time.perf_counter() - t
            _uid, key = server.create_annotator("bench-ann")
            with server.client() as c:
                ids = [
                    r["id"]
                    for r in c.get(f"/datasets/{ds.id}/records", params={"limit": 1000}).json()["items"][
                        : args.records // 10
                    ]
                ]
            with server.client(key) as c:
                for rid in ids:
                    c.post(
                        f"/records/{rid}/responses",
                        json={"values": {"emotion": {"value": "joy"}}, "status": "submitted"},
                    ).raise_for_status()

            def timed(fn) -> float:
                best = float("inf")
                for _ in range(args.repeat):
                    t = time.perf_counter()
                    fn().raise_for_status()
                    best = min(best, time.perf_counter() - t)
                return best

            pending = {
                "filters": {
                    "and": [
                        {"type": "terms", "scope": {"entity": "response", "property": "status"}, "values": ["pending"]}
                    ]
                }
            }
            meta = {
                "filters": {
                    "and": [
                        {
                            "type": "terms",
                            "scope": {"entity": "metadata", "metadata_property": "source"},
                            "values": ["ed"],
                        }
                    ]
                },
                "sort": [{"scope": {"entity": "metadata", "metadata_property": "n"}, "order": "desc"}],
            }
            with server.client() as owner:
                rows = [
                    (
                        "GET /records, 10 (database only: baseline)",
                        timed(lambda: owner.get(f"/datasets/{ds.id}/records", params={"limit": 10})),
                    )
                ]
            with server.client(key) as c:
                rows += [
                    (
                        "annotator's pending queue, 10",
                        timed(
                            lambda: c.post(f"/me/datasets/{ds.id}/records/search", params={"limit": 10}, json=pending)
                        ),
                    ),
                    (
                        "text search 'thank friend'",
                        timed(
                            lambda: c.post(
                                f"/me/datasets/{ds.id}/records/search",
                                params={"limit": 10},
                                json={"query": {"text": {"q": "thank friend"}}},
                            )
                        ),
                    ),
                    (
                        "metadata filter + sort",
                        timed(lambda: c.post(f"/me/datasets/{ds.id}/records/search", params={"limit": 10}, json=meta)),
                    ),
                    ("annotator's metrics", timed(lambda: c.get(f"/me/datasets/{ds.id}/metrics"))),
                ]
            with server.client() as c:
                rows.append(("dataset progress", timed(lambda: c.get(f"/datasets/{ds.id}/progress"))))
            server.restart()
            log = (server.home / "server.log").read_text()
            rebuilt = re.findall(
                r"search index rebuilt from the database: (\d+) datasets, (\d+) records in ([\d.]+)s", log
            )
        finally:
            server.close()

    base = rows[0][1]
    print(
        f"{args.records:,} records logged in {log_s:.1f} s ({args.records / log_s:,.0f} records/s); "
        f"{len(ids):,} answered"
    )
    print(f"{'request':<46}{'ms':>9}{'ratio':>8}")
    for name, s in rows:
        print(f"{name:<46}{s * 1000:>9.1f}{s / base:>8.1f}")
    _datasets, n_rec, secs = rebuilt[-1]
    print(f"restart: index rebuilt from the database, {int(n_rec):,} records in {float(secs):.2f} s")


if __name__ == "__main__":
    main()
