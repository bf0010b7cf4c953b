"""The LLM client: any OpenAI-compatible chat-completions endpoint, bounded, retried, structured.

Built on the ``openai`` SDK's ``AsyncOpenAI`` with the SDK's own retries turned off
(``max_retries=0``), so the policy here is the only one and is testable:

* **concurrency bound**: at most ``concurrency`` requests in flight (a semaphore; a request keeps its
  slot while it backs off, so a rate-limited server sees less traffic, not more);
* **retries** on 429, 408/409, 5xx, timeouts, connection errors and bodies that are not a chat
  completion: exponential backoff with full jitter (``uniform(0, min(backoff_max, backoff_base *
  2**n))``), or the server's ``Retry-After`` / ``retry-after-ms`` when it sends one (plus up to 10 %
  jitter); other 4xx are not retried. After ``max_retries`` retries the request comes back as a
  :class:`~labeling.completion.Failure` (the batch decides how many failures it tolerates);
* **fatal answers** raise :class:`~labeling.completion.EndpointError` at once, with the server's own
  message: 401/403 (the key), an unknown model (404 ``model_not_found``, or a 400/404 saying the model
  does not exist), any other 404 (a wrong base URL) and a 429 ``insufficient_quota``. Every later
  request of this client raises the same error without sending anything;
* **a circuit breaker**: timeouts, connection errors, 5xx and junk bodies, counted over all requests,
  trip it after ``breaker_threshold`` in a row with no success in between (default: ``concurrency``,
  at least 5), and at the first one while the endpoint has never answered and no other attempt is in
  flight (every attempt made so far failed: a refused port fails in milliseconds, a hanging one in one
  ``timeout``). A tripped breaker is an :class:`~labeling.completion.EndpointError` naming the
  commonest error;
* **structured outputs**: ``response_format`` ``json_schema`` (``strict`` only when the schema
  qualifies). A server that rejects it (400 naming response_format / json_schema) gets
  ``json_object``, then plain text, with the schema written into the system prompt. The first
  structured request probes while the others wait, for ONE attempt: if the server does not answer it
  (timeout, 5xx, 429) the others go ahead without waiting for its retries. The answer is remembered
  per client and, by :func:`labeling.batch.complete_many`, in the cache file, so later runs do not
  probe again;
* **the API key** is read from the environment (``api_key_env``) when the client is built and handed
  to the SDK; it is never an attribute of this object, never in a repr, a log line, a cache row or a
  cache key. A remote endpoint without the variable set is a :class:`WorkbenchError`; a local one
  (127.0.0.1, localhost) gets a dummy key.

One client belongs to one event loop (the SDK's connection pool does); close it with :meth:`aclose`
or ``async with``.
"""

from __future__ import annotations

import asyncio
import email.utils
import importlib
import json
import logging
import os
import random
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import openai

from curation.errors import WorkbenchError
from labeling.cache import completion_key
from labeling.completion import (
    RESPONSE_FORMATS,
    Completion,
    EndpointError,
    Failure,
    ResponseFormatKind,
    endpoint_name,
    is_local_provider,
    provider_identity,
)
from labeling.pricing import estimate_prompt_tokens, estimate_tokens

log = logging.getLogger(__name__)

OPENAI_BASE_URL = "https://api.openai.com/v1"
LOCAL_DUMMY_KEY = "sk-local-no-key"
_RETRYABLE_STATUS = {408, 409}
_FORMAT_WORDS = re.compile(r"response_format|json_schema|json_object|structured output|guided", re.IGNORECASE)
_SCHEMA_NAME = re.compile(r"[^a-zA-Z0-9_-]")
# "The model `x` does not exist", "model 'x' not found, try pulling it first", "Unknown model: x", ...
_UNKNOWN_MODEL = re.compile(
    r"\bmodel\b.{0,120}?\b(does not exist|doesn't exist|not found|is not available|unknown)\b"
    r"|\b(unknown|invalid|no such) model\b",
    re.IGNORECASE | re.DOTALL,
)
_TRANSPORT = ("timeout", "connection")  # the endpoint did not answer at all
_BREAKER_KINDS = (*_TRANSPORT, "server_error", "invalid_response")
DEFAULT_BREAKER_THRESHOLD = 5
_SERVER_MESSAGE_CHARS = 300

