"""``strategy`` (seed report 003's strategy-aware support): ESConv context -> the strategy, then the reply.

One multi-turn example per ESConv conversation, shaped as in :mod:`.response`
(the supporter is the assistant), where each supporter turn is written as
``"[<strategy>] <reply>"`` (``assistant`` in the template); merged consecutive
supporter turns keep one tag each. The strategy of a turn is its gold label
(ESConv's own annotation) where there is one, else human, LLM, model. A
conversation with a supporter turn that has no strategy label at all is skipped
(counted). The system message is the template's instructions, after
``--system-prompt`` when one is given.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from curation.record import Record
from finetune.tasks.base import Example, ExportTask, choose, register, turn_heads
from finetune.tasks.response import conversation


@register
class StrategyTask(ExportTask):
    name = "strategy"

    def examples(self, record: Record) -> Iterator[Example]:
        speaker = self.template.roles.get(record["source"])
        if speaker is None or len(record["turns"]) < 2:
            return
        chosen = {
            i: choose(record["labels"], "strategy", turn=i)
            for i, t in enumerate(record["turns"])
            if t["speaker"] == speaker
        }
        if any(c is None for c in chosen.values()):
            self.counters["skipped: a supporter turn without a strategy label"] += 1
            return

        def render(index: int, turn: Mapping[str, Any]) -> str:
            strategy = chosen[index].values[0]  # type: ignore[union-attr]
            return self.template.fill("assistant", strategy=strategy, reply=turn["text"])

        messages, targets = conversation(record["turns"], speaker, counters=self.counters, render=render)
        if not targets:
            self.counters["skipped: no supporter turn after a seeker turn"] += 1
            return
        instructions = self.template.fill("system")
        system = f"{self.system_prompt.strip()}\n\n{instructions}" if self.system_prompt else instructions
        yield Example(
            id=f"{self.name}:{record['id']}",
            messages=self.system_message(system) + messages,
            targets=[chosen[i].source for turns in targets for i in turns],  # type: ignore[union-attr]
            heads=turn_heads(record, targets, speaker),
        )
