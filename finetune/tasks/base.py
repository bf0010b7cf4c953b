"""What every export task shares: versioned templates, the example row, label precedence, the registry.

A task turns one canonical record into zero or more training examples (chat
``messages``). Its wording lives in a versioned TOML template
(``finetune/templates/<task>-v<N>.toml``); the row names it as
``"<task>@v<N>"``, and the export id hashes it, so changing a prompt means a new
version and a new export.

Label precedence, the same in every task: the dataset's own (``gold``) label is
the target where it exists; otherwise ``human`` over ``llm`` over ``model``.
"""

from __future__ import annotations

import string
import tomllib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, ClassVar

from curation.errors import WorkbenchError
from curation.record import Label, Record

#: Label sources from the most to the least trusted.
PRECEDENCE = ("gold", "human", "llm", "model")


@dataclass(frozen=True)
class ExportTemplate:
    """One versioned template: messages' wording and the task's options (``roles``, limits)."""

    name: str
    version: str
    description: str
    system: str
    user: str
    assistant: str
    roles: Mapping[str, str]
    options: Mapping[str, Any]

    @property
    def ref(self) -> str:
        """``"<name>@<version>"``, as rows and manifests name it."""
        return f"{self.name}@{self.version}"

    def fill(self, part: str, **values: str) -> str:
        """The ``system`` / ``user`` / ``assistant`` text with its ``$placeholders`` filled, stripped."""
        text = getattr(self, part)
        try:
            return string.Template(text).substitute(values).strip()
        except KeyError as exc:
            raise WorkbenchError(
                f"template {self.ref}: placeholder ${exc.args[0]} of {part!r} was not filled"
            ) from None


