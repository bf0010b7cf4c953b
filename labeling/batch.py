"""Many completions at once: cache first, the misses sent concurrently, each one cached as it arrives.

:func:`complete_many` is what the label runner (and augmentation) call. For a list of requests it

1. computes every cache key and serves the hits without sending anything;
2. sends each distinct missing request once (two items with identical messages share one request),
   ``client.concurrency`` at a time;
3. writes each completion to the cache the moment it arrives (before it is yielded), so a crash or a
   ``kill -9`` loses at most the requests in flight and a re-run sends only what is missing;
4. stops *launching* requests once the estimated spend would pass ``max_cost`` (requests in flight
   complete and are cached; the rest come back as ``Failure(kind="budget")``);
5. yields ``(request_index, Completion | Failure)`` as results come, for every index exactly once:
   a failure never stops the batch.

:func:`estimate_many` is the dry run: tokens and dollars for what is not cached yet, nothing sent.

Spend is estimated before a request is sent (prompt at 4 chars/token, completion at ``max_tokens`` or
the mean of the completions seen so far, else ``expected_completion_tokens``) and counted from the
server's usage once it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from curation.errors import WorkbenchError
from labeling.cache import CompletionCache
from labeling.client import LLMClient
from labeling.completion import Completion, Failure
from labeling.pricing import Price, PriceTable, estimate_prompt_tokens

DEFAULT_COMPLETION_TOKENS = 200  # a guess for a labeling answer (a JSON object with a short rationale)


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
) -> AsyncIterator[tuple[int, Completion | Failure]]:
    """Complete every request (see the module docstring); yields ``(index, Completion | Failure)`` as they come.

    Raises :class:`WorkbenchError` before sending anything when ``max_cost`` is set for a model with no
    price (a budget cannot be enforced on an unknown cost). Everything yielded is already in the cache.
    To stop early, close the generator so the requests in flight are cancelled at once::

        async with contextlib.aclosing(complete_many(client, cache, requests)) as results:
            async for index, result in results:
                ...
    """
    if max_cost is not None and max_cost < 0:
        raise WorkbenchError(f"max_cost must be >= 0 dollars, got {max_cost}")
    prices = prices or PriceTable.load()
    price = _price_for(client, prices)
    if max_cost is not None and price is None and not client.free:
        raise WorkbenchError(
            f"no price for model {client.model!r}: a --max-cost budget cannot be enforced; add the model to a "
            "price table (WORKBENCH_PRICES=prices.toml, see labeling/prices.toml)"
        )
    requests = list(requests)
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

    todo = list(waiting)
    next_todo = 0
    in_flight_estimate = 0.0
    spent = 0.0
    answered = answered_tokens = 0  # completions received so far and their completion tokens (for estimates)
    results: asyncio.Queue[tuple[str, Completion | Failure] | None] = asyncio.Queue()

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

    async def claim() -> tuple[str, float] | None:
        """The next key to send and its estimated cost, or None (all launched, or the budget is reached).

        Over budget with requests in flight, it waits for them: their real cost may leave room.
        """
        nonlocal next_todo, in_flight_estimate, in_flight
        async with budget_changed:
            while True:
                if next_todo >= len(todo) or progress.budget_stopped:
                    return None
                key = todo[next_todo]
                cost = estimate(requests[waiting[key][0]])
                if max_cost is None or spent + in_flight_estimate + cost <= max_cost:
                    next_todo += 1
                    in_flight_estimate += cost
                    in_flight += 1
                    return key, cost
                if in_flight == 0:
                    progress.budget_stopped = True
                    return None
                await budget_changed.wait()

    async def worker() -> None:
        nonlocal in_flight_estimate, in_flight, spent, persisted_format, answered, answered_tokens
        try:
            while (claimed := await claim()) is not None:
                key, estimated = claimed
                request = requests[waiting[key][0]]
                try:
                    result = await client.complete(
                        request.messages,
                        json_schema=request.json_schema,
                        prompt_version=request.prompt_version,
                        schema_name=request.schema_name,
                        key=key,
                    )
                except (asyncio.CancelledError, WorkbenchError):
                    raise
                except Exception as exc:  # an SDK or server surprise must not stop the batch
                    result = Failure(f"unexpected error: {type(exc).__name__}: {exc}", "error", key)
                if isinstance(result, Completion):
                    cache.put(result, provider=client.provider, prompt_version=request.prompt_version)
                async with budget_changed:
                    in_flight_estimate -= estimated
                    in_flight -= 1
                    if isinstance(result, Completion):
                        spent += _cost(client, price, result.prompt_tokens, result.completion_tokens) or 0.0
                        answered += 1
                        answered_tokens += result.completion_tokens
                    budget_changed.notify_all()
                learned = client.response_format
                if isinstance(result, Completion) and learned is not None and learned != persisted_format:
                    cache.remember_response_format(client.provider, client.model, learned)
                    persisted_format = learned
                await results.put((key, result))
        finally:
            await results.put(None)

    workers = [asyncio.create_task(worker()) for _ in range(min(client.concurrency, len(todo)))]
    running = len(workers)
    try:
        while running:
            item = await results.get()
            if item is None:
                running -= 1
                continue
            key, result = item
            if isinstance(result, Completion):
                progress.sent += 1
                progress.prompt_tokens += result.prompt_tokens
                progress.completion_tokens += result.completion_tokens
                if progress.cost_usd is not None:
                    progress.cost_usd += _cost(client, price, result.prompt_tokens, result.completion_tokens) or 0.0
            else:
                progress.failures += len(waiting[key])
                progress.failure_kinds[result.kind] = progress.failure_kinds.get(result.kind, 0) + len(waiting[key])
            for index in waiting[key]:
                progress.done += 1
                report()
                yield index, result
        for task in workers:  # surface a worker's own error (a cache write that failed, ...)
            task.result()
        for key in todo[next_todo:]:
            failure = Failure(f"not sent: the budget of ${max_cost:.2f} was reached", "budget", key)
            for index in waiting[key]:
                progress.done += 1
                progress.not_sent_budget += 1
                report()
                yield index, failure
    finally:
        for task in workers:
            task.cancel()
        for task in workers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