Messages = Sequence[Mapping[str, Any]]


class _Rejected:
    """The server refused this response format (not a failure of the request itself)."""

    def __init__(self, message: str) -> None:
        self.message = message


@dataclass(frozen=True)
class _Retry:
    """An attempt that failed in a way worth retrying (after ``delay`` when the server said so)."""

    failure: Failure
    delay: float | None = None
    kind: ResponseFormatKind = "json_schema"  # the response format it was sent with

    def given_up(self) -> Failure:
        f = self.failure
        return Failure(f"{f.reason} (gave up after {f.attempts} attempts)", f.kind, f.key, f.attempts, f.status)


class LLMClient:
    """An OpenAI-compatible chat client with a concurrency bound, retries and structured outputs.

    Args (keyword-only):
        model: the model name the endpoint serves.
        base_url: an OpenAI-compatible ``.../v1`` URL; None is OpenAI itself (``OPENAI_BASE_URL`` is ignored:
            the endpoint is part of every cache key, so it is only ever set here).
        api_key_env: the environment variable holding the key.
        concurrency: requests in flight at most.
        timeout: seconds per HTTP attempt (connect + read).
        max_retries: retries after the first attempt, for retryable errors only.
        temperature, max_tokens, seed: generation parameters (None: not sent); part of the cache key.
            Reasoning models (o-series) refuse ``temperature``: pass ``temperature=None``.
        backoff_base, backoff_max: the exponential backoff's first ceiling and its cap, seconds.
        max_retry_after: the longest ``Retry-After`` honoured, seconds.
        response_format: the format the endpoint is known to accept (skips the probe); None: probe.
        breaker_threshold: consecutive timeouts / connection errors / 5xx / junk bodies (no success in between)
            that trip the circuit breaker; None: ``max(5, concurrency)`` (one wave of failures at full concurrency).
        free: True: completions cost nothing (a self-hosted model); False: price the model even on a local
            URL (a local proxy to a paid API); None: a local URL (127.0.0.1, localhost) is free.
        dry_run: build a client that only computes keys (for estimates): no key needed, nothing can be sent.
    """

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout: float = 30.0,
        max_retries: int = 6,
        temperature: float | None = 0.0,
        max_tokens: int | None = None,
        seed: int | None = None,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        max_retry_after: float = 120.0,
        response_format: ResponseFormatKind | None = None,
        breaker_threshold: int | None = None,
        free: bool | None = None,
        dry_run: bool = False,
    ) -> None:
        if not model or not isinstance(model, str):
            raise WorkbenchError("LLMClient: model must be a non-empty string")
        if concurrency < 1:
            raise WorkbenchError(f"LLMClient: concurrency must be >= 1, got {concurrency}")
        if timeout <= 0:
            raise WorkbenchError(f"LLMClient: timeout must be > 0 seconds, got {timeout}")
        if max_retries < 0:
            raise WorkbenchError(f"LLMClient: max_retries must be >= 0, got {max_retries}")
        if breaker_threshold is not None and breaker_threshold < 1:
            raise WorkbenchError(f"LLMClient: breaker_threshold must be >= 1, got {breaker_threshold}")
        if response_format is not None and response_format not in RESPONSE_FORMATS:
            raise WorkbenchError(
                f"LLMClient: response_format must be one of {RESPONSE_FORMATS}, got {response_format!r}"
            )

        self.model = model
        self.base_url = base_url
        self.provider = provider_identity(base_url)
        self.is_local = is_local_provider(self.provider)
        self.free = self.is_local if free is None else free
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.seed = seed
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self._format: ResponseFormatKind | None = response_format
        self._probe_inconclusive = False
        self._semaphore = asyncio.Semaphore(concurrency)
        self._probe_lock = asyncio.Lock()
        self.breaker_threshold = breaker_threshold or max(DEFAULT_BREAKER_THRESHOLD, concurrency)
        self._answered = False  # any HTTP answer from the endpoint yet (a 4xx or 5xx counts: it is there)
        self._streak = 0  # breaker-counted failures in a row, with no success in between
        self._quiet_since: float | None = None  # start of the first attempt since the last success
        self._streak_reasons: Counter[tuple[str, str]] = Counter()  # (reason, kind) -> failures
        self._attempts_in_flight = 0
        self._broken: EndpointError | None = None  # set once: every later request raises it
        self.dry_run = dry_run
        self._sdk = None if dry_run else self._make_sdk_client()

    def _make_sdk_client(self) -> openai.AsyncOpenAI:
        key = require_api_key(self.base_url, self.api_key_env) or LOCAL_DUMMY_KEY
        httpx = _httpx_module()
        http_client = openai.DefaultAsyncHttpxClient(
            limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency),
        )
        return openai.AsyncOpenAI(
            api_key=key,
            base_url=self.base_url or OPENAI_BASE_URL,
            timeout=self.timeout,
            max_retries=0,  # our retry policy is the only one
            http_client=http_client,
        )

    def __repr__(self) -> str:
        return f"LLMClient(model={self.model!r}, provider={self.provider!r}, concurrency={self.concurrency})"

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("LLMClient holds a live connection pool and credentials: it is not serialisable")

    async def aclose(self) -> None:
        if self._sdk is not None:
            await self._sdk.close()

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def endpoint(self) -> str:
        """How errors name this client's endpoint: ``endpoint <provider> (model <model>)`` (never the key)."""
        return endpoint_name(self.provider, self.model)

    # -- identity of requests
    @property
    def params(self) -> dict[str, Any]:
        """Generation parameters sent with every request (and part of every cache key)."""
        return {"temperature": self.temperature, "max_tokens": self.max_tokens, "seed": self.seed}

    @property
    def response_format(self) -> ResponseFormatKind | None:
        """The structured-output format this endpoint accepted (None: not probed yet)."""
        return self._format

    def assume_response_format(self, kind: ResponseFormatKind) -> None:
        """Skip the probe: the endpoint is known (from an earlier run) to accept ``kind``."""
        if kind not in RESPONSE_FORMATS:
            raise WorkbenchError(f"response format must be one of {RESPONSE_FORMATS}, got {kind!r}")
        self._format = kind

    def key_for(self, messages: Messages, *, json_schema: Mapping[str, Any] | None, prompt_version: str) -> str:
        """The cache key of a request (see :func:`labeling.cache.completion_key`)."""
        return completion_key(
            provider=self.provider,
            model=self.model,
            prompt_version=prompt_version,
            params=self.params,
            messages=messages,
            json_schema=json_schema,
        )

    # -- completions
    async def complete(
        self,
        messages: Messages,
        *,
        json_schema: Mapping[str, Any] | None = None,
        prompt_version: str = "",
        schema_name: str = "response",
        key: str | None = None,
    ) -> Completion | Failure:
        """One completion (``cached=False``), or a :class:`Failure` after the retries.

        Raises :class:`EndpointError` for an answer no retry can fix (the key, an unknown model) and when
        the circuit breaker trips; a failure of one request is a :class:`Failure`, not an exception.
        """
        if not messages:
            raise WorkbenchError("LLMClient.complete: messages must not be empty")
        if self._sdk is None:
            raise WorkbenchError("LLMClient.complete: this is a dry-run client, it sends nothing")
        key = key or self.key_for(messages, json_schema=json_schema, prompt_version=prompt_version)
        async with self._semaphore:
            if json_schema is None:
                result = await self._send(messages, "text", None, schema_name, key)
                return result if not isinstance(result, _Rejected) else self._rejected_failure(result, key)
            unanswered: _Retry | None = None
            if self._format is None and not self._probe_inconclusive:
                async with self._probe_lock:
                    if self._format is None and not self._probe_inconclusive:
                        probed = await self._try_formats(messages, json_schema, schema_name, key, probe=True)
                        # a probe that failed for another reason (server down) must not serialise the batch
                        self._probe_inconclusive = self._format is None
                        if not isinstance(probed, _Retry):
                            return probed
                        unanswered = probed
            if unanswered is None:
                return await self._try_formats(messages, json_schema, schema_name, key)
            # the probe's first attempt got no answer: its retries run outside the lock, beside the others
            if unanswered.failure.attempts > self.max_retries:
                return unanswered.given_up()
            await asyncio.sleep(self._backoff(unanswered.failure.attempts, unanswered.delay))
            return await self._try_formats(
                messages, json_schema, schema_name, key, start=unanswered.kind, attempts=unanswered.failure.attempts
            )

    async def _try_formats(
        self,
        messages,
        json_schema,
        schema_name,
        key,
        *,
        probe: bool = False,
        start: ResponseFormatKind | None = None,
        attempts: int = 0,
    ) -> Completion | Failure | _Retry:
        """The request in the best format the server takes; ``probe``: one attempt each, a retryable failure back."""
        first = RESPONSE_FORMATS.index(start or self._format or "json_schema")
        rejected: _Rejected | None = None
        for kind in RESPONSE_FORMATS[first:]:
            result = await self._send(messages, kind, json_schema, schema_name, key, probe=probe, attempts=attempts)
            attempts = 0
            if isinstance(result, _Rejected):
                rejected = result
                log.warning("%s (%s) refused response_format %s: %s", self.provider, self.model, kind, result.message)
                continue
            # learn the format that worked; never upgrade back past one the server refused
            if isinstance(result, Completion) and (
                self._format is None or RESPONSE_FORMATS.index(kind) > RESPONSE_FORMATS.index(self._format)
            ):
                self._format = kind
            return result
        assert rejected is not None
        return self._rejected_failure(rejected, key)

    @staticmethod
    def _rejected_failure(rejected: _Rejected, key: str) -> Failure:
        return Failure(f"bad request: {rejected.message}", "bad_request", key, attempts=1, status=400)

    def _request(self, messages, kind: ResponseFormatKind, json_schema, schema_name: str) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": list(messages)}
        body.update({k: v for k, v in self.params.items() if v is not None})
        if json_schema is None:
            return body
        if kind == "json_schema":
            name = _SCHEMA_NAME.sub("_", schema_name)[:64] or "response"
            spec = {"name": name, "schema": dict(json_schema), "strict": _strict_compatible(json_schema)}
            body["response_format"] = {"type": "json_schema", "json_schema": spec}
            return body
        body["messages"] = _with_schema_instruction(messages, json_schema)
        if kind == "json_object":
            body["response_format"] = {"type": "json_object"}
        return body

    async def _send(
        self, messages, kind, json_schema, schema_name, key, *, probe: bool = False, attempts: int = 0
    ) -> Completion | Failure | _Rejected | _Retry:
        """One request with the retry policy; a refusal of the response format comes back as _Rejected.

        ``attempts``: made already (by a probe); ``probe``: return the first retryable failure as a _Retry.
        """
        body = self._request(messages, kind, json_schema, schema_name)
        attempt = attempts
        while True:
            if self._broken is not None:
                raise self._broken
            attempt += 1
            if self._quiet_since is None:
                self._quiet_since = time.monotonic()
            outcome = await self._attempt(body, kind, key, attempt)
            if isinstance(outcome, Completion):
                self._streak = 0
                self._quiet_since = None
                return outcome
            if not isinstance(outcome, _Retry):
                return outcome
            failure = outcome.failure
            if failure.kind in _BREAKER_KINDS:
                self._count_toward_breaker(failure)  # raises when it trips
            if probe:
                return outcome
            if attempt > self.max_retries:
                return outcome.given_up()
            wait = self._backoff(attempt, outcome.delay)
            log.debug("%s: %s; retry %d/%d in %.2f s", self.provider, failure.reason, attempt, self.max_retries, wait)
            await asyncio.sleep(wait)

    async def _attempt(self, body, kind, key, attempt) -> Completion | Failure | _Rejected | _Retry:
        """One HTTP attempt, classified; raises :class:`EndpointError` for a fatal answer."""
        self._attempts_in_flight += 1
        try:
            response = await self._sdk.chat.completions.create(**body)
        except openai.APIStatusError as exc:
            self._answered = True
            return self._status_outcome(exc, kind, key, attempt)
        except openai.APITimeoutError:
            return _Retry(Failure(f"timed out after {self.timeout:g} s", "timeout", key, attempt), kind=kind)
        except openai.APIConnectionError as exc:
            return _Retry(Failure(f"connection error: {exc.__cause__ or exc}", "connection", key, attempt), kind=kind)
        except json.JSONDecodeError as exc:  # a 200 whose body is not JSON (the SDK's json.loads)
            self._answered = True
            reason = f"the server answered a body that is not JSON ({exc})"
            return _Retry(Failure(reason, "invalid_response", key, attempt), kind=kind)
        finally:
            self._attempts_in_flight -= 1
        self._answered = True
        return self._completion(response, kind, key, attempt, body["messages"])

    def _status_outcome(self, exc: openai.APIStatusError, kind, key, attempt) -> Failure | _Rejected | _Retry:
        status = exc.status_code
        message = self._clean(_error_message(exc))
        fatal = self._fatal(status, _error_code(exc), message)
        if fatal is not None:
            self._broken = fatal
            raise fatal from None
        if status in (400, 422):
            if kind != "text" and _FORMAT_WORDS.search(message):
                return _Rejected(message)
            return Failure(f"bad request: {message}", "bad_request", key, attempt, status)
        if status == 429:
            failure = Failure(f"rate limited (429): {message}", "rate_limited", key, attempt, 429)
            return _Retry(failure, _retry_after(exc.response.headers), kind)
        if status < 500 and status not in _RETRYABLE_STATUS:
            return Failure(f"HTTP {status}: {message}", "bad_request", key, attempt, status)
        failure = Failure(f"HTTP {status}: {message}", "server_error", key, attempt, status)
        return _Retry(failure, _retry_after(exc.response.headers), kind)

    def _fatal(self, status: int, code: str | None, message: str) -> EndpointError | None:
        """The error for an answer that every request of this run would get too (None: not fatal)."""

        def error(problem: str) -> EndpointError:
            return EndpointError(
                f"{problem}: {message}", provider=self.provider, model=self.model, status=status, server_message=message
            )

        if status == 401:
            return error(f"rejected the API key from {self.api_key_env} (HTTP 401)")
        if status == 403:
            return error(f"refused access with the API key from {self.api_key_env} (HTTP 403)")
        if code == "model_not_found" or (status in (400, 404) and _UNKNOWN_MODEL.search(message)):
            return error(f"does not serve the model {self.model!r} (HTTP {status})")
        if status == 404:
            return error("answered 404 Not Found (is the base URL right? it usually ends in /v1)")
        if status == 429 and code == "insufficient_quota":
            return error("has no quota left (HTTP 429 insufficient_quota)")
        return None

    def _count_toward_breaker(self, failure: Failure) -> None:
        if self._broken is not None:  # tripped by another request meanwhile
            raise self._broken
        if self._streak == 0:
            self._streak_reasons.clear()
        self._streak += 1
        self._streak_reasons[failure.reason, failure.kind] += 1
        # never answered, and no other attempt is still out: every attempt this client made has failed
        nothing_answered = not self._answered and self._attempts_in_flight == 0
        if self._streak < self.breaker_threshold and not nothing_answered:
            return
        (reason, kind), _ = self._streak_reasons.most_common(1)[0]
        quiet = time.monotonic() - (self._quiet_since or time.monotonic())
        n = self._streak
        if self._answered:
            detail = f"{n} consecutive failures in {quiet:.1f} s, no success in between"
        else:
            detail = f"no answer in {quiet:.1f} s; {n} attempt{'s' if n > 1 else ''} failed, none answered"
        self._broken = EndpointError(
            f"{'unreachable' if kind in _TRANSPORT else 'failing'}: {reason} ({detail})",
            provider=self.provider,
            model=self.model,
            status=failure.status,
        )
        log.debug("%s", self._broken)
        raise self._broken

    def _clean(self, message: str) -> str:
        """A server's message on one line, shortened, and without the key should the server echo it."""
        key = getattr(self._sdk, "api_key", None)
        if key and len(key) >= 8:
            message = message.replace(key, "***")
        message = " ".join(str(message).split())
        if len(message) > _SERVER_MESSAGE_CHARS:
            message = message[: _SERVER_MESSAGE_CHARS - 3] + "..."
        return message

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None and retry_after >= 0:
            honoured = min(retry_after, self.max_retry_after)
            return honoured + random.uniform(0, 0.1 * honoured)
        return random.uniform(0, min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)))

    def _completion(self, response: Any, kind: ResponseFormatKind, key: str, attempts: int, sent: Messages):
        if not getattr(response, "choices", None):
            shown = self._clean(response if isinstance(response, str) else repr(response))[:80]
            reason = f"the server answered something that is not a chat completion: {shown!r}"
            return _Retry(Failure(reason, "invalid_response", key, attempts), kind=kind)
        choice = response.choices[0]
        message = choice.message
        content = (message.content if message is not None else None) or getattr(message, "refusal", None) or ""
        usage = getattr(response, "usage", None)
        if usage is not None and usage.prompt_tokens is not None:
            prompt_tokens, completion_tokens = int(usage.prompt_tokens), int(usage.completion_tokens or 0)
        else:  # some servers omit usage: estimate, so budgets still count something
            prompt_tokens, completion_tokens = estimate_prompt_tokens(sent), estimate_tokens(content)
        return Completion(
            content=content,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            finish_reason=choice.finish_reason,
            response_format_used=kind,
            cached=False,
            key=key,
            model=self.model,
            attempts=attempts,
            created_at=datetime.now(UTC).replace(microsecond=0),  # whole seconds: as the cache stores it
        )


