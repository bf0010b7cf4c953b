"""The fine-tuning configuration: one dataclass, read from TOML, overridable from the command line.

Every field has help text (``field(metadata={"help": ...})``) and its checks run
in ``__post_init__``, so a bad value fails with one clear line before any model
loads. A TOML file groups the fields in tables (``[model]``, ``[lora]``,
``[quantization]``, ``[heads]``, ``[data]``, ``[training]``, ``[eval]``; see
``examples/qlora.toml``); the table a key sits in is for the reader only, but
an unknown key is an error naming the file and the key.

Defaults come from the seed reports: LoRA r 16, alpha 32, dropout 0.05 on every
linear layer; 4-bit NF4 with double quantisation; lr 2e-4, cosine, warmup 10 %,
gradient clipping at 1.0; batch 4 x accumulation 8 (seed 003); packing on.
Evaluation, checkpoints and early stopping run every ``eval_steps`` (seed 002
regressed after step 100 with nobody watching the validation loss).

This module imports nothing heavy: the CLI reads and checks a config before
torch loads.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curation.errors import WorkbenchError

KNOWN_TASKS = ("response", "emotion", "strategy", "traits")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
COMPUTE_DTYPES = ("auto", "bfloat16", "float16", "float32")
ATTENTION = ("sdpa", "eager", "flash_attention_2", "flash_attention_3")
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial")
EXTRA_HINT = "pip install 'workbench[finetune]'"
FINETUNE_PACKAGES = ("torch", "transformers", "peft", "trl", "accelerate", "datasets")


class ConfigError(WorkbenchError):
    """A fine-tuning config that does not hold together; names the field (and the file when there is one)."""


def _f(default: Any, help: str, section: str, **kw: Any) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda d=default: list(d), metadata={"help": help, "section": section, **kw})
    return field(default=default, metadata={"help": help, "section": section, **kw})


@dataclass
class FinetuneConfig:
    # [model]
    base_model: str = _f(
        "",
        "Base model: a local folder (config.json + weights) or a hub id already in the local Hugging Face cache "
        "(nothing is downloaded). Usually given on the command line (--base-model).",
        "model",
    )
    tokenizer: str = _f(
        "",
        "Tokenizer: '' (the base model's own), 'qwen2.5' (bundled), a folder or a cached hub id.",
        "model",
    )
    attn_implementation: str = _f(
        "sdpa",
        "Attention kernel: sdpa (any device), eager, or flash_attention_2/3 (CUDA GPUs with flash-attn only).",
        "model",
        choices=ATTENTION,
    )
    tasks: list[str] = _f(  # noqa: RUF009 (_f builds a field with a default_factory)
        list(KNOWN_TASKS),
        "Export tasks this run trains on; an export holding any other task is refused.",
        "model",
    )
    # [quantization]
    load_in_4bit: bool = _f(
        True,
        "QLoRA: load the frozen base weights in 4 bits through bitsandbytes (GPU or its CPU backend).",
        "quantization",
    )
    bnb_4bit_quant_type: str = _f(
        "nf4", "4-bit data type: nf4 (QLoRA's) or fp4.", "quantization", choices=("nf4", "fp4")
    )
    bnb_4bit_use_double_quant: bool = _f(
        True, "Quantise the quantisation constants too (QLoRA's double quant).", "quantization"
    )
    compute_dtype: str = _f(
        "auto",
        "dtype of the 4-bit matmuls and of the unquantised weights: auto = bfloat16 on a GPU that has it, float16 on "
        "an older GPU, float32 on CPU; or bfloat16 / float16 / float32.",
        "quantization",
        choices=COMPUTE_DTYPES,
    )
    # [lora]
    lora_r: int = _f(16, "LoRA rank.", "lora")
    lora_alpha: int = _f(32, "LoRA scaling numerator (the update is scaled by alpha / r).", "lora")
    lora_dropout: float = _f(0.05, "Dropout on the LoRA input, in [0, 1).", "lora")
    lora_target_modules: list[str] = _f(  # noqa: RUF009 (_f builds a field with a default_factory)
        ["all-linear"],
        "Modules that get adapters: ['all-linear'] (every linear layer but the LM head) or names such as "
        "['q_proj', 'v_proj'].",
        "lora",
    )
    # [heads]
    emotion_head_weight: float = _f(
        0.0,
        "λ_emo: weight of the emotion head's loss (28 GoEmotions labels, multi-label) beside the LM loss; 0 = no "
        "head. Seed 003 used 0.2.",
        "heads",
    )
    strategy_head_weight: float = _f(
        0.0,
        "λ_strat: weight of the strategy head's loss (ESConv's 8 strategies); 0 = no head. Seed 003 used 0.2.",
        "heads",
    )
    safety_kl_weight: float = _f(
        0.0,
        "λ_safe: weight of the safety-KL term, KL(base ‖ tuned) on the safe replies of a safety prompt set, so "
        "tuning does not wear away how the base answers risky messages; 0 = off. Seed 003 used 0.1.",
        "heads",
    )
    safety_kl_prompts: str = _f(
        "", "Safety prompt set: '' = the bundled finetune/safety/safety-kl-v1.toml, or a TOML of [[items]].", "heads"
    )
    safety_kl_batch: int = _f(4, "Safety prompts per micro-step (a second, padded forward pass).", "heads")
    emotion_head_hidden: int = _f(512, "Hidden width of the emotion head's MLP (seed 003: 512).", "heads")
    strategy_head_hidden: int = _f(256, "Hidden width of the strategy head's MLP (seed 003: 256).", "heads")
    # [data]
    max_length: int = _f(
        1024, "Tokens per packed sequence (or per example without packing); longer examples are truncated.", "data"
    )
    packing: bool = _f(
        True,
        "Pack examples into max_length sequences (best-fit decreasing, padding-free, position ids restarting per "
        "example, so examples never attend to each other).",
        "data",
    )
    train_split: str = _f("train", "Export split to train on.", "data")
    eval_split: str = _f(
        "validation",
        "Export split for the validation loss, early stopping and the best checkpoint; '' for none.",
        "data",
    )
    max_eval_examples: int = _f(
        0,
        "Evaluate on at most this many validation examples, a fixed sample drawn with `seed` (0: all of them). "
        "Every evaluation uses the same sample; run.json records its size.",
        "data",
    )
    dataset_num_proc: int = _f(0, "Processes for tokenising and packing (0: in this process).", "data")
    # [training]
    per_device_train_batch_size: int = _f(4, "Sequences per micro-batch (packed sequences when packing).", "training")
    per_device_eval_batch_size: int = _f(4, "Sequences per evaluation batch.", "training")
    gradient_accumulation_steps: int = _f(8, "Micro-batches per optimizer step.", "training")
    num_train_epochs: float = _f(2.0, "Passes over the training split (ignored when max_steps > 0).", "training")
    max_steps: int = _f(-1, "Stop after this many optimizer steps (-1: run num_train_epochs).", "training")
    learning_rate: float = _f(2e-4, "Peak learning rate (AdamW).", "training")
    lr_scheduler_type: str = _f("cosine", "Learning-rate schedule after warm-up.", "training", choices=SCHEDULERS)
    warmup_ratio: float = _f(0.1, "Share of the steps spent warming the learning rate up, in [0, 1).", "training")
    weight_decay: float = _f(0.0, "AdamW weight decay.", "training")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm (0: no clipping).", "training")
    optim: str = _f(
        "adamw_torch",
        "Optimizer (a transformers name); paged_* and *_8bit optimizers are bitsandbytes GPU kernels.",
        "training",
    )
    precision: str = _f(
        "auto",
        "Mixed precision of the adapter training: auto = bf16 on a GPU that has it, fp16 on an older GPU, fp32 on "
        "CPU; or bf16 / fp16 / fp32.",
        "training",
        choices=PRECISIONS,
    )
    gradient_checkpointing: bool = _f(
        True,
        "Recompute activations in the backward pass: less activation memory, but one more forward of every layer "
        "per step (~25 % slower on a 4-bit base, measured by bench/qlora.py); false is faster when memory allows.",
        "training",
    )
    seed: int = _f(42, "Seed of the adapter's initialisation, dropout and data order.", "training")
    logging_steps: int = _f(10, "Write a line to metrics.jsonl every N optimizer steps.", "training")
    report_to: list[str] = _f(  # noqa: RUF009 (_f builds a field with a default_factory)
        ["none"],
        "Experiment trackers passed to transformers: ['none'], or e.g. ['tensorboard'], ['trackio'].",
        "training",
    )
    # [eval]
    eval_steps: int = _f(50, "Validation loss every N optimizer steps.", "eval")
    save_steps: int = _f(50, "Checkpoint every N optimizer steps (a multiple of eval_steps when evaluating).", "eval")
    save_total_limit: int = _f(2, "Checkpoints kept besides the best one (the best is never deleted).", "eval")
    early_stopping_patience: int = _f(
        3, "Stop after this many evaluations without a better validation loss (0: never stop early).", "eval"
    )
    early_stopping_threshold: float = _f(0.0, "How much lower the validation loss must be to count as better.", "eval")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, _coerce(f, getattr(self, f.name)))
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ConfigError(f"{f.name}: {getattr(self, f.name)!r} is not one of {', '.join(choices)}")
        unknown = sorted(set(self.tasks) - set(KNOWN_TASKS))
        if not self.tasks or unknown:
            raise ConfigError(f"tasks: {unknown or '[]'} not among the export tasks ({', '.join(KNOWN_TASKS)})")
        for name in (
            "lora_r",
            "lora_alpha",
            "max_length",
            "per_device_train_batch_size",
            "per_device_eval_batch_size",
            "gradient_accumulation_steps",
            "logging_steps",
            "eval_steps",
            "save_steps",
            "emotion_head_hidden",
            "strategy_head_hidden",
            "safety_kl_batch",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be at least 1, got {getattr(self, name)}")
        for name in ("emotion_head_weight", "strategy_head_weight", "safety_kl_weight"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"{name}: a weight >= 0 (0 switches the head off), got {value}")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"lora_dropout: must be in [0, 1), got {self.lora_dropout}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio: must be in [0, 1), got {self.warmup_ratio}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ConfigError(f"learning_rate: must be a positive number, got {self.learning_rate}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ConfigError(
                f"max_steps: a positive number of steps, or -1 for num_train_epochs; got {self.max_steps}"
            )
        if self.max_steps == -1 and not self.num_train_epochs > 0:
            raise ConfigError(f"num_train_epochs: must be positive, got {self.num_train_epochs}")
        if self.max_grad_norm < 0 or self.weight_decay < 0 or self.early_stopping_threshold < 0:
            raise ConfigError("max_grad_norm, weight_decay and early_stopping_threshold cannot be negative")
        if min(self.early_stopping_patience, self.save_total_limit, self.dataset_num_proc, self.max_eval_examples) < 0:
            raise ConfigError(
                "early_stopping_patience, save_total_limit, dataset_num_proc and max_eval_examples cannot be negative"
            )
        if not self.lora_target_modules:
            raise ConfigError("lora_target_modules: name at least one module, or ['all-linear']")
        if self.eval_split and self.save_steps % self.eval_steps:
            raise ConfigError(
                f"save_steps ({self.save_steps}) must be a multiple of eval_steps ({self.eval_steps}) so that the best "
                "checkpoint (by validation loss) is one that was saved"
            )
        if self.eval_split and self.eval_split == self.train_split:
            raise ConfigError(
                f"eval_split: {self.eval_split!r} is the training split; early stopping needs held-out data"
            )
        if self.early_stopping_patience and not self.eval_split:
            self.early_stopping_patience = 0  # nothing to watch: say so in the run output, not an error

    # ---- views -------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        """The resolved config as TOML, grouped in the same tables as ``examples/qlora.toml``."""
        sections: dict[str, list[str]] = {}
        for f in dataclasses.fields(self):
            sections.setdefault(f.metadata["section"], []).append(f"{f.name} = {_toml_value(getattr(self, f.name))}")
        return "\n".join(f"[{name}]\n" + "\n".join(lines) + "\n" for name, lines in sections.items())

    @property
    def effective_batch_size(self) -> int:
        return self.per_device_train_batch_size * self.gradient_accumulation_steps


def field_help() -> dict[str, str]:
    """Each field's help text (for ``workbench finetune --help-config``)."""
    return {f.name: f.metadata["help"] for f in dataclasses.fields(FinetuneConfig)}


