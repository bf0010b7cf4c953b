"""language: py3langid on real English slices and on non-English sentences.

The non-English sentences below were written for this test by its author (not taken
from any data set); everything else is real text from examples/data.
"""

from __future__ import annotations

import copy

import pytest

from curation.steps.base import ConfigError
from curation.steps.language import LANGUAGE_NAMES, Language, LanguageConfig, wrong_language_detail

NON_ENGLISH = {
    "de": [
        "Ich habe gestern den ganzen Abend auf dich gewartet, aber du bist nicht gekommen.",
        "Mein Bruder hat endlich eine neue Arbeit gefunden und wir sind alle sehr erleichtert.",
    ],
    "es": [
        "No puedo creer que hayas olvidado mi cumpleaños otra vez.",
        "Estoy muy cansado porque trabajé hasta tarde toda la semana.",
    ],
    "fr": [
        "Je suis vraiment désolé, je n'ai pas pu venir à ta fête samedi soir.",
        "Mon chat est malade depuis trois jours et je m'inquiète beaucoup.",
    ],
    "it": ["Non ho ancora finito di leggere il libro che mi hai prestato."],
    "pt": ["Eu fiquei muito feliz quando recebi a notícia da minha promoção."],
    "nl": ["Wil je morgen met mij naar de markt gaan om groenten te kopen?"],
}


def run(step, records):
    results, counters = step.process_batch(records)
    return [r for r in results if isinstance(r, dict)], [r for r in results if not isinstance(r, dict)], counters


def test_real_english_slices_are_kept(real_records):
    records = [r for rs in real_records.values() for r in rs]
    _kept, dropped, counters = run(Language(), records)
    assert not dropped, [(d.record["id"], d.detail) for d in dropped]
    assert counters["checked"] > 900 and counters["skipped_short"] > 0  # short GoEmotions comments


@pytest.mark.parametrize(("lang", "text"), [(lang, t) for lang, ts in NON_ENGLISH.items() for t in ts])
def test_non_english_is_dropped_with_the_detected_language(by_id, lang, text):
    record = copy.deepcopy(next(r for k, r in by_id.items() if k.startswith("goemotions:")))
    record["turns"][0]["text"] = text
    _, (d,), counters = run(Language(), [record])
    assert d.reason == "wrong_language"
    assert d.detail.startswith(f"reads as {LANGUAGE_NAMES[lang]} ({lang}), ")
    assert d.detail.endswith("% sure; only English (en) is kept")
    assert counters[f"dropped_{lang}"] == 1


def test_dialogue_in_another_language_is_dropped(by_id):
    record = copy.deepcopy(by_id["dailydialog:train:1"])
    spanish = NON_ENGLISH["es"]
    for i, t in enumerate(record["turns"]):
        t["text"] = spanish[i % len(spanish)]
    _, (d,), _ = run(Language(), [record])
    assert d.detail.startswith("reads as Spanish (es), ")


def test_keeping_other_languages_and_short_texts(by_id):
    record = copy.deepcopy(next(r for k, r in by_id.items() if k.startswith("goemotions:")))
    record["turns"][0]["text"] = NON_ENGLISH["de"][0]
    assert run(Language(LanguageConfig(languages=["en", "de"])), [record])[0]
    record["turns"][0]["text"] = "Danke schön!"  # under min_chars: not checked
    kept, _, counters = run(Language(), [record])
    assert kept and counters["skipped_short"] == 1


def test_placeholders_do_not_count_towards_length(by_id):
    record = copy.deepcopy(next(r for k, r in by_id.items() if k.startswith("goemotions:")))
    record["turns"][0]["text"] = "[NAME] [NAME] [RELIGION] ja"
    assert run(Language(), [record])[2]["skipped_short"] == 1


def test_step_pickles():
    import pickle

    step = pickle.loads(pickle.dumps(Language()))
    assert step.config == LanguageConfig()


@pytest.mark.parametrize(
    ("options", "key"),
    [({"min_confidence": 1.5}, "min_confidence"), ({"languages": ["english"]}, "languages"), ({"lang": "en"}, "lang")],
)
def test_config_errors_name_the_key(options, key):
    with pytest.raises(ConfigError, match=key):
        LanguageConfig.from_dict(options)


def test_every_language_the_model_knows_has_a_name():
    from curation.steps.language import _model_languages

    assert set(_model_languages()) <= set(LANGUAGE_NAMES)
    assert (
        wrong_language_detail("pcm", 0.87, ("en",))
        == "reads as Nigerian Pidgin (pcm), 87% sure; only English (en) is kept"
    )
