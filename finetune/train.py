"""QLoRA fine-tuning of an export: a thin layer over TRL's ``SFTTrainer``.

Read top to bottom, :func:`train` does:

1. refuse what cannot work, before anything is written: a run folder that holds
   a finished run, a base model not in its folder or the local Hugging Face
   cache, an export task the config does not know, a GPU-only option on a CPU
   machine (bf16/fp16 without support, flash attention, paged optimizers);
2. check the loss masks (:func:`finetune.masking.check_masks`): every example
   must train on assistant tokens only, and print the trained-token share;
3. write the run folder (``run.json`` ``running``, the resolved config, the
   lineage: export, snapshot, base model, tokenizer, chat-template hash, code
   version);
4. train with TRL: ``SFTConfig(assistant_only_loss=True, packing=True,
   packing_strategy="bfd")`` (padding-free: no attention mask, position ids
   restarting per example, ``use_cache=False``, so packed examples never
   attend to each other under sdpa), a peft ``LoraConfig``, bitsandbytes 4-bit
   through ``BitsAndBytesConfig``; evaluation, checkpoints and early stopping
   every ``eval_steps`` with the best checkpoint (by validation loss) loaded
   at the end; ``metrics.jsonl`` and a progress line with trained tokens/s;
5. write the adapter (and tokenizer) to ``adapter/`` and only then mark the
   run ``finished``. Any failure marks it ``failed`` with the reason; out of
   memory says which knob to turn.

``resume=True`` continues the newest checkpoint exactly (optimizer, scheduler,
RNG states, data order, early-stopping counter: transformers' own checkpoint
state), with the config the run recorded.

What we add to TRL is only that: the checks, the run folder, the log. Masking,
packing, padding-free batching and the PEFT wiring are TRL's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import TrainerCallback

from curation.errors import WorkbenchError
from finetune.config import FinetuneConfig, config_from_json
from finetune.runs import CONFIG_JSON, CONFIG_TOML, RunError, RunFolder, now

Say = Callable[[str], None]

ASSISTANT_ONLY = True  # loss on assistant tokens only, their end-of-turn token included (TRL's training template)


@dataclass
class TrainingData:
    """The splits a run trains and validates on, and where they came from."""

    train: Dataset
    eval: Dataset | None = None
    export_id: str | None = None
    snapshot_id: str | None = None
    tasks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.tasks:
            found: set[str] = set()
            for split in (self.train, self.eval):
                if split is not None and "task" in split.column_names:
                    found.update(str(t) for t in split.unique("task"))
            self.tasks = tuple(sorted(found))


@dataclass
class RunResult:
    run: Path
    status: str
    adapter: Path | None
    global_step: int
    best_checkpoint: str | None
    best_eval_loss: float | None
    trained_token_share: float
    trained_tokens: int
    tokens_per_second: float | None
    tiny: bool
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Device:
    kind: str  # "cuda" or "cpu"
    name: str
    bf16: bool  # native bfloat16 arithmetic


# ---- entry points ----------------------------------------------------------------------------------


def finetune(
    export_ref: str,
    *,
    store: Any,
    config: FinetuneConfig,
    out: str | Path,
    say: Say = print,
    callbacks: Sequence[TrainerCallback] = (),
) -> RunResult:
    """Fine-tune ``config.base_model`` on an export of ``store`` (a :class:`curation.store.SnapshotStore`)."""
    data = load_export(store, export_ref, config)
    return train(data, config=config, out=out, say=say, callbacks=callbacks)


def resume(
    out: str | Path,
    *,
    store: Any = None,
    export_ref: str | None = None,
    data: TrainingData | None = None,
    say: Say = print,
    callbacks: Sequence[TrainerCallback] = (),
) -> RunResult:
    """Continue the run in ``out`` from its newest checkpoint, with the config and export it recorded."""
    run = RunFolder(Path(out))
    info = run.check_resumable()
    config = recorded_config(run)
    if data is None:
        recorded = info.get("export")
        if export_ref is not None and store is not None and recorded:
            asked = _export_store(store).resolve(export_ref)
            if asked != recorded:
                raise RunError(f"{run.path}: trained on export {recorded}, not {export_ref} ({asked}); resume with it")
        data = load_export(store, recorded or export_ref or "", config)
    elif info.get("export") and data.export_id and data.export_id != info["export"]:
        raise RunError(f"{run.path}: trained on export {info['export']}, not {data.export_id}")
    return train(data, config=config, out=out, resume=True, say=say, callbacks=callbacks)


def recorded_config(run: RunFolder) -> FinetuneConfig:
    path = run.path / CONFIG_JSON
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RunError(f"{path}: the run's config is unreadable ({exc.strerror or exc})") from None
    return config_from_json(text, str(path))


def train(
    data: TrainingData,
    *,
    config: FinetuneConfig,
    out: str | Path,
    resume: bool = False,
    say: Say = print,
    callbacks: Sequence[TrainerCallback] = (),
) -> RunResult:
    """Train a LoRA adapter on ``data`` into the run folder ``out`` (see the module docstring)."""
    from finetune.masking import check_masks
    from finetune.tiny import NOTICE, is_tiny
    from finetune.tokenizer import chat_template_sha256, load_tokenizer, tokenizer_name

    _quiet_library_progress()
    run = RunFolder(Path(out))
    previous = run.check_resumable() if resume else None
    if not resume:
        run.check_new()
    if not config.base_model:
        raise WorkbenchError("no base model: give --base-model (a local folder or a cached hub id)")
    check_tasks(data, config)
    device = detect_device()
    precision, compute_dtype = resolve_precision(config, device)
    check_device_options(config, device)
    base = resolve_base_model(config.base_model)
    tiny = is_tiny(base)
    if tiny:
        say(f"note: {NOTICE}")
    if len(data.train) == 0:
        raise WorkbenchError(f"split {config.train_split!r} of the export is empty: nothing to train on")
    use_eval = data.eval is not None and len(data.eval) > 0 and bool(config.eval_split)
    eval_of = len(data.eval) if use_eval and data.eval is not None else 0
    if use_eval and data.eval is not None and 0 < config.max_eval_examples < len(data.eval):
        data = dataclasses.replace(
            data, eval=data.eval.shuffle(seed=config.seed).select(range(config.max_eval_examples))
        )
        say(
            f"validation: a fixed sample of {len(data.eval):,} of the {eval_of:,} {config.eval_split} examples "
            "(max_eval_examples), the same at every evaluation"
        )
    if not use_eval:
        say("note: no validation split: no evaluation, early stopping or best checkpoint; the last step is kept")

    tokenizer = load_tokenizer(config.tokenizer or base)
    specs = check_heads(data, config, say=say)
    lengths: list[int] = []
    share = check_masks(tokenizer, _rows(data.train, "messages", "id"), lengths=lengths)
    if use_eval:
        check_masks(tokenizer, _rows(data.eval, "messages", "id"))
    too_long = [n for n in lengths if n > config.max_length]
    if too_long:
        say(
            f"warning: {len(too_long):,} of {len(lengths):,} training examples are longer than max_length "
            f"({config.max_length} tokens; the longest has {max(too_long):,}): their ends are cut, so their last "
            "replies train partly or not at all. Raise max_length to keep them whole"
        )
    say(
        f"loss masks: {len(data.train):,} training examples, {share:.1%} of their tokens carry loss "
        "(assistant replies and their end-of-turn token only)"
    )

    checkpoint = run.last_checkpoint() if resume else None
    lineage = {
        "base_model": config.base_model,
        "base_model_path": str(base),
        "tiny_model": tiny,
        "export": data.export_id,
        "snapshot": data.snapshot_id,
        "tasks": list(data.tasks),
        "examples": {
            "train": len(data.train),
            "validation": len(data.eval) if use_eval and data.eval is not None else 0,
            "validation_of": eval_of,
        },
        "tokenizer": tokenizer_name(tokenizer),
        "chat_template_sha256": chat_template_sha256(tokenizer),
        "trained_token_share": share,
        "heads": {spec.name: spec.weight for spec in specs},
        "device": device.name,
        "precision": precision,
        "compute_dtype": str(compute_dtype).removeprefix("torch."),
        "code_version": _code_version(),
    }
    if previous is None:
        run.path.mkdir(parents=True, exist_ok=True)
        (run.path / CONFIG_TOML).write_text(config.to_toml(), encoding="utf-8")
        (run.path / CONFIG_JSON).write_text(json.dumps(config.to_dict(), indent=1) + "\n", encoding="utf-8")
        run.write_info({"status": "running", "started_at": now(), **lineage, "attempts": 1})
    else:
        run.truncate_metrics(_step_of(checkpoint))
        run.update_info(
            status="running",
            reason=None,
            resumed_at=now(),
            resumed_from=str(checkpoint) if checkpoint else None,
            attempts=int(previous.get("attempts", 1)) + 1,
            **{k: v for k, v in lineage.items() if k in ("device", "code_version", "trained_token_share")},
        )
        if not checkpoint:
            say("note: no checkpoint was saved before the run stopped: training starts over")
        else:
            say(f"resuming from {checkpoint} (step {_step_of(checkpoint)})")

    log = RunLog(run, say=say)
    if checkpoint:
        log.trained_tokens = _trained_tokens_at(run, _step_of(checkpoint))
    trainer = None
    try:
        model = load_base_model(base, config, device, compute_dtype)
        trainer = build_trainer(
            model,
            tokenizer,
            data,
            config=config,
            output_dir=run.checkpoints,
            precision=precision,
            device=device,
            use_eval=use_eval,
            callbacks=[log, *callbacks],
        )
        log.trainer = trainer
        say(_plan_line(trainer, config, device, precision))
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        _save_adapter(trainer, tokenizer, run.adapter, specs)
    except BaseException as exc:
        reason = _failure_reason(exc, config, trainer)
        _mark_failed(run, reason)
        if isinstance(exc, WorkbenchError):
            raise
        if isinstance(exc, KeyboardInterrupt):
            raise
        if _is_oom(exc):
            raise WorkbenchError(reason) from None
        raise
    state = trainer.state
    best_eval = state.best_metric if use_eval else None
    result_info = run.update_info(
        status="finished",
        finished_at=now(),
        global_step=state.global_step,
        epoch=state.epoch,
        best_checkpoint=_relative(state.best_model_checkpoint, run.path) if use_eval else None,
        best_eval_loss=best_eval,
        stopped_early=bool(use_eval and state.global_step < state.max_steps),
        trained_tokens=log.trained_tokens,
        tokens_per_second=log.overall_rate(),
        adapter=str(run.adapter.relative_to(run.path)),
    )
    if tiny:
        say(f"note: {NOTICE}")
    return RunResult(
        run=run.path,
        status="finished",
        adapter=run.adapter,
        global_step=state.global_step,
        best_checkpoint=result_info.get("best_checkpoint"),
        best_eval_loss=best_eval,
        trained_token_share=share,
        trained_tokens=log.trained_tokens,
        tokens_per_second=log.overall_rate(),
        tiny=tiny,
        info=result_info,
    )


# ---- data ------------------------------------------------------------------------------------------


def load_export(store: Any, ref: str, config: FinetuneConfig) -> TrainingData:
    """The train and validation splits of an export (``finetune.export``'s store), checksum-checked."""
    if not ref:
        raise WorkbenchError("no export given: name an export id or ref (workbench export list)")
    exports = _export_store(store)
    export_id = exports.resolve(ref)
    manifest = exports.manifest(ref)
    files = exports.data_files(ref)
    if config.train_split not in files:
        have = ", ".join(sorted(files)) or "none"
        raise WorkbenchError(f"export {ref}: no {config.train_split!r} split (has {have})")
    train = _read_parquet(exports.fs, files[config.train_split])
    evaluation = _read_parquet(exports.fs, files[config.eval_split]) if config.eval_split in files else None
    tasks = manifest.get("tasks")
    snapshot = manifest.get("snapshot")
    return TrainingData(
        train=train,
        eval=evaluation,
        export_id=export_id,
        snapshot_id=snapshot.get("id") if isinstance(snapshot, dict) else snapshot,
        tasks=tuple(sorted(str(t) for t in tasks)) if isinstance(tasks, dict | list) else (),
    )


def _export_store(store: Any) -> Any:
    try:
        from finetune.export import ExportStore
    except ImportError:
        raise WorkbenchError("exports are not available in this installation (finetune.export is missing)") from None
    return ExportStore(store)


def _read_parquet(fs: Any, path: str) -> Dataset:
    import pyarrow.parquet as pq

    with fs.open(path, "rb") as f:
        return Dataset(pq.read_table(f))


def _rows(dataset: Dataset, *columns: str) -> Iterable[dict[str, Any]]:
    present = [c for c in columns if c in dataset.column_names]
    return dataset.select_columns(present)


def check_tasks(data: TrainingData, config: FinetuneConfig) -> None:
    unknown = sorted(set(data.tasks) - set(config.tasks))
    if unknown:
        where = f"export {data.export_id}" if data.export_id else "the training data"
        raise WorkbenchError(
            f"{where} holds task(s) {', '.join(unknown)} that the config does not train "
            f"(tasks = {config.tasks}); add them to `tasks` in the config, or export without them"
        )
    if "messages" not in data.train.column_names:
        raise WorkbenchError("the training data has no 'messages' column (conversational rows are expected)")


def check_heads(data: TrainingData, config: FinetuneConfig, *, say: Say = print) -> list[Any]:
    """The heads the config switches on, checked against the data: each must have labels to learn from."""
    from finetune.heads import count_labels, specs_from_config

    specs = specs_from_config(config)
    if not specs:
        return []
    where = f"export {data.export_id}" if data.export_id else "the training data"
    if "heads" not in data.train.column_names:
        raise WorkbenchError(
            f"{where} has no head labels (it was exported before rows carried them): export the snapshot again, or "
            "set emotion_head_weight = strategy_head_weight = 0"
        )
    counts = count_labels(_rows(data.train, "heads"), specs)
    for spec in specs:
        if counts[spec.name] == 0:
            raise WorkbenchError(
                f"{spec.name}_head_weight = {spec.weight} but no training example of {where} carries a {spec.name} "
                f"label for the head (tasks: {', '.join(data.tasks)}); set it to 0 or export tasks that have them"
            )
    say(
        "heads: "
        + ", ".join(
            f"{s.name} ({len(s.labels)} labels, λ {s.weight:g}) on {counts[s.name]:,} assistant messages" for s in specs
        )
    )
    return specs


# ---- device, precision, base model -----------------------------------------------------------------


def detect_device() -> Device:
    if torch.cuda.is_available():
        return Device("cuda", torch.cuda.get_device_name(0), torch.cuda.is_bf16_supported())
    return Device("cpu", "cpu", _cpu_has_native_bf16())


def _cpu_has_native_bf16() -> bool:
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool((probe and probe()) or (amx and amx()))


def resolve_precision(config: FinetuneConfig, device: Device) -> tuple[str, torch.dtype]:
    """(mixed precision of training, dtype of the base weights / 4-bit compute), checked against the device."""
    precision = config.precision
    if precision == "auto":
        precision = ("bf16" if device.bf16 else "fp16") if device.kind == "cuda" else "fp32"
    if precision == "fp16" and device.kind == "cpu":
        raise WorkbenchError("precision = 'fp16' needs a CUDA GPU (none here); use 'auto' or 'fp32' on CPU")
    if precision == "bf16" and not device.bf16:
        where = "this GPU" if device.kind == "cuda" else "this CPU (no native bfloat16)"
        raise WorkbenchError(f"precision = 'bf16' is not supported on {where}; use 'auto', or 'fp16' on a GPU")
    dtype_name = config.compute_dtype
    if dtype_name == "auto":
        dtype_name = ("bfloat16" if device.bf16 else "float16") if device.kind == "cuda" else "float32"
    if dtype_name == "float16" and device.kind == "cpu":
        raise WorkbenchError("compute_dtype = 'float16' needs a CUDA GPU; use 'auto', 'float32' or 'bfloat16' on CPU")
    return precision, getattr(torch, dtype_name)


def check_device_options(config: FinetuneConfig, device: Device) -> None:
    """GPU-only options on a CPU machine, and packages an option needs, as one clear line each."""
    import importlib.util

    if config.attn_implementation.startswith("flash_attention"):
        if device.kind != "cuda":
            raise WorkbenchError(
                f"attn_implementation = '{config.attn_implementation}' needs a CUDA GPU (none here); use 'sdpa'"
            )
        package = "flash_attn" if config.attn_implementation == "flash_attention_2" else "flash_attn_interface"
        if importlib.util.find_spec(package) is None:
            raise WorkbenchError(
                f"attn_implementation = '{config.attn_implementation}' needs the {package} package; use 'sdpa'"
            )
    if device.kind != "cuda" and (config.optim.startswith("paged_") or "8bit" in config.optim):
        raise WorkbenchError(f"optim = '{config.optim}' is a bitsandbytes GPU optimizer; use 'adamw_torch' on CPU")
    if config.load_in_4bit and importlib.util.find_spec("bitsandbytes") is None:
        raise WorkbenchError(
            "load_in_4bit needs bitsandbytes: pip install 'workbench[finetune]' (or set load_in_4bit = false)"
        )


def resolve_base_model(name: str) -> Path:
    """A local folder with ``config.json``, or a hub id's snapshot folder in the local cache (nothing downloaded)."""
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise WorkbenchError(f"base model {name!r}: the folder holds no config.json (not a transformers model)")
        return path
    if name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise WorkbenchError(f"base model {name!r}: no such folder, and not a hub id (owner/name)")
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id=name, filename="config.json")
    except ValueError:
        found = None
    if not isinstance(found, str):
        raise WorkbenchError(
            f"base model {name!r}: not in the local Hugging Face cache (nothing is downloaded; fetch it first with "
            f"`hf download {name}`, or give a local folder)"
        )
    return Path(found).parent


