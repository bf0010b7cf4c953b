"""Optional classification heads trained beside the LM loss (seed report 003's multi-task design).

Two heads read the base model's last hidden state: ``emotion`` (GoEmotions'
28 labels, multi-label, binary cross-entropy) and ``strategy`` (ESConv's 8,
cross-entropy). The loss is ``LM + λ_emo · L_emo + λ_strat · L_strat`` with the
weights from the config (``emotion_head_weight``, ``strategy_head_weight``; 0
switches a head off). Each head is seed 003's small MLP: ``Linear(hidden, h) →
ReLU → Dropout(0.1) → Linear(h, labels)``.

**Where a head looks.** An export row carries one head entry per assistant
message (``finetune.export``: the emotion of what the message answers, the
strategy it uses). The head reads the hidden state of the last token before the
message's first trained token, that is, the token whose next-token prediction
starts the reply. Under causal attention it has seen the whole context and none
of the reply, so the head cannot read its answer off the target (the emotion
task's JSON, the strategy task's ``[tag]``).

**How labels travel through TRL.** Head labels become two per-token columns,
``head_emotion`` (a 28-bit mask of the emotions, ``-1`` elsewhere) and
``head_strategy`` (the class index, ``-100`` elsewhere), set at those positions
only. Per-token columns pack with TRL's own ``pack_dataset`` exactly like
``input_ids`` and are flattened by the collator the same way, so packed and
padding-free batches keep every label at its token.

**Saved with the adapter.** The heads are a submodule (:data:`MODULE`) of the
base model named in peft's ``modules_to_save``: the adapter file holds their
trained weights, and :func:`load_for_inference` rebuilds the module from
``heads.json`` (written beside the adapter) before peft loads them, so nothing
is re-initialised.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from curation.errors import WorkbenchError

MODULE = "workbench_heads"
HEADS_JSON = "heads.json"
EMOTION_COLUMN = "head_emotion"
STRATEGY_COLUMN = "head_strategy"
COLUMNS = (EMOTION_COLUMN, STRATEGY_COLUMN)
NO_EMOTION = -1
NO_STRATEGY = -100
POOLING = "hidden state of the last token before each assistant message's first trained token"


@dataclass(frozen=True)
class HeadSpec:
    """One head: its labels, whether several can hold at once, its hidden width and its loss weight."""

    name: str
    labels: tuple[str, ...]
    multi_label: bool
    hidden: int
    weight: float
    dropout: float = 0.1

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": list(self.labels),
            "multi_label": self.multi_label,
            "hidden": self.hidden,
            "weight": self.weight,
            "dropout": self.dropout,
        }


def specs_from_config(config: Any) -> list[HeadSpec]:
    """The heads a :class:`~finetune.config.FinetuneConfig` switches on (weight > 0), in a fixed order."""
    from curation import vocabularies

    specs = []
    if config.emotion_head_weight > 0:
        labels = vocabularies.load("emotion").labels
        specs.append(HeadSpec("emotion", labels, True, config.emotion_head_hidden, config.emotion_head_weight))
    if config.strategy_head_weight > 0:
        labels = vocabularies.load("strategy").labels
        specs.append(HeadSpec("strategy", labels, False, config.strategy_head_hidden, config.strategy_head_weight))
    if any(s.multi_label and len(s.labels) > 62 for s in specs):
        raise WorkbenchError("a multi-label head holds at most 62 labels (they travel as a 64-bit mask)")
    return specs


class TaskHeads(nn.Module):
    """The heads as one module (so peft's ``modules_to_save`` saves and reloads them together)."""

    def __init__(self, hidden_size: int, specs: Sequence[HeadSpec]) -> None:
        super().__init__()
        self.specs = {s.name: s for s in specs}
        self.heads = nn.ModuleDict(
            {
                s.name: nn.Sequential(
                    nn.Linear(hidden_size, s.hidden),
                    nn.ReLU(),
                    nn.Dropout(s.dropout),
                    nn.Linear(s.hidden, len(s.labels)),
                )
                for s in specs
            }
        )

    def forward(self, pooled: torch.Tensor, name: str) -> torch.Tensor:
        head = self.heads[name]
        return head(pooled.to(head[0].weight.dtype))


def attach(model: Any, specs: Sequence[HeadSpec]) -> TaskHeads:
    """Give ``model`` (a transformers causal LM, before peft wraps it) the heads as submodule :data:`MODULE`."""
    heads = TaskHeads(model.config.hidden_size, specs)
    device = next(p.device for p in model.parameters())
    heads.to(device=device, dtype=torch.float32)
    setattr(model, MODULE, heads)
    return heads


def heads_module(model: Any) -> nn.Module:
    """The heads of a (peft-wrapped) model; under peft, the wrapper that runs the active adapter's copy."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base, MODULE)


def write_spec(folder: Path, hidden_size: int, specs: Sequence[HeadSpec]) -> None:
    payload = {
        "module": MODULE,
        "hidden_size": hidden_size,
        "pooling": POOLING,
        "heads": {s.name: s.to_dict() for s in specs},
    }
    (folder / HEADS_JSON).write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")


def read_spec(folder: Path) -> list[HeadSpec]:
    """The heads an adapter folder was trained with (none when it has no ``heads.json``)."""
    path = Path(folder) / HEADS_JSON
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [
            HeadSpec(
                name,
                tuple(h["labels"]),
                bool(h["multi_label"]),
                int(h["hidden"]),
                float(h["weight"]),
                float(h.get("dropout", 0.1)),
            )
            for name, h in data["heads"].items()
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise WorkbenchError(f"{path}: not a heads description ({exc})") from None


def load_for_inference(model: Any, adapter: str | Path, *, is_trainable: bool = False) -> Any:
    """``PeftModel.from_pretrained`` on ``model`` with the heads rebuilt first, so their weights load, not re-init."""
    from peft import PeftModel

    specs = read_spec(Path(adapter))
    if specs:
        attach(model, specs)
    return PeftModel.from_pretrained(model, str(adapter), is_trainable=is_trainable)


# ---- labels: rows -> per-token columns ---------------------------------------------------------------


def message_starts(labels: Sequence[int]) -> list[int]:
    """The positions where a run of trained tokens begins (one per assistant message)."""
    return [i for i, v in enumerate(labels) if v != -100 and (i == 0 or labels[i - 1] == -100)]


def token_columns(
    labels: Sequence[int], heads: Sequence[Mapping[str, Any]] | None, specs: Sequence[HeadSpec]
) -> dict[str, list[int]]:
    """``head_emotion`` / ``head_strategy`` for one tokenised example (see the module docstring).

    ``labels`` are TRL's (``-100`` off the assistant tokens, unshifted). A message whose first
    trained token is the sequence's first has no context to read and gets no label.
    """
    n = len(labels)
    emotion = [NO_EMOTION] * n
    strategy = [NO_STRATEGY] * n
    by_name = {s.name: s for s in specs}
    index = {name: {label: i for i, label in enumerate(s.labels)} for name, s in by_name.items()}
    for start, head in zip(message_starts(labels), heads or (), strict=False):
        at = start - 1
        if at < 0:
            continue
        if "emotion" in by_name and head.get("emotions"):
            mask = 0
            for value in head["emotions"]:
                if value in index["emotion"]:
                    mask |= 1 << index["emotion"][value]
            if mask:
                emotion[at] = mask
        if "strategy" in by_name and head.get("strategy") in index.get("strategy", {}):
            strategy[at] = index["strategy"][head["strategy"]]
    return {EMOTION_COLUMN: emotion, STRATEGY_COLUMN: strategy}


def count_labels(rows: Any, specs: Sequence[HeadSpec]) -> dict[str, int]:
    """How many assistant messages of ``rows`` (dicts with ``heads``) give each head a label."""
    counts = dict.fromkeys((s.name for s in specs), 0)
    for row in rows:
        for head in row.get("heads") or ():
            if "emotion" in counts and head.get("emotions"):
                counts["emotion"] += 1
            if "strategy" in counts and head.get("strategy"):
                counts["strategy"] += 1
    return counts


# ---- the loss and the metrics -------------------------------------------------------------------------


@contextlib.contextmanager
def capture_hidden(model: Any) -> Iterator[dict[str, torch.Tensor]]:
    """The decoder's last hidden state of the forward passes run inside the block (``captured["hidden"]``)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder()
    captured: dict[str, torch.Tensor] = {}

    def hook(_module: Any, _args: Any, output: Any) -> None:
        captured["hidden"] = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]

    handle = decoder.register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


