"""Fine-tuning on CPU with the tiny random Qwen2 model: packing isolation, the 4-bit path, early stopping, exact resume.

Data: real ESConv conversations from examples/data (the supporter's turns are the
assistant messages), in the row shape of an export. Runs are a few optimizer
steps on sequences of <= 192 tokens, so the whole file takes well under a minute.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from datasets import Dataset  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from finetune.config import FinetuneConfig  # noqa: E402
from finetune.runs import RunFolder, summarize  # noqa: E402
from finetune.tiny import NOTICE  # noqa: E402
from finetune.train import TrainingData, build_trainer, detect_device, load_base_model, resume, train  # noqa: E402

ESCONV = Path(__file__).resolve().parents[2] / "examples" / "data" / "esconv" / "hf"


def esconv_rows(split: str, n: int, *, turns: int = 6) -> list[dict]:
    """The first ``n`` ESConv dialogues of a split as export rows (task response, alternating messages)."""
    rows = []
    with (ESCONV / f"{split}.txt").open(encoding="utf-8") as f:
        for i, line in enumerate(f):
            if len(rows) == n:
                break
            messages: list[dict] = []
            for turn in json.loads(line)["dialog"][:turns]:
                role = "user" if turn["speaker"] == "usr" else "assistant"
                if messages and messages[-1]["role"] == role:
                    messages[-1]["content"] += " " + turn["text"]
                else:
                    messages.append({"role": role, "content": turn["text"]})
            while messages and messages[0]["role"] == "assistant":
                messages.pop(0)
            while messages and messages[-1]["role"] == "user":
                messages.pop()
            if len(messages) >= 2:
                rows.append({"id": f"esconv:{split}:{i}", "task": "response", "messages": messages})
    return rows


@pytest.fixture(scope="module")
def data() -> TrainingData:
    return TrainingData(
        train=Dataset.from_list(esconv_rows("train", 16)),
        eval=Dataset.from_list(esconv_rows("valid", 4)),
        export_id="test-export",
        snapshot_id="test-snapshot",
    )


def small_config(base: Path, **changes) -> FinetuneConfig:
    values = {
        "base_model": str(base),
        "max_length": 192,
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "max_steps": 4,
        "eval_steps": 2,
        "save_steps": 2,
        "logging_steps": 1,
        "gradient_checkpointing": False,
        "learning_rate": 1e-3,
    }
    values.update(changes)
    return FinetuneConfig(**values)


def fp32_trainer(tiny_base, data, tmp_path):
    """Our trainer on the unquantised tiny model, without dropout or evaluation (deterministic forwards)."""
    from finetune.tokenizer import load_tokenizer

    config = small_config(tiny_base, load_in_4bit=False, lora_dropout=0.0)
    device = detect_device()
    model = load_base_model(tiny_base, config, device, torch.float32)
    return build_trainer(
        model,
        load_tokenizer(tiny_base),
        data,
        config=config,
        output_dir=tmp_path / "checkpoints",
        precision="fp32",
        device=device,
        use_eval=False,
    )


def test_packed_and_unpacked_logits_agree(tiny_base, data, tmp_path):
    """Under our trainer's batches (bfd packing, padding-free, sdpa, use_cache=False, no attention mask,
    position ids restarting per example) each packed example's logits equal those of the example alone."""
    trainer = fp32_trainer(tiny_base, data, tmp_path)
    assert trainer.model.config._attn_implementation == "sdpa"
    batch = next(iter(trainer.get_train_dataloader()))
    assert "attention_mask" not in batch  # padding-free: the mask would make sdpa attend across examples
    positions = batch["position_ids"][0]
    starts = [*(positions == 0).nonzero().flatten().tolist(), positions.numel()]
    assert len(starts) >= 4, "the batch should pack several examples"
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    model = trainer.model.eval()
    with torch.no_grad():
        packed = model(**inputs, use_cache=False).logits[0]  # what compute_loss runs (TRL sets use_cache=False)
        for a, b in itertools.pairwise(starts):
            alone = model(input_ids=batch["input_ids"][:, a:b], use_cache=False).logits[0]
            torch.testing.assert_close(packed[a:b], alone, rtol=1e-4, atol=1e-4)
        # the trap the settings avoid: an all-ones attention mask lets later examples see earlier ones
        leaky = model(
            input_ids=batch["input_ids"], attention_mask=torch.ones_like(batch["input_ids"]), use_cache=False
        ).logits[0]
    a, b = starts[1], starts[2]
    assert not torch.allclose(leaky[a:b], packed[a:b], atol=1e-3)


