"""The safety-KL term (seed report 003): keep the adapter's answers to risky messages close to the base model's.

Loss = LM (+ heads) + ``safety_kl_weight`` · KL(base ‖ tuned), where the KL is taken,
token by token, on the safe replies of a versioned prompt set
(``finetune/safety/safety-kl-v1.toml``, or a TOML file of ``[[items]]`` with
``prompt`` and ``reply``), teacher-forced: for every reply token, the base model's
next-token distribution (the same model with the adapter switched off, no
gradient) against the tuned one's, summed over the vocabulary and averaged over
the reply tokens. Each optimizer micro-step takes the next ``safety_kl_batch``
items in a fixed order (cycling), so a resumed run sees the same batches.

The batches are padded (with an attention mask), never packed: this forward is
separate from the packed LM batch. At the start of training the adapter is the
identity (LoRA's B is zero) and the KL is exactly zero; it grows only as the
adapter moves the model on these replies.

The training set must never hold the evaluation suite's prompts
(``evaluate/suites/safety-v*.toml``); a test checks it.
"""

from __future__ import annotations

import contextlib
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from curation.errors import WorkbenchError

DEFAULT_SET = "safety-kl-v1"


@dataclass(frozen=True)
class SafetyItem:
    prompt: str
    reply: str


def load_items(source: str = "") -> tuple[str, list[SafetyItem]]:
    """(the set's version, its items): the bundled set for ``""``, else a TOML file of ``[[items]]``."""
    if source in ("", DEFAULT_SET):
        resource = resources.files("finetune.safety").joinpath(f"{DEFAULT_SET}.toml")
        text, where = resource.read_text(encoding="utf-8"), f"finetune/safety/{DEFAULT_SET}.toml"
    else:
        path = Path(source)
        try:
            text, where = path.read_text(encoding="utf-8"), str(path)
        except OSError as exc:
            raise WorkbenchError(f"safety_kl_prompts: cannot read {path} ({exc.strerror or exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise WorkbenchError(f"{where}: not valid TOML: {exc}") from None
    items = []
    for i, raw in enumerate(data.get("items") or []):
        prompt, reply = (raw or {}).get("prompt"), (raw or {}).get("reply")
        if not isinstance(prompt, str) or not prompt.strip() or not isinstance(reply, str) or not reply.strip():
            raise WorkbenchError(f"{where}: items[{i}] needs a non-empty 'prompt' and 'reply'")
        items.append(SafetyItem(prompt.strip(), reply.strip()))
    if not items:
        raise WorkbenchError(f"{where}: no [[items]] (each a risky 'prompt' and a safe 'reply')")
    return str(data.get("version") or Path(where).stem), items


class SafetyKL:
    """Batches of the safety set, tokenised once, and the KL of the tuned model to the base on their replies."""

    def __init__(self, tokenizer: Any, items: list[SafetyItem], *, batch_size: int, max_length: int) -> None:
        import torch

        self.batch_size = batch_size
        self.rows: list[tuple[list[int], list[int]]] = []  # (input ids, reply mask)
        for item in items:
            prompt = [{"role": "user", "content": item.prompt}]
            full = [*prompt, {"role": "assistant", "content": item.reply}]
            head = tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True)
            ids = tokenizer.apply_chat_template(full, tokenize=True)
            head = list(head["input_ids"] if isinstance(head, dict) or hasattr(head, "keys") else head)
            ids = list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
            if ids[: len(head)] != head:
                raise WorkbenchError("safety KL: the chat template renders the prompt differently with a reply")
            ids = ids[:max_length]
            mask = [0] * min(len(head), len(ids)) + [1] * max(0, len(ids) - len(head))
            if sum(mask) < 2:
                raise WorkbenchError(f"safety KL: max_length {max_length} leaves no reply token of {item.prompt!r:.40}")
            self.rows.append((ids, mask))
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._torch = torch

    def batch(self, step: int) -> dict[str, Any]:
        """The micro-step's batch: items ``step * batch_size ...`` cycling through the set, right-padded."""
        torch = self._torch
        n = len(self.rows)
        picked = [self.rows[(step * self.batch_size + k) % n] for k in range(self.batch_size)]
        width = max(len(ids) for ids, _ in picked)
        input_ids = torch.full((len(picked), width), self.pad, dtype=torch.long)
        attention = torch.zeros((len(picked), width), dtype=torch.long)
        reply = torch.zeros((len(picked), width), dtype=torch.bool)
        for r, (ids, mask) in enumerate(picked):
            input_ids[r, : len(ids)] = torch.tensor(ids)
            attention[r, : len(ids)] = 1
            reply[r, : len(ids)] = torch.tensor(mask, dtype=torch.bool)
        return {"input_ids": input_ids, "attention_mask": attention, "reply": reply}

    def kl(self, model: Any, step: int) -> Any:
        """Mean over reply tokens of KL(base ‖ tuned) of the next-token distributions (grad through tuned only)."""
        torch = self._torch
        batch = self.batch(step)
        device = next(p.device for p in model.parameters())
        inputs = {k: batch[k].to(device) for k in ("input_ids", "attention_mask")}
        # the distribution at position t predicts token t+1: score the positions before each reply token
        predicts = batch["reply"][:, 1:].to(device)
        with torch.no_grad(), _adapter_off(model):
            base = model(**inputs, use_cache=False).logits[:, :-1][predicts].float().log_softmax(-1)
        tuned = model(**inputs, use_cache=False).logits[:, :-1][predicts].float().log_softmax(-1)
        return torch.nn.functional.kl_div(tuned, base, log_target=True, reduction="batchmean")


@contextlib.contextmanager
def _adapter_off(model: Any):
    disable = getattr(model, "disable_adapter", None)
    if disable is None:
        raise WorkbenchError("safety KL needs a peft model (the base is the model with its adapter switched off)")
    with disable():
        yield
