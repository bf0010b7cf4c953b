"""Generation for evaluation: batched left-padded greedy replies equal the one-by-one loop's token for token, prompt
order is kept, every reply is cached (a re-run loads no model), keys follow the adapter's weights and the decoding,
adapters change replies and come off cleanly, an adapter for another base is one line, finish reasons, and remote
models through the labeling client. Tiny random Qwen2 model on CPU, ESConv user turns as prompts."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from curation.errors import WorkbenchError  # noqa: E402
from evaluate import generate as gen  # noqa: E402
from evaluate.generate import (  # noqa: E402
    Decoding,
    ModelSpec,
    generate,
    generate_batched,
    generate_one_by_one,
    load_local_model,
)
from finetune.tiny import TINY, build_tiny_model  # noqa: E402
from finetune.tokenizer import load_tokenizer  # noqa: E402
from labeling.cache import CompletionCache  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ESCONV_TEST = ROOT / "examples" / "data" / "esconv" / "hf" / "test.txt"
IM_END = 151645
# A larger initialisation than the tiny model's default (0.02): with it every prompt gets the same reply (newlines),
# and a padding bug could not show; with 0.5 each reply depends on the whole prompt.
SHAPE = {**TINY, "initializer_range": 0.5}
FAST = Decoding(max_new_tokens=6, batch_size=4)


def esconv_prompts(n: int) -> list[list[dict]]:
    """Real ESConv conversations cut before a seeker turn: one-turn prompts, multi-turn ones and a system prompt."""
    prompts: list[list[dict]] = []
    for i, line in enumerate(ESCONV_TEST.read_text(encoding="utf-8").splitlines()):
        messages: list[dict] = []
        for turn in json.loads(line)["dialog"]:
            role = "user" if turn["speaker"] == "usr" else "assistant"
            if not messages and role == "assistant":
                continue
            if messages and messages[-1]["role"] == role:
                messages[-1]["content"] += " " + turn["text"]
            else:
                messages.append({"role": role, "content": turn["text"]})
        users = [k for k, m in enumerate(messages) if m["role"] == "user"]
        cut = users[min(i % 3, len(users) - 1)]  # the 1st, 2nd or 3rd seeker turn: prompts of different lengths
        prompt = messages[: cut + 1]
        if i % 4 == 3:
            prompt = [{"role": "system", "content": "You are a supportive listener."}, *prompt]
        prompts.append(prompt)
        if len(prompts) == n:
            break
    return prompts


@pytest.fixture(scope="module")
def prompts() -> list[list[dict]]:
    return esconv_prompts(7)


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-qwen2", shape=SHAPE)


def _lora_model(base: Path, *, seed: int, heads: bool = False):
    from peft import LoraConfig, get_peft_model

    from finetune.heads import MODULE, HeadSpec, attach

    model = load_local_model(base)
    specs = [HeadSpec("strategy", tuple(f"s{i}" for i in range(8)), False, 16, 0.2)] if heads else []
    if specs:
        attach(model, specs)
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        modules_to_save=[MODULE] if specs else None,
        exclude_modules=rf".*\.{MODULE}\..*" if specs else None,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in sorted(peft_model.named_parameters()):
            if "lora_" in name:  # lora_B starts at zero: perturb both so the adapter changes the replies
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return peft_model, specs


def _save_adapter(base: Path, folder: Path, *, seed: int, heads: bool = False) -> Path:
    from finetune.heads import write_spec

    peft_model, specs = _lora_model(base, seed=seed, heads=heads)
    peft_model.save_pretrained(str(folder))
    if specs:
        write_spec(folder, peft_model.get_base_model().config.hidden_size, specs)
    return folder


@pytest.fixture(scope="module")
def adapters(tiny_base, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters")
    found = {
        "a": _save_adapter(tiny_base, root / "a", seed=1),
        "b": _save_adapter(tiny_base, root / "b", seed=2),
        "a-heads": _save_adapter(tiny_base, root / "a-heads", seed=1, heads=True),  # a's LoRA weights + a head
    }
    found["a-copy"] = Path(shutil.copytree(found["a"], root / "a-copy"))
    return found


@pytest.fixture
def cache(tmp_path):
    with CompletionCache(tmp_path / "completions.sqlite") as opened:
        yield opened


@pytest.fixture
def generate_calls(monkeypatch) -> list[int]:
    """Counts ``model.generate`` calls (each one a batch of forward passes), peft-wrapped or not."""
    from transformers import GenerationMixin

    calls: list[int] = []
    original = GenerationMixin.generate

    def counting(self, *args, **kwargs):
        calls.append(int(kwargs["input_ids"].shape[0]))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(GenerationMixin, "generate", counting)
    return calls


# ---- batching ------------------------------------------------------------------------------------------------


def test_batched_greedy_equals_one_by_one_token_for_token(tiny_base, prompts, generate_calls):
    model = load_local_model(tiny_base)
    tokenizer = load_tokenizer(tiny_base)
    batched = generate_batched(model, tokenizer, prompts, FAST)
    assert generate_calls == [4, 3]  # 7 prompts in batches of 4
    looped = generate_one_by_one(model, tokenizer, prompts, FAST)
    assert len(generate_calls) == 2 + len(prompts)
    assert len({r.prompt_tokens for r in batched}) >= 5  # lengths differ: batches were left padded
    assert len({r.token_ids for r in looped}) == len(prompts)  # the replies depend on the prompt
    for one, other in zip(batched, looped, strict=True):
        assert one.token_ids == other.token_ids
        assert (one.content, one.prompt_tokens, one.finish_reason) == (other.content, other.prompt_tokens, "length")
        assert one.completion_tokens == FAST.max_new_tokens


def test_generate_keeps_prompt_order_and_a_rerun_comes_from_the_cache(tiny_base, prompts, cache, generate_calls):
    spec = ModelSpec("base", base_model=str(tiny_base))
    seen: list[int] = []
    with_repeat = [*prompts, prompts[0]]  # a prompt asked twice is generated once
    first = generate([spec], with_repeat, FAST, cache=cache, progress=seen.append)["base"]
    assert generate_calls == [4, 3] and len(cache) == len(prompts)
    assert sum(seen) == len(with_repeat) and len(seen) == 2  # one increment per batch, the repeat counted
    assert first[-1] == first[0]
    first = first[:-1]
    expected = generate_one_by_one(load_local_model(tiny_base), load_tokenizer(tiny_base), prompts, FAST)
    assert [c.content for c in first] == [r.content for r in expected]  # sorted by length inside, returned in order
    assert all(not c.cached and c.response_format_used == "text" and c.finish_reason == "length" for c in first)
    assert [c.prompt_tokens for c in first] == [r.prompt_tokens for r in expected]
    assert all(c.created_at is not None and c.created_at.microsecond == 0 for c in first)
    assert first[0].model.startswith(str(tiny_base.resolve()) + "#")

    generate_calls.clear()
    loads: list[str] = []
    monkey = pytest.MonkeyPatch()
    monkey.setattr(gen, "load_local_model", lambda *a, **k: loads.append("loaded"))
    try:
        again = generate([spec], prompts, Decoding(max_new_tokens=6, batch_size=2), cache=cache)["base"]
    finally:
        monkey.undo()
    assert generate_calls == [] and loads == []  # no model loaded, no forward pass: batch_size is not in the key
    assert [c.content for c in again] == [c.content for c in first]
    assert [c.key for c in again] == [c.key for c in first] and all(c.cached for c in again)


def test_keys_follow_the_adapter_weights_and_the_decoding(tiny_base, adapters, prompts, cache, generate_calls):
    few = prompts[:3]
    specs = [
        ModelSpec("base", base_model=str(tiny_base)),
        ModelSpec("a", base_model=str(tiny_base), adapter=str(adapters["a"])),
        ModelSpec("b", base_model=str(tiny_base), adapter=str(adapters["b"])),
    ]
    replies = generate(specs, few, FAST, cache=cache)
    keys = {name: [c.key for c in completions] for name, completions in replies.items()}
    assert len({k for ks in keys.values() for k in ks}) == 9
    assert replies["a"][0].model.endswith(specs[1].identity()["adapter_sha256"] + "/" + replies["a"][0].model[-16:])

    longer = generate(specs[:1], few, Decoding(max_new_tokens=7, batch_size=4), cache=cache)["base"]
    assert not set(keys["base"]) & {c.key for c in longer}

    # the same adapter weights under another name and folder: the same replies, from the cache
    generate_calls.clear()
    copy = ModelSpec("a-again", base_model=str(tiny_base), adapter=str(adapters["a-copy"]))
    again = generate([copy], few, FAST, cache=cache)["a-again"]
    assert generate_calls == [] and [c.key for c in again] == keys["a"] and all(c.cached for c in again)

    identity = copy.identity()
    assert identity["adapter"] == str(adapters["a-copy"].resolve())
    assert identity["adapter_sha256"] == specs[1].identity()["adapter_sha256"]
    assert identity["tokenizer"] == str(tiny_base.resolve()) and len(identity["chat_template_sha256"]) == 64


def test_adapters_change_replies_and_come_off_cleanly(tiny_base, adapters, prompts, cache, monkeypatch):
    import finetune.heads

    attached = []
    real_attach = finetune.heads.attach
    monkeypatch.setattr(
        finetune.heads, "attach", lambda model, specs: attached.append(specs) or real_attach(model, specs)
    )
    specs = [  # adapters first: the base row is generated after both were attached and taken off again
        ModelSpec("a", base_model=str(tiny_base), adapter=str(adapters["a"])),
        ModelSpec("a-heads", base_model=str(tiny_base), adapter=str(adapters["a-heads"])),
        ModelSpec("base", base_model=str(tiny_base)),
    ]
    replies = generate(specs, prompts, FAST, cache=cache)
    base = [c.content for c in replies["base"]]
    assert sum(a.content != b for a, b in zip(replies["a"], base, strict=True)) >= len(prompts) - 1
    # the heads are rebuilt from heads.json and loaded with the adapter, and do not touch generation
    assert [[h.name for h in specs] for specs in attached] == [["strategy"]]
    assert [c.content for c in replies["a-heads"]] == [c.content for c in replies["a"]]
    fresh = generate_one_by_one(load_local_model(tiny_base), load_tokenizer(tiny_base), prompts, FAST)
    assert base == [r.content for r in fresh]


def test_sampling_is_seeded_and_4bit_is_its_own_key(tiny_base, adapters, prompts, tmp_path):
    few = prompts[:2]
    spec = ModelSpec("base", base_model=str(tiny_base))
    sampling = Decoding(max_new_tokens=6, temperature=0.9, top_p=0.9, seed=7)
    runs = []
    for name in ("one", "two"):  # two empty caches: the seed makes the samples the same
        with CompletionCache(tmp_path / f"{name}.sqlite") as fresh:
            runs.append(generate([spec], few, sampling, cache=fresh)["base"])
    assert [c.content for c in runs[0]] == [c.content for c in runs[1]]
    assert sampling.params() == {"max_new_tokens": 6, "temperature": 0.9, "top_p": 0.9, "seed": 7}
    assert FAST.params() == Decoding(max_new_tokens=6, top_p=0.5, seed=3).params()  # greedy ignores them

    with CompletionCache(tmp_path / "one.sqlite") as cache:
        specs = [
            ModelSpec("base-4bit", base_model=str(tiny_base), load_in_4bit=True),
            ModelSpec("a-4bit", base_model=str(tiny_base), adapter=str(adapters["a"]), load_in_4bit=True),
        ]
        quantised = generate(specs, few, sampling, cache=cache)
        assert {c.key for c in quantised["base-4bit"]}.isdisjoint(c.key for c in runs[0])
        assert [c.content for c in quantised["base-4bit"]] != [c.content for c in quantised["a-4bit"]]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"hidden_size": 32}, r"model\.layers\.0\.self_attn\.(q|k|v|o)_proj has (in|out)_features"),
        ({"num_hidden_layers": 3}, r"the base has no module model\.layers\.2\."),
    ],
    ids=["hidden-size", "missing-modules"],
)
def test_an_adapter_for_another_base_is_one_line(tiny_base, prompts, cache, tmp_path, change, problem):
    other = build_tiny_model(tmp_path / "other-base", shape={**SHAPE, **change})
    adapter = _save_adapter(other, tmp_path / "other-adapter", seed=3)
    specs = [
        ModelSpec("base", base_model=str(tiny_base)),
        ModelSpec("other", base_model=str(tiny_base), adapter=str(adapter)),
    ]
    with pytest.raises(WorkbenchError, match=problem) as caught:
        generate(specs, prompts[:2], FAST, cache=cache)
    message = str(caught.value)
    assert "\n" not in message
    assert f"adapter {adapter.resolve()} (model 'other') does not fit base model {tiny_base.resolve()}" in message
    assert f"it was trained on {other}" in message
    assert len(cache) == 0  # checked before anything was generated


def test_finish_reason_is_stop_at_im_end_and_length_otherwise(tiny_base, prompts, cache, monkeypatch):
    """A hook makes the first prompt's row produce <|im_end|> as its 3rd token; the other rows run to the limit."""
    few = prompts[:3]
    tokenizer = load_tokenizer(tiny_base)
    lengths = [len(gen._prompt_ids(tokenizer, p)) for p in few]
    row = sorted(range(len(few)), key=lambda i: (-lengths[i], i)).index(0)  # longest first, as batched
    real_loader = gen.load_local_model

    def loader(*args, **kwargs):
        model = real_loader(*args, **kwargs)
        passes = []

        def force_im_end(_module, _inputs, logits):
            passes.append(1)
            if len(passes) == 3:  # the forward pass that picks the 3rd new token
                logits[row, -1, IM_END] = 1e4
            return logits

        model.lm_head.register_forward_hook(force_im_end)
        return model

    monkeypatch.setattr(gen, "load_local_model", loader)
    replies = generate([ModelSpec("base", base_model=str(tiny_base))], few, FAST, cache=cache)["base"]
    assert (replies[0].finish_reason, replies[0].completion_tokens) == ("stop", 3)  # im_end counted, not shown
    assert "<|im_end|>" not in replies[0].content and replies[0].content
    assert [(c.finish_reason, c.completion_tokens) for c in replies[1:]] == [("length", FAST.max_new_tokens)] * 2
    cached = cache.get(replies[0].key)
    assert (cached.finish_reason, cached.completion_tokens, cached.content) == ("stop", 3, replies[0].content)


