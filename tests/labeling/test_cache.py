"""The completion cache and complete_many: hits send nothing, a killed run resumes, budgets stop, no key on disk."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from curation.errors import InputError, WorkbenchError
from labeling.batch import BatchProgress, CompletionRequest, complete_many, estimate_many
from labeling.cache import CompletionCache, completion_key, default_cache_path
from labeling.client import LLMClient
from labeling.completion import Completion, Failure
from labeling.pricing import PriceTable, estimate_prompt_tokens

SCHEMA = {
    "type": "object",
    "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 5}, "rationale": {"type": "string"}},
    "required": ["score", "rationale"],
    "additionalProperties": False,
}


def _requests(n: int, *, version: str = "v1", start: int = 0) -> list[CompletionRequest]:
    return [
        CompletionRequest(
            [{"role": "system", "content": "Rate the empathy."}, {"role": "user", "content": f"response {i}"}],
            SCHEMA,
            version,
            "empathy",
        )
        for i in range(start, start + n)
    ]


def _client(server, **kwargs) -> LLMClient:
    kwargs.setdefault("backoff_base", 0.01)
    return LLMClient(model=kwargs.pop("model", "fake-model"), base_url=server.base_url, **kwargs)


async def _collect(client, cache, requests, *, stop_after: int | None = None, **kwargs):
    out: dict[int, Completion | Failure] = {}
    try:
        async with contextlib.aclosing(complete_many(client, cache, requests, **kwargs)) as results:
            async for index, result in results:
                out[index] = result
                if stop_after is not None and len(out) >= stop_after:
                    break
    finally:
        await client.aclose()
    return out


def test_key_is_content_addressed():
    base = dict(
        provider="openai",
        model="gpt-4o-mini",
        prompt_version="v1",
        params={"temperature": 0.0, "seed": None},
        messages=[{"role": "user", "content": "hi"}],
        json_schema=SCHEMA,
    )
    key = completion_key(**base)
    assert key == completion_key(**{**base, "params": {"seed": None, "temperature": 0.0}})
    assert key == completion_key(**{**base, "params": {"temperature": 0.0}})  # unset options do not count
    for change in (
        {"provider": "http://127.0.0.1:8000/v1"},
        {"model": "gpt-4o"},
        {"prompt_version": "v2"},
        {"params": {"temperature": 0.7}},
        {"messages": [{"role": "user", "content": "hi!"}]},
        {"json_schema": None},
    ):
        assert completion_key(**{**base, **change}) != key, change


def test_a_cache_hit_sends_nothing(openai_server, tmp_path):
    requests = _requests(20)
    with CompletionCache(tmp_path / "c.sqlite") as cache:
        first = asyncio.run(_collect(_client(openai_server), cache, requests))
        assert openai_server.request_count == 20 and len(cache) == 20
        seen: list[BatchProgress] = []
        again = asyncio.run(_collect(_client(openai_server), cache, requests, on_progress=seen.append))
    assert openai_server.request_count == 20  # not one more
    assert all(r.cached for r in again.values())
    assert {i: r.content for i, r in again.items()} == {i: r.content for i, r in first.items()}
    assert seen[-1].done == 20 and seen[-1].cache_hits == 20 and seen[-1].sent == 0


def test_identical_requests_are_sent_once(openai_server, tmp_path):
    requests = _requests(3) + _requests(3)
    with CompletionCache(tmp_path / "c.sqlite") as cache:
        results = asyncio.run(_collect(_client(openai_server), cache, requests))
    assert sorted(results) == list(range(6))
    assert openai_server.request_count == 3
    assert results[0].content == results[3].content


def test_a_cancelled_run_resumes_with_only_the_missing_requests(openai_server, tmp_path):
    openai_server.latency = 0.05
    requests = _requests(40)
    with CompletionCache(tmp_path / "c.sqlite") as cache:
        partial = asyncio.run(_collect(_client(openai_server, concurrency=4), cache, requests, stop_after=10))
        assert len(partial) == 10
        cached = len(cache)
        assert cached >= 10  # everything yielded was written first
        openai_server.wait_idle()  # the abandoned requests in flight have arrived
        sent_before = openai_server.request_count
        results = asyncio.run(_collect(_client(openai_server, concurrency=4), cache, requests))
    assert len(results) == 40 and all(isinstance(r, Completion) for r in results.values())
    assert openai_server.request_count - sent_before == 40 - cached


_KILLED_RUN = textwrap.dedent(
    """
    import asyncio, sys
    from labeling.batch import CompletionRequest, complete_many
    from labeling.cache import CompletionCache
    from labeling.client import LLMClient

    base_url, cache_path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    schema = {schema!r}
    requests = [
        CompletionRequest(
            [{{"role": "system", "content": "Rate the empathy."}}, {{"role": "user", "content": f"response {{i}}"}}],
            schema, "v1", "empathy",
        )
        for i in range(n)
    ]

    async def main():
        client = LLMClient(model="fake-model", base_url=base_url, concurrency=4)
        cache = CompletionCache(cache_path)
        async for index, result in complete_many(client, cache, requests):
            print("DONE", index, flush=True)

    asyncio.run(main())
    """
)


def test_a_run_killed_with_sigkill_resumes_with_only_the_missing_requests(openai_server, tmp_path, fake_key):
    openai_server.latency = 0.05
    n = 60
    cache_path = tmp_path / "cache" / "completions.sqlite"
    script = _KILLED_RUN.format(schema=SCHEMA)
    proc = subprocess.Popen(
        [sys.executable, "-c", script, openai_server.base_url, str(cache_path), str(n)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "OPENAI_API_KEY": fake_key},
    )
    done = 0
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("DONE"):
            done += 1
        if done == 20:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    openai_server.wait_idle()
    sent_by_killed_run = openai_server.request_count
    assert sent_by_killed_run < n

    with CompletionCache(cache_path) as cache:
        survived = len(cache)
        assert survived >= 20  # every completion reported done was committed before it was reported
        results = asyncio.run(_collect(_client(openai_server, concurrency=4), cache, _requests(n)))
        assert len(results) == n and all(isinstance(r, Completion) for r in results.values())
        assert sum(r.cached for r in results.values()) == survived
        assert len(cache) == n
    # the restart sent exactly the requests the cache did not have
    assert openai_server.request_count - sent_by_killed_run == n - survived
    # requests in flight at the kill were sent twice, nothing else was
    assert max(openai_server.counts_by_hash().values()) <= 2
    _assert_no_key_on_disk(tmp_path, fake_key)
    assert f"Bearer {fake_key}" in openai_server.authorizations


def _assert_no_key_on_disk(root: Path, key: str) -> None:
    files = [p for p in root.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".sqlite") for p in files)
    for path in files:
        assert key.encode() not in path.read_bytes(), path


def test_the_key_is_never_written(openai_server, tmp_path, fake_key):
    openai_server.supports_json_schema = False  # also exercise the probe record
    with CompletionCache(tmp_path / "c.sqlite") as cache:
        asyncio.run(_collect(_client(openai_server), cache, _requests(10)))
        cache.stats()
    assert set(openai_server.authorizations) == {f"Bearer {fake_key}"}
    _assert_no_key_on_disk(tmp_path, fake_key)


@pytest.fixture
def dear_prices(tmp_path) -> PriceTable:
    """$1 per token for fake-model: budgets of a few hundred dollars stop after a few requests."""
    path = tmp_path / "prices.toml"
    path.write_text('[models."fake-model"]\ninput = 1000000\noutput = 1000000\n')
    return PriceTable.load(path)


def test_budget_stops_sending_and_a_rerun_sends_the_rest(openai_server, tmp_path, dear_prices, fake_key):
    requests = _requests(30)
    per_request = estimate_prompt_tokens(requests[0].messages) + 20  # about what one request costs here
    budget = 8 * per_request
    with CompletionCache(tmp_path / "c.sqlite") as cache:
        seen: list[BatchProgress] = []
        client = _client(openai_server, concurrency=2, free=False)
        results = asyncio.run(
            _collect(
                client,
                cache,
                requests,
                max_cost=budget,
                prices=dear_prices,
                on_progress=seen.append,
                expected_completion_tokens=20,
            )
        )
        progress = seen[-1]
        assert len(results) == 30 and progress.done == 30
        assert progress.budget_stopped
        completed = [r for r in results.values() if isinstance(r, Completion)]
        skipped = [r for r in results.values() if isinstance(r, Failure)]
        assert all(r.kind == "budget" for r in skipped)
        assert 0 < len(completed) < 30 and len(completed) + len(skipped) == 30
        one = max(r.prompt_tokens + r.completion_tokens for r in completed)  # $ of one request at $1 a token
        # it spent the budget (up to about one request) and not much more: estimates are made before sending
        assert budget - 2 * one < progress.cost_usd <= budget * 1.1
        assert openai_server.request_count == len(completed) == len(cache)  # nothing sent was lost

        rerun = asyncio.run(_collect(_client(openai_server, free=False), cache, requests, prices=dear_prices))
        assert all(isinstance(r, Completion) for r in rerun.values())
        assert openai_server.request_count == 30


def test_a_budget_needs_a_price(openai_server, tmp_path, fake_key):
    client = LLMClient(model="no-such-model", base_url=openai_server.base_url, free=False)
    with CompletionCache(tmp_path / "c.sqlite") as cache, pytest.raises(WorkbenchError, match="no price"):
        asyncio.run(_collect(client, cache, _requests(2), max_cost=1.0))
    assert openai_server.request_count == 0


def test_dry_run_estimate_counts_only_what_is_not_cached(openai_server, tmp_path):
    with CompletionCache(tmp_path / "c.sqlite") as cache:
        asyncio.run(_collect(_client(openai_server, model="gpt-4o-mini"), cache, _requests(5)))
        dry = LLMClient(model="gpt-4o-mini", base_url=openai_server.base_url, free=False, dry_run=True)
        estimate = estimate_many(dry, cache, _requests(8), expected_completion_tokens=100)
    assert (estimate.requests, estimate.cached, estimate.to_send) == (8, 5, 3)
    assert estimate.completion_tokens == 300
    expected = (estimate.prompt_tokens * 0.15 + 300 * 0.60) / 1e6
    assert estimate.cost_usd == pytest.approx(expected)


def test_wal_mode_stats_and_prune(openai_server, tmp_path):
    path = tmp_path / "c.sqlite"
    with CompletionCache(path) as cache:
        asyncio.run(_collect(_client(openai_server, model="gpt-4o-mini"), cache, _requests(4, version="v1")))
        asyncio.run(_collect(_client(openai_server, model="gpt-4o-mini"), cache, _requests(6, version="v2")))
        stats = cache.stats()
        assert stats.rows == 10 and stats.prompt_tokens > 0 and stats.size_bytes > 0
        assert [(g.prompt_version, g.rows) for g in stats.groups] == [("v1", 4), ("v2", 6)]
        assert stats.cost_usd == 0.0 and all(g.cost_usd == 0.0 for g in stats.groups)  # a local server is free
        assert cache.prune(older_than=timedelta(days=1)) == 0
        assert cache.prune(prompt_version="v1") == 4
        assert cache.prune(older_than=datetime.now(UTC) + timedelta(seconds=5), model="other") == 0
        assert len(cache) == 6
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        columns = {row[1] for row in conn.execute("PRAGMA table_info(completions)")}
    assert {"content", "prompt_tokens", "completion_tokens", "model", "prompt_version", "created_at"} <= columns


def test_stats_price_remote_rows(tmp_path):
    with CompletionCache(tmp_path / "c.sqlite") as cache:
        for i, model in enumerate(["gpt-4o-mini", "gpt-4o-mini-2024-07-18", "mystery-model"]):
            completion = Completion("{}", 1_000_000, 1_000_000, "stop", "json_schema", False, f"k{i}", model)
            cache.put(completion, provider="openai", prompt_version="v1")
        stats = cache.stats()
    by_model = {g.model: g.cost_usd for g in stats.groups}
    assert by_model["gpt-4o-mini"] == pytest.approx(0.75)
    assert by_model["gpt-4o-mini-2024-07-18"] == pytest.approx(0.75)  # a dated snapshot: its undated price
    assert by_model["mystery-model"] is None  # unknown, never guessed
    assert stats.unpriced_rows == 1 and stats.cost_usd == pytest.approx(1.5)


def test_default_cache_path(tmp_path, monkeypatch):
    assert default_cache_path(str(tmp_path / "store")) == tmp_path / "store" / "cache" / "completions.sqlite"
    assert default_cache_path(f"file://{tmp_path}/store") == tmp_path / "store" / "cache" / "completions.sqlite"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_path("s3://bucket/store") == tmp_path / "xdg" / "workbench" / "completions.sqlite"


def test_price_table_is_user_extensible(tmp_path, monkeypatch):
    builtin = PriceTable.load()
    assert builtin.price("gpt-4o-mini").input_per_m == 0.15
    assert builtin.cost("unknown-model", 10, 10) is None
    assert builtin.cost("unknown-model", 10, 10, local=True) == 0.0
    mine = tmp_path / "prices.toml"
    mine.write_text('[models."gpt-4o-mini"]\ninput = 1.0\noutput = 2.0\n[models."my-model"]\ninput = 0\noutput = 0\n')
    monkeypatch.setenv("WORKBENCH_PRICES", str(mine))
    table = PriceTable.load()
    assert table.price("gpt-4o-mini").input_per_m == 1.0 and table.cost("my-model", 5, 5) == 0.0
    mine.write_text('[models."bad"]\ninput = "cheap"\n')
    with pytest.raises(InputError, match="bad"):
        PriceTable.load()
