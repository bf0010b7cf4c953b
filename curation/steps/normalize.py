"""Text normalisation: one record step, ``normalize``.

In order, on every turn's text (and on the context fields named in ``context_keys``):

1. **replacements** per source: literal escapes a source left in its text, such as
   EmpatheticDialogues' ``_comma_`` (its adapter already restores turn texts and
   the prompt; this catches whatever remains in other fields or in data ingested
   by an older adapter).
2. **mojibake repair** with ``ftfy.fix_text`` (``"Ã©"`` -> ``"é"``, HTML entities in
   text without markup, control characters). Curly quotes are kept unless
   ``uncurl_quotes``; full-width characters are left alone.
3. **Unicode NFC**.
4. **detokenising** for the sources in ``detokenize_sources`` (DailyDialog):
   its utterances are pre-tokenised (``"I ’ ll"``, ``"don ’ t"``, ``"far.Can"``,
   ``" , "``, ``"$ 25"``, ``"( beep )"``, ``" \\" No . \\""``) and become natural text
   (``"I’ll"``, ``"don’t"``, ``"far. Can"``, ``", "``, ``"$25"``, ``"(beep)"``,
   ``"\\"No.\\""``). See :func:`detokenize`.
5. **whitespace**: runs of spaces and tabs become one space, lines are stripped,
   runs of blank lines are cut to ``max_blank_lines`` (OpenWebText's 3+ blank
   lines become one blank line, as HF's loader does) and the text is stripped.

A turn whose text changes keeps its first text in ``attrs["raw_text"]`` (set only
when absent, so the text as ingested survives repeated runs). The step is
idempotent: normalising normalised text changes nothing. Counters: ``modified``
(records), ``turns_modified``, ``context_modified`` and one ``turns_<stage>`` per
stage that changed a turn.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import cache
from typing import Any

from curation.record import Record
from curation.steps._scope import ALL_SOURCES, applies, check_sources, with_text
from curation.steps.base import ConfigError, RecordStep, StepConfig, option, register_step


@dataclass(frozen=True)
class NormalizeConfig(StepConfig):
    fix_mojibake: bool = option(True, "repair mojibake and stray control characters with ftfy")
    uncurl_quotes: bool = option(False, "let ftfy turn curly quotes into straight ones")
    nfc: bool = option(True, "Unicode NFC normalisation")
    whitespace: bool = option(True, "collapse spaces and tabs, strip lines and text, cap blank-line runs")
    max_blank_lines: int = option(1, "longest run of blank lines kept (OpenWebText: 3+ become 1)", min=0, max=10)
    detokenize_sources: tuple[str, ...] = option(
        ("dailydialog",), "sources whose text is pre-tokenised ('I ’ ll', ' , ') and is detokenised"
    )
    replacements: dict[str, Any] = option(  # noqa: RUF009 (a table; option copies it per instance)
        {"empatheticdialogues": {"_comma_": ","}},
        "per source, literal strings replaced in text and context: {source = {from = to}}; '*' for all",
    )
    context_keys: tuple[str, ...] = option(
        ("prompt", "situation"), "context fields normalised like turn text (not detokenised)"
    )

    def check(self) -> None:
        super().check()
        check_sources("detokenize_sources", self.detokenize_sources)
        check_sources("replacements", self.replacements)
        for source, table in self.replacements.items():
            if not isinstance(table, dict) or not all(
                isinstance(k, str) and k and isinstance(v, str) for k, v in table.items()
            ):
                raise ConfigError(f"'replacements': {source!r} must map non-empty strings to strings, got {table!r}")


@register_step
class Normalize(RecordStep):
    name = "normalize"
    description = "NFC, mojibake repair (ftfy), whitespace, detokenising (DailyDialog), source escapes (_comma_)"
    Config = NormalizeConfig

    def __init__(self, config: NormalizeConfig | None = None) -> None:
        super().__init__(config)
        if self.config.fix_mojibake:
            _require_ftfy()

    def process(self, record: Record, counters: Counter[str]) -> Record:
        cfg: NormalizeConfig = self.config  # type: ignore[assignment]
        source = record["source"]
        replacements = _replacements_for(cfg.replacements, source)
        detok = applies(cfg.detokenize_sources, source)
        turns = record["turns"]
        new_turns = []
        changed = False
        for t in turns:
            text = self._text(t["text"], replacements, detok, counters)
            if text != t["text"]:
                new_turns.append(with_text(t, text))
                counters["turns_modified"] += 1
                changed = True
            else:
                new_turns.append(t)
        context = record.get("context") or {}
        new_context = dict(context)
        for key in cfg.context_keys:
            value = context.get(key)
            if value:
                text = self._text(value, replacements, False, Counter())
                if text != value:
                    new_context[key] = text
                    counters["context_modified"] += 1
                    changed = True
        if not changed:
            return record
        counters["modified"] += 1
        return {**record, "turns": new_turns, "context": new_context}

    def _text(self, text: str, replacements: dict[str, str], detok: bool, counters: Counter[str]) -> str:
        cfg: NormalizeConfig = self.config  # type: ignore[assignment]
        stages = []
        if replacements:
            stages.append(("replaced", lambda s: _replace(s, replacements)))
        if cfg.fix_mojibake:
            stages.append(("mojibake_fixed", lambda s: fix_mojibake(s, uncurl_quotes=cfg.uncurl_quotes)))
        if cfg.nfc:
            stages.append(("nfc", lambda s: unicodedata.normalize("NFC", s)))
        if detok:
            stages.append(("detokenized", detokenize))
        if cfg.whitespace:
            stages.append(("whitespace", lambda s: normalize_whitespace(s, max_blank_lines=cfg.max_blank_lines)))
        for stage, fn in stages:
            new = fn(text)
            if new != text:
                counters[f"turns_{stage}"] += 1
                text = new
        return text


def _replacements_for(table: dict[str, Any], source: str) -> dict[str, str]:
    out: dict[str, str] = {}
    out.update(table.get(ALL_SOURCES, {}))
    out.update(table.get(source, {}))
    return out


def _replace(text: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        text = text.replace(old, new)
    return text


# ------------------------------------------------------------------ mojibake


def _require_ftfy() -> None:
    try:
        import ftfy  # noqa: F401
    except ImportError:
        raise ConfigError(
            "'fix_mojibake' needs the ftfy package: pip install ftfy (or set fix_mojibake = false)"
        ) from None


@cache
def _ftfy_config(uncurl_quotes: bool) -> Any:
    import ftfy

    # NFC is its own stage; full-width forms are left alone (not mojibake).
    return ftfy.TextFixerConfig(uncurl_quotes=uncurl_quotes, fix_character_width=False, normalization=None)


def fix_mojibake(text: str, *, uncurl_quotes: bool = False) -> str:
    """``ftfy.fix_text`` with curly quotes kept (by default) and no width or Unicode normalisation."""
    import ftfy

    return ftfy.fix_text(text, config=_ftfy_config(uncurl_quotes))


# ------------------------------------------------------------------ whitespace

_HSPACE = re.compile(r"[^\S\n]+")
_NEWLINES = re.compile(r"\r\n?")


def normalize_whitespace(text: str, *, max_blank_lines: int = 1) -> str:
    """Spaces and tabs collapsed, each line stripped, blank-line runs capped, the text stripped."""
    text = _NEWLINES.sub("\n", text)
    if "\n" not in text:
        return _HSPACE.sub(" ", text).strip()
    lines = [_HSPACE.sub(" ", line).strip() for line in text.split("\n")]
    text = "\n".join(lines)
    keep = "\n" * (max_blank_lines + 1)
    text = re.sub(rf"\n{{{max_blank_lines + 2},}}", keep, text)
    return text.strip()


# ------------------------------------------------------------------ detokenising

# "I ’ ll", "don ’ t", "It ' s", "I ‘ Ve" (‘ is a typo for ’ in the data), "o ’ clock"
_CONTRACTION = re.compile(r"\b(\w+) ?([’'‘]) ?(s|t|m|d|ll|re|ve)\b", re.IGNORECASE)
_ELISIONS = re.compile(r"\b([oO]|[mM]a) ?[’'‘] ?(clock|am)\b")  # "o ’ clock", "ma ’ am"
# "a . m .", "U . S . A ." -> "a.m.", "U.S.A."
_INITIALISM = re.compile(r"\b(?:[A-Za-z] ?\. ?){2,}(?=\s|$)")
# "far.Can", "thank you.that", "Mr.Wang.Do": sentences glued at a stop inside one token
_GLUED = re.compile(r"(?<=[A-Za-z]{2})([.?!]+)(?=[A-Za-z])")
# Lower-case only: "Mum.In a minute" is two sentences, "yahoo.com" is an address.
_DOMAIN_ENDINGS = frozenset(
    [
        "com",
        "org",
        "net",
        "edu",
        "gov",
        "info",
        "biz",
        "uk",
        "cn",
        "jp",
        "html",
        "htm",
        "php",
        "asp",
        "jpg",
        "gif",
        "png",
        "pdf",
    ]
)
_ATTACH_LEFT = frozenset(".,?!;:%)]}”’…") | {"...", ".."}
_ATTACH_RIGHT = frozenset("([{“‘$£€¥#")
_PUNCT_RUN = re.compile(r"^[.,?!;:]+$")


def detokenize(text: str) -> str:
    """Pre-tokenised English (DailyDialog) back to natural text.

    Handles what is common in ``dialogues_text.txt`` (102,980 utterances): spaces
    before ``. , ? ! ; : %`` and closing brackets, after opening brackets and
    currency signs (``$ 25`` -> ``$25``), split contractions with ``’``/``'``/``‘``
    (``I ’ Ve`` -> ``I’ve``; ``‘`` used as an apostrophe becomes ``’``), ``o ’ clock``,
    ``a . m .``, sentences glued at a full stop (``far.Can`` -> ``far. Can``; web
    addresses such as ``yahoo.com`` are left alone), paired straight and curly
    quotes (``" No . "`` -> ``"No."``). A standalone ``'`` that is not paired stays
    as it is unless it follows a plural (``Teachers ' College`` -> ``Teachers'
    College``). Idempotent: natural text passes through unchanged.
    """
    text = " ".join(_unglue(tok) for tok in text.split(" "))
    text = _ELISIONS.sub(lambda m: f"{m.group(1)}’{m.group(2)}", text)
    text = _CONTRACTION.sub(_contract, text)
    text = _INITIALISM.sub(lambda m: m.group(0).replace(" ", ""), text)
    return _join_tokens(text.split(" "))


def _unglue(token: str) -> str:
    if "@" in token or not _GLUED.search(token) or token.lower().startswith(("http", "www.")):
        return token
    parts = _GLUED.split(token)  # word, stop, word, stop, ..., word
    if parts[-2] == "." and parts[-1].rstrip(".,?!;:") in _DOMAIN_ENDINGS:
        return token  # "yahoo.com", "Stars.com"
    out = [parts[0]]
    for stop, word in zip(parts[1::2], parts[2::2], strict=True):
        single = len(word.rstrip(".,?!;:")) == 1  # "Ph.D"
        out.append(f"{stop}{word}" if single else f"{stop} {word}")
    return "".join(out)


def _contract(m: re.Match[str]) -> str:
    word, mark, suffix = m.groups()
    if m.group(0) == f"{word}{mark}{suffix}" and mark != "‘":
        return m.group(0)  # already natural: leave "O'Neil's"-like text as it is
    mark = "’" if mark == "‘" else mark
    if not (word.isupper() and suffix.isupper() and len(word) + len(suffix) > 2):
        suffix = suffix.lower()  # "I ’ Ve" -> "I’ve", but "DON ’ T" -> "DON’T"
    return f"{word}{mark}{suffix}"


def _join_tokens(tokens: list[str]) -> str:
    """Glue punctuation tokens to their neighbours (a small Moses-style detokeniser)."""
    tokens = [t for t in tokens if t]
    # Count quote tokens with punctuation glued after them too ("',"), so a second run pairs the same way.
    pair_double = sum(t.rstrip(".,?!;:") == '"' for t in tokens) % 2 == 0
    pair_single = sum(t.rstrip(".,?!;:") == "'" for t in tokens) % 2 == 0
    out: list[str] = []
    glue_next = double_open = single_open = False
    for i, tok in enumerate(tokens):
        left = right = False
        if tok in _ATTACH_LEFT or _PUNCT_RUN.match(tok):
            left = True
        elif tok in _ATTACH_RIGHT:
            right = True
        elif tok == '"' and pair_double:
            left, right = double_open, not double_open
            double_open = not double_open
        elif tok == "'" and pair_single:
            left, right = single_open, not single_open
            single_open = not single_open
        elif tok == "'" and i > 0 and len(tokens[i - 1]) > 2 and tokens[i - 1].endswith("s"):
            left = True  # an unpaired ' after a plural: "Teachers ' College"
        if out and not left and not glue_next:
            out.append(" ")
        out.append(tok)
        glue_next = right
    return "".join(out)
