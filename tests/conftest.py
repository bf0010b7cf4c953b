"""Shared fixtures: paths of the bundled example slices and the full raw data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "data"


@pytest.fixture(scope="session")
def examples() -> Path:
    return EXAMPLES


@pytest.fixture(scope="session")
def full_data() -> Path:
    """The full raw data (../shared/data); tests using it skip when WORKBENCH_DATA is unset."""
    value = os.environ.get("WORKBENCH_DATA")
    if not value:
        pytest.skip("WORKBENCH_DATA is not set (point it at the full raw data, e.g. ../shared/data)")
    path = Path(value)
    if not path.is_dir():
        pytest.fail(f"WORKBENCH_DATA={value} is not a directory")
    return path


@pytest.fixture
def store(tmp_path: Path):
    from curation.store import SnapshotStore

    return SnapshotStore(str(tmp_path / "store"))
