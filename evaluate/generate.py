"""Replies of the models under evaluation (a base model and its fine-tuned LoRA adapters, or an endpoint), cached.

:func:`generate` gives, for every :class:`ModelSpec`, one reply per prompt (a chat ``messages`` list ending
with a user turn), in prompt order, as :class:`~labeling.completion.Completion` objects. Every reply is
stored in the completion cache the moment its batch is done, so a re-run with the same inputs loads no
model and runs no forward pass, and a crash loses at most the batch in flight.

**Local models** (``base_model`` [+ ``adapter``]): each base model is loaded once (transformers,
``local_files_only``, fp32 on CPU, bf16/fp16 on a GPU, NF4 when ``load_in_4bit``); the base row is
generated on the bare model, then each adapter is attached with peft (through
:func:`finetune.heads.load_for_inference`, so an adapter trained with classification heads loads them
too), generated, and taken off again (``unload``), so the next adapter starts from the same base.
Prompts go through the chat template of one tokenizer (the base model's own, unless ``tokenizer`` is
given) with ``add_generation_prompt=True``, longest first in batches of ``decoding.batch_size`` (less
padding), LEFT padded with an attention mask, through ``model.generate(use_cache=True)``
under ``torch.inference_mode``. The model's own ``generation_config.json`` sampling defaults (Qwen2.5
Instruct ships temperature 0.7, top_k 20, repetition_penalty 1.05) are replaced by :class:`Decoding`'s
values, so every model decodes alike. Before anything is generated, every adapter is checked against
the loaded base (module names and LoRA shapes from the adapter file's header): one that does not fit
is one :class:`~curation.errors.WorkbenchError` line naming the adapter and the base.

**The cache key** of a local reply is :func:`labeling.cache.completion_key` with provider ``local``,
prompt version :data:`PROMPT_VERSION`, the messages, and

* ``model``: ``<base folder>#<base fingerprint>[+lora:<sha256 of adapter_model.safetensors>/<sha256 of
  adapter_config.json>]``: a retrained adapter (or one with another ``lora_alpha``) is another key,
  the same adapter under another name or folder is the same key. The base fingerprint hashes its
  ``config.json`` and ``generation_config.json`` and the name, size and mtime of each weight file
  (hashing gigabytes of base weights on every run would cost more than it protects: a base rewritten
  in place gets a new mtime, so a new key);
* ``params``: :meth:`Decoding.params` (greedy ignores ``top_p`` and ``seed``; ``batch_size`` is not
  part of it), the tokenizer's name and chat-template sha256, the weights' dtype and ``load_in_4bit``.
  A GPU run (bf16) and a CPU run (fp32) therefore do not share replies.

**Remote models** (``url`` + ``model``, any OpenAI-compatible endpoint) go through the labeling client
(:class:`~labeling.client.LLMClient` and :func:`~labeling.batch.complete_many`), which caches in the
same file under its own keys (the endpoint, the model, ``temperature``/``max_tokens``/``seed``).

:func:`generate_batched` and :func:`generate_one_by_one` (the seed reports' loop: one ``generate``
per prompt, no padding, no batching; kept as the benchmark's baseline) work on a loaded model and
cache nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curation.errors import WorkbenchError
from labeling.cache import CompletionCache, completion_key
from labeling.completion import Completion, Failure, provider_identity

if TYPE_CHECKING:
    from transformers import GenerationConfig, PreTrainedTokenizerBase

PROMPT_VERSION = "generate@v1"
LOCAL_PROVIDER = "local"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
_BASE_CONFIG_FILES = ("config.json", "generation_config.json")
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_ROLES = ("system", "user", "assistant")

Progress = Callable[[int], None]
"""Called with how many more replies are ready (cache hits too); the calls add up to ``len(specs) * len(prompts)``."""


@dataclass(frozen=True)
class Decoding:
    """How replies are decoded; the same for every model of a run.

    ``temperature`` 0 is greedy (``do_sample=False``; ``top_p`` and ``seed`` are then ignored), above 0 is
    sampling with ``top_p`` (no top-k) after ``torch.manual_seed(seed)`` per model. ``batch_size``: prompts
    per ``generate`` call of a local model (not part of the cache key).
    """

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 32

    def __post_init__(self) -> None:
        for name in ("max_new_tokens", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise WorkbenchError(f"decoding: {name} must be an integer >= 1, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise WorkbenchError(f"decoding: seed must be an integer >= 0, got {self.seed!r}")
        if not _is_number(self.temperature) or not math.isfinite(self.temperature) or self.temperature < 0:
            raise WorkbenchError(f"decoding: temperature must be a number >= 0 (0 = greedy), got {self.temperature!r}")
        if not _is_number(self.top_p) or not 0 < self.top_p <= 1:
            raise WorkbenchError(f"decoding: top_p must be a number in (0, 1], got {self.top_p!r}")

    @property
    def sampling(self) -> bool:
        return self.temperature > 0

    def params(self) -> dict[str, Any]:
        """The parameters that change a reply, for cache keys (greedy: length and temperature only)."""
        if not self.sampling:
            return {"max_new_tokens": self.max_new_tokens, "temperature": 0.0}
        return {
            "max_new_tokens": self.max_new_tokens,
            "temperature": float(self.temperature),
            "top_p": float(self.top_p),
            "seed": self.seed,
        }


@dataclass(frozen=True)
class ModelSpec:
    """One model under evaluation: a local base model with an optional LoRA adapter, or a remote endpoint.

    ``name``: how results name it (``"base"``, ``"r1"``, ``"r1@checkpoint-100"``); not part of any cache key.
    Local: ``base_model`` (a folder, or a hub id in the local Hugging Face cache), ``adapter`` (a peft adapter
    folder, or None for the base itself), ``load_in_4bit`` (NF4 through bitsandbytes; off by default for
    evaluation), ``tokenizer`` (None: the base model's own; or what :func:`finetune.tokenizer.load_tokenizer`
    takes). Remote: ``url`` (an OpenAI-compatible ``.../v1``), ``model`` (the served model name) and
    ``api_key_env`` (the variable holding the key; a local URL needs none).
    """

    name: str
    base_model: str | None = None
    adapter: str | None = None
    load_in_4bit: bool = False
    url: str | None = None
    model: str | None = None
    tokenizer: str | None = None
    api_key_env: str = "OPENAI_API_KEY"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise WorkbenchError(f"model spec: name must be a non-empty string, got {self.name!r}")
        for name in ("base_model", "adapter", "tokenizer"):
            value = getattr(self, name)
            if isinstance(value, Path):
                object.__setattr__(self, name, str(value))
            elif value is not None and (not isinstance(value, str) or not value.strip()):
                raise WorkbenchError(f"model spec {self.name!r}: {name} must be a path or None, got {value!r}")
        if not isinstance(self.load_in_4bit, bool):
            raise WorkbenchError(f"model spec {self.name!r}: load_in_4bit must be true or false")
        if self.url is not None:
            if not isinstance(self.url, str) or not self.url.startswith(("http://", "https://")):
                raise WorkbenchError(f"model spec {self.name!r}: url must be an http(s) URL, got {self.url!r}")
            if not isinstance(self.model, str) or not self.model.strip():
                raise WorkbenchError(f"model spec {self.name!r}: a remote model (url) needs model, the served name")
            local_only = [n for n in ("base_model", "adapter", "tokenizer") if getattr(self, n) is not None]
            if self.load_in_4bit:
                local_only.append("load_in_4bit")
            if local_only:
                raise WorkbenchError(
                    f"model spec {self.name!r}: a remote model (url) takes no {', '.join(local_only)} (local options)"
                )
        else:
            if self.base_model is None:
                raise WorkbenchError(f"model spec {self.name!r}: give base_model (local) or url and model (remote)")
            if self.model is not None:
                raise WorkbenchError(
                    f"model spec {self.name!r}: model names a remote endpoint's model; it needs url (a local model "
                    "is base_model + adapter)"
                )

    @property
    def is_remote(self) -> bool:
        return self.url is not None

    def identity(self) -> dict[str, Any]:
        """What an evaluation report records about this model (and what its cache key is made of).

        Local: the resolved base model folder and its fingerprint, the adapter folder with the sha256 of its
        weights file and of its ``adapter_config.json``, the tokenizer's name and chat-template sha256, and
        ``load_in_4bit``. Remote: the URL as given, the endpoint (normalised URL) and the model name. Raises
        :class:`WorkbenchError` for a base model or adapter folder that is missing or incomplete.
        """
        if self.is_remote:
            return {
                "name": self.name,
                "kind": "remote",
                "url": self.url,
                "provider": provider_identity(self.url),
                "model": self.model,
            }
        from finetune.tokenizer import chat_template_sha256, tokenizer_name

        base = _resolve_base(self.base_model)
        tokenizer = _tokenizer(self.tokenizer or str(base))
        identity: dict[str, Any] = {
            "name": self.name,
            "kind": "local",
            "base_model": str(base),
            "base_fingerprint": _base_fingerprint(base),
            "adapter": None,
            "adapter_sha256": None,
            "adapter_config_sha256": None,
            "tokenizer": tokenizer_name(tokenizer),
            "chat_template_sha256": chat_template_sha256(tokenizer),
            "load_in_4bit": self.load_in_4bit,
        }
        if self.adapter is not None:
            folder, weights = _adapter_files(self)
            identity["adapter"] = str(folder)
            identity["adapter_sha256"] = _sha256_file(weights)
            identity["adapter_config_sha256"] = _sha256_file(folder / ADAPTER_CONFIG)
        return identity


@dataclass(frozen=True)
class GeneratedReply:
    """One reply of a local model: the text (special tokens dropped), its token ids and why it ended.

    ``token_ids`` are the generated tokens up to and including the stop token (``<|im_end|>`` or another
    eos); ``finish_reason`` is ``"stop"`` when one was produced, ``"length"`` when ``max_new_tokens`` ran out.
    """

    content: str
    token_ids: tuple[int, ...]
    prompt_tokens: int
    finish_reason: str

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)


# ---- the entry point ------------------------------------------------------------------------------------------


def generate(
    specs: Sequence[ModelSpec],
    prompts: Sequence[list[dict]],
    decoding: Decoding,
    *,
    cache: CompletionCache,
    progress: Progress | None = None,
) -> dict[str, list[Completion]]:
    """One reply per prompt for every model, in prompt order: ``{spec.name: [Completion, ...]}``.

    Replies come from ``cache`` where they are there; the rest are generated and stored batch by batch
    (see the module docstring). Local models sharing a base model (and ``load_in_4bit``) load it once.
    ``progress`` is called with each step's number of newly ready replies (a bar's ``advance``). Raises
    :class:`WorkbenchError` for bad input (before anything is generated), an adapter that does not fit its
    base model, or a remote model whose replies failed (what was received stays cached).
    """
    specs = _check_specs(specs)
    messages = _check_prompts(prompts)
    if not isinstance(decoding, Decoding):
        raise WorkbenchError(f"generate: decoding must be a Decoding, got {type(decoding).__name__}")
    if not isinstance(cache, CompletionCache):
        raise WorkbenchError(f"generate: cache must be a labeling.cache.CompletionCache, got {type(cache).__name__}")
    if decoding.sampling and decoding.top_p != 1.0 and any(s.is_remote for s in specs):
        raise WorkbenchError(
            "generate: top_p is not sent to remote endpoints (the labeling client sends temperature, max_tokens and "
            "seed); use top_p = 1.0 with remote models"
        )
    identities = {spec.name: spec.identity() for spec in specs if not spec.is_remote}  # every folder checked first
    for name, identity in identities.items():
        if identity["chat_template_sha256"] is None:
            raise WorkbenchError(
                f"model {name!r}: tokenizer {identity['tokenizer']} has no chat template; use a chat model's tokenizer"
            )
    counter = _Counter(progress)
    replies: dict[str, list[Completion]] = {}
    groups: dict[tuple[str, str | None, bool], list[ModelSpec]] = {}
    for spec in specs:
        if not spec.is_remote:
            base = identities[spec.name]["base_model"]
            groups.setdefault((base, spec.tokenizer, spec.load_in_4bit), []).append(spec)
    for (base, tokenizer_source, load_in_4bit), group in groups.items():
        plans = [_plan(spec, identities[spec.name], prompts=messages, decoding=decoding) for spec in group]
        replies.update(
            _generate_local(
                Path(base), tokenizer_source, load_in_4bit, plans, messages, decoding, cache=cache, counter=counter
            )
        )
    for spec in specs:
        if spec.is_remote:
            replies[spec.name] = _generate_remote(spec, messages, decoding, cache=cache, counter=counter)
    return {spec.name: replies[spec.name] for spec in specs}


# ---- local models ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    spec: ModelSpec
    model_string: str
    keys: list[str]


def _plan(spec: ModelSpec, identity: Mapping[str, Any], *, prompts: list[list[dict]], decoding: Decoding) -> _Plan:
    """A local model's cache keys, one per prompt (see the module docstring)."""
    model_string = local_model_string(identity)
    params = {
        **decoding.params(),
        "tokenizer": identity["tokenizer"],
        "chat_template_sha256": identity["chat_template_sha256"],
        "dtype": _compute_dtype_name(),
        "load_in_4bit": True if spec.load_in_4bit else None,
    }
    keys = [
        completion_key(
            provider=LOCAL_PROVIDER,
            model=model_string,
            prompt_version=PROMPT_VERSION,
            params=params,
            messages=p,
            json_schema=None,
        )
        for p in prompts
    ]
    return _Plan(spec, model_string, keys)


