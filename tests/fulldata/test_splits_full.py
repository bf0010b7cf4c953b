"""leak_free_splits on the full DailyDialog: the cross-split copies PROVENANCE.md counts, found and resolved.

PROVENANCE.md (section 1): "Identical dialogues also cross splits: 92 train∩test, 68
train∩validation, 4 validation∩test". Those are *distinct texts* (raw lines of the split
files) found in both splits; as record pairs they are 102, 72 and 4, because some texts
repeat inside a split (e.g. 101 train records and 93 test records carry the 92 texts).
The step's ``<a>∩<b>`` counters count distinct texts (groups), so comparing turn by turn
and case-sensitively they equal PROVENANCE's figures. Comparing words only (the default)
adds one train∩test text (train 865 = test 805 but for where one utterance ends), and
casefolding (the default) adds case-only variants: 106 / 76 / 5. Expected figures are
recomputed here from the raw zips, independently of the adapter and the step.
"""

from __future__ import annotations

import zipfile
from collections import Counter, defaultdict
from itertools import combinations
from pathlib import Path

import pytest

from curation.curate import build_steps, curate
from curation.ingest import ingest
from curation.record import SPLITS
from curation.steps.splits import LEAK_REASON, normalize_text

pytestmark = pytest.mark.fulldata

PROVENANCE_DISTINCT = {"train∩test": 92, "train∩validation": 68, "validation∩test": 4}
PROVENANCE_PAIRS = {"train∩test": 102, "train∩validation": 72, "validation∩test": 4}


def _raw_lines(root: Path) -> dict[str, list[str]]:
    out = {}
    for split in SPLITS:
        with zipfile.ZipFile(root / f"{split}.zip") as z:
            name = next(n for n in z.namelist() if n.endswith(f"dialogues_{split}.txt"))
            out[split] = z.read(name).decode("utf-8").splitlines()
    return out


def _expected(lines: dict[str, list[str]], norm) -> tuple[Counter[str], Counter[str], Counter[str]]:
    """Distinct shared texts and record pairs per split pair, and records to drop per from->to (keep in test)."""
    counts = {s: Counter(norm(line) for line in lines[s]) for s in SPLITS}
    distinct, pairs, drops = Counter(), Counter(), Counter()
    for a, b in combinations(SPLITS, 2):
        shared = counts[a].keys() & counts[b].keys()
        distinct[f"{a}∩{b}"] = len(shared)
        pairs[f"{a}∩{b}"] = sum(counts[a][t] * counts[b][t] for t in shared)
    priority = ("test", "validation", "train")
    for text in set().union(*counts.values()):
        present = [s for s in SPLITS if counts[s][text]]
        if len(present) > 1:
            kept = next(s for s in priority if s in present)
            for s in present:
                if s != kept:
                    drops[f"drop:{s}->{kept}"] += counts[s][text]
    return distinct, pairs, drops


def _raw_norm(line: str, *, casefold: bool, boundaries: bool) -> str:
    utterances = [normalize_text(u, casefold=casefold) for u in line.split("__eou__")]
    return ("\n" if boundaries else " ").join(u for u in utterances if u)


@pytest.fixture(scope="module")
def dd(full_data, tmp_path_factory):
    from curation.store import SnapshotStore

    root = full_data / "dailydialog" / "ijcnlp_dailydialog"
    store = SnapshotStore(str(tmp_path_factory.mktemp("store")))
    sid = ingest("dailydialog", [str(root / f"{s}.zip") for s in SPLITS], store=store).snapshot_id
    return store, sid, _raw_lines(root)


def test_provenance_counts_are_distinct_texts_not_pairs(dd):
    _, _, lines = dd
    distinct, pairs, _ = _expected(lines, lambda line: line)
    assert distinct == PROVENANCE_DISTINCT
    assert pairs == PROVENANCE_PAIRS


@pytest.mark.parametrize(
    ("casefold", "boundaries", "expected_pairs"),
    [
        # Identical dialogues, turn by turn: exactly PROVENANCE's count.
        (False, True, PROVENANCE_DISTINCT),
        # Words only (the default): train 865 and test 805 differ only in where one utterance ends.
        (False, False, {"train∩test": 93, "train∩validation": 68, "validation∩test": 4}),
        # The default config: case-only variants join too.
        (True, False, {"train∩test": 106, "train∩validation": 76, "validation∩test": 5}),
    ],
    ids=["identical", "words", "default"],
)
def test_leaks_found_resolved_and_gone(dd, casefold, boundaries, expected_pairs):
    store, sid, lines = dd
    distinct, _, drops = _expected(lines, lambda line: _raw_norm(line, casefold=casefold, boundaries=boundaries))
    options = {"casefold": casefold, "ignore_turn_boundaries": not boundaries}
    result = curate([sid], store=store, steps=build_steps([{"name": "leak_free_splits", **options}]))
    report = result.steps[0]
    pair_counters = {k: v for k, v in report.counters.items() if "∩" in k}
    assert pair_counters == distinct == expected_pairs
    assert {k: v for k, v in report.counters.items() if k.startswith("drop:")} == drops
    assert report.dropped == {LEAK_REASON: sum(drops.values())}
    assert report.read == 13_118 and report.kept == 13_118 - sum(drops.values())

    leaks = store.read_artifact(result.snapshot_id, "leak_free_splits.leaks")
    assert len(set(leaks.column("group_id").to_pylist())) == report.counters["groups"]
    assert Counter(leaks.column("action").to_pylist())["drop"] == sum(drops.values())

    # After the step no normalised text sits in two splits.
    splits_of = defaultdict(set)
    for rec in store.iter_records(result.snapshot_id):
        turns = [normalize_text(t["text"], casefold=casefold) for t in rec["turns"]]
        splits_of[("\n" if boundaries else " ").join(turns)].add(rec["split"])
    assert max(len(s) for s in splits_of.values()) == 1
