"""The safety-KL term (seed 003): KL(base ‖ tuned) on safe replies to risky messages, beside the LM loss."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from datasets import Dataset  # noqa: E402

from curation.errors import WorkbenchError  # noqa: E402
from finetune.config import FinetuneConfig  # noqa: E402
from finetune.safety_kl import load_items  # noqa: E402
from finetune.train import TrainingData, build_trainer, detect_device, load_base_model, train  # noqa: E402


def rows() -> list[dict]:
    """Real ESConv openings as chat rows (the supporter is the assistant)."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "data" / "esconv" / "hf" / "train.txt"
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()[:8]):
        turns = json.loads(line)["dialog"]
        user = next(t["text"] for t in turns if t["speaker"] == "usr")
        reply = next(t["text"] for t in turns if t["speaker"] == "sys")
        out.append(
            {"id": f"r{i}", "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]}
        )
    return out


def config(base, **changes) -> FinetuneConfig:
    values = {
        "base_model": str(base),
        "max_length": 256,
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "max_steps": 3,
        "eval_split": "",
        "save_steps": 3,
        "logging_steps": 1,
        "gradient_checkpointing": False,
        "learning_rate": 5e-2,
        "safety_kl_weight": 0.1,
        "safety_kl_batch": 2,
        **changes,
    }
    return FinetuneConfig(**values)


def test_the_training_set_is_never_the_evaluation_suite():
    from evaluate.items import load_safety_suite

    version, items = load_items()
    assert version == "safety-kl-v1" and len(items) >= 8
    evaluation = {p for c in load_safety_suite().categories.values() for p in c.prompts}
    assert not evaluation & {it.prompt for it in items}


def test_kl_is_zero_for_the_untouched_adapter_and_grows_when_it_moves(tiny_base, tmp_path):
    from finetune.tokenizer import load_tokenizer

    cfg = config(tiny_base, load_in_4bit=False, lora_dropout=0.0)
    device = detect_device()
    model = load_base_model(tiny_base, cfg, device, torch.float32)
    data = TrainingData(train=Dataset.from_list(rows()))
    trainer = build_trainer(
        model,
        load_tokenizer(tiny_base),
        data,
        config=cfg,
        output_dir=tmp_path,
        precision="fp32",
        device=device,
        use_eval=False,
    )
    with torch.no_grad():
        assert float(trainer.safety.kl(trainer.model, 0)) == pytest.approx(0.0, abs=1e-6)  # LoRA B = 0: identity
        for name, p in trainer.model.named_parameters():
            if "lora_B" in name:
                p.add_(0.05 * torch.randn_like(p))
        moved = float(trainer.safety.kl(trainer.model, 0))
    assert moved > 1e-4
    batch = trainer.safety.batch(7)
    assert batch["input_ids"].shape[0] == 2 and bool(batch["reply"].any())
    assert not bool((batch["reply"] & (batch["attention_mask"] == 0)).any())  # reply tokens are real tokens


def test_a_run_with_safety_kl_logs_it_inside_the_loss(tiny_base, tmp_path):
    data = TrainingData(train=Dataset.from_list(rows()))
    result = train(data, config=config(tiny_base), out=tmp_path / "run", say=lambda _: None)
    logged = [json.loads(line) for line in (result.run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in logged if "loss" in r]
    assert len(steps) == 3 and steps[0]["safety_kl"] == pytest.approx(0.0, abs=1e-6)
    assert steps[-1]["safety_kl"] > 0  # the adapter moved away from the base on the safety replies
    for r in steps:
        assert r["loss"] == pytest.approx(r["lm_loss"] + 0.1 * r["safety_kl"], rel=1e-4)


def test_a_bad_prompt_file_is_one_line(tmp_path):
    bad = tmp_path / "s.toml"
    bad.write_text('[[items]]\nprompt = "x"\n')
    with pytest.raises(WorkbenchError, match=r"items\[0\] needs a non-empty 'prompt' and 'reply'"):
        load_items(str(bad))
    with pytest.raises(WorkbenchError, match="cannot read"):
        load_items(str(tmp_path / "missing.toml"))
