"""Judging replies: an LLM judge through the labeling client (cached), or the local proxy judge, marked as such.

Four judgements, each a versioned prompt (the version is part of the agent written on
every judgement and of every cache key):

``empathy``
    seed 002's 1-5 rubric with a rationale: labeling's ``empathy-v1`` prompt, the
    same one ``workbench label --tasks empathy`` uses, so human ratings collected
    through review are on the same scale;
``epitome``
    EPITOME's three mechanisms (emotional reactions, interpretations,
    explorations), 0-2 each (``evaluate/prompts/epitome-v1.toml``);
``pairwise``
    which of two anonymised replies is more empathetic (``pairwise-v1``), asked
    in BOTH orders. The tuned model wins only when both orders say so, loses only
    when both say the base; anything else is a tie, and a pair whose two orders
    disagree counts as an order flip (a judge that always prefers position A
    flips on every pair and scores no win: EQ-Bench 3's guard against position
    bias);
``safety``
    safe or not, with a rationale (``safety-judge-v1``), beside the suite's rules.

A judge answer that does not parse is a judgement with ``error`` set: counted and
shown in the report, never a crash; an endpoint that is down fails the run with one
line from the labeling client (its breaker), and a re-run resumes from the cache.

The local proxy judge (``--judge local``) scores with :mod:`labeling.heuristics`:
empathy markers for the 1-5 rating, marker / reflection / question counts for
EPITOME, the difference of the two ratings for a pairwise preference (it is
symmetric, so it never flips), and no safety judgement (the rules only). Its
judgements have source ``model`` and agents ``local-heuristic@<prompt>``; every
report names it as a proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from curation.errors import WorkbenchError
from evaluate.items import EvalItem, load_safety_suite
from labeling import heuristics
from labeling.prompts import PromptTemplate, load_prompt
from labeling.tasks.parsing import ParseError, extract_json_object, integer_in
from labeling.tasks.parsing import field as json_field

KINDS = ("empathy", "epitome", "pairwise", "safety")
PROMPTS = {"empathy": "empathy-v1", "epitome": "epitome-v1", "pairwise": "pairwise-v1", "safety": "safety-judge-v1"}
EPITOME = ("emotional_reactions", "interpretations", "explorations")
LOCAL_AGENT = "local-heuristic"
_INTERPRETATION = re.compile(
    r"\b(sounds like|it seems|you must|must be|must have|you feel|you're feeling|you are feeling|i can see"
    r"|that means)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Judgement:
    """One judge answer on one reply (pairwise: on one base-tuned pair, both orders)."""

    kind: str
    item_id: str
    model: str  # the judged model (pairwise: the tuned one, against the base)
    value: dict[str, Any] | None  # None when the judge's answer did not parse
    rationale: str
    agent: str  # "<judge model>@<prompt version>" or "local-heuristic@<prompt version>"
    source: str  # "llm" | "model" (the local proxy)
    error: str | None = None
    keys: tuple[str, ...] = field(default=(), compare=False)  # completion cache keys behind it


@dataclass(frozen=True)
class JudgeRequest:
    kind: str
    item: EvalItem
    model: str
    reply: str
    other: str | None = None  # pairwise: the base model's reply


@cache
def judge_prompt(version: str) -> PromptTemplate:
    """A judge prompt: labeling's (``empathy-v1``) or ``evaluate/prompts/<version>.toml``."""
    if version == PROMPTS["empathy"]:
        return load_prompt(version)
    resource = resources.files("evaluate.prompts").joinpath(f"{version}.toml")
    if not resource.is_file():
        raise WorkbenchError(f"no judge prompt evaluate/prompts/{version}.toml")
    data = tomllib.loads(resource.read_text(encoding="utf-8"))
    if data.get("version") != version:
        raise WorkbenchError(f"evaluate/prompts/{version}.toml declares version {data.get('version')!r}")
    return PromptTemplate(
        version=version, system=data["system"], user=data["user"], description=data.get("description", "")
    )


def render(request: JudgeRequest, *, swapped: bool = False) -> list[dict[str, str]]:
    """The judge's messages for a request (``swapped``: the pairwise order with the tuned reply as A)."""
    item = request.item
    prompt = judge_prompt(PROMPTS[request.kind])
    if request.kind == "empathy":
        context = f"\nConversation so far:\n<<<\n{item.context_text}\n>>>\n"
        return prompt.render(context=context, text=request.reply)
    if request.kind == "epitome":
        return prompt.render(context=item.context_text, text=request.reply)
    if request.kind == "pairwise":
        base, tuned = request.other or "", request.reply
        a, b = (tuned, base) if swapped else (base, tuned)
        return prompt.render(context=item.context_text, a=a, b=b)
    if request.kind == "safety":
        return prompt.render(category=str(item.category), context=item.context_text, text=request.reply)
    raise WorkbenchError(f"unknown judgement {request.kind!r}")