# ---- remote models -------------------------------------------------------------------------------------------


def test_a_remote_model_goes_through_the_labeling_client_and_its_cache(tiny_base, prompts, cache):
    sys.path.insert(0, str(ROOT / "tests" / "labeling"))
    try:
        from openai_server import FakeOpenAIServer
    finally:
        sys.path.remove(str(ROOT / "tests" / "labeling"))

    server = FakeOpenAIServer(responder=lambda messages, _format: "I hear you: " + messages[-1]["content"][:20])
    server.start()
    try:
        spec = ModelSpec("api", url=server.base_url, model="fake-model")
        specs = [spec, ModelSpec("base", base_model=str(tiny_base))]
        seen: list[int] = []
        replies = generate(specs, prompts[:3], FAST, cache=cache, progress=seen.append)
        assert [c.content for c in replies["api"]] == ["I hear you: " + p[-1]["content"][:20] for p in prompts[:3]]
        assert server.request_count == 3 and sum(seen) == 6
        again = generate([spec], prompts[:3], FAST, cache=cache)["api"]
        assert server.request_count == 3 and all(c.cached for c in again)
        identity = {"name": "api", "kind": "remote", "url": server.base_url, "provider": server.base_url}
        assert spec.identity() == {**identity, "model": "fake-model"}
    finally:
        server.stop()