@dataclass
class HeadBatch:
    """One batch's head outputs: the loss of each head and, for metrics, predictions beside gold."""

    losses: dict[str, torch.Tensor]
    predictions: dict[str, tuple[torch.Tensor, torch.Tensor]]


def head_losses(
    model: Any, hidden: torch.Tensor, columns: Mapping[str, torch.Tensor], specs: Sequence[HeadSpec]
) -> HeadBatch:
    """Each head's loss on the positions its column labels (a zero that keeps the graph when there are none)."""
    module = heads_module(model)
    flat = hidden.reshape(-1, hidden.shape[-1])
    losses: dict[str, torch.Tensor] = {}
    predictions: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for spec in specs:
        column = columns[EMOTION_COLUMN if spec.name == "emotion" else STRATEGY_COLUMN].reshape(-1).to(flat.device)
        where = column != (NO_EMOTION if spec.multi_label else NO_STRATEGY)
        if not bool(where.any()):
            losses[spec.name] = flat.new_zeros((), dtype=torch.float32) + 0.0 * sum(
                p.sum() for p in module.parameters() if p.requires_grad
            )
            continue
        logits = module(flat[where], spec.name).float()
        if spec.multi_label:
            bits = torch.arange(len(spec.labels), device=column.device)
            target = ((column[where].unsqueeze(1) >> bits) & 1).float()
            losses[spec.name] = nn.functional.binary_cross_entropy_with_logits(logits, target)
            predictions[spec.name] = (logits.detach().sigmoid().cpu(), target.cpu())
        else:
            target = column[where].long()
            losses[spec.name] = nn.functional.cross_entropy(logits, target)
            predictions[spec.name] = (logits.detach().softmax(-1).cpu(), target.cpu())
    return HeadBatch(losses, predictions)