def schema(kind: str) -> dict[str, Any]:
    rationale = {"type": "string"}
    if kind == "empathy":
        props: dict[str, Any] = {"rating": {"type": "integer", "minimum": 1, "maximum": 5}, "rationale": rationale}
    elif kind == "epitome":
        props = {k: {"type": "integer", "minimum": 0, "maximum": 2} for k in EPITOME} | {"rationale": rationale}
    elif kind == "pairwise":
        props = {"winner": {"type": "string", "enum": ["A", "B", "tie"]}, "rationale": rationale}
    else:
        props = {"safe": {"type": "boolean"}, "rationale": rationale}
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


def parse(kind: str, content: str) -> tuple[dict[str, Any], str]:
    """(value, rationale) of a judge answer; :class:`ParseError` when it does not fit."""
    obj = extract_json_object(content)
    rationale = obj.get("rationale") if isinstance(obj.get("rationale"), str) else ""
    if kind == "empathy":
        return {"rating": integer_in(json_field(obj, "rating", "score"), 1, 5, "empathy rating")}, rationale
    if kind == "epitome":
        return {k: integer_in(json_field(obj, k), 0, 2, k) for k in EPITOME}, rationale
    if kind == "pairwise":
        winner = str(json_field(obj, "winner", "better")).strip().strip("\"'").upper()
        if winner not in ("A", "B", "TIE"):
            raise ParseError(f"winner must be A, B or tie, got {winner!r:.20}")
        return {"winner": winner.replace("TIE", "tie")}, rationale
    safe = json_field(obj, "safe")
    if isinstance(safe, str) and safe.strip().lower() in ("true", "false", "safe", "unsafe"):
        safe = safe.strip().lower() in ("true", "safe")
    if not isinstance(safe, bool):
        raise ParseError(f"safe must be true or false, got {safe!r:.20}")
    return {"safe": safe}, rationale


def pairwise_result(first: str | None, second: str | None) -> dict[str, Any]:
    """Combine the two orders (first: base as A; second: tuned as A) into win / loss / tie and the flip flag."""
    tuned_first = {"A": "base", "B": "tuned", "tie": "tie"}.get(first or "")
    tuned_second = {"A": "tuned", "B": "base", "tie": "tie"}.get(second or "")
    if tuned_first == tuned_second == "tuned":
        result = "win"
    elif tuned_first == tuned_second == "base":
        result = "loss"
    else:
        result = "tie"
    return {"first": first, "second": second, "result": result, "flip": tuned_first != tuned_second}


# ---- judges -----------------------------------------------------------------------------------------


class LocalJudge:
    """The offline proxy judge (see the module docstring): deterministic, free, and only a proxy."""

    name = "local"
    source = "model"
    kinds = ("empathy", "epitome", "pairwise")  # no safety judgement: the suite's rules stand alone
    description = "local proxy judge (labeling.heuristics: empathy markers, reflections, questions): not an LLM"

    def agent(self, kind: str) -> str:
        return f"{LOCAL_AGENT}@{PROMPTS[kind]}"

    def judge(
        self, requests: Sequence[JudgeRequest], *, progress: Callable[[int], None] | None = None
    ) -> list[Judgement]:
        out = []
        for request in requests:
            out.append(self._one(request))
            if progress is not None:
                progress(1)
        return out

    def _one(self, r: JudgeRequest) -> Judgement:
        if r.kind == "empathy":
            m = heuristics.response_empathy(r.reply)
            value, why = {"rating": m.score}, m.explanation
        elif r.kind == "epitome":
            value, why = _epitome(r.reply)
        elif r.kind == "pairwise":
            tuned = heuristics.response_empathy(r.reply).score
            base = heuristics.response_empathy(r.other or "").score
            first = "B" if tuned > base else "A" if base > tuned else "tie"
            second = "A" if tuned > base else "B" if base > tuned else "tie"
            value, why = pairwise_result(first, second), f"heuristic ratings: tuned {tuned}, base {base}"
        else:
            return Judgement(r.kind, r.item.id, r.model, None, "", self.agent(r.kind), self.source, "no local judge")
        return Judgement(r.kind, r.item.id, r.model, value, why, self.agent(r.kind), self.source)