def load_base_model(base: Path, config: FinetuneConfig, device: Device, dtype: torch.dtype) -> Any:
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "attn_implementation": config.attn_implementation,
        "local_files_only": True,
    }
    if config.load_in_4bit:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=config.bnb_4bit_quant_type,
            bnb_4bit_use_double_quant=config.bnb_4bit_use_double_quant,
            bnb_4bit_compute_dtype=dtype,
            bnb_4bit_quant_storage=dtype,
        )
        if device.kind == "cuda":
            kwargs["device_map"] = {"": torch.cuda.current_device()}
    try:
        model = AutoModelForCausalLM.from_pretrained(str(base), **kwargs)
    except (OSError, ValueError) as exc:
        raise WorkbenchError(f"base model {config.base_model!r}: cannot load ({_first_line(exc)})") from None
    model.config.use_cache = False  # training: packed batches must not build a cache (see the module docstring)
    if config.load_in_4bit and device.kind == "cpu":
        _keep_one_cpu_4bit_format(model)
    return model


def _keep_one_cpu_4bit_format(model: Any) -> None:
    # On a CPU with AVX512-BF16, bitsandbytes repacks a 4-bit weight at its first no-grad forward (the first
    # evaluation) and keeps the new layout, whose matmul rounds differently: training before and after the first
    # evaluation would compute differently, and a resumed run would not match the run it continues. One layout.
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


