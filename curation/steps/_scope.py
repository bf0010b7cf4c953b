"""Shared by the text steps: which sources a step applies to, and keeping a turn's raw text.

Per-source behaviour is configuration (``sources = ["openwebtext"]``), never an
``if source == ...`` chain; ``"*"`` stands for every source.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from curation.record import Turn
from curation.steps.base import ConfigError

ALL_SOURCES = "*"
DIALOGUE_SOURCES = ("dailydialog", "empatheticdialogues", "esconv")


def applies(sources: Sequence[str], source: str) -> bool:
    """Whether a step configured for ``sources`` looks at a record of ``source``."""
    return ALL_SOURCES in sources or source in sources


def check_sources(key: str, sources: Iterable[str]) -> None:
    """Every name must be a registered source or ``"*"``: a typo would silently switch a step off."""
    from curation.adapters.base import registry

    known = set(registry())
    for name in sources:
        if name != ALL_SOURCES and name not in known:
            raise ConfigError(f"{key!r}: unknown source {name!r} (expected '*' or one of: {', '.join(sorted(known))})")


def with_text(t: Turn, text: str) -> Turn:
    """A copy of turn ``t`` with new text; the first raw text survives in ``attrs["raw_text"]``.

    Only set when absent, so the text as ingested survives repeated normalising and masking.
    """
    attrs = dict(t.get("attrs") or {})
    attrs.setdefault("raw_text", t["text"])
    return {**t, "text": text, "attrs": attrs}
