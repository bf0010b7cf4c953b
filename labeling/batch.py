"""Many completions at once: cache first, the misses sent concurrently, each one cached as it arrives.

:func:`complete_many` is what the label runner, augmentation (and any other step that asks an endpoint
many things, such as an evaluation judge) call. For a list of requests it

1. computes every cache key and serves the hits without sending anything;
2. sends each distinct missing request once (two items with identical messages share one request),
   ``client.concurrency`` at a time; a request another process is sending right now (a claim in the
   cache file) is not sent again: it is deferred, then taken from the cache when that process stored
   it (or sent here if that process died or gave up);
3. writes each completion to the cache the moment it arrives (before it is yielded), so a crash or a
   ``kill -9`` loses at most the requests in flight and a re-run sends only what is missing;
4. stops *launching* requests once the estimated spend would pass ``max_cost`` (requests in flight
   complete and are cached; the rest come back as ``Failure(kind="budget")``: a budget stop is not a
   failure);
5. yields ``(request_index, Completion | Failure)`` as results come, for every index exactly once.

It **fails loudly** rather than hand back a batch of failures:

* an :class:`~labeling.completion.EndpointError` of the client (the key refused, an unknown model,
  the circuit breaker tripped by a dead or hanging endpoint) cancels every request in flight and is
  re-raised at once;
* :class:`TooManyFailures` as soon as the items that failed (requests that failed after their retries,
  plus the answers the caller reports as unparseable through :meth:`FailureLimit.parse_failed`) are
  more than ``failure_limit.max_share`` of all the items: that is already certain, so it stops there;
* :class:`DeadlineExceeded` when ``deadline`` seconds pass before the end.

Either way what was received stays in the cache, so a re-run resumes where this one stopped.

:func:`estimate_many` is the dry run: tokens and dollars for what is not cached yet, nothing sent.

Spend is estimated before a request is sent (prompt at 4 chars/token, completion at ``max_tokens`` or
the mean of the completions seen so far, else ``expected_completion_tokens``) and counted from the
server's usage once it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from curation.errors import WorkbenchError
from labeling.cache import DEFAULT_LEASE, CompletionCache
from labeling.client import LLMClient
from labeling.completion import Completion, Failure
from labeling.pricing import Price, PriceTable, estimate_prompt_tokens

log = logging.getLogger(__name__)

DEFAULT_COMPLETION_TOKENS = 200  # a guess for a labeling answer (a JSON object with a short rationale)
DEFAULT_MAX_FAILURE_SHARE = 0.1
_RESUMES = "the completions received are cached: a re-run resumes"
_GAVE_UP = re.compile(r" \(gave up after \d+ attempts\)$")
_VARYING = re.compile(r"'[^']*'|\"[^\"]*\"|\d+(\.\d+)?")


class TooManyFailures(WorkbenchError):
    """More of a batch's items failed than its :class:`FailureLimit` allows; names the commonest error."""

    def __init__(self, limit: FailureLimit) -> None:
        self.endpoint = limit.endpoint
        self.failures = limit.failures
        self.total = limit.total
        self.max_share = limit.max_share
        (group, count), *_ = limit.groups.most_common(1)
        reason, example = limit.shown[group]
        self.commonest = reason
        share = limit.failures / max(limit.total, 1)
        what = f"{count:,}x {reason}"
        if example and example != reason:
            what += f" (e.g. {example!r})"
        super().__init__(
            f"{limit.endpoint}: {limit.failures:,} of {limit.total:,} items failed ({share:.1%}, more than "
            f"the limit of {limit.max_share:.1%}, --max-failures): commonest: {what}; {_RESUMES}"
        )


class DeadlineExceeded(WorkbenchError):
    """The batch did not finish within its deadline; what arrived is cached."""


