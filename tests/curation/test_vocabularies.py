import pytest

from curation import vocabularies
from curation.errors import UnknownLabelError


def test_canonical_emotion_set_is_goemotions_in_file_order(examples):
    emotion = vocabularies.load("emotion")
    names = (examples / "goemotions" / "emotions.txt").read_text().split("\n")
    assert list(emotion.labels) == names
    assert len(emotion) == 28 and emotion.labels[-1] == "neutral"


@pytest.mark.parametrize("name", ["dailydialog_emotion", "empatheticdialogues_emotion", "esconv_emotion"])
def test_source_emotions_map_onto_canonical_set(name):
    vocab = vocabularies.load(name)
    emotion = vocabularies.load("emotion")
    assert vocab.target == "emotion"
    assert set(vocab.mapping) == set(vocab.labels)
    assert all(target in emotion for target in vocab.mapping.values())
    assert vocab.approximate <= set(vocab.labels)


def test_dailydialog_emotion_ids_and_mapping():
    dd = vocabularies.load("dailydialog_emotion")
    assert [dd.map(dd.from_id(i)) for i in range(7)] == [
        "neutral",
        "anger",
        "disgust",
        "fear",
        "joy",
        "sadness",
        "surprise",
    ]
    with pytest.raises(UnknownLabelError, match="7"):
        dd.from_id(7)


def test_empatheticdialogues_has_32_emotions_with_documented_mapping():
    ed = vocabularies.load("empatheticdialogues_emotion")
    assert len(ed) == 32
    assert ed.map("afraid") == "fear" and ed.map("grateful") == "gratitude" and ed.map("guilty") == "remorse"
    assert "nostalgic" in ed.approximate and "afraid" not in ed.approximate


def test_strategy_aliases_of_the_raw_collection_format():
    s = vocabularies.load("strategy")
    assert len(s) == 8
    assert s.canonical("Questions") == "Question"
    assert s.canonical("Direct Guidance") == "Providing Suggestions"
    assert s.canonical("Approval and Reassurance") == "Affirmation and Reassurance"
    assert s.canonical("Restatement") == "Restatement or Paraphrasing"
    assert s.canonical("Other") == "Others"
    with pytest.raises(UnknownLabelError, match="Hugging"):
        s.canonical("Hugging")


def test_problem_types_normalised_case_insensitively():
    p = vocabularies.load("problem_type")
    assert p.canonical("conflict with parents") == p.canonical("Issues with Parents") == "issues with parents"
    assert p.canonical("Sleep Problems") == "sleep problems"


def test_acts_and_topics_by_id():
    assert vocabularies.load("act").from_id("2") == "question"
    assert vocabularies.load("topic").from_id(10) == "finance"
    with pytest.raises(UnknownLabelError):
        vocabularies.load("act").from_id(0)


def test_unknown_vocabulary_is_a_clear_error():
    with pytest.raises(Exception, match="no vocabulary named 'nope'"):
        vocabularies.load("nope")
