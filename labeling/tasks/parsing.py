"""Reading a JSON object out of a model's completion, tolerantly, and checking its values.

Servers without structured outputs wrap JSON in prose or Markdown fences, use
single quotes or leave a trailing comma. :func:`extract_json_object` accepts
those cheap deviations and nothing cleverer: anything else is a
:class:`ParseError` whose message says what was wrong, so the raw completion is
kept with a reason a person can act on.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from curation.errors import UnknownLabelError
from curation.vocabularies import Vocabulary
from labeling.tasks.base import ParseError

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_PY_LITERALS = {"true": "True", "false": "False", "null": "None"}


def extract_json_object(content: str) -> dict[str, Any]:
    """The first JSON object in ``content``: bare, inside ```json fences, or amid prose.

    Also accepts near-JSON: single quotes, trailing commas, Python literals.
    Raises :class:`ParseError` saying why nothing was found.
    """
    if not isinstance(content, str) or not content.strip():
        raise ParseError("empty completion (expected a JSON object)")
    candidates = [m.group(1) for m in _FENCE.finditer(content)] + [content]
    for candidate in candidates:
        found = _first_object(candidate)
        if found is not None:
            return found
    if "{" not in content:
        raise ParseError(f"no JSON object in the completion (starts {content.strip()[:60]!r})")
    raise ParseError(f"invalid JSON object in the completion (starts {content.strip()[:60]!r}); truncated?")


def _first_object(text: str) -> dict[str, Any] | None:
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            value = _near_json(text, start)
        if isinstance(value, dict):
            return value
        start = text.find("{", start + 1)
    return None


def _near_json(text: str, start: int) -> Any:
    """Single-quoted / trailing-comma / Python-literal objects: the balanced span from ``start``, via literal_eval."""
    end = _balanced_end(text, start)
    if end is None:
        return None
    span = _TRAILING_COMMA.sub(r"\1", text[start:end])
    try:
        return json.loads(span)
    except json.JSONDecodeError:
        pass
    span = re.sub(r"\b(true|false|null)\b", lambda m: _PY_LITERALS[m.group(1)], span)
    try:
        return ast.literal_eval(span)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def _balanced_end(text: str, start: int) -> int | None:
    """Index after the brace that closes the one at ``start``, skipping quoted strings (either quote)."""
    depth, quote, escaped = 0, "", False
    for i in range(start, len(text)):
        ch = text[i]
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def field(obj: Mapping[str, Any], name: str, *aliases: str) -> Any:
    """``obj[name]`` (or a case-insensitive alias); ParseError naming the missing key."""
    for key in (name, *aliases):
        if key in obj:
            return obj[key]
    folded = {str(k).strip().lower(): v for k, v in obj.items()}
    for key in (name, *aliases):
        if key.lower() in folded:
            return folded[key.lower()]
    raise ParseError(f"missing key {name!r} (got keys {sorted(map(str, obj))[:8]})")


def vocabulary_label(vocab: Vocabulary, raw: Any) -> str:
    """The vocabulary label a model's string names: exact, alias, case-folded or ``[Bracketed]``."""
    if not isinstance(raw, str):
        raise ParseError(f"{vocab.name} label must be a string, got {raw!r:.40}")
    cleaned = raw.strip().strip("[]").strip()
    for candidate in (raw, cleaned):
        try:
            return vocab.canonical(candidate)
        except UnknownLabelError:
            pass
    folded = {label.lower(): label for label in vocab.labels}
    folded.update({alias.lower(): label for alias, label in vocab.aliases.items()})
    if cleaned.lower() in folded:
        return folded[cleaned.lower()]
    raise ParseError(f"{raw!r:.60} is not in the {vocab.name} vocabulary (expected one of: {', '.join(vocab.labels)})")


def integer_in(raw: Any, low: int, high: int, what: str) -> int:
    """An integer score within ``low..high``: ints, integral floats and digit strings; else ParseError."""
    value: Any = raw
    if isinstance(value, str):
        value = value.strip()
        if re.fullmatch(r"[+-]?\d+(\.0+)?", value):
            value = float(value)
        else:
            raise ParseError(f"{what} must be an integer {low}..{high}, got {raw!r:.40}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParseError(f"{what} must be an integer {low}..{high}, got {raw!r:.40}")
    if isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()):
        raise ParseError(f"{what} must be an integer {low}..{high}, got {raw!r:.40}")
    if not low <= int(value) <= high:
        raise ParseError(f"{what} {int(value)} is outside the scale {low}..{high}")
    return int(value)


def confidence(raw: Any, what: str) -> float | None:
    """A confidence in [0, 1] (percentages 1..100 are scaled); None when absent; ParseError when nonsense."""
    if raw is None:
        return None
    value = raw
    if isinstance(value, str):
        try:
            value = float(value.strip().rstrip("%"))
        except ValueError:
            raise ParseError(f"{what} confidence must be a number in [0, 1], got {raw!r:.40}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ParseError(f"{what} confidence must be a number in [0, 1], got {raw!r:.40}")
    if 1 < value <= 100:
        value = value / 100
    if not 0 <= value <= 1:
        raise ParseError(f"{what} confidence {value} is outside [0, 1]")
    return float(value)


def sentence(raw: Any, what: str) -> str:
    """A non-empty explanation string."""
    if not isinstance(raw, str) or not raw.strip():
        raise ParseError(f"{what} must be a non-empty string, got {raw!r:.40}")
    return raw.strip()
