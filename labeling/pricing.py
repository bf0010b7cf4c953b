"""Token and dollar accounting: a price table per model and a token estimate for dry runs.

Prices are data (``labeling/prices.toml``, dollars per 1M input / output tokens, with its "as of"
date) that a user extends with a TOML file of the same shape (``WORKBENCH_PRICES`` or a path).
A model in no table has cost ``None``: reported as unknown, never guessed. A local server costs 0.

Token estimate (dry runs and budget look-ahead, before a server has counted anything): about
4 characters per token for English text (OpenAI's rule of thumb), ``ceil(len / 4)``, plus 4 tokens of
chat framing per message and 3 for the reply primer. It is an estimate, typically within ~10-20 %
for English prose; real usage from the server replaces it as soon as completions arrive. tiktoken
is not used: it downloads its BPE files at run time, which an offline machine cannot do.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from curation.errors import InputError

PRICES_ENV = "WORKBENCH_PRICES"
CHARS_PER_TOKEN = 4
_DATED_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Price:
    """Dollars per 1M tokens, and which table it came from."""

    input_per_m: float
    output_per_m: float
    source: str

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_m + completion_tokens * self.output_per_m) / 1_000_000


class PriceTable:
    """Model -> :class:`Price`; later tables override earlier ones."""

    def __init__(self, prices: Mapping[str, Price]) -> None:
        self._prices = dict(prices)

    @classmethod
    def load(cls, path: str | Path | None = None) -> PriceTable:
        """The built-in table, then the file in ``WORKBENCH_PRICES``, then ``path`` (each overriding)."""
        builtin = resources.files("labeling").joinpath("prices.toml")
        prices = _read_table(builtin.read_text(encoding="utf-8"), source="built-in prices.toml")
        for extra in (os.environ.get(PRICES_ENV), path):
            if extra:
                file = Path(extra)
                if not file.is_file():
                    raise InputError("price table not found", file=str(file))
                prices.update(_read_table(file.read_text(encoding="utf-8"), source=str(file)))
        return cls(prices)

    def models(self) -> list[str]:
        return sorted(self._prices)

    def price(self, model: str) -> Price | None:
        """The price of ``model``, or of its undated name for a dated snapshot; None when unknown."""
        if model in self._prices:
            return self._prices[model]
        undated = _DATED_SUFFIX.sub("", model)
        return self._prices.get(undated)

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int, *, local: bool = False) -> float | None:
        """Dollars for these tokens; 0 on a local server; None when the model has no price."""
        if local:
            return 0.0
        price = self.price(model)
        return None if price is None else price.cost(prompt_tokens, completion_tokens)


def _read_table(text: str, *, source: str) -> dict[str, Price]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML: {exc}", file=source) from exc
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise InputError('expected [models."NAME"] tables with input and output prices', file=source)
    prices = {}
    for name, entry in models.items():
        if not isinstance(entry, dict) or not all(_is_price(entry.get(k)) for k in ("input", "output")):
            raise InputError(
                f"model {name!r}: expected `input` and `output` as non-negative numbers ($ per 1M tokens)",
                file=source,
            )
        prices[name] = Price(float(entry["input"]), float(entry["output"]), source)
    return prices


def _is_price(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def estimate_tokens(text: str) -> int:
    """About 4 characters per token (see the module docstring)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def estimate_prompt_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """Estimated prompt tokens of a chat request: content at 4 chars/token + 4 per message + 3."""
    return sum(estimate_tokens(str(m.get("content") or "")) + 4 for m in messages) + 3