class FailureLimit:
    """How many of a batch's items may fail: more than ``max_share`` of them raises :class:`TooManyFailures`.

    :func:`complete_many` counts the requests that failed (after their retries; budget stops are not
    failures). The caller counts the answers that did not parse, with :meth:`parse_failed`, which raises
    as soon as the limit is passed (inside the ``async for``: the batch is then closed and its requests
    in flight cancelled). ``max_share=1.0`` never raises; ``0.0`` raises at the first failure.
    """

    def __init__(self, max_share: float = DEFAULT_MAX_FAILURE_SHARE) -> None:
        if isinstance(max_share, bool) or not 0.0 <= max_share <= 1.0:
            raise WorkbenchError(f"the failure limit must be a share of the items in [0, 1], got {max_share!r}")
        self.max_share = float(max_share)
        self.total = 0
        self.endpoint = "the endpoint"
        self.request_failures = 0
        self.parse_failures = 0
        self.groups: Counter[str] = Counter()  # a reason with its quoted values and numbers blanked -> items
        self.shown: dict[str, tuple[str, str]] = {}  # group -> (first reason seen, an example)

    def start(self, *, total: int, endpoint: str) -> None:
        """Called by :func:`complete_many`: the batch's item count and who answers it."""
        self.total = total
        self.endpoint = endpoint

    @property
    def failures(self) -> int:
        return self.request_failures + self.parse_failures

    @property
    def allowed(self) -> int:
        """Failed items tolerated (``floor(max_share * total)``)."""
        return math.floor(self.max_share * self.total + 1e-9)

    def request_failed(self, failure: Failure, *, items: int = 1) -> None:
        """Count a request that failed (for ``items`` items); raises :class:`TooManyFailures` past the limit."""
        self.request_failures += items
        reason = _GAVE_UP.sub("", failure.reason)
        self._note(reason, failure.reason, items)

    def parse_failed(self, reason: str, *, example: str | None = None, items: int = 1) -> None:
        """Count an answer that did not parse (``example``: its raw text); raises past the limit."""
        self.parse_failures += items
        self._note(f"unparseable answer: {reason}", (example or "")[:120], items)

    def _note(self, reason: str, example: str, items: int) -> None:
        group = _VARYING.sub("_", reason)
        self.groups[group] += items
        self.shown.setdefault(group, (reason, example))
        if self.failures > self.allowed:
            raise TooManyFailures(self)


@dataclass(frozen=True)
class CompletionRequest:
    """One request of a batch: the messages, the JSON schema of the answer (None: free text), the prompt version."""

    messages: Sequence[Mapping[str, Any]]
    json_schema: Mapping[str, Any] | None = None
    prompt_version: str = ""
    schema_name: str = "response"  # shown to the server as response_format.json_schema.name


@dataclass
class BatchProgress:
    """Counters of a :func:`complete_many` run, passed to ``on_progress`` after every result."""

    total: int
    done: int = 0
    cache_hits: int = 0
    sent: int = 0  # completions received from the server in this run
    failures: int = 0  # requests that failed after retries (budget skips not included)
    not_sent_budget: int = 0
    prompt_tokens: int = 0  # of this run's fresh completions
    completion_tokens: int = 0
    cost_usd: float | None = 0.0  # spent in this run; None when the model has no price
    saved_usd: float | None = 0.0  # what the cache hits would have cost
    budget_stopped: bool = False
    failure_kinds: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CostEstimate:
    """A dry run's answer: what sending the uncached requests would cost (nothing is sent)."""

    requests: int
    cached: int
    to_send: int  # distinct uncached requests
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None  # None: the model has no price (add it to a price table)
    model: str
    provider: str


def _price_for(client: LLMClient, prices: PriceTable) -> Price | None:
    return None if client.free else prices.price(client.model)


def _cost(client: LLMClient, price: Price | None, prompt_tokens: int, completion_tokens: int) -> float | None:
    if client.free:
        return 0.0
    return None if price is None else price.cost(prompt_tokens, completion_tokens)


def _keys(client: LLMClient, requests: Sequence[CompletionRequest]) -> list[str]:
    return [client.key_for(r.messages, json_schema=r.json_schema, prompt_version=r.prompt_version) for r in requests]


def estimate_many(
    client: LLMClient,
    cache: CompletionCache | None,
    requests: Sequence[CompletionRequest],
    *,
    prices: PriceTable | None = None,
    expected_completion_tokens: int = DEFAULT_COMPLETION_TOKENS,
) -> CostEstimate:
    """Tokens and dollars to complete ``requests`` (cache hits are free); sends nothing (a dry-run client will do)."""
    prices = prices or PriceTable.load()
    keys = _keys(client, requests)
    hits = cache.get_many(keys) if cache is not None else {}
    todo: dict[str, CompletionRequest] = {}
    for key, request in zip(keys, requests, strict=True):
        if key not in hits:
            todo.setdefault(key, request)
    per_answer = client.max_tokens or expected_completion_tokens
    prompt_tokens = sum(estimate_prompt_tokens(r.messages) for r in todo.values())
    completion_tokens = per_answer * len(todo)
    price = _price_for(client, prices)
    return CostEstimate(
        requests=len(requests),
        cached=sum(1 for k in keys if k in hits),
        to_send=len(todo),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost_usd=_cost(client, price, prompt_tokens, completion_tokens),
        model=client.model,
        provider=client.provider,
    )