def _generate_local(
    base: Path,
    tokenizer_source: str | None,
    load_in_4bit: bool,
    plans: list[_Plan],
    prompts: list[list[dict]],
    decoding: Decoding,
    *,
    cache: CompletionCache,
    counter: _Counter,
) -> dict[str, list[Completion]]:
    tokenizer = _tokenizer(tokenizer_source or str(base))
    loaded: _LoadedBase | None = None
    out: dict[str, list[Completion]] = {}
    for plan in plans:
        found = cache.get_many(plan.keys)
        todo: dict[str, int] = {}  # missing key -> the first prompt it answers (equal prompts share one reply)
        for index, key in enumerate(plan.keys):
            if key not in found:
                todo.setdefault(key, index)
        counter.advance(sum(1 for key in plan.keys if key in found))
        if todo:
            if loaded is None:
                loaded = _LoadedBase(base, load_in_4bit, tokenizer)
                for other in plans:  # fail before generating anything
                    if other.spec.adapter is not None:
                        _check_adapter_fits(loaded.model, other.spec, base)
            missing = list(todo)
            waiting = Counter(plan.keys)  # prompts each key answers
            with loaded.using(plan.spec) as model:
                batches = iter_batched(model, tokenizer, [prompts[todo[key]] for key in missing], decoding)
                for indices, batch in batches:
                    made = datetime.now(UTC).replace(microsecond=0)
                    for index, reply in zip(indices, batch, strict=True):
                        key = missing[index]
                        completion = Completion(
                            content=reply.content,
                            prompt_tokens=reply.prompt_tokens,
                            completion_tokens=reply.completion_tokens,
                            finish_reason=reply.finish_reason,
                            response_format_used="text",
                            cached=False,
                            key=key,
                            model=plan.model_string,
                            created_at=made,
                        )
                        found[key] = cache.put(completion, provider=LOCAL_PROVIDER, prompt_version=PROMPT_VERSION)
                    counter.advance(sum(waiting[missing[index]] for index in indices))
        out[plan.spec.name] = [found[key] for key in plan.keys]
    return out


