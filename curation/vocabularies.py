"""Label vocabularies, declared once as data (``curation/vocab/*.toml``).

A :class:`Vocabulary` is an ordered label set, optionally with numeric ids (as
the raw files write them), aliases (raw spellings that mean a label) and a map
onto another vocabulary (a source's emotions onto the canonical GoEmotions set).
Unknown labels are rejected, never passed through.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from curation.errors import UnknownLabelError, WorkbenchError

#: Vocabularies that name a label *task* in records (``labels[].task``).
TASK_VOCABULARIES = ("emotion", "act", "topic", "strategy", "problem_type")


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """An ordered set of labels with optional ids, aliases and a target mapping."""

    name: str
    labels: tuple[str, ...]
    description: str = ""
    multi_label: bool = False
    case_insensitive: bool = False
    ids: dict[int, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    mapping: dict[str, str] = field(default_factory=dict)
    approximate: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if len(set(self.labels)) != len(self.labels):
            raise WorkbenchError(f"vocabulary {self.name!r} lists a label twice")
        known = set(self.labels)
        for where, values in (("ids", self.ids.values()), ("aliases", self.aliases.values())):
            bad = [v for v in values if v not in known]
            if bad:
                raise WorkbenchError(f"vocabulary {self.name!r}: {where} point at unknown labels {bad}")
        if self.mapping and set(self.mapping) != known:
            missing = sorted(known - set(self.mapping))
            raise WorkbenchError(f"vocabulary {self.name!r}: map does not cover {missing}")
        # Lookup tables, built once; the dataclass stays frozen for its users.
        folded = {label.lower(): label for label in self.labels}
        folded.update({alias.lower(): label for alias, label in self.aliases.items()})
        object.__setattr__(self, "_index", {label: i for i, label in enumerate(self.labels)})
        object.__setattr__(self, "_folded", folded)

    def __contains__(self, label: object) -> bool:
        return label in self._index

    def __len__(self) -> int:
        return len(self.labels)

    def canonical(self, raw: str) -> str:
        """The label a raw string names (exact, alias, or case-folded); raises if none."""
        if raw in self._index:
            return raw
        if raw in self.aliases:
            return self.aliases[raw]
        if self.case_insensitive:
            folded = self._folded.get(raw.strip().lower())
            if folded is not None:
                return folded
        raise UnknownLabelError(self.name, raw, self.labels)

    def from_id(self, raw_id: int | str) -> str:
        """The label a numeric id names, as the raw files write ids."""
        try:
            key = int(raw_id)
        except (TypeError, ValueError):
            raise UnknownLabelError(self.name, raw_id, [str(i) for i in sorted(self.ids)]) from None
        if self.ids:
            if key not in self.ids:
                raise UnknownLabelError(self.name, raw_id, [str(i) for i in sorted(self.ids)])
            return self.ids[key]
        if not 0 <= key < len(self.labels):
            raise UnknownLabelError(self.name, raw_id, [str(i) for i in range(len(self.labels))])
        return self.labels[key]

    def index(self, label: str) -> int:
        """Position of a label in the declared order."""
        try:
            return self._index[label]
        except KeyError:
            raise UnknownLabelError(self.name, label, self.labels) from None

    def map(self, label: str) -> str:
        """The target-vocabulary label this (canonical) label maps to."""
        if not self.target:
            raise WorkbenchError(f"vocabulary {self.name!r} declares no target mapping")
        return self.mapping[self.canonical(label)]


@cache
def load(name: str) -> Vocabulary:
    """Load a declared vocabulary by name (``emotion``, ``strategy``, ...)."""
    resource = resources.files("curation.vocab").joinpath(f"{name}.toml")
    if not resource.is_file():
        raise WorkbenchError(f"no vocabulary named {name!r} (known: {', '.join(available())})")
    data = tomllib.loads(resource.read_text(encoding="utf-8"))
    vocab = Vocabulary(
        name=data["name"],
        labels=tuple(data["labels"]),
        description=data.get("description", ""),
        multi_label=bool(data.get("multi_label", False)),
        case_insensitive=bool(data.get("case_insensitive", False)),
        ids={int(k): v for k, v in data.get("ids", {}).items()},
        aliases=dict(data.get("aliases", {})),
        target=data.get("target"),
        mapping=dict(data.get("map", {})),
        approximate=frozenset(data.get("approximate", ())),
    )
    if vocab.name != name:
        raise WorkbenchError(f"vocabulary file {name}.toml declares name {vocab.name!r}")
    if vocab.target:
        target = load(vocab.target)
        bad = sorted({v for v in vocab.mapping.values() if v not in target})
        if bad:
            raise WorkbenchError(f"vocabulary {name!r} maps onto labels not in {vocab.target!r}: {bad}")
    return vocab


def available() -> list[str]:
    """Names of every declared vocabulary."""
    root = resources.files("curation.vocab")
    return sorted(p.name[: -len(".toml")] for p in root.iterdir() if p.name.endswith(".toml"))
