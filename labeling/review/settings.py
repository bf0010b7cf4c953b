"""What annotators see in Argilla, declared in code per task: fields, questions, metadata, guidelines, overlap.

:func:`build_settings` returns a :class:`ReviewSettings`: plain frozen dataclasses,
built offline (the argilla SDK wants a live client even to construct a field, so
the declaration stays SDK-free and :meth:`ReviewSettings.to_argilla` turns it
into ``rg.Settings`` for a connected client). :meth:`ReviewSettings.to_dict` is
the JSON form, for a manifest or a diff.

Per task (the labeling tasks of :mod:`labeling.tasks`):

``emotion``   a multi-label question over the canonical emotion vocabulary (28 labels)
``strategy``  a single-label question over ESConv's eight strategies
``empathy``   a 1-5 rating (the rubric of the ``empathy-v1`` prompt)
``traits``    six 1-10 ratings, one per trait, named ``trait_<name>`` (label task ``trait.<name>``)

Fields: the conversation as a ``ChatField`` (our speakers mapped onto the
``user`` / ``assistant`` roles), a ``TextField`` for single-text sources, the
situation as a ``context`` text, and ``instructions`` (what to label in this
record: the whole conversation, or its last message). One Argilla record is one
*unit* -- a record for record-level tasks, a turn for turn-level ones -- so a
dataset can mix both; the questions of a task that does not apply to a unit stay
optional (see ``required``).

Metadata: ``record_id``, ``turn``, ``source``, ``split``, ``snapshot`` (the
snapshot pushed: ``workbench review pull`` reads its parent from it), ``tasks``
(those that apply to the unit) and ``gold_<question>`` (Argilla allows one
suggestion per question, and that one is the machine label; gold is shown as
metadata instead).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from curation import vocabularies
from curation.errors import WorkbenchError
from labeling.tasks.base import Task, get_tasks

if TYPE_CHECKING:
    import argilla as rg

FIELD_CONVERSATION = "conversation"
FIELD_TEXT = "text"
FIELD_CONTEXT = "context"
FIELD_INSTRUCTIONS = "instructions"

#: Added (required) only when no task applies to every unit: Argilla publishes a dataset only with a
#: required question, and a task's own question cannot be required where it does not apply.
CONFIDENCE_QUESTION = "confidence"
CONFIDENCE_OPTIONS = ("sure", "unsure")

METADATA_BASE = ("record_id", "turn", "source", "split", "snapshot", "tasks")

QuestionKind = Literal["label", "multi_label", "rating"]


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: Literal["chat", "text"]
    title: str
    required: bool = False
    description: str | None = None


@dataclass(frozen=True)
class QuestionSpec:
    """One Argilla question and the label task its answers become."""

    name: str  # Argilla's question name (no dots: ``trait_formality``)
    label_task: str | None  # the label task written on pull (``trait.formality``); None: not a label
    task: str | None  # the labeling task that declares it (``traits``); None for ``confidence``
    kind: QuestionKind
    options: tuple[str, ...]  # labels, or the rating values as text
    title: str
    description: str
    required: bool = True

    @property
    def values(self) -> tuple[int, ...]:
        """The rating values (rating questions only)."""
        return tuple(int(v) for v in self.options)


@dataclass(frozen=True)
class MetadataSpec:
    name: str
    kind: Literal["terms", "integer"]
    title: str
    visible_for_annotators: bool = True


@dataclass(frozen=True)
class ReviewSettings:
    """The declaration of one review dataset; :meth:`to_argilla` for the SDK, :meth:`to_dict` for JSON."""

    tasks: tuple[str, ...]
    fields: tuple[FieldSpec, ...]
    questions: tuple[QuestionSpec, ...]
    metadata: tuple[MetadataSpec, ...]
    guidelines: str
    overlap: int = 1
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the pushed snapshot, for to_dict()
    min_suggestion_score: float = 0.5  # a machine label below this confidence is not pre-filled

    def question(self, name: str) -> QuestionSpec:
        for q in self.questions:
            if q.name == name:
                return q
        raise WorkbenchError(f"no question {name!r} in the review settings (have: {self.question_names()})")

    def question_names(self) -> list[str]:
        return [q.name for q in self.questions]

    def questions_of(self, task: str) -> list[QuestionSpec]:
        """The questions a labeling task declares (``traits`` -> six)."""
        return [q for q in self.questions if q.task == task]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_argilla(self, client: rg.Argilla) -> rg.Settings:
        """The ``rg.Settings`` of this declaration, bound to ``client`` (the SDK needs one to build settings)."""
        import argilla as rg

        fields = []
        for f in self.fields:
            if f.kind == "chat":
                fields.append(
                    rg.ChatField(f.name, title=f.title, required=f.required, description=f.description, _client=client)
                )
            else:
                fields.append(
                    rg.TextField(f.name, title=f.title, required=f.required, description=f.description, client=client)
                )
        questions = []
        for q in self.questions:
            common = {"title": q.title, "description": q.description, "required": q.required, "client": client}
            if q.kind == "multi_label":
                questions.append(rg.MultiLabelQuestion(q.name, labels=list(q.options), **common))
            elif q.kind == "label":
                questions.append(rg.LabelQuestion(q.name, labels=list(q.options), **common))
            else:
                questions.append(rg.RatingQuestion(q.name, values=list(q.values), **common))
        metadata = []
        for m in self.metadata:
            kind = rg.TermsMetadataProperty if m.kind == "terms" else rg.IntegerMetadataProperty
            metadata.append(kind(m.name, title=m.title, visible_for_annotators=m.visible_for_annotators, client=client))
        return rg.Settings(
            fields=fields,
            questions=questions,
            metadata=metadata,
            guidelines=self.guidelines,
            allow_extra_metadata=False,
            distribution=rg.TaskDistribution(min_submitted=self.overlap),
        )


# ------------------------------------------------------------------ per task


def _emotion_questions(task: Task) -> list[QuestionSpec]:
    vocab = vocabularies.load("emotion")
    return [
        QuestionSpec(
            name="emotion",
            label_task="emotion",
            task=task.name,
            kind="multi_label",
            options=vocab.labels,
            title="Which emotions does it express?",
            description="Every emotion the text expresses: usually one, at most three; 'neutral' when none applies.",
        )
    ]


def _strategy_questions(task: Task) -> list[QuestionSpec]:
    vocab = vocabularies.load("strategy")
    return [
        QuestionSpec(
            name="strategy",
            label_task="strategy",
            task=task.name,
            kind="label",
            options=vocab.labels,
            title="Which support strategy does the supporter use?",
            description="One of ESConv's eight strategies for the supporter's message.",
        )
    ]


def _empathy_questions(task: Task) -> list[QuestionSpec]:
    from labeling.tasks.empathy import SCALE

    low, high = SCALE
    return [
        QuestionSpec(
            name="empathy",
            label_task="empathy",
            task=task.name,
            kind="rating",
            options=tuple(str(v) for v in range(low, high + 1)),
            title="How empathetic is the response?",
            description=(
                "1 not empathetic (ignores or dismisses feelings), 2 weak, 3 neutral / generic, "
                "4 clearly empathetic (recognises and validates feelings), 5 highly empathetic and supportive."
            ),
        )
    ]


_TRAIT_HELP = {
    "formality": "how formal the language is",
    "persuasiveness": "how much it tries to convince",
    "enthusiasm": "how much excitement and energy it shows",
    "empathy": "how much it attends to someone's feelings",
    "filler_words": "how full of fillers it is (um, like, you know)",
    "transition_logic": "how logically one idea leads to the next",
}


def _traits_questions(task: Task) -> list[QuestionSpec]:
    from labeling.tasks.traits import SCALE, TRAITS, trait_task

    low, high = SCALE
    return [
        QuestionSpec(
            name=trait_task(trait).replace(".", "_"),
            label_task=trait_task(trait),
            task=task.name,
            kind="rating",
            options=tuple(str(v) for v in range(low, high + 1)),
            title=f"Trait: {trait.replace('_', ' ')}",
            description=f"{_TRAIT_HELP.get(trait, trait)}: {low} absent ... {high} as strong as it gets.",
        )
        for trait in TRAITS
    ]


_QUESTIONS = {
    "emotion": _emotion_questions,
    "strategy": _strategy_questions,
    "empathy": _empathy_questions,
    "traits": _traits_questions,
}

_GUIDELINES = {
    "emotion": "**emotion**: pick every emotion the text expresses (usually one, at most three); "
    "`neutral` when none applies. For a whole conversation, the emotion of the person seeking help.",
    "strategy": "**strategy**: the support strategy of the supporter's message (the last message shown).",
    "empathy": "**empathy**: rate the last message, as a response to what came before, from 1 (not empathetic) "
    "to 5 (highly empathetic and supportive).",
    "traits": "**traits**: rate each speaking trait of the text from 1 (absent) to 10 (as strong as it gets).",
}


def reviewable_tasks() -> list[str]:
    """Names of the labeling tasks that have review settings."""
    return sorted(_QUESTIONS)


def known_questions() -> dict[str, QuestionSpec]:
    """Every question any task declares, by Argilla name (what pull maps answers back with)."""
    out = {q.name: q for name in _QUESTIONS for q in _QUESTIONS[name](get_tasks([name])[0])}
    out[CONFIDENCE_QUESTION] = _confidence_question()
    return out


def _confidence_question() -> QuestionSpec:
    return QuestionSpec(
        name=CONFIDENCE_QUESTION,
        label_task=None,
        task=None,
        kind="label",
        options=CONFIDENCE_OPTIONS,
        title="How sure are you of your answers?",
        description="Answer the questions that apply to this record (see its instructions), then this one.",
        required=True,
    )


def _as_tasks(tasks: Sequence[Task | str]) -> list[Task]:
    return [t if isinstance(t, Task) else get_tasks([t])[0] for t in tasks]


def build_settings(
    tasks: Sequence[Task | str],
    *,
    overlap: int = 1,
    required: Collection[str] | None = None,
    snapshot: str | None = None,
    show_gold: bool = False,
    min_suggestion_score: float = 0.5,
) -> ReviewSettings:
    """The review settings for ``tasks`` (task objects or names).

    ``overlap``: submitted responses a record needs to be complete (Argilla's
    ``TaskDistribution(min_submitted=...)``). ``required``: the tasks whose
    questions are required -- those that apply to every unit pushed (default:
    all); when none is, a required ``confidence`` question is added so the
    dataset can be published and every record submitted. ``snapshot``: the
    pushed snapshot, named in the guidelines. ``show_gold``: whether annotators
    see the ``gold_*`` metadata (owners and admins always do; hidden by default:
    seeing gold anchors answers). ``min_suggestion_score``: a machine label is
    pre-filled only when its confidence is at least this (labels without one, and
    ratings, always are); the guidelines say so.
    """
    if not 0.0 <= min_suggestion_score <= 1.0:
        raise WorkbenchError(f"min suggestion score: expected a confidence in [0, 1], got {min_suggestion_score!r}")
    if not tasks:
        raise WorkbenchError("review settings: give at least one task")
    if not isinstance(overlap, int) or isinstance(overlap, bool) or overlap < 1:
        raise WorkbenchError(f"review overlap: expected a whole number >= 1, got {overlap!r}")
    task_objs = _as_tasks(tasks)
    names = [t.name for t in task_objs]
    unknown = [n for n in names if n not in _QUESTIONS]
    if unknown:
        raise WorkbenchError(
            f"task {unknown[0]!r} has no review settings (reviewable: {', '.join(reviewable_tasks())})"
        )
    if len(set(names)) != len(names):
        raise WorkbenchError(f"review settings: a task is listed twice in {names}")
    required_set = set(names if required is None else required)
    stray = sorted(required_set - set(names))
    if stray:
        raise WorkbenchError(f"review settings: required task {stray[0]!r} is not one of the tasks {names}")

    questions: list[QuestionSpec] = []
    for task in task_objs:
        for q in _QUESTIONS[task.name](task):
            questions.append(QuestionSpec(**{**asdict(q), "required": task.name in required_set}))
    if not any(q.required for q in questions):
        questions.append(_confidence_question())

    fields = (
        FieldSpec(FIELD_CONVERSATION, "chat", "Conversation"),
        FieldSpec(FIELD_TEXT, "text", "Text"),
        FieldSpec(FIELD_CONTEXT, "text", "Context", description="The situation the source gives, if any."),
        FieldSpec(FIELD_INSTRUCTIONS, "text", "What to label", required=True),
    )
    metadata = [
        MetadataSpec("record_id", "terms", "Record id"),
        MetadataSpec("turn", "integer", "Turn"),
        MetadataSpec("source", "terms", "Source"),
        MetadataSpec("split", "terms", "Split"),
        MetadataSpec("snapshot", "terms", "Snapshot", visible_for_annotators=False),
        MetadataSpec("tasks", "terms", "Tasks"),
    ]
    for q in questions:
        if q.label_task is not None:
            kind = "integer" if q.kind == "rating" else "terms"
            metadata.append(MetadataSpec(gold_metadata(q.name), kind, f"Gold {q.name}", show_gold))
    return ReviewSettings(
        tasks=tuple(names),
        fields=fields,
        questions=tuple(questions),
        metadata=tuple(metadata),
        guidelines=_guidelines(names, questions, snapshot=snapshot, min_score=min_suggestion_score),
        overlap=overlap,
        extra={"snapshot": snapshot} if snapshot else {},
        min_suggestion_score=min_suggestion_score,
    )


def gold_metadata(question: str) -> str:
    """The metadata property that shows a question's gold labels."""
    return f"gold_{question}"


def _guidelines(
    names: Sequence[str], questions: Sequence[QuestionSpec], *, snapshot: str | None, min_score: float = 0.5
) -> str:
    lines = [
        "# Review",
        "",
        "Each record is one thing to label: a whole text or conversation, or the **last message** of the "
        "conversation shown. Its *What to label* field says which; answer the questions it names and leave "
        "the others empty.",
        "",
        *(f"- {_GUIDELINES[n]}" for n in names),
        "",
        "Pre-filled answers are machine suggestions, shown only where the machine's confidence is at least "
        f"{min_score:g}: check them, correct them, then submit; an empty question has no confident suggestion. "
        "Discard a record you cannot judge (unreadable, off-topic).",
    ]
    if any(q.name == CONFIDENCE_QUESTION for q in questions):
        lines += ["", "Last, say how sure you are of your answers (*confidence*)."]
    if snapshot:
        lines += ["", f"Workbench snapshot: `{snapshot}`."]
    return "\n".join(lines)
