"""``response``: the conversation so far -> the next listener / supporter turn, multi-turn.

One example per conversation of a source the template names a listener for
(``[roles]``: ESConv's supporter, EmpatheticDialogues' listener, DailyDialog's
second speaker ``B``). Every listener turn is an assistant message, so every one
is a training target; every other speaker is the user. Because a chat alternates
and starts with the user:

- listener turns before the first user turn are dropped (ESConv supporters often
  open with a greeting: there is nothing yet to answer);
- consecutive turns of one role are merged into one message, joined by a newline
  (ESConv supporters often answer in two or three turns);
- user turns after the last listener turn are dropped (nothing answers them).

The manifest counts each of these (``turns: ...``). The system message is
``--system-prompt`` when given, else the template's (none in ``response@v1``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from curation.record import Record
from finetune.tasks.base import Example, ExportTask, register, turn_heads


def conversation(
    turns: Sequence[Mapping[str, Any]],
    assistant_speaker: str,
    *,
    counters: Any,
    render: Callable[[int, Mapping[str, Any]], str] | None = None,
) -> tuple[list[dict[str, str]], list[list[int]]]:
    """User/assistant messages from turns, and the turn indices behind each assistant message.

    ``render(index, turn)`` writes an assistant turn's text (default: the turn's text).
    """
    roles = ["assistant" if t["speaker"] == assistant_speaker else "user" for t in turns]
    first_user = next((i for i, r in enumerate(roles) if r == "user"), len(roles))
    last_assistant = max((i for i, r in enumerate(roles) if r == "assistant"), default=-1)
    if first_user:
        counters["turns: leading listener turns dropped"] += min(first_user, len(roles))
    if last_assistant < len(roles) - 1 and last_assistant >= first_user:
        counters["turns: trailing user turns dropped"] += len(roles) - 1 - last_assistant
    messages: list[dict[str, str]] = []
    sources: list[list[int]] = []
    for i in range(first_user, last_assistant + 1):
        role = roles[i]
        text = render(i, turns[i]) if (render and role == "assistant") else turns[i]["text"]
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] += "\n" + text
            counters[f"turns: consecutive {'listener' if role == 'assistant' else 'user'} turns merged"] += 1
            if role == "assistant":
                sources[-1].append(i)
            continue
        messages.append({"role": role, "content": text})
        if role == "assistant":
            sources.append([i])
    return messages, sources


@register
class ResponseTask(ExportTask):
    name = "response"

    def examples(self, record: Record) -> Iterator[Example]:
        speaker = self.template.roles.get(record["source"])
        if speaker is None or len(record["turns"]) < 2:
            return
        messages, targets = conversation(record["turns"], speaker, counters=self.counters)
        if not targets:
            self.counters["skipped: no listener turn after a user turn"] += 1
            return
        system = self.system_prompt if self.system_prompt is not None else self.template.fill("system")
        yield Example(
            id=f"{self.name}:{record['id']}",
            messages=self.system_message(system) + messages,
            targets=["gold"] * len(targets),
            heads=turn_heads(record, targets, speaker),
        )