def local_model_string(identity: Mapping[str, Any]) -> str:
    """The ``model`` of a local model's cache keys and completions (see the module docstring)."""
    text = f"{identity['base_model']}#{identity['base_fingerprint'][:16]}"
    if identity.get("adapter_sha256"):
        text += f"+lora:{identity['adapter_sha256']}/{identity['adapter_config_sha256'][:16]}"
    return text


class _LoadedBase:
    """A base model loaded once; :meth:`using` lends it bare (spec without adapter) or with one adapter attached."""

    def __init__(self, base: Path, load_in_4bit: bool, tokenizer: Any) -> None:
        self.base = base
        self.model = load_local_model(base, load_in_4bit=load_in_4bit)
        _prepare_tokenizer(tokenizer)

    @contextlib.contextmanager
    def using(self, spec: ModelSpec) -> Iterator[Any]:
        if spec.adapter is None:
            yield self.model
            return
        from finetune.heads import MODULE, load_for_inference

        folder, _ = _adapter_files(spec)
        try:
            wrapped = load_for_inference(self.model, folder)
        except (RuntimeError, ValueError, KeyError, OSError) as exc:
            raise WorkbenchError(
                f"adapter {folder} (model {spec.name!r}) does not fit base model {self.base}: {_first_line(exc)}"
            ) from None
        wrapped.eval()
        try:
            yield wrapped
        finally:
            self.model = wrapped.unload()  # LoRA layers off: the next adapter starts from the bare base
            if hasattr(self.model, MODULE):
                delattr(self.model, MODULE)


