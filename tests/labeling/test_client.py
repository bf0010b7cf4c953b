"""The LLM client against a real local OpenAI-compatible HTTP server: wire format, retries, fallbacks, keys."""

from __future__ import annotations

import asyncio
import json
import pickle
import time
import urllib.request

import pytest
from openai_server import Fault, instance_from_schema

from curation.errors import WorkbenchError
from labeling.batch import CompletionRequest, FailureLimit, complete_many
from labeling.cache import CompletionCache
from labeling.client import LLMClient, _strict_compatible
from labeling.completion import Completion, Failure, provider_identity

SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["joy", "sadness", "anger"]},
        "score": {"type": "integer", "minimum": 1, "maximum": 10},
    },
    "required": ["label", "score"],
    "additionalProperties": False,
}


def _messages(i: int | str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "Label the emotion of the text."},
        {"role": "user", "content": f"text number {i}"},
    ]


def _client(server, **kwargs) -> LLMClient:
    kwargs.setdefault("backoff_base", 0.01)
    return LLMClient(model="fake-model", base_url=server.base_url, **kwargs)


async def _complete(client: LLMClient, messages, **kwargs):
    try:
        return await client.complete(messages, **kwargs)
    finally:
        await client.aclose()


def _run(coro):
    return asyncio.run(coro)


async def _collect(client, cache, requests, **kwargs) -> dict[int, Completion | Failure]:
    out = {}
    try:
        async for index, result in complete_many(client, cache, requests, **kwargs):
            assert index not in out
            out[index] = result
    finally:
        await client.aclose()
    return out


def test_wire_format_usage_and_the_key_is_sent(openai_server, fake_key):
    result = _run(_complete(_client(openai_server), _messages(1), json_schema=SCHEMA, prompt_version="v1"))
    assert isinstance(result, Completion)
    seed = int(openai_server.log[0].message_hash[:12], 16)  # the server's deterministic choice
    assert json.loads(result.content) == instance_from_schema(SCHEMA, seed=seed)
    assert result.prompt_tokens > 0 and result.completion_tokens > 0
    assert result.finish_reason == "stop" and result.response_format_used == "json_schema"
    assert not result.cached and result.attempts == 1 and len(result.key) == 64
    (entry,) = openai_server.log
    assert entry.authorization == f"Bearer {fake_key}"
    assert entry.response_format == "json_schema" and entry.model == "fake-model"

    with urllib.request.urlopen(f"{openai_server.base_url}/models") as response:
        assert "fake-model" in [m["id"] for m in json.load(response)["data"]]


def test_429_retried_honouring_retry_after(openai_server):
    openai_server.add_fault(Fault.rate_limit(retry_after=0.6), times=2)
    start = time.perf_counter()
    result = _run(_complete(_client(openai_server), _messages(1), json_schema=SCHEMA))
    elapsed = time.perf_counter() - start
    assert isinstance(result, Completion) and result.attempts == 3
    assert openai_server.request_count == 3
    assert [e.status for e in openai_server.log] == [429, 429, 200]
    # two waits of Retry-After (0.6 s) plus at most 10 % jitter each; the backoff alone would be ~0.01 s
    assert 1.2 <= elapsed < 2.5


def test_500_retried_with_backoff(openai_server):
    openai_server.add_fault(Fault.server_error(500), times=2)
    openai_server.add_fault(Fault.server_error(503), times=1)
    result = _run(_complete(_client(openai_server), _messages(1), json_schema=SCHEMA))
    assert isinstance(result, Completion) and result.attempts == 4
    assert [e.status for e in openai_server.log] == [500, 500, 503, 200]


def test_timeout_then_success(openai_server):
    # an endpoint that has answered once is alive: a timeout is retried (one that never answered trips the
    # breaker at its first timeout, see test_failures.py)
    async def main():
        client = _client(openai_server, timeout=0.5)
        try:
            assert isinstance(await client.complete(_messages(0)), Completion)
            openai_server.add_fault(Fault.slow(3.0), times=1)
            start = time.perf_counter()
            result = await client.complete(_messages(1))
            return result, time.perf_counter() - start
        finally:
            await client.aclose()

    result, elapsed = _run(main())
    assert isinstance(result, Completion) and result.attempts == 2
    assert elapsed < 2.5  # did not wait for the slow answer
    assert openai_server.request_count == 3


def test_give_up_after_max_retries_and_the_batch_goes_on(openai_server, tmp_path):
    openai_server.add_fault(Fault.server_error(), times=None, match=lambda m: "poison" in m[-1]["content"])
    requests = [CompletionRequest(_messages(i), SCHEMA, "v1") for i in ["a", "poison", "b", "c", "d"]]
    with CompletionCache(tmp_path / "c.sqlite") as cache:
        limit = FailureLimit(0.5)  # one item of five may fail (the default limit is 10 %)
        results = _run(_collect(_client(openai_server, max_retries=2), cache, requests, failure_limit=limit))
        assert sorted(results) == [0, 1, 2, 3, 4]
        failure = results[1]
        assert isinstance(failure, Failure) and failure.kind == "server_error" and failure.attempts == 3
        assert "gave up after 3 attempts" in failure.reason
        assert all(isinstance(results[i], Completion) for i in (0, 2, 3, 4))
        assert len(cache) == 4  # failures are not cached: a re-run retries them
    poison = [e for e in openai_server.log if "poison" in e.messages[-1]["content"]]
    assert len(poison) == 3


def test_a_plain_400_is_not_retried(openai_server):
    openai_server.add_fault(Fault.bad_request("'messages' is too long"), times=1)
    result = _run(_complete(_client(openai_server), _messages(1), json_schema=SCHEMA))
    assert isinstance(result, Failure) and result.kind == "bad_request" and result.status == 400
    assert "too long" in result.reason
    assert openai_server.request_count == 1


