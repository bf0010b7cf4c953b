"""An in-process search engine for argilla-server: no Elasticsearch, no OpenSearch.

argilla-server looks its search engine up by name (``ARGILLA_SEARCH_ENGINE``) in the
registry of :class:`argilla_server.search_engine.SearchEngine`. This module registers
``workbench`` there. It subclasses the server's own ``BaseElasticAndOpenSearchEngine``,
so the documents, mappings, filters, sorts and aggregations it is asked for are
exactly the ones argilla-server builds for Elasticsearch; what it adds is the
storage and an evaluator for that subset of the Elasticsearch query DSL over
plain Python dicts (``bool``, ``terms``, ``term``, ``range``, ``exists``, ``ids``,
``nested``, ``simple_query_string``, ``function_score`` with ``random_score``;
``terms`` / ``value_count`` / ``stats`` aggregations; field and nested sorts; knn
by cosine similarity).

The index lives in the server process's memory and is rebuilt from the database at
start-up by argilla-server's own ``Reindexer`` (see ``launch.py``), so a restart
loses nothing: the database is the truth, the index a cache of it. One process owns
it; the rq worker that runs the server's jobs runs in a thread of that process, so
a lock guards every read and write.

This file runs inside argilla-server's virtualenv: it imports nothing of the
workbench and nothing beyond argilla-server and its dependencies.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import enum
import hashlib
import json
import math
import re
import threading
import uuid
from collections.abc import Iterable
from typing import Any

from argilla_server.models import Record, Response, Suggestion, VectorSettings
from argilla_server.search_engine import SearchEngine
from argilla_server.search_engine.commons import (
    BaseElasticAndOpenSearchEngine,
    es_field_for_vector_settings,
    es_index_name_for_dataset,
)

ENGINE_NAME = "workbench"

_LOCK = threading.RLock()
# index name -> {"mappings": dict, "settings": dict, "docs": {id: document}}; dicts keep insertion order.
_INDICES: dict[str, dict[str, Any]] = {}


def reset() -> None:
    """Forget every index (the launcher calls this before rebuilding from the database)."""
    with _LOCK:
        _INDICES.clear()


def _jsonable(value: Any) -> Any:
    """Documents are stored as JSON would carry them to Elasticsearch: ids as strings, times as ISO text."""

    def default(o: Any) -> Any:
        if isinstance(o, uuid.UUID):
            return str(o)
        if isinstance(o, dt.datetime | dt.date):
            return o.isoformat()
        if isinstance(o, enum.Enum):
            return o.value
        raise TypeError(f"cannot index a value of type {type(o).__name__}")

    return json.loads(json.dumps(value, default=default))


def _merge(target: dict, patch: dict) -> None:
    """Elasticsearch's partial ``doc`` update: objects merge recursively, everything else is replaced."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


# ------------------------------------------------------------------ field access


def _values(doc: Any, path: str) -> list[Any]:
    """Every value at a dotted path, lists flattened (Elasticsearch's multi-valued fields)."""
    current = [doc]
    for part in path.split("."):
        nxt: list[Any] = []
        for node in current:
            for item in node if isinstance(node, list) else [node]:
                if isinstance(item, dict) and part in item:
                    nxt.append(item[part])
        current = nxt
    out: list[Any] = []
    for v in current:
        if isinstance(v, list):
            out.extend(x for x in v if x is not None)
        elif v is not None:
            out.append(v)
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    return str(a) == str(b)


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _in_range(v: Any, gte: Any, lte: Any) -> bool:
    num = _number(v)
    if num is not None and (gte is None or _number(gte) is not None) and (lte is None or _number(lte) is not None):
        return (gte is None or num >= float(gte)) and (lte is None or num <= float(lte))
    text = str(v)  # dates and keywords compare as text (ISO times sort as text)
    return (gte is None or text >= str(gte)) and (lte is None or text <= str(lte))


# ------------------------------------------------------------------ text search

_TOKEN = re.compile(r"\w+", re.UNICODE)


def _text_of(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _text_of(v)]
    if isinstance(value, list):
        return [t for v in value for t in _text_of(v)]
    return []


def _field_texts(doc: dict, pattern: str) -> list[str]:
    """Texts of the fields a ``simple_query_string`` names: ``fields.*``, ``fields.x``, ``fields.chat.*``."""
    parts = pattern.split(".")
    fields = doc.get("fields") or {}
    if parts[0] != "fields":
        return _text_of(_values(doc, pattern))
    if len(parts) == 1 or parts[1] == "*":
        return _text_of(fields)
    value = fields.get(parts[1])
    if len(parts) > 2 and parts[2] != "*":
        return _text_of(_values(value, ".".join(parts[2:])))
    return _text_of(value)