# ---- the trainer -----------------------------------------------------------------------------------


def sft_config(
    config: FinetuneConfig, *, output_dir: str | Path, precision: str, device: Device, use_eval: bool
) -> Any:
    """TRL's ``SFTConfig`` for a :class:`FinetuneConfig` (our settings in one place)."""
    from trl import SFTConfig

    limit = config.save_total_limit or None
    return SFTConfig(
        output_dir=str(output_dir),
        # data: conversational rows, loss on assistant tokens, packed padding-free
        assistant_only_loss=ASSISTANT_ONLY,
        max_length=config.max_length,
        packing=config.packing,
        packing_strategy="bfd",
        padding_free=config.packing,
        dataset_num_proc=config.dataset_num_proc or None,
        # optimisation
        per_device_train_batch_size=config.per_device_train_batch_size,
        per_device_eval_batch_size=config.per_device_eval_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        num_train_epochs=config.num_train_epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=config.warmup_ratio,  # a float in [0, 1) is a share of the steps
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        optim=config.optim,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=device.kind == "cpu",
        activation_checkpointing=config.gradient_checkpointing,  # transformers 5's name for gradient checkpointing
        seed=config.seed,
        data_seed=config.seed,
        # evaluation, checkpoints, best model
        eval_strategy="steps" if use_eval else "no",
        eval_steps=config.eval_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=limit,
        load_best_model_at_end=use_eval,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        restore_callback_states_from_checkpoint=True,  # the early-stopping counter survives a resume
        # logging
        logging_steps=config.logging_steps,
        report_to=[] if config.report_to == ["none"] else config.report_to,
        disable_tqdm=True,  # our progress line shows trained tokens/s
        dataloader_num_workers=0,
    )