def load_template(name: str, version: str) -> ExportTemplate:
    """The template ``finetune/templates/<name>-<version>.toml``; a bad one is one error naming the file."""
    package = resources.files("finetune.templates")
    file_name = f"{name}-{version}.toml"
    resource = package.joinpath(file_name)
    if not resource.is_file():
        known = sorted(p.name for p in package.iterdir() if p.name.endswith(".toml"))
        raise WorkbenchError(f"no export template {file_name} (known: {', '.join(known)})")
    try:
        data = tomllib.loads(resource.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise WorkbenchError(f"export template {file_name}: {exc}") from None
    if data.get("name") != name or data.get("version") != version:
        raise WorkbenchError(
            f"export template {file_name} declares {data.get('name')!r}@{data.get('version')!r}, "
            f"expected {name!r}@{version!r}"
        )
    for key in ("system", "user", "assistant", "description"):
        if not isinstance(data.get(key, ""), str):
            raise WorkbenchError(f"export template {file_name}: {key!r} must be a string")
    roles = data.get("roles", {})
    if not isinstance(roles, dict) or not all(isinstance(v, str) for v in roles.values()):
        raise WorkbenchError(f"export template {file_name}: [roles] maps a source to its assistant speaker")
    known_keys = {"name", "version", "description", "system", "user", "assistant", "roles"}
    return ExportTemplate(
        name=name,
        version=version,
        description=data.get("description", ""),
        system=data.get("system", ""),
        user=data.get("user", ""),
        assistant=data.get("assistant", ""),
        roles=dict(roles),
        options={k: v for k, v in data.items() if k not in known_keys},
    )


@dataclass
class Example:
    """One training example before it becomes a row; ``targets`` = the label source of each target.

    ``heads``: one entry per assistant message, the labels the optional classification heads
    (``finetune.heads``) learn from the context before that message: ``{"emotions": [...],
    "strategy": str | None}`` (an empty list / ``None`` where there is no label).
    """

    id: str
    messages: list[dict[str, str]]
    targets: list[str]
    heads: list[dict[str, Any]] = field(default_factory=list)

    @property
    def target_source(self) -> str:
        """The least trusted source among the targets: a row is only as good as its weakest target."""
        return max(self.targets, key=PRECEDENCE.index)


class ExportTask:
    """Records in, examples out.

    ``counters`` count what the task did beyond the examples it made: records it applies to but
    could not use (``skipped: <reason>``) and turns it reshaped (``turns: <what>``).
    """

    name: ClassVar[str]
    template_version: ClassVar[str] = "v1"

    def __init__(self, *, system_prompt: str | None = None) -> None:
        self.template = load_template(self.name, self.template_version)
        self.system_prompt = system_prompt
        self.counters: Counter[str] = Counter()

    @property
    def template_ref(self) -> str:
        return self.template.ref

    def examples(self, record: Record) -> Iterator[Example]:
        raise NotImplementedError

    def system_message(self, default: str) -> list[dict[str, str]]:
        """``[{"role": "system", ...}]`` with ``default``, or nothing when it is empty."""
        return [{"role": "system", "content": default}] if default else []


@dataclass
class Chosen:
    """The labels that supply one target: all from one source (see :func:`choose`)."""

    source: str
    labels: list[Label] = field(default_factory=list)

    @property
    def values(self) -> list[str]:
        """Distinct values in first-seen order; for several human annotators, those a majority gave."""
        agents = {lab.get("agent") for lab in self.labels}
        votes = Counter(lab["value"] for lab in {(lab["value"], lab.get("agent")): lab for lab in self.labels}.values())
        need = len(agents) / 2 if self.source == "human" and len(agents) > 1 else 0
        seen: dict[str, None] = {}
        for lab in self.labels:
            if votes[lab["value"]] >= need and lab["value"] not in seen:
                seen[lab["value"]] = None
        return list(seen)


def choose(labels: Iterable[Label], task: str, *, turn: int | None) -> Chosen | None:
    """The labels of ``task`` on ``turn`` (``None``: the whole record) from the most trusted source present."""
    by_source: dict[str, list[Label]] = {}
    for lab in labels:
        if lab["task"] == task and lab.get("turn") == turn and lab["source"] in PRECEDENCE:
            by_source.setdefault(lab["source"], []).append(lab)
    for source in PRECEDENCE:
        if by_source.get(source):
            return Chosen(source, by_source[source])
    return None


def turn_heads(record: Record, targets: Sequence[Sequence[int]], assistant_speaker: str) -> list[dict[str, Any]]:
    """Head labels for each assistant message of a conversation (``targets``: its turn indices).

    The emotion is the one of the turn the message answers (the nearest earlier turn of another
    speaker) where turns carry emotions (DailyDialog), else the record's (EmpatheticDialogues'
    situation, ESConv's seeker); the strategy is the one of the message's first turn (ESConv).
    Each from the most trusted source present (:func:`choose`).
    """
    from curation import vocabularies

    emotion_vocab, strategy_vocab = vocabularies.load("emotion"), vocabularies.load("strategy")
    turns = record["turns"]
    labels = record["labels"]
    whole = choose(labels, "emotion", turn=None)
    heads = []
    for message_turns in targets:
        first = message_turns[0]
        answered = next((u for u in range(first - 1, -1, -1) if turns[u]["speaker"] != assistant_speaker), None)
        emotion = choose(labels, "emotion", turn=answered) if answered is not None else None
        emotion = emotion or whole
        emotions = sorted((v for v in emotion.values if v in emotion_vocab), key=emotion_vocab.index) if emotion else []
        strategy = choose(labels, "strategy", turn=first)
        value = strategy.values[0] if strategy and strategy.values else None
        heads.append({"emotions": emotions, "strategy": value if value in strategy_vocab else None})
    return heads


def transcript(turns: Sequence[Mapping[str, Any]]) -> str:
    """Turns as ``speaker: text`` lines (how the labelers saw conversations)."""
    return "\n".join(f"{t['speaker']}: {t['text']}" for t in turns)


def truncate(text: str, max_chars: int) -> str:
    """At most ``max_chars`` characters, cut at a word boundary with an ellipsis mark."""
    if len(text) <= max_chars:
        return text
    return text[:max_chars].rsplit(" ", 1)[0] + " [...]"


_REGISTRY: dict[str, type[ExportTask]] = {}


def register(cls: type[ExportTask]) -> type[ExportTask]:
    _REGISTRY[cls.name] = cls
    return cls


def task_names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def build_tasks(names: Sequence[str], *, system_prompt: str | None = None) -> list[ExportTask]:
    """One task object per name, in the order given; unknown or repeated names are one error."""
    _load_all()
    if not names:
        raise WorkbenchError(f"no export task given (known: {', '.join(sorted(_REGISTRY))})")
    if len(set(names)) != len(names):
        raise WorkbenchError(f"export tasks repeat: {', '.join(names)}")
    unknown = [n for n in names if n not in _REGISTRY]
    if unknown:
        raise WorkbenchError(f"unknown export task {unknown[0]!r} (known: {', '.join(sorted(_REGISTRY))})")
    return [_REGISTRY[n](system_prompt=system_prompt) for n in names]


def _load_all() -> None:
    from finetune.tasks import emotion, response, strategy, traits  # noqa: F401  (they register)