def _epitome(reply: str) -> tuple[dict[str, int], str]:
    markers, _ = heuristics.empathy_markers(reply)
    reflections = len(_INTERPRETATION.findall(reply))
    questions = reply.count("?")
    value = {
        "emotional_reactions": min(markers, 2),
        "interpretations": min(reflections, 2),
        "explorations": min(questions, 2),
    }
    return value, f"heuristic: {markers} empathy markers, {reflections} reflections, {questions} questions"


class LLMJudge:
    """A judge model behind any OpenAI-compatible endpoint, through labeling's client and completion cache."""

    source = "llm"
    kinds = KINDS

    def __init__(self, client: Any, cache: Any, *, deadline: float | None = None) -> None:
        self.client = client
        self.cache = cache
        self.deadline = deadline
        self.name = client.model
        self.description = f"LLM judge {client.model} at {client.endpoint} (temperature {client.temperature})"

    def agent(self, kind: str) -> str:
        return f"{self.client.model}@{PROMPTS[kind]}"

    def judge(
        self, requests: Sequence[JudgeRequest], *, progress: Callable[[int], None] | None = None
    ) -> list[Judgement]:
        from labeling.batch import CompletionRequest

        calls: list[tuple[int, bool]] = []  # (request index, swapped)
        batch: list[Any] = []
        for i, r in enumerate(requests):
            orders = (False, True) if r.kind == "pairwise" else (False,)
            for swapped in orders:
                calls.append((i, swapped))
                batch.append(
                    CompletionRequest(
                        render(r, swapped=swapped),
                        json_schema=schema(r.kind),
                        prompt_version=PROMPTS[r.kind],
                        schema_name=f"judge_{r.kind}",
                    )
                )
        answers = asyncio.run(self._complete(batch, progress))
        parsed: dict[tuple[int, bool], tuple[dict[str, Any] | None, str, str | None, str]] = {}
        for call, answer in zip(calls, answers, strict=True):
            kind = requests[call[0]].kind
            if answer is None or not hasattr(answer, "content"):
                reason = getattr(answer, "reason", "no answer")
                parsed[call] = (None, "", f"request failed: {reason}", getattr(answer, "key", ""))
                continue
            try:
                value, why = parse(kind, answer.content)
                parsed[call] = (value, why, None, answer.key)
            except ParseError as exc:
                parsed[call] = (None, "", f"unparseable judge answer: {exc}", answer.key)
        out = []
        for i, r in enumerate(requests):
            value, why, error, key = parsed[(i, False)]
            keys = (key,)
            if r.kind == "pairwise":
                value2, why2, error2, key2 = parsed[(i, True)]
                keys = (key, key2)
                error = error or error2
                if error is None:
                    value = pairwise_result(value["winner"], value2["winner"])  # type: ignore[index]
                    why = f"base as A: {why} | tuned as A: {why2}"
                else:
                    value = None
            out.append(Judgement(r.kind, r.item.id, r.model, value, why, self.agent(r.kind), self.source, error, keys))
        return out

    async def _complete(self, batch: list[Any], progress: Callable[[int], None] | None) -> list[Any]:
        from labeling.batch import FailureLimit, complete_many

        answers: list[Any] = [None] * len(batch)
        limit = FailureLimit(1.0)  # junk answers are counted in the report, never a stop
        results = complete_many(self.client, self.cache, batch, failure_limit=limit, deadline=self.deadline)
        async with contextlib.aclosing(results) as stream:
            async for index, answer in stream:
                answers[index] = answer
                if progress is not None:
                    progress(1)
        with contextlib.suppress(Exception):
            await self.client.aclose()
        return answers


def judge_requests(
    items: Sequence[EvalItem], replies: dict[str, dict[str, str]], *, base: str | None, kinds: Sequence[str] = KINDS
) -> list[JudgeRequest]:
    """What to judge: empathy and EPITOME for every model's empathy replies, pairwise tuned-vs-base, safety."""
    out = []
    for item in items:
        for model, by_item in replies.items():
            reply = by_item.get(item.id)
            if reply is None:
                continue
            if item.suite == "empathy":
                out += [JudgeRequest(k, item, model, reply) for k in ("empathy", "epitome") if k in kinds]
                if "pairwise" in kinds and base is not None and model != base and item.id in replies[base]:
                    out.append(JudgeRequest("pairwise", item, model, reply, other=replies[base][item.id]))
            elif item.suite == "safety" and "safety" in kinds:
                load_safety_suite(item.source)  # the suite version the item came from exists
                out.append(JudgeRequest("safety", item, model, reply))
    return out
