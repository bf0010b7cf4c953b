"""The optional emotion and strategy heads: labels at the right tokens through packing, the loss, the metrics,
and save/reload without re-initialisation. Tiny random Qwen2 model on CPU, real ESConv conversations."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from datasets import Dataset  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from curation import vocabularies  # noqa: E402
from curation.errors import WorkbenchError  # noqa: E402
from finetune.config import FinetuneConfig  # noqa: E402
from finetune.heads import (  # noqa: E402
    EMOTION_COLUMN,
    HEADS_JSON,
    NO_EMOTION,
    NO_STRATEGY,
    STRATEGY_COLUMN,
    HeadSpec,
    head_metrics,
    heads_module,
    load_for_inference,
    message_starts,
    token_columns,
)
from finetune.train import TrainingData, build_trainer, check_heads, detect_device, load_base_model, train  # noqa: E402

ESCONV = Path(__file__).resolve().parents[2] / "examples" / "data" / "esconv" / "hf"
EMOTIONS = vocabularies.load("emotion").labels
STRATEGIES = vocabularies.load("strategy").labels


def esconv_rows(split: str, n: int, *, turns: int = 8) -> list[dict]:
    """ESConv dialogues as export rows with head labels: the seeker's emotion (mapped onto GoEmotions) and the
    strategy of each supporter message's first turn, as ``finetune.export`` writes them."""
    to_goemotions = vocabularies.load("esconv_emotion")
    strategy_names = vocabularies.load("strategy")
    rows = []
    with (ESCONV / f"{split}.txt").open(encoding="utf-8") as f:
        for i, line in enumerate(f):
            if len(rows) == n:
                break
            dialog = json.loads(line)
            emotion = to_goemotions.map(dialog["emotion_type"])
            messages: list[dict] = []
            heads: list[dict] = []
            for turn in dialog["dialog"][:turns]:
                role = "user" if turn["speaker"] == "usr" else "assistant"
                if not messages and role == "assistant":
                    continue
                if messages and messages[-1]["role"] == role:
                    messages[-1]["content"] += "\n" + turn["text"]
                    continue
                messages.append({"role": role, "content": turn["text"]})
                if role == "assistant":
                    heads.append({"emotions": [emotion], "strategy": strategy_names.canonical(turn["strategy"])})
            while messages and messages[-1]["role"] == "user":
                messages.pop()
            if len(heads) >= 1:
                rows.append({"id": f"esconv:{split}:{i}", "task": "strategy", "messages": messages, "heads": heads})
    return rows


@pytest.fixture(scope="module")
def data() -> TrainingData:
    return TrainingData(
        train=Dataset.from_list(esconv_rows("train", 16)),
        eval=Dataset.from_list(esconv_rows("valid", 6)),
        export_id="test-export",
        snapshot_id="test-snapshot",
    )


def config_for(base: Path, **changes) -> FinetuneConfig:
    values = {
        "base_model": str(base),
        "max_length": 256,
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "max_steps": 4,
        "eval_steps": 2,
        "save_steps": 2,
        "logging_steps": 1,
        "gradient_checkpointing": False,
        "learning_rate": 1e-3,
        "tokenizer": "qwen2.5",
        "emotion_head_weight": 0.2,
        "strategy_head_weight": 0.2,
        "emotion_head_hidden": 32,
        "strategy_head_hidden": 16,
        **changes,
    }
    return FinetuneConfig(**values)