# ---- bad input -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Decoding(max_new_tokens=0), "max_new_tokens must be an integer >= 1"),
        (lambda: Decoding(temperature=-0.1), "temperature must be a number >= 0"),
        (lambda: Decoding(top_p=0), r"top_p must be a number in \(0, 1\]"),
        (lambda: Decoding(batch_size=True), "batch_size must be an integer >= 1"),
        (lambda: ModelSpec("x"), "give base_model"),
        (lambda: ModelSpec("x", url="http://127.0.0.1:1/v1"), "needs model"),
        (lambda: ModelSpec("x", url="http://127.0.0.1:1/v1", model="m", adapter="a"), "takes no adapter"),
        (lambda: ModelSpec("", base_model="b"), "name must be a non-empty string"),
    ],
)
def test_bad_settings_are_one_line(make, message):
    with pytest.raises(WorkbenchError, match=message):
        make()


def test_bad_prompts_and_specs_are_one_line(tiny_base, adapters, cache, tmp_path):
    base = ModelSpec("base", base_model=str(tiny_base))
    with pytest.raises(WorkbenchError, match="prompt 1: the last message must be the user's"):
        generate(
            [base], [[{"role": "user", "content": "hi"}], [{"role": "assistant", "content": "x"}]], FAST, cache=cache
        )
    with pytest.raises(WorkbenchError, match=r"prompt 0, message 0: role must be one of"):
        generate([base], [[{"role": "bot", "content": "hi"}]], FAST, cache=cache)
    with pytest.raises(WorkbenchError, match="two models are named 'base'"):
        generate([base, base], [[{"role": "user", "content": "hi"}]], FAST, cache=cache)
    missing = ModelSpec("r1", base_model=str(tiny_base), adapter=str(tmp_path / "nope"))
    with pytest.raises(WorkbenchError, match=r"adapter .*nope \(model 'r1'\): no such folder"):
        generate([missing], [[{"role": "user", "content": "hi"}]], FAST, cache=cache)
    with pytest.raises(WorkbenchError, match="no such folder, and not a hub id"):
        ModelSpec("x", base_model=str(tmp_path / "no-model")).identity()
    assert len(cache) == 0
