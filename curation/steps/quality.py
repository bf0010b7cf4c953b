"""Web-text quality filter: ``quality``, Gopher's heuristics (Rae et al. 2021, arXiv:2112.11446, Table A1).

The defaults are datatrove's (huggingface/datatrove @ 06c98b0f,
``src/datatrove/pipeline/filters/gopher_quality_filter.py`` and
``gopher_repetition_filter.py``):

=============================  =======  ==============================================
check                          default  datatrove
=============================  =======  ==============================================
mean word length               3 - 10   ``min_avg_word_length=3, max_avg_word_length=10``
``#`` or ellipsis per word     0.1      ``max_symbol_word_ratio=0.1``
lines starting with a bullet   0.9      ``max_bullet_lines_ratio=0.9``
lines ending with an ellipsis  0.3      ``max_ellipsis_lines_ratio=0.3``
words with a letter            0.8      ``max_non_alpha_words_ratio=0.8`` (a minimum)
stop words                     2        ``min_stop_words=2``, the, be, to, of, and, that, have, with
duplicate lines                0.3      ``dup_line_frac=0.3``
duplicate paragraphs           0.3      ``dup_para_frac=0.3``
chars in duplicate lines       0.2      ``dup_line_char_frac=0.2``
chars in duplicate paragraphs  0.2      ``dup_para_char_frac=0.2``
top 2/3/4-gram char fraction   .20/.18/.16  ``top_n_grams``
=============================  =======  ==============================================

Document length bounds (Gopher's 50-100,000 words) are the ``length`` step's
job; the duplicated 5-10-gram fractions are left out (exact and near-duplicate
passages are dedup's). Words are whitespace tokens with surrounding
punctuation stripped (datatrove uses NLTK's tokenizer; this keeps the step free
of NLTK data downloads), so counts differ slightly from datatrove's.

Applies to OpenWebText by default: chat turns are short lines for which
line-based ratios mean nothing. Each failed check has its own drop reason
(``quality_symbol_ratio``, ``quality_dup_lines``, ...) and a detail with the
measured value and the threshold.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from curation.record import Record, text_of
from curation.steps._scope import applies, check_sources
from curation.steps.base import ConfigError, Dropped, RecordStep, StepConfig, option, register_step

STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
_BULLETS = ("•", "●", "○", "▪", "‣", "◦", "-", "*", "–")
_ELLIPSES = ("...", "…")
_PUNCT = "\"'“”‘’.,;:!?()[]{}<>«»*_-–—/\\|"
_PARAGRAPH = re.compile(r"\n{2,}")


@dataclass(frozen=True)
class QualityConfig(StepConfig):
    min_avg_word_length: float = option(3.0, "mean word length lower bound (0 = off)", min=0)
    max_avg_word_length: float = option(10.0, "mean word length upper bound (0 = off)", min=0)
    max_symbol_word_ratio: float = option(0.1, "most '#' or ellipses per word", min=0, max=1)
    max_bullet_lines_ratio: float = option(0.9, "most lines starting with a bullet", min=0, max=1)
    max_ellipsis_lines_ratio: float = option(0.3, "most lines ending with an ellipsis", min=0, max=1)
    min_alpha_words_ratio: float = option(0.8, "fewest words holding a letter", min=0, max=1)
    min_stop_words: int = option(2, "fewest stop words (the, be, to, of, and, that, have, with)", min=0)
    max_dup_line_frac: float = option(0.3, "most lines that repeat an earlier line", min=0, max=1)
    max_dup_para_frac: float = option(0.3, "most paragraphs that repeat an earlier one", min=0, max=1)
    max_dup_line_char_frac: float = option(0.2, "most characters in repeated lines", min=0, max=1)
    max_dup_para_char_frac: float = option(0.2, "most characters in repeated paragraphs", min=0, max=1)
    max_top_ngram_char_frac: tuple[float, ...] = option(
        (0.20, 0.18, 0.16), "for n = 2, 3, 4: most characters covered by the most frequent n-gram", min=0, max=1
    )
    sources: tuple[str, ...] = option(("openwebtext",), "sources to apply to (web text; '*' = all)")

    def check(self) -> None:
        super().check()
        check_sources("sources", self.sources)
        if self.max_avg_word_length and self.min_avg_word_length > self.max_avg_word_length:
            raise ConfigError(
                f"'min_avg_word_length': {self.min_avg_word_length} is above max_avg_word_length "
                f"{self.max_avg_word_length}"
            )
        if len(self.max_top_ngram_char_frac) > 3:
            raise ConfigError("'max_top_ngram_char_frac': at most 3 values (n = 2, 3, 4)")


@register_step
class Quality(RecordStep):
    name = "quality"
    description = "Gopher-style web-text heuristics: symbols, bullets, ellipses, stop words, repetition"
    Config = QualityConfig

    def process(self, record: Record, counters: Counter[str]) -> Record | Dropped:
        cfg: QualityConfig = self.config  # type: ignore[assignment]
        if not applies(cfg.sources, record["source"]):
            return record
        failure = quality_failure(text_of(record), cfg)
        if failure is None:
            return record
        return Dropped(record, *failure)


def quality_failure(text: str, cfg: QualityConfig) -> tuple[str, str] | None:
    """The first failed check as ``(reason, detail)``, or None when the text passes."""
    text = text.strip()
    if not text:
        return "quality_empty", "no text"
    raw_tokens = text.split()
    words = [w for w in (t.strip(_PUNCT) for t in raw_tokens) if w]
    n_words = len(words)
    if not n_words:
        return "quality_no_words", "no words"

    mean_len = sum(map(len, words)) / n_words
    if cfg.min_avg_word_length and mean_len < cfg.min_avg_word_length:
        return "quality_word_length", f"mean word length {mean_len:.2f} < {cfg.min_avg_word_length}"
    if cfg.max_avg_word_length and mean_len > cfg.max_avg_word_length:
        return "quality_word_length", f"mean word length {mean_len:.2f} > {cfg.max_avg_word_length}"

    for symbol, count in (("#", text.count("#")), ("ellipsis", text.count("...") + text.count("…"))):
        ratio = count / n_words
        if ratio > cfg.max_symbol_word_ratio:
            return "quality_symbol_ratio", f"{symbol} per word {ratio:.3f} > {cfg.max_symbol_word_ratio}"

    lines = [line for line in text.splitlines() if line.strip()]
    bullets = sum(line.lstrip().startswith(_BULLETS) for line in lines) / len(lines)
    if bullets > cfg.max_bullet_lines_ratio:
        return "quality_bullet_lines", f"{bullets:.0%} of lines start with a bullet > {cfg.max_bullet_lines_ratio}"
    ellipsis = sum(line.rstrip().endswith(_ELLIPSES) for line in lines) / len(lines)
    if ellipsis > cfg.max_ellipsis_lines_ratio:
        return (
            "quality_ellipsis_lines",
            f"{ellipsis:.0%} of lines end with an ellipsis > {cfg.max_ellipsis_lines_ratio}",
        )

    alpha = sum(any(c.isalpha() for c in w) for w in words) / n_words
    if alpha < cfg.min_alpha_words_ratio:
        return "quality_alpha_words", f"{alpha:.0%} of words hold a letter < {cfg.min_alpha_words_ratio}"

    stops = sum(w.lower() in STOP_WORDS for w in words)
    if stops < cfg.min_stop_words:
        return "quality_stop_words", f"{stops} stop words < min_stop_words {cfg.min_stop_words}"

    for unit, parts, max_frac, max_char_frac in (
        ("lines", lines, cfg.max_dup_line_frac, cfg.max_dup_line_char_frac),
        (
            "paragraphs",
            [p for p in _PARAGRAPH.split(text) if p.strip()],
            cfg.max_dup_para_frac,
            cfg.max_dup_para_char_frac,
        ),
    ):
        dup, dup_chars = _duplicates(parts)
        if parts and dup / len(parts) > max_frac:
            return f"quality_dup_{unit}", f"{dup} of {len(parts)} {unit} repeat an earlier one > {max_frac}"
        if dup_chars / len(text) > max_char_frac:
            return f"quality_dup_{unit}", f"{dup_chars / len(text):.0%} of chars in repeated {unit} > {max_char_frac}"

    lowered = [w.lower() for w in words]
    for n, max_frac in enumerate(cfg.max_top_ngram_char_frac, start=2):
        frac = _top_ngram_char_frac(lowered, n, len(text))
        if frac > max_frac:
            return "quality_top_ngram", f"top {n}-gram covers {frac:.0%} of chars > {max_frac}"
    return None


def _duplicates(parts: list[str]) -> tuple[int, int]:
    """How many items repeat an earlier one, and their characters (datatrove's ``find_duplicates``)."""
    seen: set[str] = set()
    dup = dup_chars = 0
    for p in parts:
        if p in seen:
            dup += 1
            dup_chars += len(p)
        else:
            seen.add(p)
    return dup, dup_chars


def _top_ngram_char_frac(words: list[str], n: int, n_chars: int) -> float:
    """Characters covered by all occurrences of the most frequent n-gram, over the text's length."""
    if len(words) < n or not n_chars:
        return 0.0
    counts = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    gram, count = counts.most_common(1)[0]
    if count < 2:
        return 0.0
    return (sum(map(len, gram)) + n - 1) * count / n_chars