def load_local_model(base_model: str | Path, *, load_in_4bit: bool = False, dtype_name: str | None = None) -> Any:
    """A causal LM for generation: local files only, on the GPU when there is one, eval mode, KV cache on.

    ``dtype_name``: ``float32`` / ``bfloat16`` / ``float16``; None: fp32 on CPU, bf16 (else fp16) on a GPU. The
    model's ``generation_config`` keeps only its special-token ids, so its sampling defaults never leak into
    a :class:`Decoding`.
    """
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    path = _resolve_base(base_model)
    dtype = getattr(torch, dtype_name or _compute_dtype_name())
    kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": True}
    if torch.cuda.is_available():
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    if load_in_4bit:
        import importlib.util

        if importlib.util.find_spec("bitsandbytes") is None:
            raise WorkbenchError("load_in_4bit needs bitsandbytes: pip install 'workbench[finetune]'")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=dtype,
            bnb_4bit_quant_storage=dtype,
        )
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    except (OSError, ValueError) as exc:
        raise WorkbenchError(f"base model {base_model}: cannot load ({_first_line(exc)})") from None
    own = model.generation_config
    model.generation_config = GenerationConfig(
        eos_token_id=own.eos_token_id, pad_token_id=own.pad_token_id, bos_token_id=own.bos_token_id
    )
    model.config.use_cache = True
    model.eval()
    return model


