"""Empathy: a 1-5 rubric rating of a response in its context (1 not empathetic ... 5 highly empathetic), with rationale.

Items are the *responses* of a conversation: every turn after the first whose
speaker is one of ``responders`` -- ESConv's ``supporter``,
EmpatheticDialogues' ``listener`` and ``model``, the reply of an evaluation
snapshot (``evaluate.run``: so humans can rate the replies a judge rated) by default. DailyDialog's ``A`` / ``B`` are
peers, not a helper and a helped, so they are not rated unless asked for
(``responders=("B",)``). Single-text records have no responses and give no items.
Each item shows up to ``context_turns`` turns before it and the situation.

Gold to audit against: ESConv's seeker survey rates the supporter's empathy for
the whole conversation (a record-level ``empathy`` label); the audit compares it
with the mean of the per-turn ratings (see :mod:`labeling.audit`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from curation.errors import WorkbenchError
from curation.record import Label, Record, label
from labeling.prompts import load_prompt
from labeling.tasks.base import LabelItem, Task, register_task
from labeling.tasks.dialogue import context_block, previous_turns, situation, truncate
from labeling.tasks.parsing import extract_json_object, field, integer_in, sentence

SCALE = (1, 5)


@register_task
class EmpathyTask(Task):
    name: ClassVar[str] = "empathy"
    prompt_version: ClassVar[str] = "empathy-v1"

    def __init__(
        self,
        *,
        responders: tuple[str, ...] = ("supporter", "listener", "model"),
        context_turns: int = 6,
        max_chars: int = 3000,
    ) -> None:
        if not responders or context_turns < 1 or max_chars < 16:
            raise WorkbenchError("empathy: responders must be non-empty, context_turns >= 1, max_chars >= 16")
        self.responders = tuple(responders)
        self.context_turns = context_turns
        self.max_chars = max_chars
        self.prompt = load_prompt(self.prompt_version)

    def items(self, record: Record) -> list[LabelItem]:
        items = []
        for i, t in enumerate(record["turns"]):
            if i == 0 or t["speaker"] not in self.responders:
                continue
            context = situation(record)
            context["previous_turns"] = truncate(previous_turns(record, i, self.context_turns), self.max_chars)
            items.append(LabelItem(record["id"], i, truncate(t["text"], self.max_chars), context))
        return items

    def messages(self, item: LabelItem) -> list[dict[str, str]]:
        return self.prompt.render(text=item.text, context=context_block(item.context))

    def json_schema(self) -> dict[str, Any]:
        low, high = SCALE
        return {
            "type": "object",
            "properties": {
                "rating": {
                    "type": "integer",
                    "minimum": low,
                    "maximum": high,
                    "description": f"{low} not empathetic ... {high} highly empathetic",
                },
                "rationale": {"type": "string", "description": "one or two sentences"},
            },
            "required": ["rating", "rationale"],
            "additionalProperties": False,
        }

    def parse(self, content: str, item: LabelItem, *, agent: str) -> list[Label]:
        obj = extract_json_object(content)
        rating = integer_in(field(obj, "rating", "score", "empathy"), *SCALE, "empathy rating")
        rationale = sentence(field(obj, "rationale", "explanation", "reason"), "empathy rationale")
        return [
            label(
                self.name,
                str(rating),
                source="llm",
                agent=agent,
                score=float(rating),
                turn=item.turn,
                attrs={"rationale": rationale},
            )
        ]
