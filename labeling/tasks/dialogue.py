"""How tasks show a record to a labeler: turns as a transcript, the turns before a turn, the situation."""

from __future__ import annotations

from curation.record import Record
from labeling.tasks.base import LabelItem

#: Context keys a source may provide that describe the situation of a conversation.
SITUATION_KEYS = ("situation", "prompt", "topic", "problem_type")


def transcript(record: Record, *, end: int | None = None, start: int = 0) -> str:
    """Turns ``start..end-1`` as ``speaker: text`` lines."""
    return "\n".join(f"{t['speaker']}: {t['text']}" for t in record["turns"][start:end])


def previous_turns(record: Record, index: int, n: int) -> str:
    """The ``n`` turns before turn ``index`` as a transcript ("" at the start of a conversation)."""
    return transcript(record, start=max(0, index - n), end=index) if n > 0 else ""


def situation(record: Record) -> dict[str, str]:
    """The record's situation fields (those in :data:`SITUATION_KEYS` that it has, non-empty)."""
    context = record.get("context") or {}
    return {k: context[k] for k in SITUATION_KEYS if context.get(k)}


def context_block(context: dict[str, str]) -> str:
    """A prompt section showing an item's context: situation fields, then the previous turns."""
    lines = [
        f"{key.replace('_', ' ').capitalize()}: {value}" for key, value in context.items() if key in SITUATION_KEYS
    ]
    turns = context.get("previous_turns")
    if turns:
        lines += ["Conversation so far:", "<<<", turns, ">>>"]
    return ("\n" + "\n".join(lines) + "\n") if lines else ""


def truncate(text: str, max_chars: int) -> str:
    """At most ``max_chars`` characters, cut at a word boundary with an ellipsis mark."""
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars].rsplit(" ", 1)[0]
    return cut + " [...]"


def turn_item(record: Record, index: int, *, context_turns: int, max_chars: int) -> LabelItem:
    """One turn to label, with the situation and the ``context_turns`` turns before it."""
    context = situation(record)
    before = previous_turns(record, index, context_turns)
    if before:
        context["previous_turns"] = truncate(before, max_chars)
    return LabelItem(record["id"], index, truncate(record["turns"][index]["text"], max_chars), context)
