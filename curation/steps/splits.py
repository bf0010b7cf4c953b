"""Split hygiene: no dialogue in two splits, and group-aware splits for sources whose split is ours to set.

* ``leak_free_splits`` (global): records whose normalised text is the same (or, with
  ``near = true``, whose MinHash says they are near-duplicates) form a group; a group
  that spans several splits is a leak. By policy the group stays in its
  highest-priority split (test > validation > train by default) and its copies
  elsewhere are dropped (``action = "drop"``, reason ``split_leak``) or relabelled
  into that split (``action = "move"``: the ``split`` field changes, the id never
  does). Real case: DailyDialog's official splits share identical dialogues
  (PROVENANCE.md: 92 texts in train and test, 68 in train and validation, 4 in
  validation and test). Artifact ``leaks``: one row per member of a leaking group.
* ``resplit`` (per record): a split from :func:`~curation.adapters.base.hash_split`
  of a group key (the document, a context field such as ED's ``prompt``, or the
  text), so that everything sharing the key lands in one split whatever order it
  comes in.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.adapters.base import hash_split
from curation.record import SPLITS, Record, text_of
from curation.steps.base import (
    ConfigError,
    Decisions,
    Dropped,
    GlobalStep,
    RecordStep,
    StepConfig,
    Verdict,
    option,
    register_step,
)
from curation.steps.dedup import (
    SpilledMatrix,
    _codes,
    _components,
    _first_of_equal,
    _fixed_width_bytes,
    lsh_clusters,
    minhash_signatures,
)

LEAK_REASON = "split_leak"

_WHITESPACE = re.compile(r"\s+")

LEAKS_SCHEMA = pa.schema(
    [
        pa.field("group_id", pa.string(), nullable=False),
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),  # the record's split before the step
        pa.field("kept_split", pa.string(), nullable=False),
        pa.field("action", pa.string(), nullable=False),  # keep | drop | move
        pa.field("kept_id", pa.string(), nullable=False),  # the group's representative in kept_split
    ]
)


def normalize_text(text: str, *, casefold: bool = True, strip_punctuation: bool = False) -> str:
    """The text two records are compared on: optionally casefolded and without punctuation, whitespace collapsed.

    Turn boundaries count as whitespace, so a dialogue split into turns
    differently is still the same text.
    """
    if casefold:
        text = text.casefold()
    if strip_punctuation:
        text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text)
    return _WHITESPACE.sub(" ", text).strip()


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def _pair(a: str, b: str) -> str:
    """``train∩test``: the two splits in their canonical order."""
    x, y = sorted((a, b), key=SPLITS.index)
    return f"{x}∩{y}"


# ------------------------------------------------------------------ leak_free_splits


@dataclass(frozen=True)
class LeakFreeSplitsConfig(StepConfig):
    scope: str = option(
        "source",
        "where a dialogue counts as a copy: 'source' compares records of the same source only, "
        "'global' across sources too",
        choices=("source", "global"),
    )
    priority: tuple[str, ...] = option(
        ("test", "validation", "train"),
        "splits from most to least protected: a leaking group stays in the first of these it occurs in",
        choices=SPLITS,
    )
    action: str = option(
        "drop",
        "what happens to the copies outside the kept split: 'drop' them (reason split_leak) or 'move' them "
        "into the kept split (their split field changes, their id does not)",
        choices=("drop", "move"),
    )
    casefold: bool = option(True, "compare texts case-insensitively")
    strip_punctuation: bool = option(False, "ignore punctuation when comparing texts")
    ignore_turn_boundaries: bool = option(
        True,
        "compare the words only, wherever the turns break (a dialogue whose utterance is split in two "
        "is still the same dialogue); false compares turn by turn",
    )
    near: bool = option(
        False,
        "also group near-duplicates (MinHash LSH of curation.steps.dedup), not only identical normalised texts",
    )
    threshold: float = option(
        0.7, "near = true: the estimated Jaccard that makes two texts one group", min=0.0, max=1.0
    )
    ngram: int = option(5, "near = true: word n-gram size of the shingles", min=1, max=64)
    num_perm: int = option(128, "near = true: MinHash values per text", min=8, max=1024)
    bands: int = option(16, "near = true: LSH bands; bands * rows must equal num_perm", min=1)
    rows: int = option(8, "near = true: MinHash values per LSH band", min=1)

    def check(self) -> None:
        super().check()
        if sorted(self.priority, key=SPLITS.index) != list(SPLITS) or len(self.priority) != len(SPLITS):
            raise ConfigError(f"'priority': expected each of {', '.join(SPLITS)} once, got {list(self.priority)!r}")
        if self.bands * self.rows != self.num_perm:
            raise ConfigError(
                f"'bands': bands * rows must equal num_perm, got {self.bands} * {self.rows} for {self.num_perm}"
            )


@register_step
class LeakFreeSplits(GlobalStep):
    name = "leak_free_splits"
    description = (
        "a dialogue and its (near-)duplicates sit in one split only: copies in a lower-priority split are "
        "dropped or moved (artifact: leaks)"
    )
    Config = LeakFreeSplitsConfig
    config: LeakFreeSplitsConfig

    signature_schema: ClassVar[pa.Schema] = pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("split", pa.string(), nullable=False),
            pa.field("key", pa.string(), nullable=False),
        ]
    )

    def __init__(self, config: LeakFreeSplitsConfig | None = None) -> None:
        super().__init__(config)
        if self.config.near:
            # The MinHash travels with the signature row; only this instance's schema has the column.
            self.signature_schema = pa.schema(
                [*type(self).signature_schema, pa.field("minhash", pa.list_(pa.uint32()))]
            )

    # ---------------------------------------------------------- signature (per record)

    def _normalized(self, record: Record) -> str:
        c = self.config
        if c.ignore_turn_boundaries:
            return normalize_text(text_of(record), casefold=c.casefold, strip_punctuation=c.strip_punctuation)
        return "\n".join(
            normalize_text(t["text"], casefold=c.casefold, strip_punctuation=c.strip_punctuation)
            for t in record["turns"]
        )

    def signature(self, record: Record) -> dict[str, Any]:
        return self.signatures_batch([record]).to_pylist()[0]

    def signatures_batch(self, records: list[Record]) -> pa.Table:
        texts = [self._normalized(r) for r in records]
        columns: dict[str, Any] = {
            "id": [r["id"] for r in records],
            "source": [r["source"] for r in records],
            "split": [r["split"] for r in records],
            "key": [_digest(t) for t in texts],
        }
        if self.config.near:
            c = self.config
            sigs = minhash_signatures(texts, num_perm=c.num_perm, ngram=c.ngram, normalize=False)
            columns["minhash"] = pa.FixedSizeListArray.from_arrays(
                pa.array(np.asarray(sigs, dtype=np.uint32).ravel()), c.num_perm
            ).cast(pa.list_(pa.uint32()))
        return pa.Table.from_pydict(columns, schema=self.signature_schema)

    # ---------------------------------------------------------- decide (once)

    def spill(self, signatures: pa.Table) -> tuple[pa.Table, np.ndarray | None]:
        if not self.config.near:
            return signatures, None
        n = signatures.num_rows
        flat = signatures.column("minhash").combine_chunks().flatten().to_numpy()
        return signatures.drop_columns(["minhash"]), flat.astype("<u4", copy=False).reshape(n, self.config.num_perm)

    def decide(self, signatures: pa.Table, *, minhash: SpilledMatrix | None = None) -> Decisions:
        groups = self._groups(signatures, minhash)
        # Only the rows of a group become Python values: memory grows with the candidates, not the data.
        rows_in = sorted({i for _, members in groups for i in members})
        take = pa.array(rows_in, type=pa.int64())
        at = {row: pos for pos, row in enumerate(rows_in)}
        ids = _Picked(signatures.column("id").take(take).to_pylist(), at)
        sources = _Picked(signatures.column("source").take(take).to_pylist(), at)
        splits = _Picked(signatures.column("split").take(take).to_pylist(), at)
        rank = {s: i for i, s in enumerate(self.config.priority)}
        detail_kind = "a near-duplicate of" if self.config.near else "identical to"
        decisions = Decisions()
        # the leaks table, column by column (a dict per member would cost ~10x the memory)
        cols: dict[str, list[Any]] = {f.name: [] for f in LEAKS_SCHEMA}
        for gid, members in groups:
            present = {splits[i] for i in members}
            if len(present) < 2:
                continue
            kept_split = min(present, key=rank.__getitem__)
            kept_id = next(ids[i] for i in members if splits[i] == kept_split)
            decisions.counters["groups"] += 1
            present_sorted = sorted(present, key=SPLITS.index)
            for a_i, a in enumerate(present_sorted):
                for b in present_sorted[a_i + 1 :]:
                    decisions.counters[_pair(a, b)] += 1
            for i in members:
                if splits[i] == kept_split:
                    action = "keep"
                else:
                    action = self.config.action
                    detail = f"{detail_kind} {kept_id} in {kept_split}"
                    decisions.verdicts[ids[i]] = (
                        Verdict(drop=LEAK_REASON, detail=detail)
                        if action == "drop"
                        else Verdict(split=kept_split, detail=detail)
                    )
                    decisions.counters[f"{action}:{splits[i]}->{kept_split}"] += 1
                for name, value in (
                    ("group_id", gid),
                    ("id", ids[i]),
                    ("source", sources[i]),
                    ("split", splits[i]),
                    ("kept_split", kept_split),
                    ("action", action),
                    ("kept_id", kept_id),
                ):
                    cols[name].append(value)
        decisions.artifacts["leaks"] = pa.Table.from_pydict(cols, schema=LEAKS_SCHEMA)
        return decisions

    def _groups(self, signatures: pa.Table, minhash: SpilledMatrix | None = None) -> list[tuple[str, list[int]]]:
        """Groups of rows (in first-seen order, members in row order) that could leak: more than one split."""
        # Arrow joins never match null keys, so "one scope for all" is the empty string.
        scope = (
            signatures.column("source")
            if self.config.scope == "source"
            else pa.repeat(pa.scalar("", pa.string()), len(signatures))
        )
        keyed = pa.table(
            {
                "scope": scope,
                "key": signatures.column("key"),
                "split": signatures.column("split"),
                "row": pa.array(np.arange(len(signatures), dtype=np.int64)),
            }
        )
        if not self.config.near:
            # Arrow finds the keys that occur in several splits; Python only walks those rows.
            spans = keyed.group_by(["scope", "key"]).aggregate([("split", "count_distinct")])
            spans = spans.filter(pc.greater(spans.column("split_count_distinct"), 1))
            cand = keyed.join(spans.select(["scope", "key"]), ["scope", "key"], join_type="inner")
            cand = cand.sort_by("row")
            by_key: dict[tuple[str | None, str], list[int]] = defaultdict(list)
            for scope_v, key, row in zip(
                cand.column("scope").to_pylist(),
                cand.column("key").to_pylist(),
                cand.column("row").to_pylist(),
                strict=True,
            ):
                by_key[(scope_v, key)].append(row)
            return [(_group_id(scope_v, key), rows) for (scope_v, key), rows in by_key.items()]
        return self._near_groups(signatures, keyed, minhash)

    def _near_groups(
        self, signatures: pa.Table, keyed: pa.Table, spilled: SpilledMatrix | None = None
    ) -> list[tuple[str, list[int]]]:
        """Exact groups joined with the MinHash LSH clusters of :mod:`curation.steps.dedup` (connected components).

        Vectorised: rows with the same (scope, key) are joined to the first such row, LSH pairs to each
        other, and the components (each labelled by its earliest row) come from numpy; only the rows of a
        group of two or more become Python values.
        """
        n = len(signatures)
        if n == 0:
            return []
        c = self.config
        # Rows with the same (scope, key) join the earliest such row. The key is a 32-hex-digit digest:
        # compared as four 64-bit words after a sort, not hashed into an Arrow dictionary (~4x the memory).
        words = _fixed_width_bytes(keyed.column("key"), n, 32, what="leak_free_splits keys").view(">u8")
        columns = [words[:, i] for i in range(words.shape[1])]
        if c.scope == "source":
            columns.append(_codes(keyed.column("scope"))[1])
        first_of = _first_of_equal(columns)  # each row's earliest row with the same (scope, key)
        del words, columns
        dup = np.flatnonzero(first_of != np.arange(n))
        same_key = np.stack([first_of[dup], dup], axis=1)
        del first_of, dup
        minhash = (
            spilled
            if spilled is not None
            else signatures.column("minhash").combine_chunks().flatten().to_numpy().astype(np.uint32, copy=False)
        )
        if spilled is None:
            minhash = minhash.reshape(n, c.num_perm)
        scope_codes = _codes(keyed.column("scope"))[1] if c.scope == "source" else None
        found = lsh_clusters(minhash, bands=c.bands, rows=c.rows, threshold=c.threshold, groups=scope_codes)
        del minhash
        pairs = np.concatenate([same_key, np.asarray(found.pairs, dtype=np.int64).reshape(-1, 2)])
        labels = _components(n, pairs)  # each row's label: the earliest row of its component
        size = np.bincount(labels, minlength=n)
        members = np.flatnonzero(size[labels] > 1)  # row order
        # Only a group spanning two splits can leak: the others never become Python values.
        split_codes = _codes(signatures.column("split").take(pa.array(members)))[1]
        lowest, highest = np.full(n, np.iinfo(np.int64).max), np.full(n, -1)
        np.minimum.at(lowest, labels[members], split_codes)
        np.maximum.at(highest, labels[members], split_codes)
        members = members[lowest[labels[members]] != highest[labels[members]]]
        if members.size == 0:
            return []
        by_root = members[np.argsort(labels[members], kind="stable")]
        roots, starts = np.unique(labels[by_root], return_index=True)
        take = pa.array(roots)
        scopes = keyed.column("scope").take(take).to_pylist()
        keys = keyed.column("key").take(take).to_pylist()
        bounds = [*starts.tolist(), len(by_root)]
        return [(_group_id(scopes[g], keys[g]), by_root[bounds[g] : bounds[g + 1]].tolist()) for g in range(len(roots))]


class _Picked:
    """Values of some rows of a column, indexed by row number (what ``decide`` reads of the group members)."""

    def __init__(self, values: list[Any], at: dict[int, int]) -> None:
        self._values, self._at = values, at

    def __getitem__(self, row: int) -> Any:
        return self._values[self._at[row]]


def _group_id(scope: str | None, key: str) -> str:
    """Stable across runs and engines: the scope and the text digest of the group's first member."""
    return f"{scope}:{key[:16]}" if scope else key[:16]