def _trainer_class() -> type:
    from trl import SFTTrainer

    class _Trainer(SFTTrainer):
        """SFTTrainer that counts the tokens carrying loss (for tokens/s) and resumes QLoRA exactly.

        TRL keeps a quantised model's LoRA weights in bfloat16 (QLoRA's recipe); reloading a checkpoint goes through
        peft's ``load_adapter``, which upcasts them to float32, so a resumed run would compute in another dtype than
        the run it continues. The weights are cast back to the dtype they trained in.
        """

        token_counter: RunLog | None = None

        def __init__(
            self, *args, head_specs: Sequence[Any] = (), safety: Any = None, safety_weight: float = 0.0, **kwargs
        ):
            self.head_specs = tuple(head_specs)  # read while SFTTrainer.__init__ prepares the datasets
            self.safety = safety  # finetune.safety_kl.SafetyKL, or None
            self.safety_weight = safety_weight
            self._safety_step = 0
            self._head_eval: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
            super().__init__(*args, **kwargs)
            if self.head_specs:
                self.data_collator = _HeadCollator(self.data_collator)

        # ---- heads (finetune.heads): labels as per-token columns, packed by TRL, loss added to TRL's
        def _prepare_dataset(self, dataset, processing_class, args, packing, formatting_func, dataset_name):
            if not self.head_specs or "heads" not in (dataset.column_names or ()):
                return super()._prepare_dataset(dataset, processing_class, args, packing, formatting_func, dataset_name)
            from trl.data_utils import pack_dataset

            from finetune.heads import COLUMNS, token_columns

            specs = self.head_specs
            # TRL tokenises, builds the labels and truncates; packing (which keeps only input_ids and labels) is
            # done here, with TRL's pack_dataset, once the head columns sit beside them
            dataset = super()._prepare_dataset(dataset, processing_class, args, False, formatting_func, dataset_name)
            dataset = dataset.map(
                lambda example: token_columns(example["labels"], example["heads"], specs),
                num_proc=args.dataset_num_proc,
                desc=f"Placing head labels in {dataset_name} dataset",
            )
            dataset = dataset.select_columns(["input_ids", "labels", *COLUMNS])
            if packing:
                if args.shuffle_dataset:
                    dataset = dataset.shuffle(seed=args.seed)
                dataset = pack_dataset(
                    dataset, args.max_length, args.packing_strategy, {"num_proc": args.dataset_num_proc}
                )
            return dataset

        def _set_signature_columns_if_needed(self):
            super()._set_signature_columns_if_needed()
            if self.head_specs:
                from finetune.heads import COLUMNS

                self._signature_columns = [*self._signature_columns, *COLUMNS]

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            from finetune.heads import COLUMNS, capture_hidden, head_losses

            columns = {c: inputs.pop(c) for c in COLUMNS if c in inputs}
            heads = bool(self.head_specs and columns)
            safety = self.safety is not None and model.training
            if not heads and not safety:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            with capture_hidden(model) if heads else contextlib.nullcontext({}) as captured:
                result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            lm_loss = result[0] if return_outputs else result
            mode = "train" if model.training else "eval"
            extra = lm_loss.new_zeros(())
            if heads:
                batch = head_losses(model, captured["hidden"], columns, self.head_specs)
                extra = extra + sum(spec.weight * batch.losses[spec.name] for spec in self.head_specs)
                for name, value in batch.losses.items():
                    if name in batch.predictions:
                        self._metrics[mode][f"{name}_loss"].append(float(value.detach()))
                if mode == "eval":
                    for name, pair in batch.predictions.items():
                        self._head_eval.setdefault(name, []).append(pair)
            if safety:
                # the micro-step count of the whole run (resumes included) picks the safety batch
                micro = self.state.global_step * self.args.gradient_accumulation_steps + self._safety_step
                kl = self.safety.kl(model, micro)
                self._safety_step = (self._safety_step + 1) % self.args.gradient_accumulation_steps
                extra = extra + self.safety_weight * kl
                self._metrics[mode]["safety_kl"].append(float(kl.detach()))
            # like TRL's MoE aux loss: a per-micro-batch mean, averaged over the accumulation steps
            steps = self.current_gradient_accumulation_steps if num_items_in_batch is not None else 1
            loss = lm_loss + extra / steps
            self._metrics[mode]["lm_loss"].append(float(lm_loss.detach()))
            return (loss, result[1]) if return_outputs else loss

        def log(self, logs, start_time=None):
            if self._head_eval and any(key.startswith("eval_") for key in logs):
                from finetune.heads import head_metrics

                for spec in self.head_specs:
                    pairs = self._head_eval.get(spec.name)
                    if pairs:
                        scores = torch.cat([p[0] for p in pairs])
                        gold = torch.cat([p[1] for p in pairs])
                        for key, value in head_metrics(spec, scores, gold).items():
                            logs[f"eval_{spec.name}_{key}"] = value
                self._head_eval.clear()
            super().log(logs, start_time)

        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            with _same_trainable_dtypes(model or self.model):
                super()._load_from_checkpoint(resume_from_checkpoint, model)

        def _load_best_model(self):
            with _same_trainable_dtypes(self.model):
                super()._load_best_model()

        def training_step(self, model, inputs, num_items_in_batch=None):
            labels = inputs.get("labels")
            if labels is not None and self.token_counter is not None:
                self.token_counter.trained_tokens += int((labels[..., 1:] != -100).sum())
            with _lm_head_on_loss_tokens_only():
                return super().training_step(model, inputs, num_items_in_batch)

        def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
            with _lm_head_on_loss_tokens_only():
                return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)

    return _Trainer


