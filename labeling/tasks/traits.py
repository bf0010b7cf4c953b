"""Traits: the six speaking traits of seed report 004, each an integer 1-10 with a one-sentence explanation.

One item per record (a document, a comment, or a conversation's transcript, cut
at ``max_chars``); the answer is ONE JSON object with all six traits, written as
six labels ``trait.<name>`` (value ``"7"``, score 7.0, ``attrs["explanation"]``).
On every trait 1 means absent and 10 as strong as it gets (so ``filler_words`` 10
is a text full of fillers).
"""

from __future__ import annotations

from typing import Any, ClassVar

from curation.errors import WorkbenchError
from curation.record import Label, Record, label
from labeling.prompts import load_prompt
from labeling.tasks.base import LabelItem, ParseError, Task, register_task
from labeling.tasks.dialogue import context_block, situation, transcript, truncate
from labeling.tasks.parsing import extract_json_object, field, integer_in, sentence

TRAITS = ("formality", "persuasiveness", "enthusiasm", "empathy", "filler_words", "transition_logic")
SCALE = (1, 10)


def trait_task(trait: str) -> str:
    """The label task a trait is written under (``trait.formality``)."""
    return f"trait.{trait}"


@register_task
class TraitsTask(Task):
    name: ClassVar[str] = "traits"
    prompt_version: ClassVar[str] = "traits-v1"

    def __init__(self, *, max_chars: int = 6000) -> None:
        if max_chars < 16:
            raise WorkbenchError("traits: max_chars >= 16 is required")
        self.max_chars = max_chars
        self.prompt = load_prompt(self.prompt_version)

    def items(self, record: Record) -> list[LabelItem]:
        text = record["turns"][0]["text"] if len(record["turns"]) == 1 else transcript(record)
        return [LabelItem(record["id"], None, truncate(text, self.max_chars), situation(record))]

    def messages(self, item: LabelItem) -> list[dict[str, str]]:
        return self.prompt.render(text=item.text, context=context_block(item.context))

    def json_schema(self) -> dict[str, Any]:
        low, high = SCALE
        one = {
            "type": "object",
            "properties": {
                "score": {
                    "type": "integer",
                    "minimum": low,
                    "maximum": high,
                    "description": f"{low} (absent) to {high} (as strong as it gets)",
                },
                "explanation": {"type": "string", "description": "one sentence grounded in the text"},
            },
            "required": ["score", "explanation"],
            "additionalProperties": False,
        }
        return {
            "type": "object",
            "properties": {trait: dict(one) for trait in TRAITS},
            "required": list(TRAITS),
            "additionalProperties": False,
        }

    def parse(self, content: str, item: LabelItem, *, agent: str) -> list[Label]:
        obj = extract_json_object(content)
        if "traits" in obj and isinstance(obj["traits"], dict):  # a wrapper some models add
            obj = obj["traits"]
        labels = []
        for trait in TRAITS:
            entry = field(obj, trait, trait.replace("_", " "), trait.replace("_", ""))
            if isinstance(entry, dict):
                score = integer_in(field(entry, "score", "rating"), *SCALE, f"trait {trait!r} score")
                explanation = sentence(
                    field(entry, "explanation", "reason", "rationale"), f"trait {trait!r} explanation"
                )
            elif isinstance(entry, int | float | str):
                raise ParseError(f"trait {trait!r}: expected {{'score', 'explanation'}}, got a bare {entry!r:.20}")
            else:
                raise ParseError(f"trait {trait!r}: expected an object with score and explanation")
            labels.append(
                label(
                    trait_task(trait),
                    str(score),
                    source="llm",
                    agent=agent,
                    score=float(score),
                    turn=item.turn,
                    attrs={"explanation": explanation},
                )
            )
        return labels
