"""Verdicts: the mapping global steps decide into, compact for a dedup step's bulk of drops."""

from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa
import pytest

from curation.steps.base import Verdict, Verdicts


def bulk(n: int = 5_000) -> Verdicts:
    v = Verdicts()
    ids = pa.array([f"goemotions:train:c{i}" for i in range(n)])
    kept = pa.array([f"goemotions:test:k{i // 3}" for i in range(n)])
    v.add_drops(ids, reason="near_duplicate", detail="jaccard≈{sim:.2f} with {kept}", kept_ids=kept,
                similarity=np.linspace(0.7, 1.0, n))  # fmt: skip
    return v


def test_bulk_drops_read_back_as_verdicts_by_id():
    v = bulk()
    assert len(v) == 5_000
    assert v["goemotions:train:c0"] == Verdict(drop="near_duplicate", detail="jaccard≈0.70 with goemotions:test:k0")
    assert v["goemotions:train:c4999"].detail == "jaccard≈1.00 with goemotions:test:k1666"
    assert v.get("goemotions:train:missing") is None and "goemotions:train:c7" in v
    with pytest.raises(KeyError):
        v["nope"]
    ids = ["goemotions:train:c10", "nope", "goemotions:train:c4000", ""]
    assert v.get_many(ids) == [v.get(i) for i in ids]
    assert v.get_many(ids)[1] is None and v.get_many(ids)[0].drop == "near_duplicate"


def test_one_by_one_verdicts_override_delete_and_iterate_like_a_dict():
    v = bulk(10)
    as_dict = dict(v.items())
    v["goemotions:train:c3"] = Verdict(split="test", detail="moved")
    as_dict["goemotions:train:c3"] = Verdict(split="test", detail="moved")
    v["other"] = Verdict(drop="x")
    as_dict["other"] = Verdict(drop="x")
    del v["goemotions:train:c5"]
    del as_dict["goemotions:train:c5"]
    assert v == as_dict and len(v) == len(as_dict) == 10 and sorted(v) == sorted(as_dict)
    assert v.get_many(["goemotions:train:c3", "goemotions:train:c5"]) == [as_dict["goemotions:train:c3"], None]
    with pytest.raises(KeyError):
        del v["goemotions:train:c5"]


def test_verdicts_pickle_for_ray_workers_and_compare_equal():
    v = bulk(100)
    v["extra"] = Verdict(drop="exact_duplicate", detail="same text as a")
    back = pickle.loads(pickle.dumps(v))
    assert back == v and back.get_many(["extra", "goemotions:train:c99"]) == v.get_many(
        ["extra", "goemotions:train:c99"]
    )
    assert Verdicts() == {} and Verdicts({"a": Verdict(drop="x")}) == {"a": Verdict(drop="x")}


def test_hash_collisions_are_told_apart_by_the_id(monkeypatch):
    """Two ids with one 64-bit hash (forced here) still get their own verdicts."""
    from curation.steps import base

    monkeypatch.setattr(base, "_id_hashes", lambda ids: np.zeros(len(ids), dtype=np.uint64))
    v = Verdicts()
    v.add_drops(pa.array(["a", "b", "c"]), reason="r", detail="{kept}", kept_ids=pa.array(["ka", "kb", "kc"]),
                similarity=np.ones(3))  # fmt: skip
    assert [v[k].detail for k in ("c", "a", "b")] == ["kc", "ka", "kb"]
    assert v.get_many(["b", "zz", "c"]) == [Verdict(drop="r", detail="kb"), None, Verdict(drop="r", detail="kc")]