@contextlib.contextmanager
def _lm_head_on_loss_tokens_only() -> Iterator[None]:
    """TRL's fused LM head projects only the positions whose label carries loss, on every device.

    TRL does so on Triton devices (CUDA, XPU) and projects every position elsewhere, to keep tile shapes fixed for
    devices that recompile on a shape change (Neuron); on CPU, where nothing recompiles, the 151,936-wide projection of
    the prompt and user tokens (~57 % of ESConv's tokens) and its torch fallback were most of a training step. The
    loss is the same sum over the same tokens. A TRL without the switch (``trl.trainer.utils._use_triton``, read only
    to choose this) is left as it is.
    """
    import trl.trainer.utils as trl_utils

    use_triton = getattr(trl_utils, "_use_triton", None)
    if use_triton is None:
        yield
        return
    trl_utils._use_triton = lambda device: device.type == "cpu" or use_triton(device)
    try:
        yield
    finally:
        trl_utils._use_triton = use_triton


@contextlib.contextmanager
def _same_trainable_dtypes(model: Any) -> Iterator[None]:
    before = {name: p.dtype for name, p in model.named_parameters() if p.requires_grad}
    yield
    for name, p in model.named_parameters():
        if name in before and p.dtype != before[name]:
            p.data = p.data.to(before[name])