def _query_terms(query: str) -> list[tuple[str, bool]]:
    """(token, is_prefix) for each term of a simple query string; operators and quotes are dropped."""
    terms = []
    for raw in query.split():
        word = raw.strip('+-|()"~')
        prefix = word.endswith("*")
        for tok in _TOKEN.findall(word.lower()):
            terms.append((tok, False))
        if prefix and terms:
            terms[-1] = (terms[-1][0], True)
    return terms


def _text_score(doc: dict, spec: dict) -> float:
    """0 when the document lacks a term (default_operator AND), else the number of term hits."""
    terms = _query_terms(str(spec.get("query", "")))
    if not terms:
        return 1.0
    tokens: list[str] = []
    for pattern in spec.get("fields") or ["*"]:
        for text in _field_texts(doc, pattern if pattern != "*" else "fields.*"):
            tokens.extend(_TOKEN.findall(text.lower()))
    score = 0.0
    for term, prefix in terms:
        hits = sum(1 for t in tokens if (t.startswith(term) if prefix else t == term))
        if not hits:
            return 0.0
        score += 1.0 + math.log(hits)
    return score


# ------------------------------------------------------------------ queries


def _as_list(x: Any) -> list:
    if x is None:
        return []
    return x if isinstance(x, list) else [x]


def _random_score(seed: str, doc_id: str) -> float:
    digest = hashlib.blake2b(f"{seed}:{doc_id}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 1) / 2**64  # never 0: 0 means "no match"


def _score(doc: dict, query: dict | None) -> float:
    """The document's score for a query; 0.0 means no match."""
    if not query:
        return 1.0
    (kind, spec), *_rest = query.items()
    if kind == "match_all":
        return 1.0
    if kind == "bool":
        return _bool_score(doc, spec)
    if kind == "terms":
        (field, wanted), *_ = spec.items()
        have = _values(doc, field)
        return 1.0 if any(_same(h, w) for h in have for w in wanted) else 0.0
    if kind == "term":
        (field, wanted), *_ = spec.items()
        if isinstance(wanted, dict):
            wanted = wanted.get("value")
        return 1.0 if any(_same(h, wanted) for h in _values(doc, field)) else 0.0
    if kind == "range":
        (field, bounds), *_ = spec.items()
        gte = bounds.get("gte", bounds.get("gt"))
        lte = bounds.get("lte", bounds.get("lt"))
        return 1.0 if any(_in_range(v, gte, lte) for v in _values(doc, field)) else 0.0
    if kind == "exists":
        return 1.0 if _values(doc, spec["field"]) else 0.0
    if kind == "ids":
        return 1.0 if str(doc.get("id")) in {str(v) for v in spec["values"]} else 0.0
    if kind == "nested":
        path = spec["path"]
        scores = [_score({path: item}, spec["query"]) for item in _as_list(doc.get(path))]
        matched = [s for s in scores if s > 0]
        return sum(matched) / len(matched) if matched else 0.0
    if kind == "simple_query_string":
        return _text_score(doc, spec)
    if kind == "function_score":
        base = _score(doc, spec.get("query"))
        if base <= 0:
            return 0.0
        for fn in spec.get("functions", []):
            if "random_score" in fn:
                return _random_score(str(fn["random_score"].get("seed", "")), str(doc.get("id")))
        return base
    raise ValueError(f"the workbench search engine cannot evaluate an Elasticsearch {kind!r} query")


def _bool_score(doc: dict, spec: dict) -> float:
    total = 0.0
    for q in _as_list(spec.get("must")):
        s = _score(doc, q)
        if s <= 0:
            return 0.0
        total += s
    for q in _as_list(spec.get("filter")):
        if _score(doc, q) <= 0:
            return 0.0
    for q in _as_list(spec.get("must_not")):
        if _score(doc, q) > 0:
            return 0.0
    should = _as_list(spec.get("should"))
    if should:
        should_scores = [_score(doc, q) for q in should]
        hits = sum(1 for s in should_scores if s > 0)
        required = spec.get("minimum_should_match")
        if required is None:
            required = 0 if (spec.get("must") or spec.get("filter")) else 1
        if hits < int(required):
            return 0.0
        total += sum(should_scores)
    return total if total > 0 else 1.0


# ------------------------------------------------------------------ sorting and aggregations


def _sort_key_values(doc: dict, field: str, spec: Any) -> list[Any]:
    if isinstance(spec, dict) and "nested" in spec:
        nested = spec["nested"]
        path = nested["path"]
        items = [i for i in _as_list(doc.get(path)) if _score({path: i}, nested.get("filter")) > 0]
        return [v for i in items for v in _values({path: i}, field)]
    return _values(doc, field)


def _sort(hits: list[tuple[dict, float]], sort: list[dict] | None) -> list[tuple[dict, float]]:
    if not sort:
        # Elasticsearch orders by score; ties keep index order.
        return sorted(hits, key=lambda h: -h[1])
    for clause in reversed(_as_list(sort)):
        (field, spec), *_ = clause.items()
        order = spec.get("order", "asc") if isinstance(spec, dict) else spec
        mode = spec.get("mode") if isinstance(spec, dict) else None
        desc = str(order) == "desc"

        def key(
            hit: tuple[dict, float], field: str = field, spec: Any = spec, mode: Any = mode, desc: bool = desc
        ) -> Any:
            values = _sort_key_values(hit[0], field, spec)
            if not values:
                return None
            nums = [_number(v) for v in values]
            if all(n is not None for n in nums):
                if mode == "avg":
                    return sum(nums) / len(nums)
                return max(nums) if desc else min(nums)
            texts = [str(v) for v in values]
            return max(texts) if desc else min(texts)

        present = [(key(h), h) for h in hits]
        with_value = [p for p in present if p[0] is not None]
        missing = [p[1] for p in present if p[0] is None]
        with_value.sort(key=lambda p: p[0], reverse=desc)
        hits = [p[1] for p in with_value] + missing  # missing values sort last, as in Elasticsearch
    return hits


def _aggregate(docs: list[dict], aggregations: dict) -> dict:
    out: dict[str, Any] = {}
    for name, spec in aggregations.items():
        (kind, params), *_ = spec.items()
        field = params["field"]
        if kind == "terms":
            counts: dict[str, int] = {}
            for doc in docs:
                for term in {str(v) for v in _values(doc, field)}:
                    counts[term] = counts.get(term, 0) + 1
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: int(params.get("size", 10))]
            out[name] = {"buckets": [{"key": k, "doc_count": c} for k, c in ranked]}
        elif kind == "value_count":
            out[name] = {"value": sum(len(_values(doc, field)) for doc in docs)}
        elif kind == "stats":
            nums = [n for doc in docs for n in (_number(v) for v in _values(doc, field)) if n is not None]
            out[name] = {
                "count": len(nums),
                "min": min(nums) if nums else None,
                "max": max(nums) if nums else None,
                "avg": sum(nums) / len(nums) if nums else None,
                "sum": sum(nums),
            }
        else:
            raise ValueError(f"the workbench search engine cannot compute a {kind!r} aggregation")
    return out


