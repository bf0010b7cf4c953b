"""Labeling fails loudly, fast, and publishes nothing wrong (issue 11).

Against real HTTP: the fake OpenAI server with fault injection, a server that accepts and never
answers, and a port nobody listens on. The CLI is driven as a user runs it (a real process).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from openai_server import Fault, HangingServer, messages_hash, refusing_port

from curation.ingest import ingest
from labeling.batch import (
    CompletionRequest,
    DeadlineExceeded,
    FailureLimit,
    TooManyFailures,
    complete_many,
)
from labeling.cache import CompletionCache
from labeling.client import LLMClient
from labeling.completion import Completion, EndpointError
from labeling.runner import label_llm, label_local
from labeling.tasks.base import get_tasks

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = {
    "type": "object",
    "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 5}, "rationale": {"type": "string"}},
    "required": ["score", "rationale"],
    "additionalProperties": False,
}


def _requests(n: int, *, start: int = 0) -> list[CompletionRequest]:
    return [
        CompletionRequest(
            [{"role": "system", "content": "Rate the empathy."}, {"role": "user", "content": f"response {i}"}],
            SCHEMA,
            "v1",
            "empathy",
        )
        for i in range(start, start + n)
    ]


def _client(base_url: str, **kwargs) -> LLMClient:
    kwargs.setdefault("backoff_base", 0.01)
    return LLMClient(model=kwargs.pop("model", "fake-model"), base_url=base_url, **kwargs)


async def _collect(client, cache, requests, **kwargs) -> dict[int, object]:
    out: dict[int, object] = {}
    try:
        async with contextlib.aclosing(complete_many(client, cache, requests, **kwargs)) as results:
            async for index, result in results:
                out[index] = result
    finally:
        await client.aclose()
    return out


def _timed(coro) -> tuple[BaseException | dict, float]:
    start = time.perf_counter()
    try:
        got: BaseException | dict = asyncio.run(coro)
    except Exception as exc:
        got = exc
    return got, time.perf_counter() - start


# ------------------------------------------------------------------ fatal answers stop at once


def test_a_refused_key_stops_at_once_with_the_servers_message(openai_server, tmp_path, fake_key):
    openai_server.add_fault(Fault.auth(), times=None)
    with CompletionCache(tmp_path / "c.sqlite") as cache:
        got, elapsed = _timed(_collect(_client(openai_server.base_url), cache, _requests(40)))
        assert isinstance(got, EndpointError), got
        assert len(cache) == 0 and cache.in_flight() == []  # nothing stored, no claim left behind
    message = str(got)
    assert message.startswith(f"endpoint {openai_server.base_url} (model fake-model) rejected the API key")
    assert "HTTP 401" in message and "Incorrect API key provided" in message and "OPENAI_API_KEY" in message
    assert fake_key not in message and "***" in message  # the server quoted the key: it is masked
    assert got.status == 401 and got.provider == openai_server.base_url and got.model == "fake-model"
    assert openai_server.request_count == 1  # the format probe got the 401; nothing else was sent
    assert elapsed < 2


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        (Fault.model_not_found(), 404),  # OpenAI: 404 with code model_not_found
        (Fault.model_not_found(status=400, code=None), 400),  # a server that only says so in words
    ],
)
def test_an_unknown_model_stops_at_once(openai_server, tmp_path, fault, status):
    openai_server.add_fault(fault, times=None)
    with CompletionCache(tmp_path / "c.sqlite") as cache:
        got, _ = _timed(_collect(_client(openai_server.base_url, model="gpt-9"), cache, _requests(20)))
    assert isinstance(got, EndpointError), got
    assert f"does not serve the model 'gpt-9' (HTTP {status})" in str(got)
    assert "The model `gpt-9` does not exist" in str(got)
    assert openai_server.request_count == 1


def test_a_fatal_answer_cancels_the_requests_in_flight(openai_server, tmp_path):
    openai_server.latency = 0.3
    openai_server.add_fault(Fault.auth(), times=None)  # 8 requests in flight when the first 401 comes back
    client = _client(openai_server.base_url, concurrency=8, response_format="json_schema")
    with CompletionCache(tmp_path / "c.sqlite") as cache:
        got, elapsed = _timed(_collect(client, cache, _requests(50)))
    assert isinstance(got, EndpointError)
    assert elapsed < 1.5  # not 50 / 8 rounds of 0.3 s
    openai_server.wait_idle()
    assert openai_server.request_count <= 8


# ------------------------------------------------------------------ the circuit breaker


def test_a_refusing_endpoint_trips_the_breaker_in_milliseconds(tmp_path):
    with refusing_port() as base_url, CompletionCache(tmp_path / "c.sqlite") as cache:
        got, elapsed = _timed(_collect(_client(base_url, backoff_base=0.5), cache, _requests(100)))
    assert isinstance(got, EndpointError), got
    assert str(got).startswith(f"endpoint {base_url} (model fake-model) unreachable: connection error")
    assert "none answered" in str(got)
    assert elapsed < 1.0


def test_a_hanging_endpoint_trips_the_breaker_after_one_timeout(tmp_path):
    with HangingServer() as server, CompletionCache(tmp_path / "c.sqlite") as cache:
        got, elapsed = _timed(_collect(_client(server.base_url, timeout=1.0), cache, _requests(100)))
    assert isinstance(got, EndpointError), got
    assert "unreachable: timed out after 1 s (no answer in 1.0 s; 1 attempt failed, none answered)" in str(got)
    assert 1.0 <= elapsed < 2.5  # one timeout; the probe did not hold the batch through its retries
    assert server.connections == 1  # only the probe went out


def test_a_hanging_endpoint_with_a_known_format_trips_after_one_timeout(tmp_path):
    with HangingServer() as server, CompletionCache(tmp_path / "c.sqlite") as cache:
        client = _client(server.base_url, timeout=1.0, concurrency=4, response_format="json_schema")
        got, elapsed = _timed(_collect(client, cache, _requests(100)))
    assert isinstance(got, EndpointError) and "timed out" in str(got)
    assert 1.0 <= elapsed < 2.5
    assert server.connections <= 8


def test_server_errors_everywhere_trip_the_breaker(openai_server, tmp_path):
    openai_server.add_fault(Fault.server_error(503), times=None)
    with CompletionCache(tmp_path / "c.sqlite") as cache:
        got, elapsed = _timed(_collect(_client(openai_server.base_url, concurrency=2), cache, _requests(100)))
    assert isinstance(got, EndpointError), got
    assert "failing: HTTP 503: The server had an error" in str(got) and "5 consecutive failures" in str(got)
    assert elapsed < 2
    assert openai_server.request_count <= 6  # max(5, concurrency) attempts, plus one in flight


@pytest.mark.parametrize(
    ("fault", "said"),
    [
        (Fault.junk(), "something that is not a chat completion: '<html><body>Service temporarily"),
        (Fault.junk('{"choices": [', json=True), "a body that is not JSON"),
    ],
)
def test_junk_bodies_trip_the_breaker(openai_server, tmp_path, fault, said):
    openai_server.add_fault(fault, times=None)
    with CompletionCache(tmp_path / "c.sqlite") as cache:
        got, _ = _timed(_collect(_client(openai_server.base_url), cache, _requests(30)))
    assert isinstance(got, EndpointError), got
    assert f"failing: the server answered {said}" in str(got)


def test_the_breaker_ignores_failures_between_successes(openai_server, tmp_path):
    # every 4th request fails for good: never 5 in a row, so the breaker stays closed (the limit decides)
    openai_server.add_fault(Fault.server_error(), times=None, match=lambda m: m[-1]["content"].endswith(("0", "4")))
    client = _client(openai_server.base_url, concurrency=1, max_retries=0, response_format="json_schema")
    with CompletionCache(tmp_path / "c.sqlite") as cache:
        got, _ = _timed(_collect(client, cache, _requests(20), failure_limit=FailureLimit(0.5)))
    assert isinstance(got, dict) and len(got) == 20
    assert sum(isinstance(r, Completion) for r in got.values()) == 16


# ------------------------------------------------------------------ too many failures, deadline


def test_too_many_failures_stop_as_soon_as_the_limit_is_certain(openai_server, tmp_path):
    # every 5th request fails (20 % of 100): past 10 % (the 11th failure) the outcome is certain
    openai_server.add_fault(Fault.server_error(), times=None, match=lambda m: m[-1]["content"].endswith(("0", "5")))
    client = _client(openai_server.base_url, concurrency=1, max_retries=1, response_format="json_schema")
    with CompletionCache(tmp_path / "c.sqlite") as cache:
        got, _ = _timed(_collect(client, cache, _requests(100)))
        cached = len(cache)
    assert isinstance(got, TooManyFailures), got
    assert got.failures == 11 and got.total == 100
    message = str(got)
    assert message.startswith(f"endpoint {openai_server.base_url} (model fake-model): 11 of 100 items failed")
    assert "11.0%, more than the limit of 10.0%" in message
    assert "commonest: 11x HTTP 500: The server had an error" in message and "a re-run resumes" in message
    assert cached == 40  # the 40 that succeeded before the 11th failure (request 50) are kept
    assert openai_server.request_count in (40 + 11 * 2, 40 + 11 * 2 + 1)  # and at most one more was sent


def test_rate_limits_everywhere_end_in_too_many_failures(openai_server, tmp_path):
    openai_server.add_fault(Fault.rate_limit(retry_after=0.01), times=None)
    with CompletionCache(tmp_path / "c.sqlite") as cache:
        got, elapsed = _timed(_collect(_client(openai_server.base_url, max_retries=2), cache, _requests(30)))
    assert isinstance(got, TooManyFailures) and "rate limited (429)" in str(got)
    assert elapsed < 5


def test_the_deadline_stops_the_batch(openai_server, tmp_path):
    openai_server.latency = 0.4
    client = _client(openai_server.base_url, concurrency=2, response_format="json_schema")
    with CompletionCache(tmp_path / "c.sqlite") as cache:
        got, elapsed = _timed(_collect(client, cache, _requests(40), deadline=1.0))
        assert cache.in_flight() == []
        cached = len(cache)
    assert isinstance(got, DeadlineExceeded), got
    assert "the deadline of 1 s passed" in str(got) and openai_server.base_url in str(got)
    assert 1.0 <= elapsed < 1.6
    assert 2 <= cached <= 6


# ------------------------------------------------------------------ label: nothing published on failure


@pytest.fixture
def ge_dev(store, examples):
    ingest("goemotions", [examples / "goemotions" / "dev.tsv"], store=store, tag="ge-dev")
    return store


@pytest.fixture
def ge_train(store, examples):
    ingest("goemotions", [examples / "goemotions" / "train.tsv"], store=store, tag="ge-train")
    return store


def _published(store) -> tuple[list[str], str]:
    root = Path(store.root)
    return sorted(p.name for p in (root / "snapshots").iterdir()), (root / "refs" / "latest.json").read_text()


def test_label_publishes_nothing_when_too_many_answers_do_not_parse_and_a_rerun_resumes(ge_dev, openai_server):
    before = _published(ge_dev)
    emotion = get_tasks(["emotion"])
    kw = {"store": ge_dev, "tasks": emotion, "model": "fake-model", "base_url": openai_server.base_url}
    # about a quarter of the answers are prose, not JSON
    openai_server.add_fault(Fault.invalid_json(), times=None, match=lambda m: messages_hash(m)[0] in "0123")
    with pytest.raises(TooManyFailures) as err:
        label_llm("ge-dev", tag="labeled", concurrency=4, **kw)
    assert _published(ge_dev) == before  # no snapshot, latest not moved
    assert err.value.failures == 11 and err.value.total == 100  # stopped at the 11th, as soon as it was certain
    assert "unparseable answer: no JSON object in the completion" in str(err.value)
    assert "I think the answer is joy" in str(err.value)  # one example, raw

    with CompletionCache(Path(ge_dev.root) / "cache" / "completions.sqlite") as cache:
        kept = len(cache)
    assert 11 <= kept < 100
    openai_server.reset_counts()
    # the prose answers were paid for and stay cached: accepting them takes a higher limit, and the
    # re-run sends only what the first run did not get
    r = label_llm("ge-dev", tag="labeled", max_failure_share=0.5, **kw)
    assert r.counters["cache_hits"] == kept and r.counters["requests_sent"] == openai_server.request_count
    assert openai_server.request_count == 100 - kept
    assert 11 <= r.counters["parse_failures"] <= 50
    assert _published(ge_dev) != before


def test_label_cli_fails_loudly(ge_dev, openai_server, fake_key):
    before = _published(ge_dev)
    store = Path(ge_dev.root)
    label = ["label", "ge-dev", "--task", "emotion", "-m", "m", "--base-url"]
    with refusing_port() as refused:
        proc, elapsed = _wb(*label, refused, store=store)
    _assert_one_line_error(proc, f"endpoint {refused} (model m) unreachable: connection error")
    assert elapsed < 10  # mostly interpreter start-up
    assert _published(ge_dev) == before

    openai_server.add_fault(Fault.auth(), times=None)
    proc, _ = _wb(*label, openai_server.base_url, store=store)
    _assert_one_line_error(proc, f"endpoint {openai_server.base_url} (model m) rejected the API key")
    assert "HTTP 401" in proc.stderr and fake_key not in proc.stderr + proc.stdout
    assert _published(ge_dev) == before

    with HangingServer() as hanging:
        proc, elapsed = _wb(*label, hanging.base_url, "--timeout", "1", store=store)
    _assert_one_line_error(proc, f"endpoint {hanging.base_url} (model m) unreachable: timed out after 1 s")
    assert elapsed < 12
    assert _published(ge_dev) == before

    openai_server.clear_faults()
    openai_server.latency = 0.5
    proc, _ = _wb(*label, openai_server.base_url, "--deadline", "1", store=store)
    _assert_one_line_error(proc, f"endpoint {openai_server.base_url} (model m): the deadline of 1 s passed")
    assert _published(ge_dev) == before

    openai_server.latency = 0.0
    openai_server.add_fault(Fault.invalid_json(), times=None)
    proc, _ = _wb(*label, openai_server.base_url, "--max-failures", "0.5", store=store)
    _assert_one_line_error(proc, "items failed")
    assert "more than the limit of 50.0%" in proc.stderr and "unparseable answer: no JSON object" in proc.stderr
    assert _published(ge_dev) == before


def test_augment_cli_fails_loudly(ge_train, tmp_path):
    targets = tmp_path / "targets.toml"
    targets.write_text("[emotion]\nmin_count = 3\n")
    before = _published(ge_train)
    augment = ["augment", "ge-train", "--task", "emotion", "--target", str(targets), "-m", "m", "--base-url"]
    with refusing_port() as refused:
        proc, _ = _wb(*augment, refused, store=Path(ge_train.root))
    _assert_one_line_error(proc, f"endpoint {refused} (model m) unreachable")
    assert _published(ge_train) == before


def _wb(*args: str, store: Path) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "WORKBENCH_STORE": str(store), "COLUMNS": "200", "NO_COLOR": "1"}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "ui.cli", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120
    )
    return proc, time.perf_counter() - start


def _assert_one_line_error(proc: subprocess.CompletedProcess, expected: str) -> None:
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]


def test_pipeline_label_stage_takes_the_failure_policy_and_fails_loudly(ge_dev, openai_server, tmp_path):
    """`workbench run --config` with an LLM [label] stage: the same policy, set in the TOML."""
    store = Path(ge_dev.root)
    before = _published(ge_dev)
    cfg = tmp_path / "pipeline.toml"
    stage = '[label]\ninput = "ge-dev"\ntasks = ["emotion"]\nlabeler = "llm"\nmodel = "m"\n'
    cfg.write_text(stage + 'base_url = "http://127.0.0.1:1/v1"\nmax_failures = 1.5\n')
    proc, _ = _wb("run", "--config", str(cfg), store=store)
    _assert_one_line_error(proc, "[label]: 'max_failures' must be between 0 and 1, got 1.5")
    openai_server.add_fault(Fault.invalid_json(), times=None)
    cfg.write_text(stage + f'base_url = "{openai_server.base_url}"\nmax_failures = 0.25\ntimeout = 5\n')
    proc, _ = _wb("run", "--config", str(cfg), store=store)
    _assert_one_line_error(proc, "items failed")
    assert "more than the limit of 25.0%" in proc.stderr
    assert _published(ge_dev) == before


# ------------------------------------------------------------------ same inputs, same snapshot


def test_labeling_twice_gives_the_same_snapshot(ge_dev, openai_server):
    kw = {"store": ge_dev, "tasks": get_tasks(["emotion"]), "model": "fake-model", "base_url": openai_server.base_url}
    first = label_llm("ge-dev", **kw)
    time.sleep(1.1)  # a label stamped with the time of the run would differ now
    second = label_llm("ge-dev", **kw)
    assert second.counters["requests_sent"] == 0 and second.counters["cache_hits"] == 100
    assert second.snapshot_id == first.snapshot_id and second.reused
    llm = [lab for rec in ge_dev.iter_records(first.snapshot_id) for lab in rec["labels"] if lab["source"] == "llm"]
    assert llm and all(lab["created_at"] is not None for lab in llm)  # when each completion was made


def test_local_labeling_twice_gives_the_same_snapshot(ge_train):
    tasks = get_tasks(["emotion", "traits"])
    first = label_local("ge-train", store=ge_train, tasks=tasks)
    assert label_local("ge-train", store=ge_train, tasks=tasks).snapshot_id == first.snapshot_id


def test_augmenting_twice_gives_the_same_snapshot(ge_train, examples, openai_server, tmp_path):
    from test_augment import TARGETS, GoEmotionsResponder

    from labeling.augment import augment

    store = ge_train
    targets = tmp_path / "targets.toml"
    targets.write_text(TARGETS)
    openai_server.responder = GoEmotionsResponder(examples)
    kw = {"store": store, "task": "emotion", "targets": targets, "model": "m", "base_url": openai_server.base_url}
    first = augment("ge-train", per_request=4, **kw)
    time.sleep(1.1)
    second = augment("ge-train", per_request=4, **kw)
    assert second.counters["requests_sent"] == 0 and first.counters["kept"] == second.counters["kept"] > 0
    assert second.snapshot_id == first.snapshot_id


# ------------------------------------------------------------------ requests in flight, shared by processes

_RUN = textwrap.dedent(
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
        sent = 0
        with CompletionCache(cache_path) as cache:
            print("READY", flush=True)
            sys.stdin.readline()  # start together
            async for index, result in complete_many(client, cache, requests):
                sent += not result.cached
                print("DONE", index, flush=True)
        print("SENT", sent, flush=True)
        await client.aclose()

    asyncio.run(main())
    """
).format(schema=SCHEMA)


