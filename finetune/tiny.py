"""A tiny Qwen2-style model with random weights, for tests and ``workbench run``: it demonstrates the path only.

:func:`build_tiny_model` writes a folder that ``workbench finetune --base-model``
accepts like any local model: a :class:`~transformers.Qwen2ForCausalLM` built
from a small config (2 layers, hidden size 64, Qwen2.5's vocabulary so the
bundled tokenizer's ids fit) with random weights, the bundled Qwen2.5 tokenizer
(:func:`finetune.tokenizer.load_tokenizer`), and a marker file
(``workbench-tiny.json``) so every run trained on it says plainly that its
adapter is worthless. Nothing is downloaded.

:func:`scaled_config` gives the same family at other sizes (the benchmark uses
Qwen2.5-0.5B's real shape on a GPU and a scaled-down one on CPU).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from curation.errors import WorkbenchError

MARKER = "workbench-tiny.json"
NOTICE = (
    "tiny random model: this run only demonstrates the fine-tuning path (its adapter has learnt nothing useful); "
    "use --base-model with a real model (a local folder or a cached hub id) for a real run"
)

# Qwen2.5-0.5B's architecture (config.json of Qwen/Qwen2.5-0.5B-Instruct), random weights only.
QWEN2_5_0_5B = {
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
    "vocab_size": 151936,
}
# The scaled-down shape the benchmarks use on CPU (Qwen2.5's vocabulary, so the bundled tokenizer fits).
_SMALL_QWEN = {
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
}
BENCH_CPU_SHAPE = {"hidden_size": 256, "intermediate_size": 704, "num_hidden_layers": 4, **_SMALL_QWEN}
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, **_SMALL_QWEN}


def scaled_config(shape: dict[str, Any], *, vocab_size: int, **overrides: Any) -> Any:
    """A :class:`~transformers.Qwen2Config` of ``shape`` with Qwen2.5's special-token ids."""
    from transformers import Qwen2Config

    values = {**shape, "vocab_size": max(vocab_size, shape.get("vocab_size", 0)), **overrides}
    return Qwen2Config(
        **values,
        bos_token_id=151643,  # <|endoftext|>
        eos_token_id=151645,  # <|im_end|>
        pad_token_id=151643,
        hidden_act="silu",
        attention_dropout=0.0,
    )


def build_tiny_model(folder: str | Path, *, seed: int = 0, shape: dict[str, Any] | None = None) -> Path:
    """Write a tiny random Qwen2-style model + the bundled tokenizer to ``folder`` (reused when already there)."""
    import torch
    from transformers import Qwen2ForCausalLM

    from finetune.tokenizer import BUNDLED, load_tokenizer

    folder = Path(folder)
    shape = dict(shape or TINY)
    marker = {"model": "tiny-random-qwen2", "seed": seed, "shape": shape, "tokenizer": BUNDLED, "notice": NOTICE}
    if is_tiny(folder) and json.loads((folder / MARKER).read_text(encoding="utf-8")) == marker:
        return folder
    if folder.exists() and any(folder.iterdir()):
        raise WorkbenchError(f"{folder}: not empty and not a tiny model of this shape; choose another folder")
    tokenizer = load_tokenizer(BUNDLED)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(scaled_config(shape, vocab_size=len(tokenizer)))
    model.generation_config.eos_token_id = [151645, 151643]
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / MARKER).write_text(json.dumps(marker, indent=1), encoding="utf-8")
    folder.parent.mkdir(parents=True, exist_ok=True)
    if folder.exists():
        folder.rmdir()
    tmp.rename(folder)
    return folder


def is_tiny(folder: str | Path) -> bool:
    """True for a folder written by :func:`build_tiny_model`."""
    return (Path(folder) / MARKER).is_file()