def test_the_lm_head_scores_only_loss_tokens_with_the_same_loss(tiny_base, data, tmp_path):
    """On CPU TRL's fused LM head scores every position; our trainer makes it score only the loss-carrying ones
    (as TRL does on CUDA): the same loss and gradients, for a fraction of the 151,936-wide projections."""
    import trl.trainer.utils as trl_utils

    from finetune.train import _lm_head_on_loss_tokens_only

    trainer = fp32_trainer(tiny_base, data, tmp_path)
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    assert not trl_utils._use_triton(torch.device("cpu"))  # TRL's own choice here: every position

    def loss_and_grads():
        trainer.model.zero_grad()
        loss = trainer.compute_loss(trainer.model, dict(batch))
        loss.backward()
        grads = [p.grad.clone() for p in trainer.model.parameters() if p.requires_grad]
        return loss.detach(), grads

    full, full_grads = loss_and_grads()
    with _lm_head_on_loss_tokens_only():
        assert trl_utils._use_triton(torch.device("cpu"))
        compact, compact_grads = loss_and_grads()
    assert not trl_utils._use_triton(torch.device("cpu"))  # put back
    torch.testing.assert_close(compact, full)
    for a, b in zip(compact_grads, full_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_4bit_run_trains_on_cpu_and_writes_the_run_folder(tiny_base, data, tmp_path):
    out = tmp_path / "r1"
    said: list[str] = []
    result = train(data, config=small_config(tiny_base, load_in_4bit=True), out=out, say=said.append)
    assert result.status == "finished" and result.global_step == 4
    assert any(NOTICE in line for line in said), "a tiny-model run says it only demonstrates the path"
    assert any("carry loss" in line for line in said)
    assert 0 < result.trained_token_share < 1
    # examples longer than max_length are named, not cut silently
    from finetune.tokenizer import load_tokenizer

    tok = load_tokenizer(tiny_base)
    lengths = [len(tok.apply_chat_template(list(r["messages"]), tokenize=True)["input_ids"]) for r in data.train]
    long = [n for n in lengths if n > 192]
    assert long, "the slice should hold conversations longer than max_length"
    assert (
        f"warning: {len(long)} of {len(lengths)} training examples are longer than max_length (192 tokens"
        in "".join(said)
    )
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "finished"
    assert info["export"] == "test-export" and info["snapshot"] == "test-snapshot"
    assert info["tokenizer"] and len(info["chat_template_sha256"]) == 64
    assert info["code_version"]["workbench"] and info["tiny_model"] is True
    assert info["best_checkpoint"].startswith("checkpoints/checkpoint-")
    assert (out / info["best_checkpoint"]).is_dir()
    assert (out / "config.toml").is_file() and (out / "adapter" / "adapter_config.json").is_file()
    # every logged loss is finite
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    assert all(r["tokens_per_second"] > 0 for r in rows if "loss" in r)
    assert [r["step"] for r in rows if "eval_loss" in r] == [2, 4]
    # the dashboard's reader takes the log as is
    from evaluate.results import load_training_run

    run = load_training_run(out)
    assert {"loss", "eval_loss", "learning_rate", "grad_norm", "tokens_per_second"} <= set(run.series)
    summary = summarize(out)
    assert summary.status == "finished" and summary.best_eval_loss is not None
    # the adapter reloads onto the base model
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_base)
    reloaded = PeftModel.from_pretrained(base, out / "adapter")
    assert reloaded.peft_config["default"].r == 16


def test_4bit_base_is_quantised_by_bitsandbytes(tiny_base):
    config = small_config(tiny_base, load_in_4bit=True)
    model = load_base_model(tiny_base, config, detect_device(), torch.float32)
    kinds = {type(m).__name__ for m in model.modules()}
    assert "Linear4bit" in kinds
    assert model.is_loaded_in_4bit


def test_early_stopping_stops_and_keeps_the_best_checkpoint(tiny_base, data, tmp_path):
    # a threshold no eval can beat: the second evaluation counts as "no better" and patience 1 stops the run
    # (and validation on a fixed sample of 3 of the 4 examples)
    config = small_config(
        tiny_base, max_steps=8, early_stopping_patience=1, early_stopping_threshold=100.0, max_eval_examples=3
    )
    said: list[str] = []
    result = train(data, config=config, out=tmp_path / "r", say=said.append)
    assert result.global_step == 4
    assert result.info["stopped_early"] is True
    assert result.info["examples"] == {"train": 16, "validation": 3, "validation_of": 4}
    assert any(line.startswith("validation: a fixed sample of 3 of the 4 validation examples") for line in said)
    assert len(data.eval) == 4  # the caller's data is left as it was
    # the best checkpoint is the one with the lowest validation loss, and it is kept
    evals = summarize(tmp_path / "r").evals
    assert [step for step, _ in evals] == [2, 4]
    best_step = min(evals, key=lambda se: se[1])[0]
    assert result.best_checkpoint == f"checkpoints/checkpoint-{best_step}"
    assert (tmp_path / "r" / result.best_checkpoint).is_dir()


class CrashAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise RuntimeError(f"simulated crash at step {self.step}")


def test_resume_gives_the_same_loss_curve(tiny_base, data, tmp_path):
    config = small_config(tiny_base, max_steps=6, save_steps=2, eval_steps=2)
    straight = train(data, config=config, out=tmp_path / "straight", say=lambda _: None)
    assert straight.status == "finished"

    out = tmp_path / "crashed"
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(data, config=config, out=out, say=lambda _: None, callbacks=[CrashAt(3)])
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "failed" and "simulated crash at step 3" in info["reason"]
    assert not (out / "adapter").exists()
    assert RunFolder(out).last_checkpoint().name == "checkpoint-2"

    resumed = resume(out, data=data, say=lambda _: None)
    assert resumed.status == "finished" and resumed.global_step == 6

    def curve(folder: Path, key: str) -> list[tuple[int, float]]:
        rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        return [(r["step"], r[key]) for r in rows if key in r]

    for key in ("loss", "eval_loss", "learning_rate", "grad_norm"):
        a, b = curve(tmp_path / "straight", key), curve(out, key)
        assert [s for s, _ in a] == [s for s, _ in b], key
        assert [v for _, v in b] == pytest.approx([v for _, v in a], rel=1e-6, abs=1e-7), key
    assert json.loads((out / "run.json").read_text())["attempts"] == 2
