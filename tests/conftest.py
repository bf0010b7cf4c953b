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


@pytest.fixture(scope="session")
def argilla_server(tmp_path_factory):
    """A real argilla-server (own virtualenv, SQLite, Redis, the workbench search engine), one per session.

    Started with ``workbench review serve --detach`` (see tests/labeling/argilla_local.py);
    needs Debian's redis-server (``.ci/run`` installs it).
    """
    import sys

    helpers = str(ROOT / "tests" / "labeling")
    if helpers not in sys.path:
        sys.path.insert(0, helpers)
    from argilla_local import LocalArgilla

    server = LocalArgilla(tmp_path_factory.mktemp("argilla-home")).start()
    try:
        yield server
    finally:
        server.close()
