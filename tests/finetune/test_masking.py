"""Loss masks as TRL's SFTTrainer(assistant_only_loss=True) computes them, and the guard before training."""

from __future__ import annotations

import pytest

from curation.errors import WorkbenchError
from finetune.masking import assistant_masks, check_masks, trained_spans, training_chat_template
from finetune.tokenizer import load_tokenizer

IM_END = 151645

CONVERSATION = [
    {"role": "system", "content": "You are a warm, attentive listener."},
    {"role": "user", "content": "I failed my driving test again today."},
    {"role": "assistant", "content": "Oh no, I'm sorry. How are you feeling about it?"},
    {"role": "user", "content": "Honestly pretty embarrassed. Everyone else passed first time."},
    {"role": "assistant", "content": "That sounds hard. Lots of people need a few tries; it says nothing about you."},
]


@pytest.fixture(scope="module")
def qwen():
    return load_tokenizer("qwen2.5")


def _ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_exact_trained_tokens_on_a_multi_turn_example(qwen):
    ids, mask = assistant_masks(qwen, CONVERSATION)
    assert len(ids) == len(mask)
    trained = [token for token, m in zip(ids, mask, strict=True) if m]
    expected = []
    for message in CONVERSATION:
        if message["role"] == "assistant":
            expected += _ids(qwen, "\n") + _ids(qwen, message["content"]) + [IM_END] + _ids(qwen, "\n")
    assert trained == expected
    # both end-of-turn tokens of the assistant carry loss; none of the user's or the system's does
    im_end_positions = [i for i, token in enumerate(ids) if token == IM_END]
    assert [mask[i] for i in im_end_positions] == [0, 0, 1, 0, 1]
    spans = trained_spans(qwen, CONVERSATION)
    assert [text for text, on in spans if on] == [
        "\n" + CONVERSATION[2]["content"] + "<|im_end|>\n",
        "\n" + CONVERSATION[4]["content"] + "<|im_end|>\n",
    ]
    assert "".join(text for text, _ in spans) == qwen.apply_chat_template(CONVERSATION, tokenize=False)


def test_same_masks_as_trl_tokenises_them(qwen):
    from trl.data_utils import _tokenize

    template = training_chat_template(qwen)
    assert template is not None and "{% generation %}" in template.replace("{%-", "{%").replace(" -%}", " %}")
    theirs = _tokenize(qwen, CONVERSATION, return_assistant_tokens_mask=True, chat_template=template)
    assert assistant_masks(qwen, CONVERSATION) == (list(theirs["input_ids"]), list(theirs["assistant_masks"]))


def test_check_masks_returns_the_trained_share(qwen):
    examples = [{"id": "a", "messages": CONVERSATION}, {"id": "b", "messages": CONVERSATION[1:3]}]
    share = check_masks(qwen, examples)
    total = trained = 0
    for example in examples:
        ids, mask = assistant_masks(qwen, example["messages"])
        total += len(ids)
        trained += sum(mask)
    assert share == pytest.approx(trained / total)
    assert 0.2 < share < 0.6


def test_an_example_without_assistant_turn_trains_on_nothing(qwen):
    examples = [
        {"id": "ok", "messages": CONVERSATION},
        {"id": "esconv:train:7#user-only", "messages": CONVERSATION[:2]},
    ]
    with pytest.raises(WorkbenchError, match=r"example esconv:train:7#user-only: no token carries loss"):
        check_masks(qwen, examples)


def test_a_template_that_trains_on_the_users_words_is_refused(qwen):
    leaky = qwen.chat_template.replace(
        '{%- if (message.role == "user") or (message.role == "system" and not loop.first) or '
        '(message.role == "assistant" and not message.tool_calls) %}\n'
        "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}",
        '{%- if (message.role == "user") or (message.role == "system" and not loop.first) or '
        '(message.role == "assistant" and not message.tool_calls) %}\n'
        "        {%- generation %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
        "{%- endgeneration %}",
    )
    assert leaky != qwen.chat_template
    with pytest.raises(WorkbenchError, match=r"example x: \d+ trained token\(s\) on the words of user message 1"):
        check_masks(qwen, [{"id": "x", "messages": CONVERSATION}], chat_template=leaky)


def test_a_template_that_drops_an_assistant_turn_from_the_mask_is_refused(qwen):
    # generation markers only around the last assistant turn: earlier replies silently untrained
    last_only = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n"
        "{% if m.role == 'assistant' and loop.last %}{% generation %}{{ m.content }}<|im_end|>\n{% endgeneration %}"
        "{% else %}{{ m.content }}<|im_end|>\n{% endif %}{% endfor %}"
    )
    _, mask = assistant_masks(qwen, CONVERSATION, chat_template=last_only)
    assert sum(mask) > 0
    with pytest.raises(WorkbenchError, match=r"example y: assistant message 2 carries no loss"):
        check_masks(qwen, [{"id": "y", "messages": CONVERSATION}], chat_template=last_only)


def test_a_stock_template_trl_cannot_patch_is_one_clear_error(qwen):
    qwen.chat_template = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
    try:
        with pytest.raises(WorkbenchError, match=r"no \{% generation %\} markers and TRL has no training copy"):
            check_masks(qwen, [{"id": "z", "messages": CONVERSATION}])
    finally:
        from finetune.tokenizer import qwen2_5_chat_template

        qwen.chat_template = qwen2_5_chat_template()


def test_a_template_with_markers_is_used_as_is(qwen):
    template = training_chat_template(qwen)
    own = load_tokenizer("qwen2.5")
    own.chat_template = template
    assert training_chat_template(own) is None
    assert assistant_masks(own, CONVERSATION) == assistant_masks(qwen, CONVERSATION)


def test_parquet_style_rows_are_accepted(qwen):
    import numpy as np

    row = {"id": "np", "messages": np.array(CONVERSATION, dtype=object)}
    assert check_masks(qwen, [row]) == pytest.approx(check_masks(qwen, [{"id": "np", "messages": CONVERSATION}]))
