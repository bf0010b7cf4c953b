"""Strategy: one of ESConv's eight support strategies for each supporter turn, shown with the turns before it."""

from __future__ import annotations

from typing import Any, ClassVar

from curation import vocabularies
from curation.errors import WorkbenchError
from curation.record import Label, Record, label
from labeling.prompts import load_prompt
from labeling.tasks.base import LabelItem, Task, register_task
from labeling.tasks.dialogue import context_block, turn_item
from labeling.tasks.parsing import confidence, extract_json_object, field, vocabulary_label


@register_task
class StrategyTask(Task):
    """Items: every turn whose speaker is one of ``speakers`` (ESConv's canonical ``supporter``)."""

    name: ClassVar[str] = "strategy"
    prompt_version: ClassVar[str] = "strategy-v1"

    def __init__(
        self, *, speakers: tuple[str, ...] = ("supporter",), context_turns: int = 4, max_chars: int = 2000
    ) -> None:
        if not speakers or context_turns < 0 or max_chars < 16:
            raise WorkbenchError("strategy: speakers must be non-empty, context_turns >= 0, max_chars >= 16")
        self.speakers = tuple(speakers)
        self.context_turns = context_turns
        self.max_chars = max_chars
        self.vocab = vocabularies.load("strategy")
        self.prompt = load_prompt(self.prompt_version)

    def items(self, record: Record) -> list[LabelItem]:
        items = []
        for i, t in enumerate(record["turns"]):
            if t["speaker"] not in self.speakers:
                continue
            items.append(turn_item(record, i, context_turns=self.context_turns, max_chars=self.max_chars))
        return items

    def messages(self, item: LabelItem) -> list[dict[str, str]]:
        return self.prompt.render(
            text=item.text, context=context_block(item.context), labels=", ".join(self.vocab.labels)
        )

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {
                "strategy": {"type": "string", "enum": list(self.vocab.labels)},
                "confidence": {"type": "number", "description": "0 to 1"},
            },
            "required": ["strategy", "confidence"],
            "additionalProperties": False,
        }

    def parse(self, content: str, item: LabelItem, *, agent: str) -> list[Label]:
        obj = extract_json_object(content)
        value = vocabulary_label(self.vocab, field(obj, "strategy", "label"))
        score = confidence(obj.get("confidence"), f"strategy {value!r}")
        return [label(self.name, value, source="llm", agent=agent, score=score, turn=item.turn)]