def load_config(
    path: str | Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
) -> FinetuneConfig:
    """A config from a TOML file (defaults when ``path`` is None), then ``overrides`` on top.

    Errors name the file and the key; an override's value may be a TOML literal
    given as a string (``"8"``, ``"['q_proj', 'v_proj']"``), as the CLI passes it.
    """
    values: dict[str, Any] = {}
    where = "config"
    if path is not None:
        path = Path(path)
        where = str(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: fine-tuning config not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read ({exc})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        values.update(_flatten(data, where))
    for key, value in (overrides or {}).items():
        _field_named(key, "override")
        values[key] = value
    try:
        return FinetuneConfig(**values)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["lora_r=8", "tasks=['response']"]`` -> values; each value is read as TOML, else kept as a string."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE (e.g. --set lora_r=8)")
        _field_named(key, f"--set {item!r}")
        try:
            out[key] = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = raw.strip()
    return out


def config_from_json(text: str, where: str) -> FinetuneConfig:
    """The config a run folder recorded (``config.json``)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: not JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object")
    for key in data:
        _field_named(key, where)
    try:
        return FinetuneConfig(**data)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def missing_packages() -> list[str]:
    """The packages of the ``finetune`` extra that are not installed (checked without importing them)."""
    return [name for name in FINETUNE_PACKAGES if importlib.util.find_spec(name) is None]


def require_finetune_extra() -> None:
    """Raise one clear line when the ``finetune`` extra is not installed."""
    missing = missing_packages()
    if missing:
        raise WorkbenchError(f"fine-tuning needs the finetune extra ({', '.join(missing)} missing): {EXTRA_HINT}")


# ---- helpers -----------------------------------------------------------------------------------------

_FIELDS = {f.name: f for f in dataclasses.fields(FinetuneConfig)}


def _field_named(key: str, where: str) -> dataclasses.Field:
    if key not in _FIELDS:
        close = [n for n in _FIELDS if key.lower() in n or n in key.lower()]
        hint = f" (did you mean {', '.join(close[:3])}?)" if close else ""
        raise ConfigError(f"{where}: unknown key {key!r}{hint}")
    return _FIELDS[key]


def _flatten(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        items = value.items() if isinstance(value, dict) else [(key, value)]
        section = key if isinstance(value, dict) else None
        for name, item in items:
            f = _field_named(name, f"{where}: [{section}]" if section else where)
            if section and f.metadata["section"] != section:
                raise ConfigError(f"{where}: {name} belongs in [{f.metadata['section']}], not [{section}]")
            if name in out:
                raise ConfigError(f"{where}: {name} is set twice")
            out[name] = item
    return out


def _coerce(f: dataclasses.Field, value: Any) -> Any:
    expected = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    name = f.name
    if expected == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(f"{name}: expected true or false, got {value!r}")
    if expected == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{name}: expected a whole number, got {value!r}")
    if expected == "float":
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise ConfigError(f"{name}: expected a number, got {value!r}")
    if expected == "str":
        if isinstance(value, str):
            return value.strip()
        raise ConfigError(f"{name}: expected a string, got {value!r}")
    if expected == "list[str]":
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return [v.strip() for v in value]
        raise ConfigError(f"{name}: expected a list of strings, got {value!r}")
    raise AssertionError(f"no coercion for {name}: {expected}")  # a new field type must add one


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")
