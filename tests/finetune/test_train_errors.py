"""Bad input to fine-tuning: one clear WorkbenchError each, and nothing half-written that looks finished.

Most checks run before a model loads (milliseconds); the out-of-memory case trains one step of the tiny model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curation.errors import WorkbenchError
from finetune.config import ConfigError, FinetuneConfig, load_config, parse_overrides, require_finetune_extra

ROOT = Path(__file__).resolve().parents[2]


# ---- the config ----------------------------------------------------------------------------------


def test_example_config_loads_with_the_seed_defaults():
    config = load_config(ROOT / "examples" / "qlora.toml")
    assert (config.lora_r, config.lora_alpha, config.lora_dropout) == (16, 32, 0.05)
    assert config.lora_target_modules == ["all-linear"] and config.load_in_4bit
    assert (config.bnb_4bit_quant_type, config.bnb_4bit_use_double_quant) == ("nf4", True)
    assert (config.learning_rate, config.lr_scheduler_type, config.warmup_ratio, config.max_grad_norm) == (
        2e-4,
        "cosine",
        0.1,
        1.0,
    )
    assert config.packing and config.early_stopping_patience == 3
    assert load_config(None) == config  # the example spells out the defaults


def test_config_round_trips_through_its_toml(tmp_path):
    config = load_config(None, overrides=parse_overrides(["lora_r=8", "lora_target_modules=['q_proj', 'v_proj']"]))
    assert config.lora_r == 8 and config.lora_target_modules == ["q_proj", "v_proj"]
    (tmp_path / "c.toml").write_text(config.to_toml())
    assert load_config(tmp_path / "c.toml") == config


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[lora]\nlora_rank = 8\n", r"c\.toml: \[lora\]: unknown key 'lora_rank' \(did you mean lora_r"),
        ("[training]\nlora_r = 8\n", r"lora_r belongs in \[lora\], not \[training\]"),
        ("[lora]\nlora_dropout = 1.5\n", r"c\.toml: lora_dropout: must be in \[0, 1\)"),
        ("[lora]\nlora_r = 'big'\n", r"lora_r: expected a whole number"),
        ("[eval]\neval_steps = 20\nsave_steps = 30\n", r"save_steps \(30\) must be a multiple of eval_steps \(20\)"),
        ("[model]\ntasks = ['poetry']\n", r"tasks: \['poetry'\] not among the export tasks"),
        ("[training]\nprecision = 'fp8'\n", r"precision: 'fp8' is not one of auto, bf16, fp16, fp32"),
        ("[lora\n", r"c\.toml: not valid TOML"),
    ],
)
def test_bad_config_is_one_line_naming_file_and_key(tmp_path, toml, message):
    (tmp_path / "c.toml").write_text(toml)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "c.toml")


def test_bad_override_names_it():
    with pytest.raises(ConfigError, match=r"--set 'lr=1': unknown key 'lr'"):
        parse_overrides(["lr=1"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_overrides(["max_steps"])


def test_missing_extra_names_the_install_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "trl" else real(name, *a))
    with pytest.raises(WorkbenchError, match=r"finetune extra \(trl missing\): pip install 'workbench\[finetune\]'"):
        require_finetune_extra()


# ---- the run -------------------------------------------------------------------------------------

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from datasets import Dataset  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

import finetune.train as training  # noqa: E402
from finetune.runs import RunError  # noqa: E402
from finetune.train import Device, TrainingData, train  # noqa: E402

ROWS = [
    {
        "id": f"response:esconv:train:{i}",
        "task": "response",
        "messages": [
            {"role": "user", "content": "I lost my job last week and I can't sleep."},
            {"role": "assistant", "content": f"That sounds exhausting. What has been the hardest part? ({i})"},
        ],
    }
    for i in range(6)
]


def data(rows=ROWS) -> TrainingData:
    return TrainingData(train=Dataset.from_list(rows), eval=None, export_id="e1")


def config(base: Path | str, **changes) -> FinetuneConfig:
    values = {"base_model": str(base), "max_length": 128, "max_steps": 1, "per_device_train_batch_size": 2}
    values.update(changes, gradient_accumulation_steps=1, eval_split="")
    return FinetuneConfig(**values)


def quiet(_: str) -> None:
    pass


def test_a_finished_run_folder_is_refused_and_left_alone(tiny_base, tmp_path):
    out = tmp_path / "r1"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"status": "finished"}))
    with pytest.raises(RunError, match=r"r1: holds a finished run; choose another --out"):
        train(data(), config=config(tiny_base), out=out, say=quiet)
    with pytest.raises(RunError, match="already finished"):
        train(data(), config=config(tiny_base), out=out, resume=True, say=quiet)
    assert json.loads((out / "run.json").read_text()) == {"status": "finished"}
    assert sorted(p.name for p in out.iterdir()) == ["run.json"]


def test_a_folder_with_other_files_is_refused(tiny_base, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="exists and is not an empty folder"):
        train(data(), config=config(tiny_base), out=tmp_path, say=quiet)


@pytest.mark.parametrize(
    ("base", "message"),
    [
        ("{tmp}/no-such-model", r"no such folder, and not a hub id"),
        ("{tmp}", r"the folder holds no config.json"),
        ("workbench-tests/not-cached-0.5B", r"not in the local Hugging Face cache \(nothing is downloaded"),
    ],
)
def test_a_base_model_that_is_not_there_is_one_line(tmp_path, base, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "run"
    with pytest.raises(WorkbenchError, match=message):
        train(data(), config=config(base.format(tmp=empty)), out=out, say=quiet)
    assert not out.exists()


def test_an_export_task_the_config_does_not_know_is_refused(tiny_base, tmp_path):
    rows = [*ROWS, {**ROWS[0], "id": "emotion:x", "task": "emotion"}]
    with pytest.raises(WorkbenchError, match=r"export e1 holds task\(s\) emotion that the config does not train"):
        train(data(rows), config=config(tiny_base, tasks=["response"]), out=tmp_path / "r", say=quiet)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"attn_implementation": "flash_attention_2"}, r"'flash_attention_2' needs a CUDA GPU \(none here\)"),
        ({"precision": "fp16"}, r"precision = 'fp16' needs a CUDA GPU"),
        ({"precision": "bf16"}, r"precision = 'bf16' is not supported on this CPU"),
        ({"compute_dtype": "float16"}, r"compute_dtype = 'float16' needs a CUDA GPU"),
        ({"optim": "paged_adamw_8bit"}, r"bitsandbytes GPU optimizer; use 'adamw_torch' on CPU"),
    ],
)
def test_gpu_only_options_on_a_cpu_machine(tiny_base, tmp_path, monkeypatch, changes, message):
    monkeypatch.setattr(training, "detect_device", lambda: Device("cpu", "cpu", bf16=False))
    with pytest.raises(WorkbenchError, match=message):
        train(data(), config=config(tiny_base, **changes), out=tmp_path / "r", say=quiet)
    assert not (tmp_path / "r").exists()


def test_an_example_that_trains_on_nothing_stops_before_anything_is_written(tiny_base, tmp_path):
    rows = [*ROWS, {"id": "response:bad", "task": "response", "messages": [{"role": "user", "content": "hello?"}]}]
    with pytest.raises(WorkbenchError, match="example response:bad: no token carries loss"):
        train(data(rows), config=config(tiny_base), out=tmp_path / "r", say=quiet)
    assert not (tmp_path / "r").exists()


class OutOfMemoryAtFirstStep(TrainerCallback):
    def on_step_begin(self, args, state, control, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_out_of_memory_names_the_knobs_and_marks_the_run_failed(tiny_base, tmp_path):
    out = tmp_path / "r"
    cfg = config(tiny_base, gradient_checkpointing=False)
    with pytest.raises(WorkbenchError) as caught:
        train(data(), config=cfg, out=out, say=quiet, callbacks=[OutOfMemoryAtFirstStep()])
    message = str(caught.value)
    assert message.startswith("out of memory at step 0: lower per_device_train_batch_size (now 2")
    assert "max_length (now 128)" in message and "gradient_checkpointing = true" in message
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "failed" and info["reason"] == message
    assert not (out / "adapter").exists()