def test_token_columns_put_each_label_before_its_reply():
    specs = [HeadSpec("emotion", EMOTIONS, True, 8, 0.2), HeadSpec("strategy", STRATEGIES, False, 8, 0.2)]
    labels = [-100, -100, -100, 7, 8, -100, -100, 9, -100, 4]
    heads = [
        {"emotions": ["joy", "love"], "strategy": "Question"},
        {"emotions": [], "strategy": None},
        {"emotions": ["fear"], "strategy": "Others"},
    ]
    assert message_starts(labels) == [3, 7, 9]
    columns = token_columns(labels, heads, specs)
    expected_emotion = [NO_EMOTION] * 10
    expected_emotion[2] = (1 << EMOTIONS.index("joy")) | (1 << EMOTIONS.index("love"))
    expected_emotion[8] = 1 << EMOTIONS.index("fear")
    expected_strategy = [NO_STRATEGY] * 10
    expected_strategy[2] = STRATEGIES.index("Question")
    expected_strategy[8] = STRATEGIES.index("Others")
    assert columns == {EMOTION_COLUMN: expected_emotion, STRATEGY_COLUMN: expected_strategy}
    # a head that is off places nothing
    assert set(token_columns(labels, heads, specs[1:])[EMOTION_COLUMN]) == {NO_EMOTION}


def test_head_metrics_by_hand():
    strategy = HeadSpec("strategy", ("a", "b", "c"), False, 8, 1.0)
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])
    gold = torch.tensor([0, 1, 1, 0])
    m = head_metrics(strategy, scores, gold)
    assert m["n"] == 4 and m["accuracy"] == 0.5
    # a: tp 1 fp 1 fn 1 -> 0.5; b: tp 1 fp 0 fn 1 -> 2/3; c is not in the gold and does not count
    assert m["macro_f1"] == pytest.approx((0.5 + 2 / 3) / 2)
    emotion = HeadSpec("emotion", ("x", "y", "z"), True, 8, 1.0)
    scores = torch.tensor([[0.9, 0.6, 0.1], [0.2, 0.4, 0.7]])
    gold = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    m = head_metrics(emotion, scores, gold)
    # x: tp 1 -> 1.0; y: fp 1 fn 1 -> 0.0; z is absent from the gold; micro: tp 1 fp 2 fn 1 -> 0.4
    assert m["macro_f1"] == pytest.approx(0.5) and m["micro_f1"] == pytest.approx(0.4)
    assert m["top1_accuracy"] == 0.5


def test_labels_survive_packing_at_the_token_before_each_reply(tiny_base, data, tmp_path):
    config = config_for(tiny_base)
    device = detect_device()
    model = load_base_model(tiny_base, config, device, torch.float32)
    from finetune.tokenizer import load_tokenizer

    trainer = build_trainer(
        model,
        load_tokenizer("qwen2.5"),
        data,
        config=config,
        output_dir=tmp_path / "checkpoints",
        precision="fp32",
        device=device,
        use_eval=True,
    )
    packed = trainer.train_dataset
    assert len(packed) < len(data.train)  # several conversations per packed sequence
    placed = Counter()
    for row in packed:
        labels, strategy, emotion = row["labels"], row[STRATEGY_COLUMN], row[EMOTION_COLUMN]
        starts = message_starts(labels)
        assert [i for i, v in enumerate(strategy) if v != NO_STRATEGY] == [s - 1 for s in starts]
        assert [i for i, v in enumerate(emotion) if v != NO_EMOTION] == [s - 1 for s in starts]
        placed.update(STRATEGIES[v] for v in strategy if v != NO_STRATEGY)
    expected = Counter(h["strategy"] for row in data.train for h in row["heads"])
    assert placed == expected  # every supporter message's strategy, none lost or invented
    # the collator keeps them aligned with input_ids in the padding-free batch
    batch = trainer.data_collator([packed[0], packed[1]])
    assert batch[STRATEGY_COLUMN].shape == batch["input_ids"].shape
    assert int((batch[STRATEGY_COLUMN] != NO_STRATEGY).sum()) == sum(
        len(message_starts(packed[i]["labels"])) for i in (0, 1)
    )


class _Keep(TrainerCallback):
    """The heads' outputs on fixed inputs when training ends (the model that is saved)."""

    def __init__(self) -> None:
        self.probe = torch.randn(3, 64, generator=torch.Generator().manual_seed(0))
        self.outputs: dict[str, torch.Tensor] = {}
        self.weights: dict[str, torch.Tensor] = {}

    def on_train_end(self, args, state, control, model=None, **kwargs):
        module = heads_module(model)
        module.eval()
        self.weights = {k: v.detach().clone() for k, v in module.modules_to_save["default"].state_dict().items()}
        with torch.no_grad():
            for name in ("emotion", "strategy"):
                self.outputs[name] = module(self.probe, name).clone()


