"""Classification by a run's heads (``finetune.heads``): the emotion and strategy a tuned model's heads predict.

For an adapter trained with heads (its folder holds ``heads.json``), each
classification prompt is run through the model once, with the chat template's
generation prompt appended, and the heads read the hidden state of its last
token: the token whose next-token prediction starts the reply, exactly where
they read it in training. Emotion: the labels whose probability is at least 0.5
(the most likely one when none is); strategy: the most likely class. The
outcomes are scored like generated answers (:class:`evaluate.scoring.Outcome`),
so accuracy and macro-F1 come with the same CIs; the base model has no heads, so
these metrics stand alone (no paired comparison).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evaluate.items import EvalItem
from evaluate.scoring import Outcome

EMOTION_THRESHOLD = 0.5


def has_heads(spec: Any) -> bool:
    from finetune.heads import HEADS_JSON

    return bool(getattr(spec, "adapter", None)) and (Path(spec.adapter) / HEADS_JSON).is_file()


def head_outcomes(spec: Any, items: Sequence[EvalItem], *, batch_size: int = 16) -> dict[str, Outcome]:
    """item id -> the heads' outcome, for the emotion / strategy items the adapter's heads cover."""
    import torch

    from evaluate.generate import load_local_model
    from finetune.heads import capture_hidden, heads_module, load_for_inference, read_spec
    from finetune.tokenizer import load_tokenizer

    specs = {s.name: s for s in read_spec(Path(spec.adapter))}
    chosen = [it for it in items if it.kind in specs]
    if not chosen:
        return {}
    tokenizer = load_tokenizer(spec.tokenizer or spec.base_model)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = load_for_inference(load_local_model(spec.base_model, load_in_4bit=spec.load_in_4bit), spec.adapter)
    model.eval()
    module = heads_module(model)
    device = next(model.parameters()).device
    out: dict[str, Outcome] = {}
    for start in range(0, len(chosen), batch_size):
        batch = chosen[start : start + batch_size]
        texts = [tokenizer.apply_chat_template(it.messages, tokenize=False, add_generation_prompt=True) for it in batch]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        with torch.inference_mode(), capture_hidden(model) as captured:
            model(**enc, use_cache=False)
        last = captured["hidden"][:, -1, :]  # left padding: the last position is every prompt's last token
        for kind in {it.kind for it in batch}:
            rows = [i for i, it in enumerate(batch) if it.kind == kind]
            with torch.inference_mode():
                logits = module(last[rows], kind).float()
            labels = specs[kind].labels
            for row, scores in zip(rows, logits, strict=True):
                item = batch[row]
                if specs[kind].multi_label:
                    probs = scores.sigmoid()
                    picked = [labels[i] for i in range(len(labels)) if probs[i] >= EMOTION_THRESHOLD]
                    predicted = tuple(picked or [labels[int(probs.argmax())]])
                    gold = tuple(json.loads(item.reference or "{}").get("emotions", ()))
                else:
                    predicted = (labels[int(scores.argmax())],)
                    gold = (str(item.reference),)
                out[item.id] = Outcome(valid=True, correct=set(predicted) == set(gold), predicted=predicted, gold=gold)
    return out