def generate_batched(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[list[dict]],
    decoding: Decoding,
    *,
    progress: Progress | None = None,
) -> list[GeneratedReply]:
    """One reply per prompt, in prompt order: batched, longest first, left padded (nothing cached)."""
    replies: list[GeneratedReply | None] = [None] * len(prompts)
    counter = _Counter(progress)
    for indices, batch in iter_batched(model, tokenizer, prompts, decoding):
        for index, reply in zip(indices, batch, strict=True):
            replies[index] = reply
        counter.advance(len(batch))
    return replies  # type: ignore[return-value]


def iter_batched(
    model: Any, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[list[dict]], decoding: Decoding
) -> Iterator[tuple[list[int], list[GeneratedReply]]]:
    """``(prompt indices, their replies)`` per batch of ``decoding.batch_size``, longest prompts first."""
    import torch

    _prepare_tokenizer(tokenizer)
    ids = [_prompt_ids(tokenizer, p) for p in prompts]
    order = sorted(range(len(ids)), key=lambda i: (-len(ids[i]), i))
    config = _generation_config(model, tokenizer, decoding)
    stops = set(config.eos_token_id)
    device = _input_device(model)
    if decoding.sampling:
        torch.manual_seed(decoding.seed)
    for start in range(0, len(order), decoding.batch_size):
        chunk = order[start : start + decoding.batch_size]
        width = max(len(ids[i]) for i in chunk)
        input_ids = torch.full((len(chunk), width), config.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            input_ids[row, width - len(ids[i]) :] = torch.tensor(ids[i], dtype=torch.long)
            mask[row, width - len(ids[i]) :] = 1
        with torch.inference_mode():
            out = model.generate(
                input_ids=input_ids.to(device), attention_mask=mask.to(device), generation_config=config
            )
        new = out[:, width:].tolist()
        yield chunk, [_reply(tokenizer, new[row], stops, len(ids[i])) for row, i in enumerate(chunk)]


def generate_one_by_one(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[list[dict]],
    decoding: Decoding,
    *,
    progress: Progress | None = None,
) -> list[GeneratedReply]:
    """The seed reports' loop: one ``model.generate`` per prompt, no padding (the benchmark's baseline)."""
    import torch

    _prepare_tokenizer(tokenizer)
    config = _generation_config(model, tokenizer, decoding)
    stops = set(config.eos_token_id)
    device = _input_device(model)
    counter = _Counter(progress)
    if decoding.sampling:
        torch.manual_seed(decoding.seed)
    replies = []
    for prompt in prompts:
        ids = _prompt_ids(tokenizer, prompt)
        input_ids = torch.tensor([ids], dtype=torch.long, device=device)
        with torch.inference_mode():
            out = model.generate(
                input_ids=input_ids, attention_mask=torch.ones_like(input_ids), generation_config=config
            )
        replies.append(_reply(tokenizer, out[0, len(ids) :].tolist(), stops, len(ids)))
        counter.advance(1)
    return replies


def _generation_config(model: Any, tokenizer: Any, decoding: Decoding) -> GenerationConfig:
    """Every decoding knob set explicitly: transformers fills unset ones from the model's generation_config."""
    from transformers import GenerationConfig

    own = getattr(model, "generation_config", None)
    stops = _as_list(getattr(own, "eos_token_id", None)) + _as_list(tokenizer.eos_token_id)
    stops = list(dict.fromkeys(stops))
    if not stops:
        raise WorkbenchError("generate: neither the model nor the tokenizer names an end-of-sequence token")
    # sampling knobs are set only when sampling (greedy ignores them, and transformers warns when they are set)
    sampling = {"temperature": float(decoding.temperature), "top_p": float(decoding.top_p), "top_k": 0}
    return GenerationConfig(
        max_new_tokens=decoding.max_new_tokens,
        min_new_tokens=0,
        do_sample=decoding.sampling,
        **(sampling if decoding.sampling else {}),
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        num_beams=1,
        num_return_sequences=1,
        use_cache=True,
        eos_token_id=stops,
        pad_token_id=tokenizer.pad_token_id,
    )


def _reply(tokenizer: Any, generated: list[int], stops: set[int], prompt_tokens: int) -> GeneratedReply:
    end = next((i for i, token in enumerate(generated) if token in stops), None)
    if end is None:
        return GeneratedReply(
            tokenizer.decode(generated, skip_special_tokens=True), tuple(generated), prompt_tokens, "length"
        )
    text = tokenizer.decode(generated[:end], skip_special_tokens=True)
    return GeneratedReply(text, tuple(generated[: end + 1]), prompt_tokens, "stop")


def _prompt_ids(tokenizer: Any, messages: list[dict]) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _prepare_tokenizer(tokenizer: Any) -> None:
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise WorkbenchError(f"tokenizer {tokenizer.name_or_path}: no pad token and no eos token to pad with")
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "chat_template", None):
        raise WorkbenchError(f"tokenizer {tokenizer.name_or_path}: no chat template (give a chat model's tokenizer)")


