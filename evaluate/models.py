"""The models and the judge of an evaluation, from what a user types (``--base-model``, ``--adapter``, ``--judge``).

An adapter argument is a run folder (``runs/r1``: its ``adapter/``), an adapter
folder, or a checkpoint folder (``runs/r1/checkpoints/checkpoint-100``), optionally
named (``tuned=runs/r1``). Its name defaults to the run's folder name, with
``@checkpoint-N`` for a checkpoint, so seeds 002 and 004's step-by-step comparisons
read as ``r1@checkpoint-100`` beside ``r1``. Without ``--base-model`` the base is the
one the run recorded (``run.json``); every adapter must share it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from curation.errors import WorkbenchError


def adapter_folder(path: Path) -> tuple[Path, Path | None]:
    """(the adapter folder, the run folder it belongs to, if any) of an ``--adapter`` path."""
    if not path.exists():
        raise WorkbenchError(f"adapter {path}: no such folder")
    if (path / "run.json").is_file():
        if not (path / "adapter" / "adapter_config.json").is_file():
            raise WorkbenchError(
                f"adapter {path}: the run has no adapter/ (not finished? see workbench runs show {path})"
            )
        return path / "adapter", path
    if (path / "adapter_config.json").is_file():
        for parent in path.parents:
            if (parent / "run.json").is_file():
                return path, parent
            if parent == parent.parent:
                break
        return path, None
    raise WorkbenchError(f"adapter {path}: neither a run folder nor a peft adapter (no adapter_config.json)")


def adapter_name(folder: Path, run: Path | None) -> str:
    if run is None:
        return folder.name
    if folder.name.startswith("checkpoint-"):
        return f"{run.name}@{folder.name}"
    return run.name


def model_specs(
    *,
    base_model: str | None,
    adapters: Sequence[str],
    model_url: str | None = None,
    model: str | None = None,
    tiny: bool = False,
    out: Path | None = None,
) -> list[Any]:
    """The models under test: the base (when local), each adapter on it, and an endpoint model."""
    from evaluate.generate import ModelSpec

    resolved = []
    for raw in adapters:
        name, _, path = raw.rpartition("=") if "=" in raw else ("", "", raw)
        folder, run = adapter_folder(Path(path).expanduser())
        resolved.append((name or adapter_name(folder, run), folder, run))
    recorded = set()
    for _, _, run in resolved:
        if run is not None:
            info = json.loads((run / "run.json").read_text(encoding="utf-8"))
            recorded.add(info.get("base_model_path") or info.get("base_model"))
    if tiny:
        if base_model:
            raise WorkbenchError("--tiny and --base-model are exclusive")
        from finetune.tiny import build_tiny_model

        base_model = str(build_tiny_model((out or Path("reports")).resolve().parent / "tiny-qwen2"))
    if base_model is None and resolved:
        if len(recorded) != 1:
            raise WorkbenchError("give --base-model: the adapters do not name one base model in their run.json")
        base_model = recorded.pop()
    specs = []
    if base_model:
        from finetune.train import resolve_base_model

        base_path = str(resolve_base_model(base_model))
        specs.append(ModelSpec(name="base", base_model=base_path))
        for name, folder, _ in resolved:
            specs.append(ModelSpec(name=name, base_model=base_path, adapter=str(folder)))
    elif resolved:
        raise WorkbenchError("adapters need a base model: give --base-model")
    if model_url or model:
        if not (model_url and model):
            raise WorkbenchError("an endpoint model needs both --model-url and --model")
        specs.append(ModelSpec(name=model, url=model_url, model=model))
    if not specs:
        raise WorkbenchError(
            "no model to evaluate: give --base-model (and --adapter), --tiny, or --model-url and --model"
        )
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise WorkbenchError(f"two models share a name ({', '.join(names)}): name adapters with NAME=PATH")
    return specs


def build_judge(judge: str, url: str | None, cache: Any, *, timeout: float = 60.0) -> Any:
    """``local`` -> the proxy judge; any other name -> that model at ``url`` (or ``$OPENAI_BASE_URL``)."""
    from evaluate.judge import LLMJudge, LocalJudge

    if judge == "local":
        return LocalJudge()
    from labeling.client import LLMClient

    client = LLMClient(model=judge, base_url=url or os.environ.get("OPENAI_BASE_URL"), temperature=0.0, timeout=timeout)
    return LLMJudge(client, cache)