def require_api_key(base_url: str | None, api_key_env: str = "OPENAI_API_KEY") -> str | None:
    """The API key from the environment; a remote endpoint without one is a :class:`WorkbenchError` at once.

    Commands call it before any work, so a missing key costs a second, not a pass over the data. A local
    server (127.0.0.1, localhost) needs none (None is returned).
    """
    key = os.environ.get(api_key_env)
    if key:
        return key
    if is_local_provider(provider_identity(base_url)):
        return None
    where = "OpenAI" if base_url is None else base_url
    raise WorkbenchError(
        f"{api_key_env} is not set: export it to use {where} (the API key is read from the "
        "environment only; a local server at http://127.0.0.1 needs none)"
    )


def _httpx_module():
    """The HTTP library the installed openai SDK is built on (``httpx``, or ``httpx2`` in newer releases)."""
    for name in ("httpx2", "httpx"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise WorkbenchError("the openai SDK's HTTP library (httpx) is not installed: pip install openai")


def _with_schema_instruction(messages: Messages, json_schema: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The messages with the schema written into the (first) system message, for json_object / text mode."""
    instruction = (
        "Answer with a single JSON object that validates against this JSON schema, and nothing else:\n"
        f"```json\n{json.dumps(json_schema, ensure_ascii=False, sort_keys=True)}\n```"
    )
    out = [dict(m) for m in messages]
    for message in out:
        if message.get("role") == "system" and isinstance(message.get("content"), str):
            message["content"] = f"{message['content']}\n\n{instruction}"
            return out
    return [{"role": "system", "content": instruction}, *out]


def _strict_compatible(schema: Any) -> bool:
    """True when OpenAI's strict mode accepts the schema: every object closed, every property required."""
    if isinstance(schema, Mapping):
        if schema.get("type") == "object" or "properties" in schema:
            props = schema.get("properties", {})
            if schema.get("additionalProperties") is not False or set(schema.get("required", [])) != set(props):
                return False
        return all(_strict_compatible(v) for k, v in schema.items() if k not in ("enum", "const", "required"))
    if isinstance(schema, list):
        return all(_strict_compatible(v) for v in schema)
    return True


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
    return str(exc.message)


def _error_code(exc: openai.APIStatusError) -> str | None:
    body = exc.body
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and inner.get("code"):
            return str(inner["code"])
    return None


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date); None when absent."""
    if not headers:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) / divisor)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        parsed = email.utils.parsedate_tz(value)
        if parsed is not None:
            return max(0.0, email.utils.mktime_tz(parsed) - time.time())
    return None
