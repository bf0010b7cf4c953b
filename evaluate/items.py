"""What an evaluation asks the models: prompts from an export's TEST split and from the safety suite.

One :class:`EvalItem` is one prompt (chat ``messages`` ending with a user turn) with
what the dataset says a good answer is (``reference``) and the conversation it comes
from (``cluster``: several prompts cut from one conversation are not independent, and
the statistics resample conversations, not prompts).

Suites and the export rows they read (``finetune.export``; test split only, checked):

``empathy``
    ``response`` rows of sources with a listener / supporter (EmpatheticDialogues,
    ESConv): every assistant message of the conversation is cut into a prompt (the
    messages before it) and a reference (the human reply).
``classification``
    ``emotion`` rows (the JSON answer ``{"emotions": [...]}``) and ``strategy`` rows
    (each supporter message cut as above; the reference is its ``[strategy]`` tag).
``traits``
    ``traits`` rows: the reference is the JSON of six trait scores.
``safety``
    the versioned prompt suite ``evaluate/suites/safety-v1.toml`` (not the export):
    each prompt is one item and its own cluster; ``category`` says which rules apply.

Too many items for the budget: ``limit`` keeps a deterministic sample per suite
(the items whose sha256 of ``seed:id`` is smallest), so the same inputs always give
the same prompts.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from curation.errors import WorkbenchError

SUITES = ("empathy", "classification", "traits", "safety")
SAFETY_VERSION = "safety-v1"
EMPATHY_SOURCES = ("empatheticdialogues", "esconv")
_TAG = re.compile(r"^\s*\[([^\]]+)\]\s*")


@dataclass(frozen=True)
class EvalItem:
    """One prompt of one suite; ``kind`` says how a reply is scored."""

    id: str
    suite: str
    kind: str  # reply | emotion | strategy | traits | safety
    prompt: tuple[Mapping[str, str], ...]
    reference: str | None
    cluster: str
    source: str
    record_id: str | None = None
    category: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def messages(self) -> list[dict[str, str]]:
        return [{"role": str(m["role"]), "content": str(m["content"])} for m in self.prompt]

    @property
    def context_text(self) -> str:
        """The prompt as ``role: text`` lines (what a judge is shown), the system message left out."""
        return "\n".join(f"{m['role']}: {m['content']}" for m in self.prompt if m["role"] != "system")


@dataclass(frozen=True)
class SafetyCategory:
    name: str
    description: str
    must_any: tuple[re.Pattern[str], ...]
    must_not: tuple[re.Pattern[str], ...]
    prompts: tuple[str, ...]


@dataclass(frozen=True)
class SafetySuite:
    version: str
    description: str
    categories: Mapping[str, SafetyCategory]


@cache
def load_safety_suite(version: str = SAFETY_VERSION) -> SafetySuite:
    """The safety suite ``evaluate/suites/<version>.toml``; a bad file is one error naming it and the key."""
    resource = resources.files("evaluate.suites").joinpath(f"{version}.toml")
    name = f"evaluate/suites/{version}.toml"
    if not resource.is_file():
        raise WorkbenchError(f"no safety suite {name}")
    try:
        data = tomllib.loads(resource.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise WorkbenchError(f"{name}: {exc}") from None
    if data.get("version") != version:
        raise WorkbenchError(f"{name} declares version {data.get('version')!r}, expected {version!r}")
    categories = {}
    for cat, spec in (data.get("categories") or {}).items():
        try:
            categories[cat] = SafetyCategory(
                name=cat,
                description=str(spec.get("description", "")),
                must_any=tuple(re.compile(p, re.IGNORECASE) for p in spec.get("must_any", ())),
                must_not=tuple(re.compile(p, re.IGNORECASE) for p in spec.get("must_not", ())),
                prompts=tuple(str(p) for p in spec["prompts"]),
            )
        except (KeyError, re.error, AttributeError) as exc:
            raise WorkbenchError(f"{name}: category {cat!r}: {exc}") from None
        if not categories[cat].prompts:
            raise WorkbenchError(f"{name}: category {cat!r} has no prompts")
    if not categories:
        raise WorkbenchError(f"{name}: no [categories.*] tables")
    return SafetySuite(version, str(data.get("description", "")), categories)


def build_items(
    rows: Iterable[Mapping[str, Any]],
    suites: Sequence[str],
    *,
    limit: int | None = None,
    seed: int = 0,
    system_prompt: str | None = None,
    safety_version: str = SAFETY_VERSION,
) -> list[EvalItem]:
    """The items of ``suites`` from export ``rows`` (the test split) and the safety suite, sampled to ``limit``."""
    unknown = [s for s in suites if s not in SUITES]
    if unknown or not suites:
        raise WorkbenchError(f"unknown evaluation suite {unknown[0] if unknown else '(none)'!r} (known: {SUITES})")
    items: list[EvalItem] = []
    for row in rows:
        if row.get("split") != "test":
            raise WorkbenchError(
                f"export row {row.get('id')}: split {row.get('split')!r}; evaluation prompts come from the test "
                "split only (a model is never scored on data it trained on)"
            )
        items.extend(_row_items(row, suites))
    if "safety" in suites:
        items.extend(_safety_items(load_safety_suite(safety_version), system_prompt))
    by_suite: dict[str, list[EvalItem]] = {}
    for item in items:
        by_suite.setdefault(item.suite, []).append(item)
    out: list[EvalItem] = []
    for suite in suites:
        chosen = by_suite.get(suite, [])
        if limit is not None and len(chosen) > limit:
            chosen = sorted(chosen, key=lambda it: hashlib.sha256(f"{seed}:{it.id}".encode()).hexdigest())[:limit]
            chosen.sort(key=lambda it: it.id)
        out.extend(chosen)
    ids = [it.id for it in out]
    if len(set(ids)) != len(ids):
        raise WorkbenchError("evaluation items repeat an id (an export with upsampled copies of one row?)")
    return out


def _row_items(row: Mapping[str, Any], suites: Sequence[str]) -> Iterable[EvalItem]:
    task = row.get("task")
    messages = [{"role": str(m["role"]), "content": str(m["content"])} for m in row["messages"]]
    base = {"cluster": str(row["record_id"]), "source": str(row["source"]), "record_id": str(row["record_id"])}
    row_id = str(row["id"]).split("~", 1)[0]  # an upsampled copy is the same prompt
    if task == "response" and "empathy" in suites and row["source"] in EMPATHY_SOURCES:
        for k, prompt, reply in _cuts(messages):
            yield EvalItem(f"empathy:{row_id}#{k}", "empathy", "reply", prompt, reply, **base)
    elif task == "strategy" and "classification" in suites:
        for k, prompt, reply in _cuts(messages):
            tag = _TAG.match(reply)
            if tag:
                yield EvalItem(
                    f"strategy:{row_id}#{k}",
                    "classification",
                    "strategy",
                    prompt,
                    tag.group(1).strip(),
                    **base,
                    meta={"reply": reply[tag.end() :]},
                )
    elif task == "emotion" and "classification" in suites:
        yield EvalItem(
            f"emotion:{row_id}", "classification", "emotion", tuple(messages[:-1]), messages[-1]["content"], **base
        )
    elif task == "traits" and "traits" in suites:
        yield EvalItem(f"traits:{row_id}", "traits", "traits", tuple(messages[:-1]), messages[-1]["content"], **base)


def _cuts(messages: list[dict[str, str]]) -> Iterable[tuple[int, tuple[dict[str, str], ...], str]]:
    """(index, the messages before it, its text) for every assistant message that follows a user message."""
    for k, m in enumerate(messages):
        if m["role"] == "assistant" and k > 0 and messages[k - 1]["role"] == "user":
            yield k, tuple(messages[:k]), m["content"]


def _safety_items(suite: SafetySuite, system_prompt: str | None) -> Iterable[EvalItem]:
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for cat in suite.categories.values():
        for i, text in enumerate(cat.prompts):
            item_id = f"safety:{suite.version}:{cat.name}:{i}"
            yield EvalItem(
                item_id,
                "safety",
                "safety",
                (*system, {"role": "user", "content": text}),
                None,
                cluster=item_id,
                source=suite.version,
                category=cat.name,
            )
