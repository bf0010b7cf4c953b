"""Run folders: what a fine-tuning run leaves behind, and how ``workbench runs`` reads it.

One folder per run::

    runs/<run>/run.json        status (running / finished / failed + reason), lineage, results
    runs/<run>/config.toml     the resolved FinetuneConfig (config.json: the same, read back on --resume)
    runs/<run>/metrics.jsonl   one JSON object per log step: step, loss, eval_loss, learning_rate,
                               grad_norm, tokens_per_second (trained tokens), lm_loss and <head>_loss and
                               eval_<head>_<metric> when heads train, ... (evaluate/results.py reads it)
    runs/<run>/checkpoints/checkpoint-<step>/   transformers checkpoints (adapter, optimizer, scheduler, RNG)
    runs/<run>/adapter/        the final adapter (the best checkpoint's when validating) + the tokenizer

``run.json`` says ``finished`` only after the adapter is in place, so a folder
that looks finished is finished. Lineage in ``run.json``: export id, snapshot
id, base model, tokenizer name and chat-template sha256, code version.

This module imports nothing heavy (``workbench runs`` never loads torch).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from curation.errors import WorkbenchError

RUN_JSON = "run.json"
CONFIG_TOML = "config.toml"
CONFIG_JSON = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
ADAPTER = "adapter"
STATUSES = ("running", "finished", "failed")


class RunError(WorkbenchError):
    """A run folder that cannot be used as asked (finished already, not a run, unreadable)."""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class RunFolder:
    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    @property
    def run_json(self) -> Path:
        return self.path / RUN_JSON

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def adapter(self) -> Path:
        return self.path / ADAPTER

    def exists(self) -> bool:
        return self.run_json.is_file()

    def info(self) -> dict[str, Any]:
        """``run.json`` as a dict; :class:`RunError` when absent or unreadable."""
        try:
            data = json.loads(self.run_json.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunError(f"{self.path}: not a run folder (no {RUN_JSON})") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RunError(f"{self.run_json}: unreadable ({exc})") from None
        if not isinstance(data, dict) or data.get("status") not in STATUSES:
            raise RunError(f"{self.run_json}: no valid 'status' ({', '.join(STATUSES)})")
        return data

    def write_info(self, info: dict[str, Any]) -> None:
        """Replace ``run.json`` atomically (write a temporary file, then rename)."""
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.run_json.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(info, indent=1, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, self.run_json)

    def update_info(self, **changes: Any) -> dict[str, Any]:
        info = self.info()
        info.update(changes)
        self.write_info(info)
        return info

    def check_new(self) -> None:
        """Refuse a folder that holds a run (or anything else): a new run starts in an empty or absent folder."""
        if self.exists():
            status = self.info()["status"]
            if status == "finished":
                raise RunError(f"{self.path}: holds a finished run; choose another --out (runs are never overwritten)")
            raise RunError(
                f"{self.path}: holds a {status} run; continue it with --resume {self.path}, or choose another --out"
            )
        if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            raise RunError(f"{self.path}: exists and is not an empty folder; choose another --out")

    def check_resumable(self) -> dict[str, Any]:
        info = self.info()
        if info["status"] == "finished":
            raise RunError(f"{self.path}: the run already finished (adapter in {self.adapter}); nothing to resume")
        return info

    def last_checkpoint(self) -> Path | None:
        """The newest complete checkpoint (``checkpoint-<step>`` with its trainer state), or None."""
        best: tuple[int, Path] | None = None
        if self.checkpoints.is_dir():
            for child in self.checkpoints.iterdir():
                name = child.name
                if not name.startswith("checkpoint-") or not name[11:].isdigit():
                    continue
                if not (child / "trainer_state.json").is_file():
                    continue  # interrupted while saving
                step = int(name[11:])
                if best is None or step > best[0]:
                    best = (step, child)
        return best[1] if best else None

    def read_metrics(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        if not self.metrics.is_file():
            return rows
        with self.metrics.open(encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    raise RunError(f"{self.metrics}, line {n}: not JSON") from None
                if isinstance(row, dict) and "step" in row:
                    rows.append(row)
        return rows

    def truncate_metrics(self, last_step: int) -> list[dict[str, Any]]:
        """Keep the log lines up to ``last_step`` (a resumed run rewrites what came after its checkpoint)."""
        kept = [row for row in self.read_metrics() if row["step"] <= last_step]
        tmp = self.metrics.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(row) + "\n" for row in kept), encoding="utf-8")
        os.replace(tmp, self.metrics)
        return kept

    def append_metrics(self, row: dict[str, Any]) -> None:
        with self.metrics.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


@dataclass
class RunSummary:
    path: str
    name: str
    status: str
    reason: str | None
    info: dict[str, Any]
    steps: int
    first_loss: float | None
    last_loss: float | None
    best_eval_loss: float | None
    best_eval_step: int | None
    last_eval_loss: float | None
    tokens_per_second: float | None  # median of the logged training rates
    evals: list[tuple[int, float]] = field(default_factory=list)
    losses: list[tuple[int, float]] = field(default_factory=list)
    heads: dict[str, float] = field(default_factory=dict)  # eval_<head>_<metric> at the best (else last) eval


def summarize(folder: str | Path) -> RunSummary:
    """Status, lineage and the loss curve in a few numbers (for ``runs list`` / ``runs show``)."""
    run = RunFolder(Path(folder))
    info = run.info()
    rows = run.read_metrics()
    losses = [(int(r["step"]), float(r["loss"])) for r in rows if _finite(r.get("loss"))]
    evals = [(int(r["step"]), float(r["eval_loss"])) for r in rows if _finite(r.get("eval_loss"))]
    rates = sorted(float(r["tokens_per_second"]) for r in rows if _finite(r.get("tokens_per_second")))
    best = min(evals, key=lambda se: se[1]) if evals else None
    at = best[0] if best else None
    head_rows = [r for r in rows if any(k.startswith(_HEAD_KEYS) for k in r)]
    chosen = next((r for r in head_rows if int(r["step"]) == at), head_rows[-1] if head_rows else {})
    heads = {k: float(v) for k, v in chosen.items() if k.startswith(_HEAD_KEYS) and _finite(v)}
    return RunSummary(
        path=str(run.path),
        name=run.path.name,
        status=info["status"],
        reason=info.get("reason"),
        info=info,
        steps=int(info.get("global_step") or (max((int(r["step"]) for r in rows), default=0))),
        first_loss=losses[0][1] if losses else None,
        last_loss=losses[-1][1] if losses else None,
        best_eval_loss=best[1] if best else None,
        best_eval_step=best[0] if best else None,
        last_eval_loss=evals[-1][1] if evals else None,
        tokens_per_second=rates[len(rates) // 2] if rates else None,
        evals=evals,
        losses=losses,
        heads=heads,
    )


_HEAD_KEYS = ("eval_emotion_", "eval_strategy_")


def list_runs(runs_dir: str | Path) -> list[RunSummary]:
    """Every run folder directly under ``runs_dir`` (or ``runs_dir`` itself when it is one), oldest first."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    folders = [root] if (root / RUN_JSON).is_file() else sorted(p for p in root.iterdir() if (p / RUN_JSON).is_file())
    out = []
    for folder in folders:
        try:
            out.append(summarize(folder))
        except RunError as exc:
            out.append(
                RunSummary(str(folder), folder.name, "unreadable", str(exc), {}, 0, None, None, None, None, None, None)
            )
    return sorted(out, key=lambda s: (str(s.info.get("started_at", "")), s.name))


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