def _cosine(a: list[float], b: list[float]) -> float:
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(x * x for x in b))
    if not na or not nb:
        return 0.0
    return sum(x * y for x, y in zip(a, b, strict=False)) / (na * nb)


def _response(hits: list[tuple[dict, float]], total: int) -> dict:
    return {
        "hits": {
            "total": {"value": total, "relation": "eq"},
            "hits": [{"_id": doc["id"], "_score": score} for doc, score in hits],
        }
    }


# ------------------------------------------------------------------ the engine


@SearchEngine.register(engine_name=ENGINE_NAME)
@dataclasses.dataclass
class WorkbenchSearchEngine(BaseElasticAndOpenSearchEngine):
    """argilla-server's Elasticsearch engine with the cluster replaced by this process's memory."""

    number_of_shards: int = 1
    number_of_replicas: int = 0

    @classmethod
    async def new_instance(cls) -> WorkbenchSearchEngine:
        return cls()

    async def close(self) -> None:
        return None

    async def ping(self) -> bool:
        return True

    async def info(self) -> dict:
        with _LOCK:
            return {
                "name": "workbench",
                "distribution": "workbench-memory",
                "version": {"number": "1"},
                "indices": len(_INDICES),
                "documents": sum(len(i["docs"]) for i in _INDICES.values()),
            }

    # -- the storage requests the base class makes

    def _mapping_for_vector_settings(self, vector_settings: VectorSettings) -> dict:
        return {
            es_field_for_vector_settings(vector_settings): {
                "type": "dense_vector",
                "dims": vector_settings.dimensions,
                "similarity": "cosine",
            }
        }

    async def _create_index_request(self, index_name: str, mappings: dict, settings: dict) -> None:
        with _LOCK:
            if index_name in _INDICES:
                raise ValueError(f"index {index_name} already exists")
            _INDICES[index_name] = {"mappings": _jsonable(mappings), "settings": _jsonable(settings), "docs": {}}

    async def _delete_index_request(self, index_name: str) -> None:
        with _LOCK:
            _INDICES.pop(index_name, None)

    async def _index_exists_request(self, index_name: str) -> bool:
        with _LOCK:
            return index_name in _INDICES

    async def put_index_mapping_request(self, index: str, mappings: dict) -> None:
        with _LOCK:
            self._index(index)["mappings"].setdefault("properties", {}).update(_jsonable(mappings))

    async def _update_document_request(self, index_name: str, id: str, body: dict) -> None:
        if "doc" not in body:
            raise ValueError("the workbench search engine updates documents with partial docs, not scripts")
        with _LOCK:
            doc = self._index(index_name)["docs"].get(str(id))
            if doc is None:
                raise KeyError(f"document {id} not found in {index_name}")
            _merge(doc, _jsonable(body["doc"]))

    async def _bulk_op_request(self, actions: list[dict[str, Any]]) -> None:
        with _LOCK:
            for action in actions:
                docs = self._index(action["_index"])["docs"]
                doc_id = str(action["_id"])
                if action.get("_op_type", "index") == "delete":
                    docs.pop(doc_id, None)
                else:
                    source = {k: v for k, v in action.items() if not k.startswith("_")}
                    docs[doc_id] = _jsonable(source)

    async def _index_search_request(
        self,
        index: str,
        query: dict,
        size: int | None = None,
        from_: int | None = None,
        sort: Any = None,
        aggregations: dict | None = None,
    ) -> dict:
        with _LOCK:
            docs = list(self._index(index)["docs"].values())
            hits = [(doc, s) for doc in docs if (s := _score(doc, query)) > 0]
            size = 10 if size is None else size  # Elasticsearch's default page
            start = from_ or 0
            page = _sort(hits, sort)[start : start + size] if size else []  # size 0: aggregations only
            result = _response(page, len(hits))
            if aggregations:
                result["aggregations"] = _aggregate([d for d, _ in hits], aggregations)
            return result

    async def _request_similarity_search(
        self,
        index: str,
        vector_settings: VectorSettings,
        value: list[float],
        k: int,
        excluded_id: uuid.UUID | None = None,
        query_filters: list[dict] | None = None,
    ) -> dict:
        path = es_field_for_vector_settings(vector_settings)
        with _LOCK:
            scored = []
            for doc in self._index(index)["docs"].values():
                if excluded_id is not None and doc.get("id") == str(excluded_id):
                    continue
                if any(_score(doc, q) <= 0 for q in query_filters or []):
                    continue
                vectors = _values(doc, path)
                if not vectors:
                    continue
                scored.append((doc, (1.0 + _cosine(vectors, value)) / 2.0))
            scored.sort(key=lambda h: -h[1])
            return _response(scored[:k], min(len(scored), k))

    @staticmethod
    def _map_record_response_to_es(response: Response) -> dict[str, Any]:
        # argilla-server 2.8.0's own mapping calls .items() on the values, which a discard without
        # answers leaves null: the response is saved, then indexing it fails with a 500.
        return {
            "id": response.id,
            "status": response.status,
            "user_id": response.user_id,
            **{question: (value or {}).get("value") for question, value in (response.values or {}).items()},
        }

    # -- the updates the base class writes as painless scripts

    async def update_record_response(self, response: Response) -> None:
        record = response.record
        entry = _jsonable(self._map_record_response_to_es(response))
        with _LOCK:
            doc = self._doc(es_index_name_for_dataset(record.dataset), record.id)
            kept = [r for r in doc.get("responses") or [] if r.get("id") != entry["id"]]
            doc["responses"] = [*kept, entry]

    async def delete_record_response(self, response: Response) -> None:
        record = response.record
        with _LOCK:
            doc = self._doc(es_index_name_for_dataset(record.dataset), record.id)
            doc["responses"] = [r for r in doc.get("responses") or [] if r.get("id") != str(response.id)]

    async def delete_record_suggestion(self, suggestion: Suggestion) -> None:
        with _LOCK:
            doc = self._doc(es_index_name_for_dataset(suggestion.record.dataset), suggestion.record_id)
            (doc.get("suggestions") or {}).pop(suggestion.question.name, None)

    async def delete_records(self, dataset: Any, records: Iterable[Record]) -> None:
        with _LOCK:
            docs = self._index(es_index_name_for_dataset(dataset))["docs"]
            for record in records:
                docs.pop(str(record.id), None)

    # -- helpers

    @staticmethod
    def _index(name: str) -> dict[str, Any]:
        try:
            return _INDICES[name]
        except KeyError:
            raise KeyError(f"index {name} does not exist") from None

    def _doc(self, index_name: str, record_id: Any) -> dict:
        doc = self._index(index_name)["docs"].get(str(record_id))
        if doc is None:
            raise KeyError(f"document {record_id} not found in {index_name}")
        return doc
