"""Safety: ``safety`` flags toxic or unsafe content, and keeps or drops it by config.

Detector: a curated word list committed as data,
``curation/steps/data/safety_terms.toml`` (categories ``profanity``, ``insult``,
``hate``, ``sexual``, ``violence``, ``self_harm``; whole-word, case-insensitive).
No PyPI detector fitted: ``better-profanity`` (its list ships inside the
package) checks ~130 texts/s and flags "omg", "lmao", "gay", "stroke";
``alt-profanity-check`` (a scikit-learn model inside the package) pins an exact
scikit-learn release; ``detoxify`` downloads its model at run time.

A flag is a label on the record, one per category found::

    label("safety", "<category>", source="model", agent="wordlist:safety_terms@<sha256[:12] of the list>",
          score=<matched words / words, at most 1>, attrs={"terms": "fuck,shit", "turns": "0,3", "matches": "3"})

``labels[].task == "safety"`` is not a vocabulary task, so the schema accepts any
value; the values are the category names above. A rerun replaces the step's own
earlier labels (same task and agent) rather than adding copies.

``action = "flag"`` (default) keeps every record; ``action = "drop"`` drops a record
with a category in ``drop_categories`` (reason ``unsafe_<category>``, e.g.
``unsafe_hate``), still labelled, so the dropped rows say why. Self-harm is
flagged but not in the default ``drop_categories``: it is the subject of
emotional-support conversations (ESConv, ED), which must stay.
Counters: ``flagged`` (records) and ``flagged_<category>``.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from curation.record import Record, label
from curation.steps._scope import ALL_SOURCES, applies, check_sources
from curation.steps.base import ConfigError, Dropped, RecordStep, StepConfig, option, register_step

TERMS_FILE = Path(__file__).parent / "data" / "safety_terms.toml"
TASK = "safety"
_WORDISH = re.compile(r"\w")


@dataclass(frozen=True)
class SafetyConfig(StepConfig):
    action: str = option(
        "flag", "flag: label and keep; drop: label and drop records in drop_categories", choices=("flag", "drop")
    )
    categories: tuple[str, ...] = option(
        ("profanity", "insult", "hate", "sexual", "violence", "self_harm"), "categories to look for"
    )
    drop_categories: tuple[str, ...] = option(
        ("hate", "sexual", "violence"), "with action = 'drop': the categories that drop a record"
    )
    min_matches: int = option(1, "matches of a category needed to flag it", min=1)
    sources: tuple[str, ...] = option((ALL_SOURCES,), "sources to apply to ('*' = all)")

    def check(self) -> None:
        super().check()
        check_sources("sources", self.sources)
        known = set(_wordlist().patterns)
        for key in ("categories", "drop_categories"):
            for cat in getattr(self, key):
                if cat not in known:
                    raise ConfigError(
                        f"{key!r}: unknown category {cat!r} (expected one of: {', '.join(sorted(known))})"
                    )


@dataclass(frozen=True)
class _Wordlist:
    patterns: dict[str, re.Pattern[str]]
    agent: str


@cache
def _wordlist() -> _Wordlist:
    data = TERMS_FILE.read_bytes()
    table = tomllib.loads(data.decode("utf-8"))
    patterns = {}
    for category, spec in table.items():
        alternatives = sorted((_term_regex(t) for t in spec["terms"]), key=len, reverse=True)
        patterns[category] = re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)
    return _Wordlist(patterns, f"wordlist:safety_terms@{hashlib.sha256(data).hexdigest()[:12]}")


def _term_regex(term: str) -> str:
    open_end = term.endswith("*")
    core = term[:-1] if open_end else term
    rx = r"\s+".join(re.escape(part) for part in core.split())
    return rx + r"\w*" if open_end else rx


def detector_agent() -> str:
    """The agent name flags carry: the word list and a hash of its content."""
    return _wordlist().agent


def scan(text: str, categories: list[str]) -> dict[str, list[str]]:
    """Matched terms (lower-cased, in order) per category found in ``text``."""
    wl = _wordlist()
    found = {}
    for cat in categories:
        hits = [m.group(0).lower() for m in wl.patterns[cat].finditer(text)]
        if hits:
            found[cat] = hits
    return found


@register_step
class Safety(RecordStep):
    name = "safety"
    description = "flag toxic / unsafe content as 'safety' labels (word list); keep or drop by config"
    Config = SafetyConfig

    def process(self, record: Record, counters: Counter[str]) -> Record | Dropped:
        cfg: SafetyConfig = self.config  # type: ignore[assignment]
        if not applies(cfg.sources, record["source"]):
            return record
        agent = detector_agent()
        hits: dict[str, list[str]] = {}
        turns_hit: dict[str, list[int]] = {}
        n_words = 0
        for i, t in enumerate(record["turns"]):
            n_words += sum(1 for tok in t["text"].split() if _WORDISH.search(tok))
            for cat, terms in scan(t["text"], cfg.categories).items():
                hits.setdefault(cat, []).extend(terms)
                turns_hit.setdefault(cat, []).append(i)
        flagged = {cat: terms for cat, terms in hits.items() if len(terms) >= cfg.min_matches}
        labels = [lab for lab in record["labels"] if not (lab["task"] == TASK and lab["agent"] == agent)]
        if not flagged and len(labels) == len(record["labels"]):
            return record
        for cat, terms in flagged.items():
            counters[f"flagged_{cat}"] += 1
            labels.append(
                label(
                    TASK,
                    cat,
                    source="model",
                    agent=agent,
                    score=min(1.0, len(terms) / max(n_words, 1)),
                    attrs={
                        "terms": ",".join(dict.fromkeys(terms)),
                        "turns": ",".join(map(str, turns_hit[cat])),
                        "matches": str(len(terms)),
                    },
                )
            )
        if flagged:
            counters["flagged"] += 1
        out: Record = {**record, "labels": labels}
        if cfg.action == "drop":
            for cat in cfg.drop_categories:
                if cat in flagged:
                    terms = ", ".join(dict.fromkeys(flagged[cat]))
                    return Dropped(out, f"unsafe_{cat}", f"{cat}: {len(flagged[cat])} matches ({terms})")
        return out