def _start(base_url: str, cache_path: Path, n: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", _RUN, base_url, str(cache_path), str(n)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout.readline().strip() == "READY"
    return proc


def test_two_processes_send_each_request_once(openai_server, tmp_path):
    openai_server.latency = 0.1
    n = 40
    cache_path = tmp_path / "completions.sqlite"
    procs = [_start(openai_server.base_url, cache_path, n) for _ in range(2)]
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outputs = [proc.communicate(timeout=60)[0] for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outputs
    for out in outputs:
        assert sorted(int(line.split()[1]) for line in out.splitlines() if line.startswith("DONE")) == list(range(n))
    sent = [int(line.split()[1]) for out in outputs for line in out.splitlines() if line.startswith("SENT")]
    assert openai_server.request_count == n == sum(sent)  # 40 distinct requests, 40 sent (not 80)
    assert max(openai_server.counts_by_hash().values()) == 1
    assert min(sent) > 0  # both did share the work
    with CompletionCache(cache_path) as cache:
        assert len(cache) == n and cache.in_flight() == []


def test_a_holder_killed_with_sigkill_blocks_nothing(openai_server, tmp_path):
    openai_server.add_fault(Fault.slow(30.0), times=4)  # the first process's 4 requests hang at the server
    cache_path = tmp_path / "completions.sqlite"
    with CompletionCache(cache_path) as cache:  # no probe: 4 requests go out at once
        cache.remember_response_format(openai_server.base_url, "fake-model", "json_schema")
    proc = _start(openai_server.base_url, cache_path, 12)
    proc.stdin.write("go\n")
    proc.stdin.flush()
    with CompletionCache(cache_path) as cache:
        deadline = time.monotonic() + 10
        while openai_server.request_count < 4 and time.monotonic() < deadline:  # sent, not only claimed
            time.sleep(0.05)
        held = cache.in_flight()
        assert len(held) == 4 and all(owner.startswith(f"{proc.pid}@") for _, owner in held)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        # same host, pid gone: its claims are taken over at once, not after the 60 s lease
        got, elapsed = _timed(_collect(_client(openai_server.base_url), cache, _requests(12)))
        assert isinstance(got, dict) and all(isinstance(r, Completion) for r in got.values())
        assert elapsed < 3
        assert cache.in_flight() == []


def test_a_claim_is_waited_for_until_its_lease_lapses(openai_server, tmp_path):
    with CompletionCache(tmp_path / "c.sqlite") as cache:
        client = _client(openai_server.base_url)
        key = client.key_for(_requests(1)[0].messages, json_schema=SCHEMA, prompt_version="v1")
        # a run on another machine holds it, then stops renewing (frozen, or its network went away)
        assert cache.claim(key, "4242@elsewhere#00ff", lease=1.0).status == "claimed"
        assert cache.claim(key, cache.new_owner()).status == "held"
        got, elapsed = _timed(_collect(client, cache, _requests(3)))
        assert isinstance(got, dict) and all(isinstance(r, Completion) for r in got.values())
        assert 0.9 <= elapsed < 3  # the other two went ahead; this one waited for the lease, then was sent
        assert cache.in_flight() == []
    assert openai_server.request_count == 3


def test_a_completion_another_run_stores_is_taken_from_the_cache(openai_server, tmp_path):
    async def scenario(cache: CompletionCache):
        client = _client(openai_server.base_url, response_format="json_schema")
        other = _client(openai_server.base_url, response_format="json_schema")
        request = _requests(1)[0]
        key = client.key_for(request.messages, json_schema=SCHEMA, prompt_version="v1")
        holder = "4242@elsewhere#00ff"
        assert cache.claim(key, holder).status == "claimed"

        async def the_other_run():
            await asyncio.sleep(0.5)
            done = await other.complete(request.messages, json_schema=SCHEMA, prompt_version="v1", key=key)
            cache.put(done, provider=other.provider, prompt_version="v1")
            cache.release(key, holder)
            await other.aclose()

        task = asyncio.create_task(the_other_run())
        got = await _collect(client, cache, _requests(3))
        await task
        return got

    with CompletionCache(tmp_path / "c.sqlite") as cache:
        got, _ = _timed(scenario(cache))
    assert isinstance(got, dict) and got[0].cached  # waited for, then read from the cache
    assert openai_server.request_count == 3 and max(openai_server.counts_by_hash().values()) == 1
