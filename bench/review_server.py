"""The local Argilla server's in-process search engine at scale, against the database-only listing.

First the bulk upsert: N records with suggestions and metadata logged (the SDK, as
``review push`` does) into argilla-server as released, then with the launcher's one fix
(``reuse_settings_adapters``), side by side. Then, on the second server, answers a tenth of
them as an annotator, then times what the web UI asks the search engine for -- the
annotator's pending queue, a text search, a metadata filter, progress, metrics -- side by
side with ``GET /records`` (a plain database page, no search engine) as the ratio's
baseline. Finally restarts the server and reads how long rebuilding the index from the
database took (the launcher logs it)::

    python bench/review_server.py [--records 5000]
"""

from __future__ import annotations

import argparse
import os
import re
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    import argilla as rg
    import numpy as np

    rng = np.random.default_rng(0)
    records = [
        rg.Record(
            id=f"bench:{i}",
            fields={"conversation": [{"role": "user", "content": " ".join(rng.choice(WORDS, 12))}]},
            metadata={"source": ["dd", "ed", "ge"][i % 3], "n": i},
            suggestions=[rg.Suggestion("emotion", ["joy", "sadness", "anger", "neutral"][i % 4], score=0.5)],
        )
        for i in range(args.records)
    ]

    def create_and_log(server: LocalArgilla) -> tuple[object, float]:
        client = rg.Argilla(api_url=server.api_url, api_key=server.api_key)
        server.workspace_id("workbench")
        settings = rg.Settings(
            fields=[rg.ChatField(name="conversation")],
            questions=[rg.LabelQuestion(name="emotion", labels=["joy", "sadness", "anger", "neutral"])],
            metadata=[rg.TermsMetadataProperty(name="source"), rg.IntegerMetadataProperty(name="n")],
        )
        ds = rg.Dataset(name="bench", workspace="workbench", settings=settings, client=client).create()
        t = time.perf_counter()
        ds.records.log(records, batch_size=500)
        return ds, time.perf_counter() - t

    with tempfile.TemporaryDirectory() as tmp:
        # baseline of the upsert: argilla-server as released (a TypeAdapter built per settings lookup)
        os.environ["WORKBENCH_ARGILLA_REUSE_ADAPTERS"] = "0"
        server = LocalArgilla(Path(tmp) / "released").start()
        try:
            _, log_released = create_and_log(server)
        finally:
            server.close()
            del os.environ["WORKBENCH_ARGILLA_REUSE_ADAPTERS"]
        server = LocalArgilla(Path(tmp) / "home").start()
        try:
            ds, log_s = create_and_log(server)
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
    n = args.records
    print(f"{'bulk upsert of ' + format(n, ',') + ' records':<46}{'s':>9}{'ratio':>8}{'rec/s':>9}")
    print(f"{'argilla-server as released (baseline)':<46}{log_released:>9.1f}{1.0:>8.1f}{n / log_released:>9,.0f}")
    print(f"{'settings adapters reused (launch.py)':<46}{log_s:>9.1f}{log_released / log_s:>8.1f}{n / log_s:>9,.0f}")
    print(f"then {len(ids):,} records answered by an annotator")
    print(f"{'request':<46}{'ms':>9}{'ratio':>8}")
    for name, s in rows:
        print(f"{name:<46}{s * 1000:>9.1f}{s / base:>8.1f}")
    _datasets, n_rec, secs = rebuilt[-1]
    print(f"restart: index rebuilt from the database, {int(n_rec):,} records in {float(secs):.2f} s")


if __name__ == "__main__":
    main()
