"""``emotion``: a text, or a turn with the turns before it, -> its emotions as JSON (GoEmotions' vocabulary).

What one example is follows where the labels sit (as the labeling task does):
a single text (GoEmotions comment, OpenWebText document) is one example; a
conversation whose gold emotions sit on turns (DailyDialog) gives one example
per turn, shown with the situation and the ``context_turns`` turns before it; a
conversation whose gold emotion describes the whole record (EmpatheticDialogues'
situation, ESConv's seeker) is one example, the transcript. Without gold, the
other sources' labels decide the same way.

The target is ``{"emotions": [...]}`` in vocabulary order: the gold labels
where there are any, else the human labels (those a majority of annotators
gave), else the LLM's, else the model's. A text or turn without any emotion
label is skipped (counted).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from curation import vocabularies
from curation.record import Record
from finetune.tasks.base import Example, ExportTask, choose, register, transcript, truncate

SITUATION_KEYS = ("situation", "prompt", "topic", "problem_type")


def situation_lines(record: Record) -> list[str]:
    """The record's situation fields as ``Key: value`` lines (never its labels)."""
    context = record.get("context") or {}
    return [f"{k.replace('_', ' ').capitalize()}: {context[k]}" for k in SITUATION_KEYS if context.get(k)]


@register
class EmotionTask(ExportTask):
    name = "emotion"

    def __init__(self, *, system_prompt: str | None = None) -> None:
        super().__init__(system_prompt=system_prompt)
        self.vocab = vocabularies.load("emotion")
        self.context_turns = int(self.template.options.get("context_turns", 3))
        self.max_chars = int(self.template.options.get("max_chars", 4000))

    def examples(self, record: Record) -> Iterator[Example]:
        emotion_labels = [lab for lab in record["labels"] if lab["task"] == "emotion"]
        turns = record["turns"]
        if not emotion_labels or not turns:
            if turns:
                self.counters["skipped: no emotion label"] += 1
            return
        gold_turns = [lab.get("turn") for lab in emotion_labels if lab["source"] == "gold"]
        decisive = gold_turns or [lab.get("turn") for lab in emotion_labels]
        per_turn = len(turns) > 1 and all(t is not None for t in decisive)
        if not per_turn:
            text = turns[0]["text"] if len(turns) == 1 else transcript(turns)
            yield from self._one(record, None, text, [])
            return
        for i, turn in enumerate(turns):
            before = transcript(turns[max(0, i - self.context_turns) : i]) if self.context_turns else ""
            context = ["Conversation so far:", truncate(before, self.max_chars)] if before else []
            yield from self._one(record, i, f"{turn['speaker']}: {turn['text']}", context)

    def _one(self, record: Record, turn: int | None, text: str, context: list[str]) -> Iterator[Example]:
        chosen = choose(record["labels"], "emotion", turn=turn)
        if chosen is None:
            self.counters["skipped: no emotion label"] += 1
            return
        values = sorted(chosen.values, key=self.vocab.index)
        lines = situation_lines(record) + context
        user = self.template.fill(
            "user", context="\n".join(lines) + "\n\n" if lines else "", text=truncate(text, self.max_chars)
        )
        suffix = f"#t{turn}" if turn is not None else ""
        yield Example(
            id=f"{self.name}:{record['id']}{suffix}",
            messages=[
                *self.system_message(self.template.fill("system")),
                {"role": "user", "content": user},
                {"role": "assistant", "content": json.dumps({"emotions": values}, ensure_ascii=False)},
            ],
            targets=[chosen.source],
            heads=[{"emotions": values, "strategy": None}],
        )
