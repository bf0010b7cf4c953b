"""The Ray Data engine: the same steps, the same counters, the same dropped rows, the same snapshot id."""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from curation.curate import StepReport, _CountingSink, _run, build_steps, curate
from curation.ingest import ingest
from curation.steps.base import _STEPS, Dropped, RecordStep, StepConfig, option

DD = "dailydialog/ijcnlp_dailydialog"
SPLIT_FILES = {
    "train": ("dialogues_train.txt", "dialogues_act_train.txt", "dialogues_emotion_train.txt"),
    "validation": ("dialogues_validation.txt", "dialogues_act_validation.txt", "dialogues_emotion_validation.txt"),
    "test": ("dialogues_test.txt", "dialogues_act_test.txt", "dialogues_emotion_test.txt"),
}


@dataclass(frozen=True)
class _MinTurnsConfig(StepConfig):
    min: int = option(4, "fewest turns kept", min=1, max=100)


class _MinTurns(RecordStep):
    """Test-only record step: drops short records and counts long ones (module level: Ray pickles it)."""

    name = "test_ray_min_turns"
    Config = _MinTurnsConfig

    def process(self, record, counters):
        n = len(record["turns"])
        if n < self.config.min:
            return Dropped(record, "too_few_turns", f"{n} turns < {self.config.min}")
        if n > 8:
            counters["long"] += 1
        return record


@pytest.fixture(autouse=True)
def test_steps():
    _STEPS[_MinTurns.name] = _MinTurns
    yield
    _STEPS.pop(_MinTurns.name, None)


# ------------------------------------------------------------------ the replay of the local order (no Ray needed)


class _Recorder(_CountingSink):
    def __init__(self, events: list, names: list[str]) -> None:
        super().__init__()
        self.events, self.names = events, names

    def drop(self, item, step):
        self.events.append((self.names.index(step), item.record["id"]))


def test_local_event_order_replays_the_local_runner(examples, tmp_path):
    """Adds and drops interleave as the local runner's lazy chain makes them (the snapshot hash sees it)."""
    from curation.adapters import get_adapter
    from curation.adapters.base import collect
    from curation.engines.ray_engine import _local_event_order

    base, _ = collect(get_adapter("dailydialog"), [examples / DD / "train"])
    # 4,000 real records (the slice's 160 train dialogues, renumbered and spread over the three
    # splits, so that copies leak across splits) so that batches of 1,000 matter.
    splits = ("train", "validation", "test")
    records = [
        {**base[n % len(base)], "id": f"dailydialog:{splits[n % 3]}:{n + 1}", "split": splits[n % 3]}
        for n in range(4000)
    ]
    steps = build_steps(
        [
            {"name": "test_ray_min_turns", "min": 6},
            {"name": "leak_free_splits"},
            {"name": "test_ray_min_turns", "min": 8},
            {"name": "resplit", "sources": ["dailydialog"], "key": "text"},
            {"name": "leak_free_splits", "action": "drop"},
        ]
    )
    names = [s.name for s in steps]
    # Two steps share a name; the recorder needs their positions, so name them apart.
    names = [f"{n}#{i}" for i, n in enumerate(names)]
    for step, name in zip(steps, names, strict=True):
        step.name = name  # instance attribute: only this test's objects
    events: list = []
    sink = _Recorder(events, names)
    reports = [StepReport(n, {}) for n in names]
    for rec in _run(iter(records), steps, reports, sink, tmp_path, None):
        events.append((-1, rec["id"]))
    fate = {rid: -1 for rid in (r["id"] for r in records)}
    for step, rid in events:
        if step >= 0:
            fate[rid] = step
    import numpy as np

    fates = np.array([fate[r["id"]] for r in records], dtype=np.int32)
    assert len(set(fates.tolist())) > 3  # drops by several steps, adds
    replay = list(_local_event_order(fates, [False, True, False, False, True]))
    assert replay == [step for step, _ in events]


# ------------------------------------------------------------------ Ray proper

