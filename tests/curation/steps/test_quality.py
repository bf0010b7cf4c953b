"""quality (Gopher heuristics) on the 4 real OpenWebText documents and junk built from them."""

from __future__ import annotations

import copy

import pytest

from curation.steps.base import ConfigError
from curation.steps.quality import STOP_WORDS, Quality, QualityConfig

DOC = "openwebtext:train:0000005-93544d279b4a2417d2201864e28639b1"


def run(step, records):
    results, counters = step.process_batch(records)
    return [r for r in results if isinstance(r, dict)], [r for r in results if not isinstance(r, dict)], counters


def with_text(record, text):
    out = copy.deepcopy(record)
    out["turns"][0]["text"] = text
    return out


def test_real_documents_pass(real_records):
    kept, dropped, _ = run(Quality(), real_records["openwebtext"])
    assert len(kept) == 4 and not dropped


def test_dialogue_sources_are_out_of_scope_by_default(real_records):
    # one-line chat turns would fail line-based ratios; the default scope is web text only
    _kept, dropped, _ = run(Quality(), real_records["goemotions"])
    assert not dropped
    _, dropped, _ = run(Quality(QualityConfig(sources=["*"])), real_records["goemotions"])
    assert dropped


def _paragraphs(by_id):
    return by_id[DOC]["turns"][0]["text"].split("\n\n")


def test_repeated_lines_are_dropped(by_id):
    paras = _paragraphs(by_id)
    # boilerplate repeated after every paragraph, as scraped pages have
    text = "\n".join(p + "\nShare this article on Facebook and Twitter" for p in paras[:8])
    (d,) = run(Quality(), [with_text(by_id[DOC], text)])[1]
    assert d.reason in ("quality_dup_lines", "quality_dup_paragraphs")
    assert "repeat" in d.detail or "repeated" in d.detail


def test_duplicate_paragraphs_are_dropped(by_id):
    paras = _paragraphs(by_id)
    text = "\n\n".join(paras[:3] * 3)
    (d,) = run(Quality(), [with_text(by_id[DOC], text)])[1]
    assert d.reason == "quality_dup_lines" or d.reason == "quality_dup_paragraphs"
    assert run(Quality(), [with_text(by_id[DOC], "\n\n".join(paras[:9]))])[0]  # the same paragraphs once: kept


def test_bullets_ellipses_and_symbols(by_id):
    lines = [p.split(". ")[0] for p in _paragraphs(by_id)[:10]]
    bullets = "\n".join("• " + line for line in lines)
    (d,) = run(Quality(), [with_text(by_id[DOC], bullets)])[1]
    assert d.reason == "quality_bullet_lines"
    ellipses = "\n".join(line + "..." for line in lines)
    (d,) = run(Quality(QualityConfig(max_symbol_word_ratio=1.0)), [with_text(by_id[DOC], ellipses)])[1]
    assert d.reason == "quality_ellipsis_lines"
    hashtags = " ".join(f"#{w}" for w in by_id[DOC]["turns"][0]["text"].split()[:120])
    (d,) = run(Quality(), [with_text(by_id[DOC], hashtags)])[1]
    assert d.reason == "quality_symbol_ratio" and "#" in d.detail


def test_stop_words_and_word_length(by_id):
    names = [w for w in by_id[DOC]["turns"][0]["text"].split() if w.istitle()]
    words = [w for w in names if w.strip(".,'“”()").lower() not in STOP_WORDS][:80]  # capitalised, no stop words
    (d,) = run(Quality(QualityConfig(min_alpha_words_ratio=0)), [with_text(by_id[DOC], " ".join(words))])[1]
    assert d.reason == "quality_stop_words"
    numbers = " ".join(str(1000 + i) for i in range(80)) + " the and of to"
    (d,) = run(Quality(), [with_text(by_id[DOC], numbers)])[1]
    assert d.reason == "quality_alpha_words"
    (d,) = run(Quality(QualityConfig(min_avg_word_length=6)), [by_id[DOC]])[1]
    assert d.reason == "quality_word_length" and "< 6" in d.detail


def test_top_ngram(by_id):
    text = by_id[DOC]["turns"][0]["text"][:600] + " " + "click here " * 60
    (d,) = run(Quality(), [with_text(by_id[DOC], text)])[1]
    assert d.reason == "quality_top_ngram" and "top 2-gram" in d.detail


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"max_dup_line_frac": 1.5}, "max_dup_line_frac"),
        ({"min_avg_word_length": 12}, "min_avg_word_length"),
        ({"sources": ["owt"]}, "sources"),
        ({"max_top_ngram_char_frac": [0.2, 0.2, 0.2, 0.2]}, "max_top_ngram_char_frac"),
    ],
)
def test_config_errors_name_the_key(options, key):
    with pytest.raises(ConfigError, match=key):
        QualityConfig.from_dict(options)
