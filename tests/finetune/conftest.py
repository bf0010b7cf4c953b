"""Fixtures of the fine-tuning tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """The tiny random Qwen2 model (finetune.tiny), built once per session."""
    pytest.importorskip("transformers")
    from finetune.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-qwen2")
