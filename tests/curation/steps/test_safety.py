"""safety: flags as labels on real GoEmotions comments, keep or drop by config."""

from __future__ import annotations

import pickle

import pytest

from curation.record import validate_record
from curation.steps.base import ConfigError
from curation.steps.safety import Safety, SafetyConfig, detector_agent, scan


def run(step, records):
    results, counters = step.process_batch(records)
    return [r for r in results if isinstance(r, dict)], [r for r in results if not isinstance(r, dict)], counters


def _flags(record):
    return {lab["value"]: lab for lab in record["labels"] if lab["task"] == "safety"}


def test_real_goemotions_profanity_is_flagged_and_kept(real_records):
    records = real_records["goemotions"]
    kept, dropped, counters = run(Safety(), records)
    assert len(kept) == len(records) and not dropped
    flagged = [r for r in kept if _flags(r)]
    assert counters["flagged"] == len(flagged) > 5
    for r in flagged:
        validate_record(r)
        for lab in _flags(r).values():
            assert lab["source"] == "model" and lab["agent"] == detector_agent()
            assert 0 < lab["score"] <= 1 and lab["attrs"]["terms"]
    # and a clean real comment carries no flag
    assert any(not _flags(r) for r in kept)


def test_scan_categories():
    assert scan("What the fuck is this shit", ["profanity"]) == {"profanity": ["fuck", "shit"]}
    assert scan("I just want to die. I don't want to keep trying.", ["self_harm"]) == {"self_harm": ["want to die"]}
    # innocent senses are not matched
    assert scan("Hell yes, a cocktail at Scunthorpe, then I'll kill time; he had a stroke", ["profanity"]) == {}


def test_drop_action_drops_configured_categories_only(by_id):
    import copy

    record = copy.deepcopy(next(r for k, r in by_id.items() if k.startswith("goemotions:")))
    record["turns"][0]["text"] = "I'll kill you if you do that again, *honey*"  # a real GoEmotions comment
    _, (d,), _ = run(Safety(SafetyConfig(action="drop")), [record])
    assert d.reason == "unsafe_violence" and "kill" in d.detail
    assert _flags(d.record)["violence"]  # the dropped row says why
    record["turns"][0]["text"] = "I just want to die. I don't want to keep trying."  # real, self-harm
    kept, dropped, _ = run(Safety(SafetyConfig(action="drop")), [record])
    assert kept and not dropped and "self_harm" in _flags(kept[0])


def test_rerun_does_not_duplicate_labels(real_records):
    once, _, _ = run(Safety(), real_records["goemotions"])
    twice, _, _ = run(Safety(), once)
    assert twice == once


def test_esconv_self_harm_is_flagged_not_dropped(real_records):
    _kept, dropped, counters = run(
        Safety(SafetyConfig(action="drop", drop_categories=["hate"])), real_records["esconv"]
    )
    assert not dropped or all(d.reason == "unsafe_hate" for d in dropped)
    assert counters["flagged_self_harm"] >= 1


def test_step_pickles():
    step = pickle.loads(pickle.dumps(Safety(SafetyConfig(action="drop"))))
    assert step.config.action == "drop"


@pytest.mark.parametrize(
    ("options", "key"),
    [({"action": "delete"}, "action"), ({"categories": ["toxic"]}, "categories"), ({"min_matches": 0}, "min_matches")],
)
def test_config_errors_name_the_key(options, key):
    with pytest.raises(ConfigError, match=key):
        SafetyConfig.from_dict(options)