def test_heads_train_log_metrics_and_reload_without_reinitialising(tiny_base, data, tmp_path):
    keep = _Keep()
    lines: list[str] = []
    result = train(data, config=config_for(tiny_base), out=tmp_path / "run", say=lines.append, callbacks=[keep])
    assert any(line.startswith("heads: emotion (28 labels, λ 0.2) on ") for line in lines)
    rows = [json.loads(line) for line in (result.run / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "loss" in r]
    for r in train_rows:  # the logged loss is the LM loss plus the weighted head losses
        assert r["loss"] == pytest.approx(r["lm_loss"] + 0.2 * r["emotion_loss"] + 0.2 * r["strategy_loss"], rel=1e-4)
    evals = [r for r in rows if "eval_loss" in r]
    assert evals and all(r["eval_strategy_n"] == r["eval_emotion_n"] > 0 for r in evals)
    expected_n = sum(len(row["heads"]) for row in data.eval)
    assert evals[-1]["eval_strategy_n"] == expected_n
    scores = ("eval_strategy_accuracy", "eval_strategy_macro_f1", "eval_emotion_macro_f1", "eval_emotion_top1_accuracy")
    for key in scores:
        assert 0.0 <= evals[-1][key] <= 1.0
    info = json.loads((result.run / "run.json").read_text())
    assert info["heads"] == {"emotion": 0.2, "strategy": 0.2}

    spec = json.loads((result.adapter / HEADS_JSON).read_text())
    assert list(spec["heads"]) == ["emotion", "strategy"] and spec["heads"]["strategy"]["labels"] == list(STRATEGIES)
    config = config_for(tiny_base)
    fresh = load_base_model(tiny_base, config, detect_device(), torch.float32)
    reloaded = load_for_inference(fresh, result.adapter)
    module = heads_module(reloaded)
    module.eval()
    loaded = module.modules_to_save["default"].state_dict()
    assert loaded.keys() == keep.weights.keys()
    for key, weight in keep.weights.items():  # trained in bfloat16 (TRL's QLoRA dtype), reloaded exactly
        assert torch.equal(loaded[key].to(weight.dtype), weight), key
    with torch.no_grad():
        for name in ("emotion", "strategy"):
            assert torch.allclose(module(keep.probe, name), keep.outputs[name].float(), atol=0.02), name
    # and a fresh (random) head would not have given them
    from finetune.heads import TaskHeads, read_spec

    torch.manual_seed(1)
    random_heads = TaskHeads(64, read_spec(result.adapter)).eval()
    with torch.no_grad():
        assert not torch.allclose(random_heads(keep.probe, "emotion"), keep.outputs["emotion"].float(), atol=0.02)


def test_heads_need_labels_to_learn_from(tiny_base, data):
    no_column = TrainingData(train=data.train.remove_columns("heads"), export_id="old")
    with pytest.raises(WorkbenchError, match=r"export old has no head labels .*export the snapshot again"):
        check_heads(no_column, config_for(tiny_base), say=lambda _: None)
    rows = [
        {**row, "heads": [{"emotions": h["emotions"], "strategy": None} for h in row["heads"]]} for row in data.train
    ]
    no_strategy = TrainingData(train=Dataset.from_list(rows), export_id="e2", tasks=("emotion",))
    with pytest.raises(WorkbenchError, match=r"strategy_head_weight = 0\.2 but no training example of export e2"):
        check_heads(no_strategy, config_for(tiny_base), say=lambda _: None)
    assert [s.name for s in check_heads(no_strategy, config_for(tiny_base, strategy_head_weight=0), say=print)] == [
        "emotion"
    ]