def test_concurrency_is_bounded(openai_server, tmp_path):
    openai_server.latency = 0.2
    requests = [CompletionRequest(_messages(i), SCHEMA, "v1") for i in range(16)]
    with CompletionCache(tmp_path / "c.sqlite") as cache:
        start = time.perf_counter()
        results = _run(_collect(_client(openai_server, concurrency=4, response_format="json_schema"), cache, requests))
        elapsed = time.perf_counter() - start
    assert all(isinstance(r, Completion) for r in results.values())
    assert openai_server.max_in_flight == 4
    assert 0.8 <= elapsed < 2.0  # 16 requests, 4 at a time, 0.2 s each


def test_json_schema_unsupported_falls_back_once_and_is_remembered(openai_server, tmp_path):
    openai_server.supports_json_schema = False
    first = [CompletionRequest(_messages(i), SCHEMA, "v1") for i in range(10)]
    with CompletionCache(tmp_path / "c.sqlite") as cache:
        results = _run(_collect(_client(openai_server, concurrency=8), cache, first))
        assert all(isinstance(r, Completion) and r.response_format_used == "json_object" for r in results.values())
        for r in results.values():  # the schema went into the prompt, and the answer follows it
            assert set(json.loads(r.content)) == {"label", "score"}
        rejected = openai_server.requests(status=400)
        assert len(rejected) == 1 and rejected[0].response_format == "json_schema"  # one probe, not one per request
        assert len(openai_server.requests(response_format="json_object")) == 10
        assert cache.response_format(f"http://127.0.0.1:{openai_server.port}/v1", "fake-model") == "json_object"

        # a later run (a new client, same cache file) does not probe again
        openai_server.reset_counts()
        later = [CompletionRequest(_messages(i), SCHEMA, "v1") for i in range(10, 15)]
        results = _run(_collect(_client(openai_server), cache, later))
        assert all(r.response_format_used == "json_object" for r in results.values())
        assert openai_server.requests(response_format="json_schema") == []
        assert openai_server.request_count == 5


def test_no_structured_outputs_at_all_falls_back_to_text(openai_server):
    openai_server.supports_json_schema = False
    openai_server.supports_json_object = False
    client = _client(openai_server)
    result = _run(_complete(client, _messages(1), json_schema=SCHEMA))
    assert isinstance(result, Completion) and result.response_format_used == "text"
    assert "```json" in result.content  # prose around the JSON: the task's tolerant parser reads it
    assert [e.response_format for e in openai_server.log] == ["json_schema", "json_object", "text"]
    assert client.response_format == "text"


def test_truncated_and_invalid_content_come_back_raw(openai_server, tmp_path):
    openai_server.add_fault(Fault.truncated(), match=lambda m: m[-1]["content"].endswith("1"))
    openai_server.add_fault(Fault.invalid_json(), match=lambda m: m[-1]["content"].endswith("2"))
    requests = [CompletionRequest(_messages(i), SCHEMA, "v1") for i in range(3)]
    with CompletionCache(tmp_path / "c.sqlite") as cache:
        results = _run(_collect(_client(openai_server), cache, requests))
        assert results[1].finish_reason == "length"
        with pytest.raises(json.JSONDecodeError):
            json.loads(results[1].content)
        assert results[2].content.startswith("I think the answer is joy")
        # paid for, so cached; parsing (and its failure) is the task's business
        assert len(cache) == 3
        assert cache.get(results[1].key).content == results[1].content


def test_the_key_comes_from_the_environment_only(monkeypatch, openai_server):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(WorkbenchError, match="OPENAI_API_KEY is not set"):
        LLMClient(model="gpt-4o-mini")
    with pytest.raises(WorkbenchError, match="MY_KEY is not set"):
        LLMClient(model="m", base_url="https://llm.example.com/v1", api_key_env="MY_KEY")
    # a local server needs no key: a dummy one is sent
    _run(_complete(_client(openai_server), _messages(1)))
    assert openai_server.authorizations == ["Bearer sk-local-no-key"]
    # a dry-run client computes keys without any key and sends nothing
    dry = LLMClient(model="gpt-4o-mini", dry_run=True)
    assert len(dry.key_for(_messages(1), json_schema=None, prompt_version="v1")) == 64
    with pytest.raises(WorkbenchError, match="dry-run"):
        _run(dry.complete(_messages(1)))


def test_the_client_never_shows_the_key(fake_key, openai_server):
    client = _client(openai_server)
    assert fake_key not in repr(client)
    ours = [v for v in vars(client).values() if not type(v).__module__.startswith("openai")]
    assert all(fake_key not in repr(v) for v in ours)
    with pytest.raises(TypeError, match="not serialisable"):
        pickle.dumps(client)
    _run(client.aclose())


def test_provider_identity():
    assert provider_identity(None) == "openai"
    assert provider_identity("https://api.openai.com/v1/") == "openai"
    assert provider_identity("http://LOCALHOST:8000/v1/") == "http://localhost:8000/v1"
    assert provider_identity("https://llm.example.com/v1") == "https://llm.example.com:443/v1"


def test_strict_mode_only_for_schemas_that_qualify():
    assert _strict_compatible(SCHEMA)
    assert not _strict_compatible({**SCHEMA, "required": ["label"]})
    assert not _strict_compatible({k: v for k, v in SCHEMA.items() if k != "additionalProperties"})


def test_bad_arguments_are_refused():
    with pytest.raises(WorkbenchError, match="concurrency"):
        LLMClient(model="m", base_url="http://127.0.0.1:1/v1", concurrency=0)
    with pytest.raises(WorkbenchError, match="response_format"):
        LLMClient(model="m", base_url="http://127.0.0.1:1/v1", response_format="yaml")
