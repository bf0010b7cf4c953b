"""Which tokens carry loss, exactly as TRL's ``SFTTrainer(assistant_only_loss=True)`` decides it.

TRL renders each ``messages`` example with
``apply_chat_template(..., return_dict=True, return_assistant_tokens_mask=True)``
and trains on the tokens inside the template's ``{% generation %}`` blocks.
Stock templates have no such blocks, so when the tokenizer's template lacks
them TRL swaps in its own training copy (``trl/chat_templates/*_training.jinja``,
picked by :func:`trl.chat_template_utils.get_training_chat_template`); a
template it does not know is an error there. :func:`training_chat_template`
makes the same decision with the same functions, and :func:`assistant_masks`
tokenises with the same call, so what it returns is what TRL trains on.

For Qwen2.5 the trained span of each assistant turn is ``"\\n" + content +
"<|im_end|>" + "\\n"``: the newline after the ``assistant`` header, the words,
the end-of-turn token and the newline after it (TRL's ``qwen2_5_training.jinja``).

:func:`check_masks` is the guard run before training and by ``export show
--preview``: an example that trains on nothing, on words of a user or system
message, or leaves an assistant turn untrained is a :class:`WorkbenchError`
naming the example.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from curation.errors import WorkbenchError
from finetune.tokenizer import tokenizer_name

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

_UNSET: Any = object()


def training_chat_template(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """The chat template TRL renders with under ``assistant_only_loss=True``.

    ``None`` means the tokenizer's own template (it already has generation
    markers); otherwise TRL's training copy of it. Raises
    :class:`WorkbenchError` when the tokenizer has no template, or one without
    markers that TRL cannot patch (assistant-only loss would train on nothing).
    """
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise WorkbenchError(f"tokenizer {tokenizer_name(tokenizer)!r} has no chat template: nothing to mask")
    if has_generation_markers(template):
        return None
    try:
        return get_training_chat_template(tokenizer)
    except ValueError:
        raise WorkbenchError(
            f"tokenizer {tokenizer_name(tokenizer)!r}: its chat template has no {{% generation %}} markers and TRL "
            "has no training copy of it, so assistant-only loss would train on nothing; add "
            "{% generation %}...{% endgeneration %} around the assistant's reply and end-of-turn token"
        ) from None


def assistant_masks(
    tokenizer: PreTrainedTokenizerBase,
    messages: Sequence[Mapping[str, Any]],
    *,
    chat_template: str | None = _UNSET,
) -> tuple[list[int], list[int]]:
    """``(input_ids, mask)`` of one conversation: mask 1 where the token carries loss under TRL.

    ``chat_template`` defaults to :func:`training_chat_template` (pass its
    result when calling this in a loop).
    """
    if chat_template is _UNSET:
        chat_template = training_chat_template(tokenizer)
    out = tokenizer.apply_chat_template(
        _plain_messages(messages),
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
        chat_template=chat_template,
    )
    return list(out["input_ids"]), [int(m) for m in out["assistant_masks"]]


def trained_spans(
    tokenizer: PreTrainedTokenizerBase,
    messages: Sequence[Mapping[str, Any]],
    *,
    chat_template: str | None = _UNSET,
) -> list[tuple[str, bool]]:
    """The rendered conversation as ``(text, trained)`` runs, in order (for previews)."""
    ids, mask = assistant_masks(tokenizer, messages, chat_template=chat_template)
    runs: list[tuple[str, bool]] = []
    start = 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or mask[i] != mask[start]:
            runs.append((tokenizer.decode(ids[start:i], skip_special_tokens=False), bool(mask[start])))
            start = i
    return runs


def check_masks(
    tokenizer: PreTrainedTokenizerBase,
    examples: Iterable[Mapping[str, Any]],
    *,
    chat_template: str | None = _UNSET,
    progress: Callable[[int], None] | None = None,
    lengths: list[int] | None = None,
) -> float:
    """Check every example's loss mask; return the share of tokens that carry loss.

    ``lengths``, when given, receives each example's length in tokens.

    ``examples`` are rows with ``messages`` (and ``id``, used in errors; else
    their position). Raises :class:`WorkbenchError` naming the example when it
    trains on no token, when a trained token lies on the words of a user or
    system message, or when an assistant message carries no loss (a template
    that drops or misattributes earlier turns).
    """
    if chat_template is _UNSET:
        chat_template = training_chat_template(tokenizer)
    trained = total = 0
    for position, example in enumerate(examples):
        example_id = str(example.get("id") or f"#{position}")
        raw = example.get("messages")
        messages = _plain_messages(raw if raw is not None else [])
        if not messages:
            raise WorkbenchError(f"example {example_id}: no messages")
        ids, mask, offsets, rendered = _mask_with_offsets(tokenizer, messages, chat_template, example_id)
        n_trained = sum(mask)
        if n_trained == 0:
            raise WorkbenchError(
                f"example {example_id}: no token carries loss (the chat template marks no assistant tokens; "
                "is there an assistant message?)"
            )
        _check_spans(messages, mask, offsets, rendered, example_id)
        trained += n_trained
        total += len(ids)
        if lengths is not None:
            lengths.append(len(ids))
        if progress is not None:
            progress(1)
    if total == 0:
        raise WorkbenchError("no examples to check")
    return trained / total


def _mask_with_offsets(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]], chat_template: str | None, example_id: str
) -> tuple[list[int], list[int], list[tuple[int, int]], str]:
    ids, mask = assistant_masks(tokenizer, messages, chat_template=chat_template)
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, chat_template=chat_template)
    encoded = tokenizer(rendered, add_special_tokens=False, return_offsets_mapping=True)
    if list(encoded["input_ids"]) != ids:  # apply_chat_template tokenises the rendered text the same way
        raise WorkbenchError(f"example {example_id}: the rendered chat does not re-tokenise to the same ids")
    return ids, mask, [tuple(o) for o in encoded["offset_mapping"]], rendered


def _check_spans(
    messages: list[dict[str, str]],
    mask: list[int],
    offsets: list[tuple[int, int]],
    rendered: str,
    example_id: str,
) -> None:
    # Each message's words are found in order in the rendered text (templates copy content verbatim, some
    # trimmed); a message that cannot be found is left unchecked rather than guessed.
    cursor = 0
    for index, message in enumerate(messages):
        words = message["content"].strip()
        if not words:
            continue
        start = rendered.find(words, cursor)
        if start < 0:
            continue
        end = start + len(words)
        cursor = end
        hit = [i for i, (a, b) in enumerate(offsets) if a < end and b > start and mask[i]]
        if message["role"] == "assistant":
            if not hit:
                raise WorkbenchError(
                    f"example {example_id}: assistant message {index} carries no loss (the chat template leaves it "
                    "out of the generation blocks)"
                )
        elif hit:
            shown = rendered[offsets[hit[0]][0] : offsets[hit[-1]][1]]
            raise WorkbenchError(
                f"example {example_id}: {len(hit)} trained token(s) on the words of {message['role']} message "
                f"{index} ({_clip(shown)!r}): the model would learn to write the {message['role']}'s text"
            )


def _plain_messages(messages: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    # rows read back from Parquet may hold numpy arrays of dicts; the template wants plain ones
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]


def _clip(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."