ray = pytest.importorskip("ray", reason="the ray engine needs Ray Data: pip install 'workbench[ray]'")


@pytest.fixture(scope="module")
def inputs(examples, tmp_path_factory):
    """Snapshots of real slices: DailyDialog with two real train dialogues copied into test, and GoEmotions."""
    from curation.store import SnapshotStore

    root = tmp_path_factory.mktemp("dd")
    for split in SPLIT_FILES:
        shutil.copytree(examples / DD / split, root / split)
    for line in (5, 9):
        for src, dst in zip(SPLIT_FILES["train"], SPLIT_FILES["test"], strict=True):
            text = (root / "train" / src).read_text(encoding="utf-8").splitlines(keepends=True)[line - 1]
            with (root / "test" / dst).open("a", encoding="utf-8") as f:
                f.write(text)
    store = SnapshotStore(str(tmp_path_factory.mktemp("store")))
    dd = ingest("dailydialog", [str(root / s) for s in SPLIT_FILES], store=store).snapshot_id
    ge = ingest("goemotions", [str(examples / "goemotions")], store=store).snapshot_id
    return store, [dd, ge]


SPECS = [
    {"name": "resplit", "sources": ["goemotions"], "key": "text"},
    {"name": "test_ray_min_turns", "min": 4},
    {"name": "leak_free_splits"},
]


def _dropped(store, sid):
    return [row for batch in store.iter_dropped(sid) for row in batch.to_pylist()]


def test_ray_and_local_give_the_same_snapshot(inputs):
    store, refs = inputs
    local = curate(refs, store=store, steps=build_steps(SPECS), engine="local")
    shutil.rmtree(Path(store.snapshot_path(local.snapshot_id)))  # so the Ray run writes it again, not reuses
    on_ray = curate(refs, store=store, steps=build_steps(SPECS), engine="ray")

    assert on_ray.snapshot_id == local.snapshot_id and not on_ray.reused
    assert on_ray.steps == local.steps
    assert (on_ray.rows, on_ray.counts) == (local.rows, local.counts)
    resplit, min_turns, leaks = on_ray.steps
    assert min_turns.dropped["too_few_turns"] > 0 and min_turns.counters["long"] > 0
    assert (
        sum(v for k, v in resplit.counters.items() if "->" in k) == resplit.read - resplit.counters["other_source"] > 0
    )
    assert leaks.dropped == {"split_leak": 2}
    dropped = _dropped(store, on_ray.snapshot_id)
    assert Counter((d["step"], d["reason"]) for d in dropped) == {
        ("test_ray_min_turns", "too_few_turns"): min_turns.dropped["too_few_turns"],
        ("leak_free_splits", "split_leak"): 2,
    }
    assert store.read_artifact(on_ray.snapshot_id, "leak_free_splits.leaks").num_rows == 4


def test_ray_dry_run_counts_like_local(inputs):
    store, refs = inputs
    local = curate(refs, store=store, steps=build_steps(SPECS), dry_run=True)
    on_ray = curate(refs, store=store, steps=build_steps(SPECS), dry_run=True, engine="ray")
    assert on_ray.snapshot_id is None
    assert (on_ray.steps, on_ray.rows, on_ray.counts) == (local.steps, local.rows, local.counts)


def test_ray_stays_on_loopback_and_shuts_down(inputs):
    import subprocess

    from curation.engines.ray_engine import import_ray, local_ray

    def listeners() -> set[str]:
        out = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, check=False).stdout
        return {line.split()[3] for line in out.splitlines() if line.strip()}

    ray_mod = import_ray()
    has_ss = shutil.which("ss") is not None
    before = listeners() if has_ss else set()
    with local_ray(ray_mod):
        assert ray_mod.util.get_node_ip_address() == "127.0.0.1"
        if has_ss:
            new = listeners() - before
            assert new, "no Ray listeners seen"
            assert {a.rsplit(":", 1)[0] for a in new} <= {"127.0.0.1", "[::ffff:127.0.0.1]", "[::1]"}, new
    assert not ray_mod.is_initialized()
