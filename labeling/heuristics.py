"""Transparent heuristic scorers for the six speaking traits and for response empathy.

These are *heuristics*, not models: each score is a saturating function of a
rate a person can check by counting (filler words per 100 words, transition
words per sentence, ...), and each explanation says what was counted. The local
labeler writes them with agents ``local-heuristic@traits-v1`` /
``local-heuristic@empathy-v1`` so nobody mistakes them for trained models.
The word lists are the whole method; change them and bump the version.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

HEURISTICS_VERSION = "v1"

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")

FILLER_PHRASES = (
    "um", "umm", "uh", "uhh", "er", "erm", "hmm", "like", "you know", "i mean", "basically", "actually",
    "literally", "kind of", "kinda", "sort of", "sorta", "so yeah", "right", "okay so", "well",
)  # fmt: skip
TRANSITION_PHRASES = (
    "first", "firstly", "second", "secondly", "third", "then", "next", "finally", "lastly", "however", "therefore",
    "thus", "hence", "moreover", "furthermore", "in addition", "additionally", "also", "because", "since",
    "consequently", "as a result", "for example", "for instance", "in contrast", "on the other hand", "meanwhile",
    "nevertheless", "nonetheless", "in conclusion", "to sum up", "overall", "instead", "similarly", "likewise",
    "although", "whereas", "so that", "in fact",
)  # fmt: skip
PERSUASION_PHRASES = (
    "should", "must", "need to", "have to", "ought to", "clearly", "obviously", "certainly", "undoubtedly",
    "in fact", "evidence", "studies show", "research shows", "proven", "imagine", "consider", "the truth is",
    "we can", "you can", "let's", "don't miss", "the best", "guarantee", "important", "essential", "crucial",
    "why not", "because", "therefore",
)  # fmt: skip
ENTHUSIASM_WORDS = (
    "amazing", "awesome", "great", "love", "excited", "exciting", "fantastic", "incredible", "wonderful", "wow",
    "yay", "best", "so", "really", "totally", "absolutely", "super", "cool", "brilliant", "thrilled", "can't wait",
    "omg", "haha", "lol",
)  # fmt: skip
EMPATHY_PHRASES = (
    "sorry", "i understand", "understandable", "i hear you", "that sounds", "sounds like", "must be", "must have been",
    "i can imagine", "i know how", "it's okay", "it is okay", "it's ok", "that's hard", "that is hard", "difficult",
    "tough", "i feel", "you feel", "feeling", "feelings", "i'm here", "here for you", "support", "care", "hope",
    "glad", "proud of you", "you are not alone", "you're not alone", "take care", "valid", "normal to feel",
    "how are you feeling", "how do you feel", "that's great", "good for you", "congratulations",
)  # fmt: skip
SLANG_WORDS = (
    "gonna", "wanna", "gotta", "yeah", "yep", "nope", "lol", "lmao", "omg", "dude", "guys", "kinda", "sorta", "ya",
    "u", "ur", "cuz", "stuff", "cool", "awesome", "hey", "ok", "okay", "haha", "damn", "shit", "fuck", "crap",
)  # fmt: skip
PERSONAL_PRONOUNS = ("i", "me", "my", "you", "your", "we", "us", "our")


@dataclass(frozen=True)
class Measure:
    """One heuristic score: the integer on its scale and the sentence saying what was counted."""

    score: int
    explanation: str


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def _count_phrases(words: list[str], phrases: Iterable[str]) -> int:
    """Occurrences of single words and multi-word phrases in the word sequence."""
    joined = " " + " ".join(words) + " "
    return sum(joined.count(f" {p} ") for p in phrases)


def _sentences(text: str) -> int:
    return max(1, len(_SENTENCE_END.findall(text.strip() + " ")))


def _scale(rate: float, half: float, low: int, high: int) -> int:
    """``low`` at rate 0, rising to ``high``; ``half`` is the rate that reaches the middle of the scale."""
    frac = 1 - math.exp(-math.log(2) * max(rate, 0.0) / half)
    return int(min(high, max(low, round(low + (high - low) * frac))))


def filler_words(text: str) -> Measure:
    words = _words(text)
    n = max(1, len(words))
    count = _count_phrases(words, FILLER_PHRASES)
    rate = 100 * count / n
    return Measure(_scale(rate, 4.0, 1, 10), f"heuristic: {count} filler words in {n} words ({rate:.1f} per 100).")


def transition_logic(text: str) -> Measure:
    words = _words(text)
    sentences = _sentences(text)
    count = _count_phrases(words, TRANSITION_PHRASES)
    rate = count / sentences
    return Measure(
        _scale(rate, 0.6, 1, 10),
        f"heuristic: {count} transition words over {sentences} sentences ({rate:.2f} per sentence).",
    )


def persuasiveness(text: str) -> Measure:
    words = _words(text)
    n = max(1, len(words))
    count = _count_phrases(words, PERSUASION_PHRASES)
    rate = 100 * count / n
    return Measure(_scale(rate, 2.5, 1, 10), f"heuristic: {count} persuasion markers ({rate:.1f} per 100 words).")


def enthusiasm(text: str) -> Measure:
    words = _words(text)
    n = max(1, len(words))
    sentences = _sentences(text)
    bangs = text.count("!")
    caps = sum(1 for w in re.findall(r"\b[A-Z]{3,}\b", text))
    intense = _count_phrases(words, ENTHUSIASM_WORDS)
    rate = 100 * (intense + caps) / n + 3 * bangs / sentences
    return Measure(
        _scale(rate, 4.0, 1, 10),
        f"heuristic: {bangs} exclamation marks, {intense} intensity words and {caps} all-caps words in {n} words.",
    )


def empathy_markers(text: str) -> tuple[int, int]:
    words = _words(text)
    return _count_phrases(words, EMPATHY_PHRASES), max(1, len(words))


def empathy(text: str) -> Measure:
    count, n = empathy_markers(text)
    rate = 100 * count / n
    return Measure(_scale(rate, 2.0, 1, 10), f"heuristic: {count} empathy markers ({rate:.1f} per 100 words).")


def formality(text: str) -> Measure:
    """Starts at the middle of the scale; long words and sentences push up, contractions, slang, 'I/you', '!' down."""
    words = _words(text)
    n = max(1, len(words))
    contractions = sum(1 for w in words if "'" in w)
    slang = sum(1 for w in words if w in SLANG_WORDS)
    pronouns = sum(1 for w in words if w in PERSONAL_PRONOUNS)
    mean_len = sum(len(w) for w in words) / n
    per_sentence = n / _sentences(text)
    informal = 100 * (contractions + 2 * slang + 0.5 * pronouns) / n + 3 * text.count("!") / _sentences(text)
    formal = 2.0 * (mean_len - 4.3) + 0.1 * (min(per_sentence, 40) - 15)
    raw = 5.5 + formal - 0.35 * informal
    score = int(min(10, max(1, round(raw))))
    return Measure(
        score,
        f"heuristic: {contractions} contractions, {slang} slang and {pronouns} personal pronouns in {n} words, "
        f"mean word length {mean_len:.1f}, {per_sentence:.0f} words per sentence.",
    )


TRAIT_SCORERS = {
    "formality": formality,
    "persuasiveness": persuasiveness,
    "enthusiasm": enthusiasm,
    "empathy": empathy,
    "filler_words": filler_words,
    "transition_logic": transition_logic,
}


def response_empathy(text: str) -> Measure:
    """A 1-5 rating of a response: 2 with no empathy marker, 3 with a question or one marker, up to 5."""
    count, n = empathy_markers(text)
    asks = "?" in text
    raw = 2 + min(count, 2) + (0.5 if asks else 0) + (0.5 if count and n <= 60 else 0)
    score = int(min(5, max(1, math.floor(raw))))
    return Measure(score, f"heuristic: {count} empathy markers in {n} words{', asks a question' if asks else ''}.")
