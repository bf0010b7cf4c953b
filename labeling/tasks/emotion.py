"""Emotion: GoEmotions' 27 emotions + neutral, multi-label, for a text or for each turn of a conversation.

What is one item (``granularity``):

``"auto"`` (default) follows the data, so an audit always finds gold to compare with:
    a single-text record (GoEmotions comment, OpenWebText document) is one item; a
    conversation whose gold emotions sit on turns (DailyDialog) is labeled per turn; a
    conversation whose gold emotion describes the whole record (EmpatheticDialogues'
    situation emotion, ESConv's seeker emotion) is one item, the transcript; a
    conversation with no gold emotion at all is labeled per turn.
``"record"``: always one item per record (the transcript for conversations).
``"turn"``: always one item per turn, with the turns before it as context.
"""

from __future__ import annotations

from typing import Any, ClassVar

from curation import vocabularies
from curation.errors import WorkbenchError
from curation.record import Label, Record, label
from labeling.prompts import load_prompt
from labeling.tasks.base import LabelItem, ParseError, Task, register_task
from labeling.tasks.dialogue import context_block, situation, transcript, truncate, turn_item
from labeling.tasks.parsing import confidence, extract_json_object, field, vocabulary_label

GRANULARITIES = ("auto", "record", "turn")


@register_task
class EmotionTask(Task):
    name: ClassVar[str] = "emotion"
    prompt_version: ClassVar[str] = "emotion-v1"

    def __init__(
        self, *, granularity: str = "auto", context_turns: int = 3, max_chars: int = 4000, max_labels: int = 3
    ) -> None:
        if granularity not in GRANULARITIES:
            raise WorkbenchError(f"emotion granularity: expected one of {GRANULARITIES}, got {granularity!r}")
        if context_turns < 0 or max_chars < 16 or max_labels < 1:
            raise WorkbenchError("emotion: context_turns >= 0, max_chars >= 16 and max_labels >= 1 are required")
        self.granularity = granularity
        self.context_turns = context_turns
        self.max_chars = max_chars
        self.max_labels = max_labels
        self.vocab = vocabularies.load("emotion")
        self.prompt = load_prompt(self.prompt_version)

    def per_turn(self, record: Record) -> bool:
        """Whether this record is labeled turn by turn (see the module docstring)."""
        if len(record["turns"]) == 1 or self.granularity == "record":
            return False
        if self.granularity == "turn":
            return True
        gold_turns = [
            lab.get("turn") for lab in record["labels"] if lab["task"] == self.name and lab["source"] == "gold"
        ]
        return not gold_turns or any(t is not None for t in gold_turns)

    def items(self, record: Record) -> list[LabelItem]:
        if not self.per_turn(record):
            text = record["turns"][0]["text"] if len(record["turns"]) == 1 else transcript(record)
            return [LabelItem(record["id"], None, truncate(text, self.max_chars), situation(record))]
        return [
            turn_item(record, i, context_turns=self.context_turns, max_chars=self.max_chars)
            for i in range(len(record["turns"]))
        ]

    def messages(self, item: LabelItem) -> list[dict[str, str]]:
        return self.prompt.render(
            text=item.text, context=context_block(item.context), labels=", ".join(self.vocab.labels)
        )

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {
                "emotions": {
                    "type": "array",
                    "description": "the emotions the text expresses, usually one, at most three",
                    "items": {
                        "type": "object",
                        "properties": {
                            "label": {"type": "string", "enum": list(self.vocab.labels)},
                            "confidence": {"type": "number", "description": "0 to 1"},
                        },
                        "required": ["label", "confidence"],
                        "additionalProperties": False,
                    },
                }
            },
            "required": ["emotions"],
            "additionalProperties": False,
        }

    def parse(self, content: str, item: LabelItem, *, agent: str) -> list[Label]:
        obj = extract_json_object(content)
        raw = field(obj, "emotions", "labels", "emotion")
        pairs = _emotion_pairs(raw)
        if not pairs:
            raise ParseError("'emotions' is empty (expected at least one label, 'neutral' when none applies)")
        if len(pairs) > len(self.vocab):
            raise ParseError(f"'emotions' lists {len(pairs)} labels (expected at most {len(self.vocab)})")
        best: dict[str, float | None] = {}
        for value, conf in pairs:
            name = vocabulary_label(self.vocab, value)
            score = confidence(conf, f"emotion {name!r}")
            if name not in best or (score or 0) > (best[name] or 0):
                best[name] = score
        return [
            label(self.name, name, source="llm", agent=agent, score=score, turn=item.turn)
            for name, score in best.items()
        ]


def _emotion_pairs(raw: Any) -> list[tuple[Any, Any]]:
    """(label, confidence) pairs from the shapes models write: objects, strings, or {label: confidence}."""
    if isinstance(raw, str):
        return [(raw, None)]
    if isinstance(raw, dict):
        if "label" in raw:
            return [(raw["label"], raw.get("confidence"))]
        return list(raw.items())
    if not isinstance(raw, list):
        raise ParseError(f"'emotions' must be a list, got {type(raw).__name__}")
    pairs = []
    for entry in raw:
        if isinstance(entry, str):
            pairs.append((entry, None))
        elif isinstance(entry, dict):
            pairs.append((field(entry, "label", "emotion", "name"), entry.get("confidence", entry.get("score"))))
        else:
            raise ParseError(f"'emotions' entries must be objects or strings, got {entry!r:.40}")
    return pairs
