"""``traits`` (seed report 004's target): a text -> six trait scores 1-10, each with a one-sentence explanation.

One example per record with trait labels: the text (a conversation as its
``speaker: text`` transcript, as the labeler saw it), cut at ``max_chars``.
The target is ONE JSON object ``{"formality": {"score": 7, "explanation":
"..."}, ...}`` over the six traits in a fixed order. Each trait's score comes
from the most trusted source that rated it: human, else LLM, else model (the
local heuristics); the row's ``target_source`` is the least trusted source used,
so model-made targets are marked ``model``. A human rating has no explanation of
its own: it takes the explanation of another label of that trait with the same
score, else the trait carries its score alone (counted). A record without all
six traits is skipped (counted).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from curation.record import Record
from finetune.tasks.base import PRECEDENCE, Example, ExportTask, choose, register, transcript, truncate
from finetune.tasks.emotion import situation_lines

TRAITS = ("formality", "persuasiveness", "enthusiasm", "empathy", "filler_words", "transition_logic")


@register
class TraitsTask(ExportTask):
    name = "traits"

    def __init__(self, *, system_prompt: str | None = None) -> None:
        super().__init__(system_prompt=system_prompt)
        self.max_chars = int(self.template.options.get("max_chars", 6000))

    def examples(self, record: Record) -> Iterator[Example]:
        turns = record["turns"]
        chosen = {trait: choose(record["labels"], f"trait.{trait}", turn=None) for trait in TRAITS}
        found = sum(c is not None for c in chosen.values())
        if not turns or found == 0:
            return
        if found < len(TRAITS):
            self.counters["skipped: not all six traits labeled"] += 1
            return
        target: dict[str, dict[str, Any]] = {}
        for trait, c in chosen.items():
            assert c is not None
            score = int(float(c.labels[0]["value"]))
            entry: dict[str, Any] = {"score": score}
            explanation = self._explanation(record, trait, c.labels[0], score)
            if explanation:
                entry["explanation"] = explanation
            else:
                self.counters["traits: scores without an explanation"] += 1
            target[trait] = entry
        text = turns[0]["text"] if len(turns) == 1 else transcript(turns)
        lines = situation_lines(record)
        user = self.template.fill(
            "user", context="\n".join(lines) + "\n\n" if lines else "", text=truncate(text, self.max_chars)
        )
        yield Example(
            id=f"{self.name}:{record['id']}",
            messages=[
                *self.system_message(self.template.fill("system")),
                {"role": "user", "content": user},
                {"role": "assistant", "content": json.dumps(target, ensure_ascii=False)},
            ],
            targets=[chosen[t].source for t in TRAITS],  # type: ignore[union-attr]
        )

    @staticmethod
    def _explanation(record: Record, trait: str, chosen: Any, score: int) -> str:
        own = (chosen.get("attrs") or {}).get("explanation")
        if own:
            return str(own).strip()
        others = [
            lab
            for lab in record["labels"]
            if lab["task"] == f"trait.{trait}"
            and lab.get("turn") is None
            and (lab.get("attrs") or {}).get("explanation")
        ]
        for lab in sorted(
            others, key=lambda lab: PRECEDENCE.index(lab["source"]) if lab["source"] in PRECEDENCE else 9
        ):
            if int(float(lab["value"])) == score:
                return str(lab["attrs"]["explanation"]).strip()
        return ""
