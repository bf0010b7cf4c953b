"""The curate runner on real example slices, with small test steps (the real steps have their own tests)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pyarrow as pa
import pytest

from curation.curate import build_steps, curate, load_steps
from curation.errors import StoreError
from curation.ingest import ingest
from curation.record import text_of
from curation.report import build_report
from curation.steps.base import (
    _STEPS,
    ConfigError,
    Decisions,
    Dropped,
    GlobalStep,
    RecordStep,
    StepConfig,
    Verdict,
    option,
)


@dataclass(frozen=True)
class _MinTurnsConfig(StepConfig):
    min: int = option(3, "fewest turns kept", min=1, max=100)


class _MinTurns(RecordStep):
    name = "test_min_turns"
    Config = _MinTurnsConfig

    def process(self, record, counters):
        n = len(record["turns"])
        if n < self.config.min:
            return Dropped(record, "too_few_turns", f"{n} turns < {self.config.min}")
        if n > 10:
            counters["long"] += 1
        return record


class _Exact(GlobalStep):
    name = "test_exact"
    signature_schema = pa.schema([("id", pa.string()), ("split", pa.string()), ("text", pa.string())])

    def signature(self, record):
        return {"id": record["id"], "split": record["split"], "text": text_of(record)}

    def decide(self, sig):
        priority = {"test": 0, "validation": 1, "train": 2}
        groups: dict[str, list[tuple[int, str]]] = {}
        for rid, split, text in zip(*(sig[c].to_pylist() for c in ("id", "split", "text")), strict=True):
            groups.setdefault(text, []).append((priority[split], rid))
        d = Decisions()
        rows = []
        for n, members in enumerate(sorted(groups.values())):
            if len(members) < 2:
                continue
            members.sort()
            keep = members[0][1]
            for _, rid in members:
                rows.append({"cluster_id": n, "id": rid, "kept": rid == keep, "similarity": 1.0, "split": None})
                if rid != keep:
                    d.verdicts[rid] = Verdict(drop="exact_duplicate", detail=f"same text as {keep}")
            d.counters["clusters"] += 1
        d.artifacts["clusters"] = (
            pa.Table.from_pylist(rows) if rows else pa.table({"cluster_id": pa.array([], pa.int64())})
        )
        return d


@pytest.fixture(autouse=True)
def test_steps():
    _STEPS.update({_MinTurns.name: _MinTurns, _Exact.name: _Exact})
    yield
    _STEPS.pop(_MinTurns.name)
    _STEPS.pop(_Exact.name)


@pytest.fixture
def raw(store, examples):
    ingest("dailydialog", [examples / "dailydialog" / "ijcnlp_dailydialog"], store=store, tag="dd-raw")
    ingest("goemotions", [examples / "goemotions"], store=store, tag="ge-raw")
    return store


def _steps(min_turns=3):
    return build_steps([{"name": "test_min_turns", "min": min_turns}, {"name": "test_exact"}])


def test_curate_writes_one_snapshot_with_step_counters(raw):
    r = curate(["dd-raw", "ge-raw"], store=raw, steps=_steps(), tag="clean")
    m = raw.manifest("clean")
    assert m["parents"] == [raw.resolve("dd-raw"), raw.resolve("ge-raw")]
    assert [s["kind"] for s in m["steps"]] == ["curate.test_min_turns", "curate.test_exact"]
    first = m["steps"][0]["counters"]
    n_in = raw.manifest("dd-raw")["rows"] + raw.manifest("ge-raw")["rows"]
    assert first["read"] == n_in
    # GoEmotions comments are one turn: all dropped by min 3; DailyDialog keeps its long dialogues.
    assert first["dropped_by_reason"]["too_few_turns"] == first["dropped"] >= raw.manifest("ge-raw")["rows"]
    assert first["kept"] + first["dropped"] == first["read"]
    second = m["steps"][1]["counters"]
    assert second["read"] == first["kept"] and second["kept"] == m["rows"] == r.rows
    assert m["dropped"]["rows"] == first["dropped"] + second["dropped"]
    assert m["steps"][0]["config"] == {"min": 3}


def test_dropped_rows_are_kept_with_step_reason_and_detail(raw):
    curate(["dd-raw", "ge-raw"], store=raw, steps=_steps(), tag="clean")
    dropped = [row for b in raw.iter_dropped("clean") for row in b.to_pylist()]
    reasons = Counter((d["step"], d["reason"]) for d in dropped)
    assert reasons[("test_min_turns", "too_few_turns")] > 0
    ge = next(d for d in dropped if d["source"] == "goemotions")
    assert ge["detail"] == "1 turns < 3" and ge["turns"][0]["text"]  # the whole record, as it was


def test_dry_run_counts_the_same_and_writes_nothing(raw):
    before = raw.snapshot_ids()
    dry = curate(["dd-raw", "ge-raw"], store=raw, steps=_steps(), tag="clean", dry_run=True)
    assert dry.snapshot_id is None and raw.snapshot_ids() == before and "clean" not in raw.refs()
    real = curate(["dd-raw", "ge-raw"], store=raw, steps=_steps(), tag="clean")
    assert (dry.rows, dry.counts) == (real.rows, real.counts)
    assert [(s.read, s.kept, s.dropped) for s in dry.steps] == [(s.read, s.kept, s.dropped) for s in real.steps]


def test_same_inputs_and_config_give_the_same_snapshot(raw):
    a = curate(["dd-raw", "ge-raw"], store=raw, steps=_steps(), tag="a")
    b = curate(["dd-raw", "ge-raw"], store=raw, steps=_steps(), tag="b")
    assert a.snapshot_id == b.snapshot_id and b.reused
    c = curate(["dd-raw", "ge-raw"], store=raw, steps=_steps(min_turns=2), tag="c")
    assert c.snapshot_id != a.snapshot_id


def test_report_lists_drops_with_examples_and_balance(raw):
    curate(["dd-raw", "ge-raw"], store=raw, steps=_steps(), tag="clean")
    rep = build_report(raw, "clean", examples=2)
    group = next(g for g in rep["drops"] if g["reason"] == "too_few_turns")
    assert len(group["examples"]) == 2 and group["examples"][0]["text"]
    bal = {(r["task"], r["source"], r["split"]): r for r in rep["balance"] if r["label_source"] == "gold"}
    ge = bal[("emotion", "goemotions", "train")]
    assert ge["before"]["total"] > 0 and ge["after"] is None  # every GoEmotions comment dropped by min 3
    dd = bal[("act", "dailydialog", "train")]
    assert dd["after"]["total"] <= dd["before"]["total"]
    assert dd["after"]["imbalance"] >= 1.0


def test_config_errors_name_file_step_and_key(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[step]]\nname = "test_min_turns"\nminimum = 3\n')
    with pytest.raises(ConfigError, match=r"c.toml: \[\[step\]\] #1 \(test_min_turns\): unknown key 'minimum'"):
        load_steps(cfg)
    cfg.write_text('[[step]]\nname = "test_min_turns"\nmin = 0\n')
    with pytest.raises(ConfigError, match="'min': 0 is below the minimum 1"):
        load_steps(cfg)
    cfg.write_text('[[step]]\nname = "test_min_turns"\nmin = "3"\n')
    with pytest.raises(ConfigError, match="'min': expected int"):
        load_steps(cfg)
    cfg.write_text('[[step]]\nname = "no_such_step"\n')
    with pytest.raises(ConfigError, match="unknown step 'no_such_step'"):
        load_steps(cfg)
    cfg.write_text('[[steps]]\nname = "test_min_turns"\n')
    with pytest.raises(ConfigError, match="unknown top-level key 'steps'"):
        load_steps(cfg)


def test_missing_input_snapshot_writes_nothing(raw):
    before = raw.snapshot_ids()
    with pytest.raises(StoreError, match="no snapshot or ref named 'nope'"):
        curate(["dd-raw", "nope"], store=raw, steps=_steps(), tag="clean")
    assert raw.snapshot_ids() == before


def test_a_failing_step_publishes_nothing(raw, monkeypatch):
    def boom(self, record, counters):
        raise RuntimeError("step failed")

    monkeypatch.setattr(_MinTurns, "process", boom)
    before = raw.snapshot_ids()
    with pytest.raises(RuntimeError):
        curate(["dd-raw"], store=raw, steps=_steps(), tag="clean")
    assert raw.snapshot_ids() == before and "clean" not in raw.refs()


def test_two_worker_processes_give_the_identical_snapshot(raw):
    one = curate(["dd-raw", "ge-raw"], store=raw, steps=_steps(), tag="one")
    two = curate(["dd-raw", "ge-raw"], store=raw, steps=_steps(), tag="two", workers=2)
    assert two.snapshot_id == one.snapshot_id
    assert [(s.read, s.kept, s.dropped, s.counters) for s in two.steps] == [
        (s.read, s.kept, s.dropped, s.counters) for s in one.steps
    ]


def test_the_example_config_runs_on_two_processes_with_the_same_result(raw, examples):
    steps = load_steps(examples.parent / "curate.toml")  # every step must pickle to reach a worker
    one = curate(["dd-raw", "ge-raw"], store=raw, steps=steps, tag="one")
    two = curate(["dd-raw", "ge-raw"], store=raw, steps=load_steps(examples.parent / "curate.toml"), workers=2)
    assert two.snapshot_id == one.snapshot_id
