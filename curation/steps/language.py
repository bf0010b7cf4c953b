"""Language filter: ``language``, with py3langid (langid.py's model, shipped inside the package, offline).

The record's text (all turns) is classified over py3langid's 97 languages with
normalised probabilities. A record is dropped (reason ``wrong_language``) only
when the top language is not among ``languages`` *and* its probability is at
least ``min_confidence``: short English chat is often guessed as something
else with low confidence, and keeping uncertain records is the safe side.
``zxx`` ("no linguistic content": emoji, digits, braille art) is never a reason
to drop here; junk is the quality filter's business.

Texts shorter than ``min_chars`` (after removing placeholders such as
``[NAME]`` and our PII masks) are not checked, as datatrove's LanguageFilter
does for short documents, and counted as ``skipped_short``; only the first
``max_chars`` characters are read.

Measured on this machine (1 core; py3langid 0.4.0; ``bench`` numbers in the report):

* GoEmotions, all 54,263 comments (English Reddit, mean 68 chars): ~28k texts/s.
  Top language not English: 23 % of comments under 20 chars, 3.6 % at 20-39,
  0.5 % at 40-59 (mostly ``pcm``, Nigerian Pidgin, at low probability). With
  the defaults (``min_chars`` 20, ``min_confidence`` 0.8, ``zxx`` ignored):
  1 comment of 49,687 checked is dropped.
* DailyDialog (13,118 dialogues), ESConv (1,300), the ED slice (95): none dropped
  at any threshold tried; ~4k, ~1k and ~7k records/s.
* 23 German / Spanish / French / Italian / Portuguese / Dutch sentences written
  for the tests: all identified, probabilities 0.91-1.0; cut to their first 25
  characters, 18 of 23 still reach 0.8.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import cache
from typing import Any

from curation.record import Record, text_of
from curation.steps._scope import ALL_SOURCES, applies, check_sources
from curation.steps.base import ConfigError, Dropped, RecordStep, StepConfig, option, register_step

#: Placeholders that carry no language: dataset masks ([NAME], [RELIGION]) and ours ([EMAIL], [URL]).
_PLACEHOLDER = re.compile(r"\[[A-Z_]{2,}\]")
NO_LANGUAGE = "zxx"


#: English names of py3langid's languages, for messages a user reads ("Nigerian Pidgin", not "pcm").
LANGUAGE_NAMES: dict[str, str] = {
    "ace": "Acehnese",
    "af": "Afrikaans",
    "am": "Amharic",
    "an": "Aragonese",
    "ar": "Arabic",
    "ary": "Moroccan Arabic",
    "arz": "Egyptian Arabic",
    "as": "Assamese",
    "az": "Azerbaijani",
    "ba": "Bashkir",
    "bcl": "Central Bikol",
    "be": "Belarusian",
    "bg": "Bulgarian",
    "bn": "Bengali",
    "br": "Breton",
    "bs": "Bosnian",
    "ca": "Catalan",
    "crh": "Crimean Tatar",
    "cs": "Czech",
    "cy": "Welsh",
    "da": "Danish",
    "de": "German",
    "dz": "Dzongkha",
    "el": "Greek",
    "en": "English",
    "eo": "Esperanto",
    "es": "Spanish",
    "et": "Estonian",
    "eu": "Basque",
    "ext": "Extremaduran",
    "fa": "Persian",
    "fi": "Finnish",
    "fo": "Faroese",
    "fr": "French",
    "fuv": "Nigerian Fulfulde",
    "fy": "Western Frisian",
    "ga": "Irish",
    "gcf": "Guadeloupean Creole",
    "gcr": "Guianese Creole",
    "gd": "Scottish Gaelic",
    "gl": "Galician",
    "gom": "Goan Konkani",
    "grc": "Ancient Greek",
    "gu": "Gujarati",
    "gug": "Paraguayan Guarani",
    "guw": "Gun",
    "ha": "Hausa",
    "hbo": "Ancient Hebrew",
    "he": "Hebrew",
    "hi": "Hindi",
    "hr": "Croatian",
    "ht": "Haitian Creole",
    "hu": "Hungarian",
    "hy": "Armenian",
    "id": "Indonesian",
    "ig": "Igbo",
    "is": "Icelandic",
    "it": "Italian",
    "ja": "Japanese",
    "jv": "Javanese",
    "ka": "Georgian",
    "kab": "Kabyle",
    "kik": "Kikuyu",
    "kk": "Kazakh",
    "km": "Khmer",
    "kn": "Kannada",
    "ko": "Korean",
    "ku": "Kurdish",
    "ky": "Kyrgyz",
    "la": "Latin",
    "lb": "Luxembourgish",
    "lg": "Ganda",
    "lij": "Ligurian",
    "ln": "Lingala",
    "lo": "Lao",
    "lt": "Lithuanian",
    "ltg": "Latgalian",
    "lv": "Latvian",
    "mg": "Malagasy",
    "mk": "Macedonian",
    "ml": "Malayalam",
    "mn": "Mongolian",
    "mr": "Marathi",
    "ms": "Malay",
    "mt": "Maltese",
    "my": "Burmese",
    "ne": "Nepali",
    "nl": "Dutch",
    "nn": "Norwegian Nynorsk",
    "no": "Norwegian",
    "nso": "Northern Sotho",
    "oc": "Occitan",
    "om": "Oromo",
    "or": "Odia",
    "pa": "Punjabi",
    "pcm": "Nigerian Pidgin",
    "pl": "Polish",
    "ps": "Pashto",
    "pt": "Portuguese",
    "qu": "Quechua",
    "ro": "Romanian",
    "ru": "Russian",
    "rw": "Kinyarwanda",
    "sa": "Sanskrit",
    "sdh": "Southern Kurdish",
    "se": "Northern Sami",
    "si": "Sinhala",
    "sk": "Slovak",
    "sl": "Slovenian",
    "sn": "Shona",
    "so": "Somali",
    "sq": "Albanian",
    "sr": "Serbian",
    "st": "Southern Sotho",
    "sv": "Swedish",
    "sw": "Swahili",
    "ta": "Tamil",
    "te": "Telugu",
    "tg": "Tajik",
    "th": "Thai",
    "tk": "Turkmen",
    "tl": "Tagalog",
    "tr": "Turkish",
    "tt": "Tatar",
    "ug": "Uyghur",
    "uk": "Ukrainian",
    "ur": "Urdu",
    "uz": "Uzbek",
    "uzs": "Southern Uzbek",
    "vec": "Venetian",
    "vi": "Vietnamese",
    "vo": "Volapük",
    "wa": "Walloon",
    "wuu": "Wu Chinese",
    "xh": "Xhosa",
    "yo": "Yoruba",
    "yue": "Cantonese",
    "zh": "Chinese",
    "zu": "Zulu",
    "zxx": "no linguistic content",
}


@dataclass(frozen=True)
class LanguageConfig(StepConfig):
    languages: tuple[str, ...] = option(("en",), "ISO 639-1 codes to keep")
    min_confidence: float = option(
        0.8, "drop only when another language is detected with at least this probability", min=0.0, max=1.0
    )
    min_chars: int = option(20, "texts shorter than this (placeholders removed) are not checked", min=0)
    max_chars: int = option(4000, "only the first max_chars characters are classified", min=1)
    sources: tuple[str, ...] = option((ALL_SOURCES,), "sources to apply to ('*' = all)")

    def check(self) -> None:
        super().check()
        check_sources("sources", self.sources)
        if not self.languages:
            raise ConfigError("'languages': give at least one language to keep")
        known = _model_languages()
        if known is not None:
            for code in self.languages:
                if code not in known:
                    raise ConfigError(f"'languages': {code!r} is not a language py3langid knows")


@register_step
class Language(RecordStep):
    name = "language"
    description = "drop records confidently detected as another language (py3langid, offline)"
    Config = LanguageConfig

    def __init__(self, config: LanguageConfig | None = None) -> None:
        super().__init__(config)
        _require_py3langid()

    def process(self, record: Record, counters: Counter[str]) -> Record | Dropped:
        cfg: LanguageConfig = self.config  # type: ignore[assignment]
        if not applies(cfg.sources, record["source"]):
            return record
        text = _PLACEHOLDER.sub(" ", text_of(record)).strip()
        if len(text) < cfg.min_chars:
            counters["skipped_short"] += 1
            return record
        lang, prob = detect(text[: cfg.max_chars])
        counters["checked"] += 1
        if lang in cfg.languages or lang == NO_LANGUAGE:
            return record
        if prob < cfg.min_confidence:
            counters["uncertain_kept"] += 1
            return record
        counters[f"dropped_{lang}"] += 1
        return Dropped(record, "wrong_language", wrong_language_detail(lang, prob, cfg.languages))


def language_name(code: str) -> str:
    """``"Nigerian Pidgin (pcm)"``: the English name and the code, or the code alone if unknown."""
    name = LANGUAGE_NAMES.get(code)
    return f"{name} ({code})" if name else code


def wrong_language_detail(lang: str, prob: float, keep: tuple[str, ...] | list[str]) -> str:
    """Why a record was dropped, in words: ``reads as German (de), 97 % sure; only English (en) is kept``."""
    kept = " and ".join(language_name(c) for c in keep)
    verb = "is" if len(keep) == 1 else "are"
    return f"reads as {language_name(lang)}, {prob:.0%} sure; only {kept} {verb} kept"


def detect(text: str) -> tuple[str, float]:
    """The most probable language of ``text`` and its normalised probability."""
    lang, prob = _identifier().classify(text)
    return str(lang), float(prob)


def detector_version() -> str:
    from importlib.metadata import version

    return f"py3langid@{version('py3langid')}"


@cache
def _identifier() -> Any:
    """Loaded once per process (~0.5 s); a step object stays picklable as it holds no model."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


@cache
def _model_languages() -> frozenset[str] | None:
    try:
        return frozenset(_identifier().nb_classes)
    except ImportError:
        return None


def _require_py3langid() -> None:
    try:
        import py3langid  # noqa: F401
    except ImportError:
        raise ConfigError("the language step needs py3langid: pip install py3langid") from None
