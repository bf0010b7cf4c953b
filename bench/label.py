"""LLM labeling throughput: our bounded async client + cache beside a sequential ``openai`` loop.

Against the local OpenAI-compatible test server (``tests/labeling/openai_server.py``, run in its own
process so it does not share our GIL) with a simulated latency per completion (default 200 ms),
on N items (default 2,000) of structured-output requests (``response_format`` json_schema):

* ``sequential openai loop``: plain ``OpenAI().chat.completions.create`` in a ``for`` loop, what the
  seed reports did. At 200 ms x 2,000 that is 400 s, so it runs on ``--subset`` items (default 100)
  and its rate is extrapolated to N (marked ``*`` in the table);
* ``complete_many`` at concurrency 1 (also on the subset, for the same reason), 8, 32 and 64 on all
  N, each with an empty cache (so it also probes the response format once, as a first run does);
* a re-run at the highest concurrency on the now-full cache: 0 requests expected, and its wall time.

The bound of a concurrency c is c / latency requests per second (c requests in flight, each taking
the latency); the target is >= 80 % of it at concurrency 32. Requests are counted at the server.
Usage::

    python bench/label.py [--n 2000] [--latency 0.2] [--subset 100] [--concurrency 1,8,32,64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "tests" / "labeling" / "openai_server.py"
MODEL = "fake-model"

SCHEMA = {
    "type": "object",
    "properties": {
        "emotions": {
            "type": "array",
            "items": {"type": "string", "enum": ["admiration", "joy", "sadness", "anger", "fear", "neutral"]},
            "minItems": 1,
            "uniqueItems": True,
        },
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["emotions", "confidence"],
    "additionalProperties": False,
}


def _messages(i: int) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "Label the emotions expressed in the comment. Answer in JSON."},
        {"role": "user", "content": f"Comment #{i}: I can't believe how well this turned out, thank you all!"},
    ]


def _start_server(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "--port", "0", "--latency", str(latency)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise SystemExit(f"the test server did not start: {line!r}")
    return proc, f"http://127.0.0.1:{int(line.split()[1])}"


def _server_requests(root_url: str) -> int:
    with urllib.request.urlopen(f"{root_url}/_stats") as response:
        return json.load(response)["requests"]


def _sequential(base_url: str, n: int) -> float:
    """Wall seconds of a plain synchronous openai loop over n items."""
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key="sk-bench")
    response_format = {"type": "json_schema", "json_schema": {"name": "emotion", "schema": SCHEMA, "strict": True}}
    start = time.perf_counter()
    for i in range(n):
        response = client.chat.completions.create(
            model=MODEL, messages=_messages(i), temperature=0.0, response_format=response_format
        )
        json.loads(response.choices[0].message.content)
    elapsed = time.perf_counter() - start
    client.close()
    return elapsed


async def _ours(base_url: str, cache_path: Path, n: int, concurrency: int) -> tuple[float, int, int]:
    """(wall seconds, completions, cache hits) of complete_many over n items."""
    from labeling.batch import CompletionRequest, complete_many
    from labeling.cache import CompletionCache
    from labeling.client import LLMClient

    requests = [CompletionRequest(_messages(i), SCHEMA, "bench-v1", "emotion") for i in range(n)]
    completions = hits = 0
    start = time.perf_counter()
    async with LLMClient(model=MODEL, base_url=base_url, concurrency=concurrency) as client:
        with CompletionCache(cache_path) as cache:
            async for _, result in complete_many(client, cache, requests):
                if hasattr(result, "content"):
                    completions += 1
                    hits += result.cached
    return time.perf_counter() - start, completions, hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="items per run")
    parser.add_argument("--latency", type=float, default=0.2, help="server seconds per completion")
    parser.add_argument("--subset", type=int, default=100, help="items for the sequential loop and concurrency 1")
    parser.add_argument("--concurrency", default="1,8,32,64", help="comma-separated concurrency levels")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    os.environ.pop("OPENAI_API_KEY", None)  # a local server: the client sends a dummy key

    proc, root_url = _start_server(args.latency)
    base_url = f"{root_url}/v1"
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            before = _server_requests(root_url)
            wall = _sequential(base_url, args.subset)
            sent = _server_requests(root_url) - before
            seq_rate = args.subset / wall
            rows.append(("sequential openai loop", 1, args.subset, sent, wall, seq_rate, True))

            for c in levels:
                n = args.subset if c == 1 else args.n
                before = _server_requests(root_url)
                wall, done, _ = asyncio.run(_ours(base_url, Path(tmp) / f"c{c}.sqlite", n, c))
                assert done == n, f"{n - done} items failed at concurrency {c}"
                sent = _server_requests(root_url) - before
                rows.append((f"complete_many c={c}", c, n, sent, wall, n / wall, n != args.n))

            top = max(levels)
            before = _server_requests(root_url)
            wall, done, hits = asyncio.run(_ours(base_url, Path(tmp) / f"c{top}.sqlite", args.n, top))
            sent = _server_requests(root_url) - before
            assert hits == done == args.n
            rows.append((f"re-run, cached (c={top})", top, args.n, sent, wall, args.n / wall, False))
    finally:
        proc.terminate()
        proc.wait()

    print(f"\nlabel throughput: N = {args.n:,} items, server latency {args.latency * 1000:.0f} ms, model {MODEL}")
    header = (
        f"| {'run':<26} | {'items':>6} | {'requests':>8} | {'wall s':>8} | {'items/s':>8} | "
        f"{'time for N':>10} | {'x sequential':>12} | {'% of bound':>10} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    for name, c, n, sent, wall, rate, extrapolated in rows:
        cached = name.startswith("re-run")
        bound = "" if cached else f"{100 * rate / (c / args.latency):.0f} %"
        for_n = args.n / rate
        mark = "*" if extrapolated else " "
        print(
            f"| {name:<26} | {n:>6,} | {sent:>8,} | {wall:>8.2f} | {rate:>8.1f} | {for_n:>9.1f}{mark} | "
            f"{rate / seq_rate:>11.1f}x | {bound:>10} |"
        )
    print(
        f"\n* measured on {args.subset} items and extrapolated to N (at {args.latency * 1000:.0f} ms a sequential "
        f"pass over {args.n:,} items takes ~{args.n * args.latency:.0f} s).\n"
        "bound = concurrency / latency (requests/s); requests counted at the server. Each complete_many run starts "
        "with an empty cache, so it includes the one response-format probe a first run makes."
    )


if __name__ == "__main__":
    main()
