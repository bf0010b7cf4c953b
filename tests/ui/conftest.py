"""Fixtures of the UI tests: a store made by `workbench run` on the bundled examples, once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def example_store(tmp_path_factory) -> Path:
    """example-dd-raw ... example-owt-raw -> example-clean -> example-labeled -> example-validated, as `make run`
    builds it, and the names a user gives their own snapshots (dd-raw ... clean, labeled, validated) on the same
    snapshots: the dashboard's pages open on those names. Read-only for tests."""
    from curation.store import SnapshotStore

    store = tmp_path_factory.mktemp("dashboard") / "store"
    env = {**os.environ, "WORKBENCH_STORE": str(store), "NO_COLOR": "1"}
    proc = subprocess.run([sys.executable, "-m", "ui.cli", "run"], capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise AssertionError(f"workbench run failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    snapshots = SnapshotStore(str(store))
    for name in ("dd-raw", "ed-raw", "esconv-raw", "ge-raw", "owt-raw", "clean", "labeled", "validated"):
        snapshots.set_ref(name, snapshots.resolve(f"example-{name}"))
    return store