def _input_device(model: Any) -> Any:
    return next(model.parameters()).device


def _compute_dtype_name() -> str:
    import torch

    if torch.cuda.is_available():
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "float32"


# ---- adapters -------------------------------------------------------------------------------------------------


def _adapter_files(spec: ModelSpec) -> tuple[Path, Path]:
    """The adapter folder (resolved) and its weights file; a missing or incomplete folder is one line."""
    folder = Path(spec.adapter).expanduser()
    if not folder.is_dir():
        raise WorkbenchError(f"adapter {spec.adapter} (model {spec.name!r}): no such folder")
    if not (folder / ADAPTER_CONFIG).is_file():
        raise WorkbenchError(f"adapter {spec.adapter} (model {spec.name!r}): no {ADAPTER_CONFIG} (not a peft adapter)")
    for name in ADAPTER_WEIGHTS:
        if (folder / name).is_file():
            return folder.resolve(), (folder / name).resolve()
    raise WorkbenchError(f"adapter {spec.adapter} (model {spec.name!r}): no {ADAPTER_WEIGHTS[0]}")


def _check_adapter_fits(model: Any, spec: ModelSpec, base: Path) -> None:
    """Every LoRA module of the adapter exists in ``model`` with the in/out features the adapter was trained on."""
    folder, weights = _adapter_files(spec)
    if weights.suffix != ".safetensors":
        return  # a pickled adapter: loading it is the check
    from safetensors import safe_open

    modules = dict(model.named_modules())
    problems: list[str] = []
    with safe_open(str(weights), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 (a safetensors handle is not a mapping)
            for marker, axis, feature in ((".lora_A.", 1, "in_features"), (".lora_B.", 0, "out_features")):
                if marker not in key:
                    continue
                name = key.split(marker)[0].removeprefix("base_model.model.")
                module = modules.get(name)
                if module is None:
                    problems.append(f"the base has no module {name}")
                    break
                expected = getattr(module, feature, None)
                got = f.get_slice(key).get_shape()[axis]
                if expected is not None and got != expected:
                    problems.append(f"{name} has {feature} {expected}, the adapter's {marker.strip('.')} {got}")
                break
    if problems:
        trained_on = _trained_on(folder)
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise WorkbenchError(
            f"adapter {folder} (model {spec.name!r}) does not fit base model {base}{trained_on}: {problems[0]}{more}"
        )


def _trained_on(folder: Path) -> str:
    try:
        name = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError):
        return ""
    return f" (it was trained on {name})" if name else ""