# ------------------------------------------------------------------ resplit

_KEY_SPEC = re.compile(r"^(document|conversation|text|context:[A-Za-z0-9_.-]+)$")


@dataclass(frozen=True)
class ResplitConfig(StepConfig):
    sources: tuple[str, ...] = option(
        ("openwebtext",), "the sources whose split is ours to set (records of other sources pass unchanged)"
    )
    key: str = option(
        "document",
        "what keeps records together: 'document' or 'conversation' (the native part of the record id: "
        "an OpenWebText document, an EmpatheticDialogues conv id), 'context:<field>' (e.g. context:prompt, so "
        "no ED situation spans splits) or 'text' (the normalised text)",
    )
    ratios: tuple[float, ...] = option((0.8, 0.1, 0.1), "train, validation, test shares (sum to 1)", min=0.0, max=1.0)

    def check(self) -> None:
        super().check()
        if not _KEY_SPEC.match(self.key):
            raise ConfigError(
                f"'key': expected 'document', 'conversation', 'text' or 'context:<field>', got {self.key!r}"
            )
        if len(self.ratios) != len(SPLITS):
            raise ConfigError(f"'ratios': expected {len(SPLITS)} shares ({', '.join(SPLITS)}), got {list(self.ratios)}")
        if abs(sum(self.ratios) - 1.0) > 1e-6:
            raise ConfigError(f"'ratios': the shares must sum to 1, got {sum(self.ratios):g}")
        if not self.sources:
            raise ConfigError("'sources': name at least one source to re-split")


@register_step
class Resplit(RecordStep):
    name = "resplit"
    description = (
        "group-aware splits for sources without official ones: hash_split of a group key (document, "
        "conversation, context field or text)"
    )
    Config = ResplitConfig
    config: ResplitConfig

    def process(self, record: Record, counters: Counter[str]) -> Record | Dropped:
        if record["source"] not in self.config.sources:
            counters["other_source"] += 1
            return record
        key = self._key(record)
        if key is None:
            # A record without the key field keeps its own group, so it still gets a deterministic split.
            counters["missing_key"] += 1
            key = record["id"].split(":", 2)[2]
        split = hash_split(key, tuple(self.config.ratios))  # type: ignore[arg-type]
        counters[f"{record['split']}->{split}"] += 1
        context = {**record["context"], "split_assigned": f"hash:{self.config.key}"}
        return {**record, "split": split, "context": context}

    def _key(self, record: Record) -> str | None:
        spec = self.config.key
        if spec in ("document", "conversation"):
            return record["id"].split(":", 2)[2]
        if spec == "text":
            return normalize_text(text_of(record))
        value = record["context"].get(spec.split(":", 1)[1])
        return value if value else None
