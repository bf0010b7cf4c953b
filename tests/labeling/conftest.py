"""Fixtures of the labeling tests: a real OpenAI-compatible HTTP server on 127.0.0.1 (see openai_server.py).

The real local Argilla server (``argilla_server``) is a session fixture of tests/conftest.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# With --import-mode=importlib test folders are not packages: make the server module importable by name
# for the test modules of this folder (and for the subprocesses they start).
HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from openai_server import FakeOpenAIServer  # noqa: E402

FAKE_KEY = "sk-test-SECRET-123"


@pytest.fixture
def openai_server():
    """A fresh server per test (no latency, no faults); configure it in the test."""
    server = FakeOpenAIServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake_key(monkeypatch) -> str:
    """A distinctive fake API key in OPENAI_API_KEY, to grep for in every file a test writes."""
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    return FAKE_KEY