async def complete_many(
    client: LLMClient,
    cache: CompletionCache,
    requests: Sequence[CompletionRequest],
    *,
    max_cost: float | None = None,
    prices: PriceTable | None = None,
    on_progress: Callable[[BatchProgress], None] | None = None,
    expected_completion_tokens: int = DEFAULT_COMPLETION_TOKENS,
    failure_limit: FailureLimit | None = None,
    deadline: float | None = None,
    lease: float = DEFAULT_LEASE,
) -> AsyncIterator[tuple[int, Completion | Failure]]:
    """Complete every request (see the module docstring); yields ``(index, Completion | Failure)`` as they come.

    ``failure_limit``: the share of items that may fail (default: :data:`DEFAULT_MAX_FAILURE_SHARE`); pass
    your own to report parse failures into it. ``deadline``: seconds for the whole batch. ``lease``: how
    long a claim on a request in flight lives without renewal (a dead holder's claims expire).

    Raises :class:`WorkbenchError` before sending anything when ``max_cost`` is set for a model with no
    price (a budget cannot be enforced on an unknown cost); :class:`~labeling.completion.EndpointError`,
    :class:`TooManyFailures` and :class:`DeadlineExceeded` as they happen, after cancelling the requests
    in flight. Everything yielded is already in the cache. To stop early, close the generator so the
    requests in flight are cancelled at once::

        async with contextlib.aclosing(complete_many(client, cache, requests)) as results:
            async for index, result in results:
                ...
    """
    if max_cost is not None and max_cost < 0:
        raise WorkbenchError(f"max_cost must be >= 0 dollars, got {max_cost}")
    if deadline is not None and deadline <= 0:
        raise WorkbenchError(f"deadline must be > 0 seconds, got {deadline}")
    if lease <= 0:
        raise WorkbenchError(f"lease must be > 0 seconds, got {lease}")
    prices = prices or PriceTable.load()
    price = _price_for(client, prices)
    if max_cost is not None and price is None and not client.free:
        raise WorkbenchError(
            f"no price for model {client.model!r}: a --max-cost budget cannot be enforced; add the model to a "
            "price table (WORKBENCH_PRICES=prices.toml, see labeling/prices.toml)"
        )
    requests = list(requests)
    limit = failure_limit if failure_limit is not None else FailureLimit()
    limit.start(total=len(requests), endpoint=client.endpoint)
    started = time.monotonic()
    ends_at = None if deadline is None else started + deadline
    progress = BatchProgress(total=len(requests))
    if price is None and not client.free:
        progress.cost_usd = progress.saved_usd = None

    def report() -> None:
        if on_progress is not None:
            on_progress(progress)

    if client.response_format is None:
        known = cache.response_format(client.provider, client.model)
        if known is not None:
            client.assume_response_format(known)
    persisted_format = client.response_format

    keys = _keys(client, requests)
    hits = cache.get_many(keys)
    waiting: dict[str, list[int]] = {}  # distinct uncached key -> the request indices it answers
    for index, key in enumerate(keys):
        hit = hits.get(key)
        if hit is None:
            waiting.setdefault(key, []).append(index)
            continue
        progress.done += 1
        progress.cache_hits += 1
        if progress.saved_usd is not None:
            progress.saved_usd += _cost(client, price, hit.prompt_tokens, hit.completion_tokens) or 0.0
        report()
        yield index, hit

    # (key, revisit): a key another process holds goes to the back once; the second time it is waited for
    pending: deque[tuple[str, bool]] = deque((key, False) for key in waiting)
    in_flight_estimate = 0.0
    spent = 0.0
    answered = answered_tokens = 0  # completions received so far and their completion tokens (for estimates)
    results: asyncio.Queue[tuple[str, Completion | Failure] | BaseException | None] = asyncio.Queue()
    owner = cache.new_owner()

    def estimate(request: CompletionRequest) -> float:
        if price is None:
            return 0.0
        if client.max_tokens:
            answer = client.max_tokens
        elif answered:
            answer = answered_tokens / answered
        else:
            answer = expected_completion_tokens
        return price.cost(estimate_prompt_tokens(request.messages), round(answer))

    in_flight = 0
    budget_changed = asyncio.Condition()

    async def take() -> tuple[str, float, bool] | None:
        """The next key to send, its estimated cost and whether it is a revisit; None: all taken or budget reached.

        Over budget with requests in flight, it waits for them: their real cost may leave room.
        """
        nonlocal in_flight_estimate, in_flight
        async with budget_changed:
            while True:
                if not pending or progress.budget_stopped:
                    return None
                key, revisit = pending[0]
                cost = estimate(requests[waiting[key][0]])
                if max_cost is None or spent + in_flight_estimate + cost <= max_cost:
                    pending.popleft()
                    in_flight_estimate += cost
                    in_flight += 1
                    return key, cost, revisit
                if in_flight == 0:
                    progress.budget_stopped = True
                    return None
                await budget_changed.wait()

    async def settle(estimated: float, result: Completion | Failure | None) -> None:
        nonlocal in_flight_estimate, in_flight, spent, answered, answered_tokens
        async with budget_changed:
            in_flight_estimate -= estimated
            in_flight -= 1
            if isinstance(result, Completion) and not result.cached:
                spent += _cost(client, price, result.prompt_tokens, result.completion_tokens) or 0.0
                answered += 1
                answered_tokens += result.completion_tokens
            budget_changed.notify_all()

    async def claim(key: str, revisit: bool) -> Completion | None:
        """Claim ``key`` (None: claimed, send it), or its completion from another run; raises _Deferred."""
        poll = 0.05
        while True:
            got = cache.claim(key, owner, lease=lease)
            if got.status == "claimed":
                return None
            if got.status == "done":
                return got.completion
            if not revisit:
                raise _Deferred
            await asyncio.sleep(poll)  # another run is sending it: wait for its answer (or its claim to lapse)
            poll = min(poll * 2, 1.0)

    async def worker() -> None:
        nonlocal persisted_format
        try:
            while (taken := await take()) is not None:
                key, estimated, revisit = taken
                request = requests[waiting[key][0]]
                try:
                    result = await claim(key, revisit)
                except _Deferred:
                    await settle(estimated, None)
                    pending.append((key, True))
                    continue
                if result is None:
                    result = await _send(client, request, key)
                    if isinstance(result, Completion):
                        result = cache.put(result, provider=client.provider, prompt_version=request.prompt_version)
                    cache.release(key, owner)
                await settle(estimated, result)
                learned = client.response_format
                if isinstance(result, Completion) and learned is not None and learned != persisted_format:
                    cache.remember_response_format(client.provider, client.model, learned)
                    persisted_format = learned
                await results.put((key, result))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the endpoint is unusable, the cache failed, ...: stop the batch
            await results.put(exc)
        finally:
            await results.put(None)

    async def heartbeat() -> None:
        while True:
            await asyncio.sleep(lease / 3)
            cache.renew(owner, lease=lease)

    workers = [asyncio.create_task(worker()) for _ in range(min(client.concurrency, len(pending)))]
    renewing = asyncio.create_task(heartbeat()) if workers else None
    running = len(workers)
    try:
        while running:
            item = await _next(results, ends_at, deadline, progress, client)
            if item is None:
                running -= 1
                continue
            if isinstance(item, BaseException):
                raise item
            key, result = item
            items = len(waiting[key])
            if isinstance(result, Completion) and result.cached:  # another run sent it while we waited
                progress.cache_hits += items
                if progress.saved_usd is not None:
                    progress.saved_usd += _cost(client, price, result.prompt_tokens, result.completion_tokens) or 0.0
            elif isinstance(result, Completion):
                progress.sent += 1
                progress.prompt_tokens += result.prompt_tokens
                progress.completion_tokens += result.completion_tokens
                if progress.cost_usd is not None:
                    progress.cost_usd += _cost(client, price, result.prompt_tokens, result.completion_tokens) or 0.0
            else:
                progress.failures += items
                progress.failure_kinds[result.kind] = progress.failure_kinds.get(result.kind, 0) + items
                limit.request_failed(result, items=items)  # raises past the limit
            for index in waiting[key]:
                progress.done += 1
                report()
                yield index, result
        for key, _ in pending:
            failure = Failure(f"not sent: the budget of ${max_cost:.2f} was reached", "budget", key)
            for index in waiting[key]:
                progress.done += 1
                progress.not_sent_budget += 1
                report()
                yield index, failure
    finally:
        tasks = [*workers, *([renewing] if renewing else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if workers:
            try:
                cache.release_all(owner)
            except Exception as exc:  # never hide the error that brought us here
                log.warning("could not release the claims of %s: %s", owner, exc)


class _Deferred(Exception):
    """Another run holds this key: come back to it later."""


async def _send(client: LLMClient, request: CompletionRequest, key: str) -> Completion | Failure:
    try:
        return await client.complete(
            request.messages,
            json_schema=request.json_schema,
            prompt_version=request.prompt_version,
            schema_name=request.schema_name,
            key=key,
        )
    except (asyncio.CancelledError, WorkbenchError):
        raise
    except Exception as exc:  # an SDK or server surprise is one failed request, counted against the limit
        return Failure(f"unexpected error: {type(exc).__name__}: {exc}", "error", key)


async def _next(queue: asyncio.Queue, ends_at: float | None, deadline: float | None, progress, client) -> Any:
    """The next worker message, or :class:`DeadlineExceeded` once the deadline has passed."""
    if ends_at is None:
        return await queue.get()
    try:
        return await asyncio.wait_for(queue.get(), max(0.0, ends_at - time.monotonic()))
    except TimeoutError:
        raise DeadlineExceeded(
            f"{client.endpoint}: the deadline of {deadline:g} s passed with {progress.done:,} of "
            f"{progress.total:,} items done; the requests in flight were cancelled; {_RESUMES}"
        ) from None