class _HeadCollator:
    """TRL's collator, plus the per-token head columns laid out exactly as it lays out ``input_ids``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        from finetune.heads import COLUMNS, EMOTION_COLUMN, NO_EMOTION, NO_STRATEGY

        out = self.inner([{k: v for k, v in ex.items() if k not in COLUMNS} for ex in examples])
        if not examples or COLUMNS[0] not in examples[0]:
            return out
        width = out["input_ids"].shape[1]
        for column in COLUMNS:
            fill = NO_EMOTION if column == EMOTION_COLUMN else NO_STRATEGY
            rows = [list(ex[column]) for ex in examples]
            if getattr(self.inner, "padding_free", False):
                rows = [[value for row in rows for value in row]]
            out[column] = torch.tensor([row + [fill] * (width - len(row)) for row in rows], dtype=torch.long)
        return out


def build_trainer(
    model: Any,
    tokenizer: Any,
    data: TrainingData,
    *,
    config: FinetuneConfig,
    output_dir: str | Path,
    precision: str,
    device: Device,
    use_eval: bool,
    callbacks: Sequence[TrainerCallback] = (),
) -> Any:
    """The TRL trainer our runs use, ready to ``train()`` (tests use it to check packing)."""
    from peft import LoraConfig
    from transformers import EarlyStoppingCallback

    from finetune.heads import MODULE, attach, specs_from_config

    specs = specs_from_config(config)
    if specs and not hasattr(model, MODULE):
        attach(model, specs)
    targets = config.lora_target_modules
    peft_config = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules="all-linear" if targets == ["all-linear"] else list(targets),
        bias="none",
        task_type="CAUSAL_LM",
        # the heads train whole and are saved with the adapter; no LoRA inside them
        modules_to_save=[MODULE] if specs else None,
        exclude_modules=rf".*\.{MODULE}\..*" if specs else None,
    )
    extra = []
    if use_eval and config.early_stopping_patience > 0:
        extra.append(
            EarlyStoppingCallback(
                early_stopping_patience=config.early_stopping_patience,
                early_stopping_threshold=config.early_stopping_threshold,
            )
        )
    columns = ["messages", "heads"] if specs else ["messages"]
    safety = None
    if config.safety_kl_weight > 0:
        from finetune.safety_kl import SafetyKL, load_items

        _, items = load_items(config.safety_kl_prompts)
        safety = SafetyKL(tokenizer, items, batch_size=config.safety_kl_batch, max_length=config.max_length)
    trainer = _trainer_class()(
        model=model,
        head_specs=specs,
        safety=safety,
        safety_weight=config.safety_kl_weight,
        args=sft_config(config, output_dir=output_dir, precision=precision, device=device, use_eval=use_eval),
        train_dataset=data.train.select_columns(columns),
        eval_dataset=data.eval.select_columns(columns) if use_eval and data.eval is not None else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[*extra, *callbacks],
    )
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # RunLog prints (and writes) the log lines
    for callback in callbacks:
        if isinstance(callback, RunLog):
            trainer.token_counter = callback
    return trainer


# ---- the log and the progress line -----------------------------------------------------------------


class RunLog(TrainerCallback):
    """Writes ``metrics.jsonl`` and the progress display; counts trained tokens (fed by the trainer)."""

    def __init__(self, run: RunFolder | None = None, *, say: Say = print) -> None:
        self.run = run
        self.say = say
        self.trained_tokens = 0
        self.trainer: Any = None
        self._start = time.perf_counter()
        self._start_tokens = 0
        self._window = (time.perf_counter(), 0, 0.0)
        self._bar: Any = None
        self._task: Any = None
        self._last_loss: float | None = None

    # trained tokens per second of training (evaluation time left out); a resumed run starts its clock again
    def overall_rate(self) -> float | None:
        elapsed = time.perf_counter() - self._start - self._eval_seconds
        done = self.trained_tokens - self._start_tokens
        return done / elapsed if elapsed > 0 and done > 0 else None

    _eval_seconds = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()
        self._start_tokens = self.trained_tokens
        self._eval_seconds = 0.0
        self._window = (self._start, self.trained_tokens, 0.0)
        self._open_bar(state)

    def on_step_end(self, args, state, control, **kwargs):
        if self._bar is not None:
            self._bar.update(self._task, completed=state.global_step, rate=self._rate_text())

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        row: dict[str, Any] = {"step": state.global_step}
        for key, value in logs.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                row[key] = value
        if "eval_runtime" in row:
            self._eval_seconds += row["eval_runtime"]
        if "loss" in row:
            t, tokens = time.perf_counter(), self.trained_tokens
            t0, tokens0, eval0 = self._window
            row["trained_tokens"] = tokens
            seconds = t - t0 - (self._eval_seconds - eval0)
            if seconds > 0 and tokens > tokens0:
                row["tokens_per_second"] = (tokens - tokens0) / seconds
            self._window = (t, tokens, self._eval_seconds)
            self._last_loss = row["loss"]
        if self.run is not None and len(row) > 1:
            self.run.append_metrics(row)
        if self._bar is None and ("loss" in row or "eval_loss" in row):
            self.say(self._plain_line(state, row))

    def on_train_end(self, args, state, control, **kwargs):
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def _rate_text(self) -> str:
        rate = self.overall_rate()
        loss = f"loss {self._last_loss:.3f}  " if self._last_loss is not None else ""
        return f"{loss}{rate:,.0f} trained tok/s" if rate else loss

    def _plain_line(self, state, row: dict[str, Any]) -> str:
        parts = [f"step {state.global_step}/{state.max_steps}"]
        for key in (
            "loss",
            "eval_loss",
            "eval_emotion_macro_f1",
            "eval_strategy_accuracy",
            "learning_rate",
            "grad_norm",
        ):
            if key in row:
                parts.append(f"{key} {row[key]:.4g}")
        if "tokens_per_second" in row:
            parts.append(f"{row['tokens_per_second']:,.0f} trained tok/s")
        elapsed = time.perf_counter() - self._start
        done = state.global_step - (self._first_step or 0)
        if done > 0 and state.max_steps > state.global_step:
            parts.append(f"ETA {_duration(elapsed / done * (state.max_steps - state.global_step))}")
        return "  ".join(parts)

    _first_step: int | None = None

    def _open_bar(self, state) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._first_step = state.global_step
        console = Console(stderr=True)
        if not console.is_terminal:
            return
        self._bar = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps  {task.fields[rate]}"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self._task = self._bar.add_task("train", total=state.max_steps, completed=state.global_step, rate="")
        self._bar.start()


# ---- helpers ---------------------------------------------------------------------------------------


def _plan_line(trainer: Any, config: FinetuneConfig, device: Device, precision: str) -> str:
    trainable, total = trainer.model.get_nb_trainable_parameters()
    sequences = len(trainer.train_dataset)
    what = f"{sequences:,} examples"
    if config.packing:
        what = f"{sequences:,} packed sequences of <= {config.max_length} tokens"
    quant = "4-bit NF4" if config.load_in_4bit else "unquantised"
    return (
        f"training on {device.name} ({precision}, {quant} base): {what}, batch {config.per_device_train_batch_size} x "
        f"{config.gradient_accumulation_steps}, LoRA r {config.lora_r} on {', '.join(config.lora_target_modules)} "
        f"({trainable:,} trainable of {total:,} parameters)"
    )


def _save_adapter(trainer: Any, tokenizer: Any, target: Path, specs: Sequence[Any] = ()) -> None:
    tmp = target.with_name(target.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    trainer.model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    if specs:
        from finetune.heads import write_spec

        write_spec(tmp, trainer.model.get_base_model().config.hidden_size, specs)
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)


def _mark_failed(run: RunFolder, reason: str) -> None:
    with contextlib.suppress(WorkbenchError):  # a folder never written: nothing looks finished
        run.update_info(status="failed", reason=reason, failed_at=now())


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError | MemoryError) and (
        "out of memory" in text or "can't allocate memory" in text or isinstance(exc, MemoryError)
    )


def _failure_reason(exc: BaseException, config: FinetuneConfig, trainer: Any) -> str:
    step = getattr(getattr(trainer, "state", None), "global_step", 0) if trainer is not None else 0
    if isinstance(exc, KeyboardInterrupt):
        return f"interrupted at step {step}; continue with --resume"
    if _is_oom(exc):
        knobs = [
            f"per_device_train_batch_size (now {config.per_device_train_batch_size}; raise "
            "gradient_accumulation_steps to keep the effective batch)",
            f"max_length (now {config.max_length})",
        ]
        if not config.gradient_checkpointing:
            knobs.append("gradient_checkpointing = true")
        if not config.load_in_4bit:
            knobs.append("load_in_4bit = true")
        return f"out of memory at step {step}: lower " + ", or ".join(knobs)
    return f"{type(exc).__name__} at step {step}: {_first_line(exc)}"


def _quiet_library_progress() -> None:
    # datasets' and transformers' own bars ("Tokenizing...", "Loading weights") would bury the progress line
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _step_of(checkpoint: Path | None) -> int:
    return int(checkpoint.name.rsplit("-", 1)[1]) if checkpoint else 0


def _trained_tokens_at(run: RunFolder, step: int) -> int:
    rows = [r for r in run.read_metrics() if r["step"] <= step and "trained_tokens" in r]
    return int(rows[-1]["trained_tokens"]) if rows else 0


def _relative(path: str | None, root: Path) -> str | None:
    if not path:
        return None
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return path


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _code_version() -> Mapping[str, Any]:
    from curation.store import code_version

    return code_version()