# ---- remote models --------------------------------------------------------------------------------------------


def _generate_remote(
    spec: ModelSpec, prompts: list[list[dict]], decoding: Decoding, *, cache: CompletionCache, counter: _Counter
) -> list[Completion]:
    from labeling.batch import CompletionRequest, FailureLimit, complete_many
    from labeling.client import LLMClient

    requests = [CompletionRequest(p, json_schema=None, prompt_version=PROMPT_VERSION) for p in prompts]
    results: list[Completion | Failure | None] = [None] * len(requests)
    reported = 0

    def on_progress(batch_progress: Any) -> None:
        nonlocal reported
        counter.advance(batch_progress.done - reported)
        reported = batch_progress.done

    async def run() -> str:
        client = LLMClient(
            model=spec.model,
            base_url=spec.url,
            api_key_env=spec.api_key_env,
            temperature=float(decoding.temperature),
            max_tokens=decoding.max_new_tokens,
            seed=decoding.seed if decoding.sampling else None,
        )
        async with client:
            stream = complete_many(client, cache, requests, failure_limit=FailureLimit(1.0), on_progress=on_progress)
            async with contextlib.aclosing(stream) as items:
                async for index, result in items:
                    results[index] = result
        return client.endpoint

    endpoint = asyncio.run(run())
    failures = [r for r in results if isinstance(r, Failure)]
    if failures:
        raise WorkbenchError(
            f"model {spec.name!r} ({endpoint}): {len(failures)} of {len(requests)} replies failed (first: "
            f"{failures[0].reason}); the others are cached: a re-run sends only the failed ones"
        )
    return results  # type: ignore[return-value]


