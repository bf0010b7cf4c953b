"""Label balance: distributions per task / label source / record source / split, with imbalance ratios.

Read from manifests only (``label_distribution_by_source``), so it is instant on
any snapshot size. :func:`balance_rows` is what ``workbench report`` prints and
what augmentation reads to decide which classes to fill.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from curation import vocabularies


@dataclass(frozen=True)
class BalanceRow:
    task: str
    label_source: str
    source: str
    split: str
    total: int
    distinct: int
    vocabulary_size: int | None  # None for tasks without a declared vocabulary
    majority: tuple[str, int]
    minority: tuple[str, int]
    missing: tuple[str, ...]  # vocabulary labels with no example here

    @property
    def imbalance(self) -> float:
        """Majority count / minority count among the labels present (1.0 = balanced)."""
        return self.majority[1] / self.minority[1] if self.minority[1] else float("inf")


def distributions(manifests: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str, str, str], Counter[str]]:
    """(task, label source, source, split) -> value counts, summed over the given manifests."""
    out: dict[tuple[str, str, str, str], Counter[str]] = {}
    for m in manifests:
        for task, by_src in m.get("label_distribution_by_source", {}).items():
            for label_source, by_source in by_src.items():
                for source, by_split in by_source.items():
                    for split, counts in by_split.items():
                        out.setdefault((task, label_source, source, split), Counter()).update(counts)
    return out


def balance_rows(manifests: Iterable[Mapping[str, Any]]) -> list[BalanceRow]:
    """One row per (task, label source, source, split), sorted."""
    rows = []
    for (task, label_source, source, split), counts in sorted(distributions(manifests).items()):
        ranked = counts.most_common()
        vocab = vocabularies.load(task) if task in vocabularies.TASK_VOCABULARIES else None
        missing = tuple(lab for lab in vocab.labels if lab not in counts) if vocab else ()
        rows.append(
            BalanceRow(
                task=task,
                label_source=label_source,
                source=source,
                split=split,
                total=sum(counts.values()),
                distinct=len(counts),
                vocabulary_size=len(vocab) if vocab else None,
                majority=ranked[0],
                minority=ranked[-1],
                missing=missing,
            )
        )
    return rows


def compare(
    before: Iterable[Mapping[str, Any]], after: Mapping[str, Any]
) -> list[tuple[BalanceRow | None, BalanceRow | None]]:
    """Before/after pairs of balance rows (either side None where a group vanished or appeared)."""
    b = {(r.task, r.label_source, r.source, r.split): r for r in balance_rows(before)}
    a = {(r.task, r.label_source, r.source, r.split): r for r in balance_rows([after])}
    return [(b.get(k), a.get(k)) for k in sorted(set(b) | set(a))]
