"""Structural filters: ``turn_length``, ``min_turns``, ``length``.

Each drops a record with a short machine reason and a human detail
(``"turn 3 is empty"``, ``"1 turns < min_turns 2"``, ``"23 words < min_words 50"``);
records of sources outside a step's ``sources`` pass untouched (``"*"`` = all).

A *word* here is a whitespace-separated token holding at least one letter or
digit, so punctuation and emoji alone do not count as words.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from curation.record import Record, text_of
from curation.steps._scope import ALL_SOURCES, DIALOGUE_SOURCES, applies, check_sources
from curation.steps.base import ConfigError, Dropped, RecordStep, StepConfig, option, register_step

_WORDISH = re.compile(r"\w")


def count_words(text: str) -> int:
    """Whitespace tokens holding at least one letter or digit."""
    return sum(1 for tok in text.split() if _WORDISH.search(tok))


# ------------------------------------------------------------------ turn_length


@dataclass(frozen=True)
class TurnLengthConfig(StepConfig):
    min_chars: int = option(1, "drop a record with a turn shorter than this (stripped characters)", min=0)
    min_words: int = option(0, "drop a record with a turn of fewer words (0 = off; emoji-only turns are real)", min=0)
    sources: tuple[str, ...] = option((ALL_SOURCES,), "sources to apply to ('*' = all)")

    def check(self) -> None:
        super().check()
        check_sources("sources", self.sources)


@register_step
class TurnLength(RecordStep):
    name = "turn_length"
    description = "drop records with an empty (reason empty_turn) or too short (short_turn) turn"
    Config = TurnLengthConfig

    def process(self, record: Record, counters: Counter[str]) -> Record | Dropped:
        cfg: TurnLengthConfig = self.config  # type: ignore[assignment]
        if not applies(cfg.sources, record["source"]):
            return record
        for i, t in enumerate(record["turns"]):
            text = t["text"].strip()
            if not text:
                return Dropped(record, "empty_turn", f"turn {i} is empty")
            if len(text) < cfg.min_chars:
                return Dropped(record, "short_turn", f"turn {i}: {len(text)} chars < min_chars {cfg.min_chars}")
            if cfg.min_words:
                words = count_words(text)
                if words < cfg.min_words:
                    return Dropped(record, "short_turn", f"turn {i}: {words} words < min_words {cfg.min_words}")
        return record


# ------------------------------------------------------------------ min_turns


@dataclass(frozen=True)
class MinTurnsConfig(StepConfig):
    min_turns: int = option(2, "fewest turns a dialogue may have", min=1)
    sources: tuple[str, ...] = option(DIALOGUE_SOURCES, "sources to apply to (single-text sources stay out)")

    def check(self) -> None:
        super().check()
        check_sources("sources", self.sources)


@register_step
class MinTurns(RecordStep):
    name = "min_turns"
    description = "drop dialogues with fewer than min_turns turns (reason too_few_turns)"
    Config = MinTurnsConfig

    def process(self, record: Record, counters: Counter[str]) -> Record | Dropped:
        cfg: MinTurnsConfig = self.config  # type: ignore[assignment]
        if not applies(cfg.sources, record["source"]):
            return record
        n = len(record["turns"])
        if n < cfg.min_turns:
            return Dropped(record, "too_few_turns", f"{n} turns < min_turns {cfg.min_turns}")
        return record


# ------------------------------------------------------------------ length

_BOUNDS = ("min_chars", "max_chars", "min_words", "max_words")


@dataclass(frozen=True)
class LengthConfig(StepConfig):
    min_chars: int = option(1, "fewest characters in the record's text (all turns)", min=0)
    max_chars: int = option(0, "most characters in the record's text (0 = no limit)", min=0)
    min_words: int = option(0, "fewest words in the record's text", min=0)
    max_words: int = option(0, "most words in the record's text (0 = no limit)", min=0)
    per_source: dict[str, Any] = option(  # noqa: RUF009 (a table; option copies it per instance)
        {
            # Gopher's document bounds (datatrove GopherQualityFilter: min_doc_words=50, max_doc_words=100000)
            "openwebtext": {"min_words": 50, "max_words": 100_000},
            # the longest real ESConv dialogue is 9,553 characters, DailyDialog 4,298, GoEmotions 703
            "esconv": {"max_chars": 30_000},
            "dailydialog": {"max_chars": 10_000},
            "empatheticdialogues": {"max_chars": 10_000},
            # a Reddit comment is at most a few hundred characters
            "goemotions": {"max_chars": 2_000},
        },
        "bounds per source, overriding the ones above: {source = {min_words = 50, ...}}",
    )

    def check(self) -> None:
        super().check()
        check_sources("per_source", self.per_source)
        for source, table in self.per_source.items():
            if not isinstance(table, dict):
                raise ConfigError(f"'per_source': {source!r} must be a table of bounds, got {table!r}")
            for key, value in table.items():
                if key not in _BOUNDS:
                    raise ConfigError(f"'per_source.{source}': unknown key {key!r} (expected: {', '.join(_BOUNDS)})")
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise ConfigError(f"'per_source.{source}.{key}': expected an integer >= 0, got {value!r}")
        for source in ["", *self.per_source]:
            b = self.bounds(source)
            for unit in ("chars", "words"):
                lo, hi = b[f"min_{unit}"], b[f"max_{unit}"]
                if hi and lo > hi:
                    where = f"per_source.{source}." if source else ""
                    raise ConfigError(f"'{where}min_{unit}': {lo} is above max_{unit} {hi}")

    def bounds(self, source: str) -> dict[str, int]:
        out = {k: getattr(self, k) for k in _BOUNDS}
        out.update(self.per_source.get(source, {}))
        return out


@register_step
class Length(RecordStep):
    name = "length"
    description = "drop length outliers: total chars / words outside [min, max], per source (too_short / too_long)"
    Config = LengthConfig

    def process(self, record: Record, counters: Counter[str]) -> Record | Dropped:
        cfg: LengthConfig = self.config  # type: ignore[assignment]
        b = cfg.bounds(record["source"])
        text = text_of(record)
        chars = len(text)
        if chars < b["min_chars"]:
            return Dropped(record, "too_short", f"{chars} chars < min_chars {b['min_chars']}")
        if b["max_chars"] and chars > b["max_chars"]:
            return Dropped(record, "too_long", f"{chars} chars > max_chars {b['max_chars']}")
        if b["min_words"] or b["max_words"]:
            words = count_words(text)
            if words < b["min_words"]:
                return Dropped(record, "too_short", f"{words} words < min_words {b['min_words']}")
            if b["max_words"] and words > b["max_words"]:
                return Dropped(record, "too_long", f"{words} words > max_words {b['max_words']}")
        return record