# ---- inputs ---------------------------------------------------------------------------------------------------


def _check_specs(specs: Sequence[ModelSpec]) -> list[ModelSpec]:
    specs = list(specs)
    if not specs:
        raise WorkbenchError("generate: no models given")
    seen: set[str] = set()
    for spec in specs:
        if not isinstance(spec, ModelSpec):
            raise WorkbenchError(f"generate: expected ModelSpec objects, got {type(spec).__name__}")
        if spec.name in seen:
            raise WorkbenchError(f"generate: two models are named {spec.name!r} (names key the results)")
        seen.add(spec.name)
    return specs


def _check_prompts(prompts: Sequence[list[dict]]) -> list[list[dict]]:
    """Each prompt as plain ``{"role", "content"}`` dicts (what the key and the template see); one line per problem."""
    if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Sequence):
        raise WorkbenchError(f"generate: prompts must be a list of chat message lists, got {type(prompts).__name__}")
    checked = []
    for index, prompt in enumerate(prompts):
        if isinstance(prompt, (str, bytes)) or not isinstance(prompt, Sequence) or not prompt:
            raise WorkbenchError(f"prompt {index}: expected a non-empty list of chat messages, got {prompt!r:.80}")
        messages = []
        for turn, message in enumerate(prompt):
            if not isinstance(message, Mapping):
                raise WorkbenchError(f"prompt {index}, message {turn}: expected a dict with role and content")
            role, content = message.get("role"), message.get("content")
            if role not in _ROLES:
                raise WorkbenchError(f"prompt {index}, message {turn}: role must be one of {_ROLES}, got {role!r}")
            if not isinstance(content, str):
                raise WorkbenchError(f"prompt {index}, message {turn}: content must be a string, got {content!r:.80}")
            messages.append({"role": role, "content": content})
        if messages[-1]["role"] != "user":
            raise WorkbenchError(f"prompt {index}: the last message must be the user's (the reply answers it)")
        checked.append(messages)
    return checked


# ---- identities -----------------------------------------------------------------------------------------------


def _resolve_base(name: str | Path) -> Path:
    from finetune.train import resolve_base_model

    return resolve_base_model(str(name)).resolve()


@functools.lru_cache(maxsize=8)
def _tokenizer(source: str) -> PreTrainedTokenizerBase:
    from finetune.tokenizer import load_tokenizer

    return load_tokenizer(source)


def _base_fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    for name in _BASE_CONFIG_FILES:
        path = folder / name
        digest.update(f"{name}\0{_sha256_file(path) if path.is_file() else '-'}\0".encode())
    for path in sorted(folder.iterdir()):
        if path.suffix in _WEIGHT_SUFFIXES and path.is_file():
            stat = path.stat()
            digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()


def _sha256_file(path: Path) -> str:
    stat = path.stat()
    return _sha256_of(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:  # size and mtime: a rewritten file is hashed again
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# ---- small helpers --------------------------------------------------------------------------------------------


class _Counter:
    """Replies ready so far; each step's increment goes to the progress callback."""

    def __init__(self, callback: Progress | None) -> None:
        self.callback = callback
        self.done = 0

    def advance(self, n: int) -> None:
        if n <= 0:
            return
        self.done += n
        if self.callback is not None:
            self.callback(n)


def _as_list(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
