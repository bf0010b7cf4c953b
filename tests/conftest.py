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


@pytest.fixture(scope="session")
def validated_store(tmp_path_factory):
    """``validated_store(name)`` -> a store URL of its own holding the bundled examples ingested (the example
    pipeline's example-* refs), curated (``clean``), labeled by the local labeler (``labeled``) and validated
    (``validated``): ``workbench run`` without its export/fine-tune stages, under the names of a user's own data.

    The pipeline runs once per session (about a minute); each caller gets a copy, so tests that write
    exports or evaluations never see each other's.
    """
    import json
    import shutil
    import subprocess
    import sys
    import tomllib

    template: list[Path] = []

    def build() -> Path:
        tmp = tmp_path_factory.mktemp("validated-template")
        config = tomllib.loads((ROOT / "examples" / "pipeline.toml").read_text())
        examples = ROOT / "examples"
        lines = []
        for ingest in config["ingest"]:
            paths = ", ".join(json.dumps(str(examples / p)) for p in ingest["paths"])
            lines += ["[[ingest]]", f"source = {json.dumps(ingest['source'])}", f"paths = [{paths}]"]
            lines.append(f'tag = "{ingest["tag"]}"')
        curate = config["curate"]
        lines += ["[curate]", f"inputs = {json.dumps(curate['inputs'])}"]
        lines += [f"config = {json.dumps(str(examples / curate['config']))}", 'tag = "clean"']
        lines += ["[label]", 'input = "clean"', 'tasks = ["emotion", "strategy", "traits", "empathy"]']
        lines += ['labeler = "local"', 'tag = "labeled"', "[validate]", 'input = "labeled"', 'tag = "validated"']
        (tmp / "pipeline.toml").write_text("\n".join(lines) + "\n")
        store = tmp / "store"
        env = {**os.environ, "WORKBENCH_STORE": str(store), "NO_COLOR": "1"}
        cmd = [sys.executable, "-m", "ui.cli", "run", "--config", str(tmp / "pipeline.toml")]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        if proc.returncode != 0:
            raise AssertionError(f"workbench run failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return store

    def copy(name: str) -> str:
        if not template:
            template.append(build())
        target = tmp_path_factory.mktemp(name) / "store"
        shutil.copytree(template[0], target)
        return str(target)

    return copy


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
