"""What every labeling task shares: items to label, messages, a JSON schema, a parser.

A task (distilabel's split) says *what* to label in a record (:meth:`Task.items`:
the record itself, or each supporter turn, ...), how to ask
(:meth:`Task.messages`, from a versioned prompt template), what shape the answer
must have (:meth:`Task.json_schema`, sent as ``response_format`` where the
server supports structured outputs) and how to read it back
(:meth:`Task.parse` -> labels, or :class:`ParseError` with the reason). The
client that sends the messages knows nothing of tasks; the cache keys on the
messages and the prompt version, so changing only the parser re-parses cached
completions without sending anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from curation.errors import WorkbenchError
from curation.record import Label, Record


class ParseError(WorkbenchError):
    """A completion that does not parse into labels; the raw text is kept with this reason."""


@dataclass(frozen=True)
class LabelItem:
    """One thing to label: a whole record (``turn`` None) or one turn of it, with what the prompt shows."""

    record_id: str
    turn: int | None
    text: str  # the text to label (a turn, a comment, a document)
    context: dict[str, str] = field(default_factory=dict)  # what the prompt may also show (situation, previous turns)


class Task:
    """Base of labeling tasks. Subclasses set ``name``, ``prompt_version`` and implement the four methods."""

    name: ClassVar[str]  # also the label task written (emotion, strategy, trait.formality, empathy, ...)
    prompt_version: ClassVar[str]  # bump when the template or schema changes: part of the cache key

    def items(self, record: Record) -> list[LabelItem]:
        raise NotImplementedError

    def messages(self, item: LabelItem) -> list[dict[str, str]]:
        raise NotImplementedError

    def json_schema(self) -> dict[str, Any]:
        raise NotImplementedError

    def parse(self, content: str, item: LabelItem, *, agent: str) -> list[Label]:
        """Labels (source ``llm``, this agent, the item's turn) from a completion; raises ParseError."""
        raise NotImplementedError


_TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    _TASKS[cls.name] = cls
    return cls


def tasks_registry() -> dict[str, type[Task]]:
    import labeling.tasks  # noqa: F401  (each task module registers itself)

    return dict(sorted(_TASKS.items()))


def get_tasks(names: Sequence[str]) -> list[Task]:
    registry = tasks_registry()
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise WorkbenchError(f"unknown task {unknown[0]!r} (expected one of: {', '.join(registry)})")
    return [registry[n]() for n in names]