def head_metrics(spec: HeadSpec, scores: torch.Tensor, gold: torch.Tensor) -> dict[str, float]:
    """Validation metrics of one head, with the n they were computed on.

    Multi-label (emotion): ``micro_f1`` and ``macro_f1`` at threshold 0.5 (macro over the labels
    present in the gold, so absent labels neither help nor hurt), and ``top1_accuracy`` (the most
    likely label is one of the gold ones: seed 003's single-label accuracy). Single-label
    (strategy): ``accuracy`` and ``macro_f1`` over the classes present in the gold.
    """
    n = int(gold.shape[0])
    out: dict[str, float] = {"n": float(n)}
    if n == 0:
        return out
    if spec.multi_label:
        predicted = scores >= 0.5
        truth = gold.bool()
        tp = (predicted & truth).sum(0).float()
        fp = (predicted & ~truth).sum(0).float()
        fn = (~predicted & truth).sum(0).float()
        present = truth.any(0)
        f1 = _f1(tp, fp, fn)
        out["micro_f1"] = float(_f1(tp.sum(), fp.sum(), fn.sum()))
        out["macro_f1"] = float(f1[present].mean()) if bool(present.any()) else 0.0
        top = scores.argmax(1)
        out["top1_accuracy"] = float(truth[torch.arange(n), top].float().mean())
    else:
        predicted = scores.argmax(1)
        out["accuracy"] = float((predicted == gold).float().mean())
        k = len(spec.labels)
        tp = torch.zeros(k)
        fp = torch.zeros(k)
        fn = torch.zeros(k)
        for p, g in zip(predicted.tolist(), gold.tolist(), strict=True):
            if p == g:
                tp[g] += 1
            else:
                fp[p] += 1
                fn[g] += 1
        present = torch.zeros(k, dtype=torch.bool)
        present[gold.long().unique()] = True
        out["macro_f1"] = float(_f1(tp, fp, fn)[present].mean())
    return out


def _f1(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    denominator = 2 * tp + fp + fn
    return torch.where(denominator > 0, 2 * tp / denominator.clamp(min=1), torch.zeros_like(denominator))
