"""Reading evaluation reports and training logs from a runs folder (what the dashboard's Results page shows).

The runs folder (``workbench dashboard --runs DIR``; default ``$WORKBENCH_RUNS``,
else ``runs/`` beside a local store) holds one folder per run::

    runs/<run>/metrics.jsonl        training log: one JSON object per logging step
    runs/<run>/trainer_state.json   or Hugging Face Trainer's state (its ``log_history``)
    runs/<run>/run.json             optional: {"base_model", "snapshot", "config", ...} shown as is
    runs/**/eval*.json              evaluation reports (eval.json, eval-test.json, ...), at any depth <= 3

(``checkpoint-*`` folders are skipped: they repeat their run's log.)

A line of ``metrics.jsonl``: ``{"step": 10, "loss": 1.93}``; any other numeric
key is a series too (``eval_loss``, ``learning_rate``, ``epoch``, ``grad_norm``).

An evaluation report::

    {
      "name": "qlora-tinyllama vs base",            optional (default: the file name)
      "created_at": "2026-01-10T12:00:00Z",         optional
      "snapshot": "f5ef0d757a7e5b92",               optional: the evaluated (validated) snapshot
      "models": {"base": "TinyLlama/...", "finetuned": "runs/qlora-tinyllama/adapter"},
      "metrics": [
        {"metric": "empathy_judge", "model": "base", "value": 2.9,
         "ci_low": 2.6, "ci_high": 3.2, "n": 30, "higher_is_better": true},
        {"metric": "empathy_judge", "model": "finetuned", "value": 3.6, "ci_low": 3.3, "ci_high": 3.9, "n": 30}
      ]
    }

``model`` names a key of ``models``; ``ci_low`` / ``ci_high`` (a confidence
interval, e.g. 95% bootstrap), ``n`` and ``higher_is_better`` are optional.
``workbench evaluate``'s reports add ``comparisons`` (per metric and tuned model:
``delta``, ``delta_ci_low`` / ``delta_ci_high``, ``test``, ``p_adjusted``,
``verdict``, ``mde``, ``n_needed``, ``n``), shown beside the metrics.
A file that does not fit raises :class:`ResultsError` naming the file and the field.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curation.errors import WorkbenchError

METRICS_LOG = "metrics.jsonl"
TRAINER_STATE = "trainer_state.json"
RUN_INFO = "run.json"
REPORT_GLOB = "eval*.json"
MAX_DEPTH = 3


class ResultsError(WorkbenchError):
    """A report or a training log that does not fit the documented format."""


@dataclass(frozen=True)
class MetricResult:
    metric: str
    model: str
    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None
    higher_is_better: bool | None = None


@dataclass(frozen=True)
class EvalReport:
    path: str
    name: str
    models: dict[str, str]
    metrics: list[MetricResult]
    created_at: str | None = None
    snapshot: str | None = None
    comparisons: list[dict[str, Any]] = field(default_factory=list)  # workbench evaluate: base -> tuned verdicts

    def verdicts(self) -> list[dict[str, Any]]:
        """One row per base-to-tuned comparison: delta with its CI, Holm-adjusted p, verdict, n."""
        rows = []
        for c in self.comparisons:
            low, high = c.get("delta_ci_low"), c.get("delta_ci_high")
            rows.append(
                {
                    "metric": c.get("metric"),
                    "model": c.get("model"),
                    "vs": c.get("against"),
                    "delta": c.get("delta"),
                    "delta CI": f"[{low:.3g}, {high:.3g}]" if low is not None and high is not None else "",
                    "test": c.get("test"),
                    "p (Holm)": c.get("p_adjusted"),
                    "verdict": c.get("verdict"),
                    "MDE": c.get("mde"),
                    "prompts needed": c.get("n_needed"),
                    "n": c.get("n"),
                }
            )
        return rows

    def table(self) -> list[dict[str, Any]]:
        """One row per metric: each model's value and interval side by side, and the difference to the first model."""
        models = list(self.models)
        rows: dict[str, dict[str, Any]] = {}
        for m in self.metrics:
            row = rows.setdefault(m.metric, {"metric": m.metric, "n": m.n, "higher_is_better": m.higher_is_better})
            row[m.model] = m.value
            row[f"{m.model} CI"] = (
                f"[{m.ci_low:.3g}, {m.ci_high:.3g}]" if m.ci_low is not None and m.ci_high is not None else ""
            )
        for row in rows.values():
            if len(models) >= 2 and models[0] in row and models[1] in row:
                row[f"{models[1]} - {models[0]}"] = row[models[1]] - row[models[0]]
        return list(rows.values())


@dataclass(frozen=True)
class TrainingRun:
    path: str
    name: str
    log: list[dict[str, float]]  # one dict per logging step, numeric values only, each with "step"
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def series(self) -> list[str]:
        return sorted({k for row in self.log for k in row if k != "step"})

    def long(self) -> list[dict[str, Any]]:
        """Tidy rows ``{run, step, series, value}`` for a line chart."""
        return [
            {"run": self.name, "step": row["step"], "series": k, "value": v}
            for row in self.log
            for k, v in row.items()
            if k != "step"
        ]


def default_runs_dir(store_url: str) -> Path | None:
    """``$WORKBENCH_RUNS``, else ``runs/`` beside a local store folder; None for a remote store without the variable."""
    env = os.environ.get("WORKBENCH_RUNS")
    if env:
        return Path(env)
    if "://" in store_url and not store_url.startswith("file://"):
        return None
    return Path(store_url.removeprefix("file://")).resolve().parent / "runs"


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ResultsError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def load_report(path: str | Path) -> EvalReport:
    """An evaluation report (see the module docstring); errors name the file and the field."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{path}: not a readable JSON report ({exc})") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: expected a JSON object")
    models = data.get("models")
    if not isinstance(models, dict) or not models or not all(isinstance(v, str) for v in models.values()):
        raise ResultsError(f"{path}: 'models' must map names (base, finetuned, ...) to model ids")
    raw_metrics = data.get("metrics")
    if not isinstance(raw_metrics, list) or not raw_metrics:
        raise ResultsError(f"{path}: 'metrics' must be a non-empty list")
    metrics = []
    for i, m in enumerate(raw_metrics):
        where = f"{path}: metrics[{i}]"
        if not isinstance(m, dict):
            raise ResultsError(f"{where}: expected an object")
        for key in ("metric", "model"):
            if not isinstance(m.get(key), str) or not m[key]:
                raise ResultsError(f"{where}.{key}: expected a name")
        if m["model"] not in models:
            raise ResultsError(f"{where}.model: {m['model']!r} is not one of the report's models ({', '.join(models)})")
        low = _number(m["ci_low"], f"{where}.ci_low") if m.get("ci_low") is not None else None
        high = _number(m["ci_high"], f"{where}.ci_high") if m.get("ci_high") is not None else None
        if (low is None) != (high is None) or (low is not None and high is not None and low > high):
            raise ResultsError(f"{where}: give both ci_low <= ci_high, or neither")
        n = m.get("n")
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
            raise ResultsError(f"{where}.n: expected a count, got {n!r}")
        hib = m.get("higher_is_better")
        if hib is not None and not isinstance(hib, bool):
            raise ResultsError(f"{where}.higher_is_better: expected true or false")
        metrics.append(
            MetricResult(
                metric=m["metric"],
                model=m["model"],
                value=_number(m.get("value"), f"{where}.value"),
                ci_low=low,
                ci_high=high,
                n=n,
                higher_is_better=hib,
            )
        )
    return EvalReport(
        path=str(path),
        name=str(data.get("name") or path.stem),
        models=dict(models),
        metrics=metrics,
        created_at=data.get("created_at"),
        snapshot=data.get("snapshot"),
        comparisons=[c for c in data.get("comparisons") or [] if isinstance(c, dict)],
    )


def _log_rows(rows: list[Any], where: str) -> list[dict[str, float]]:
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ResultsError(f"{where}, entry {i + 1}: expected a JSON object")
        if "step" not in row:
            raise ResultsError(f"{where}, entry {i + 1}: no 'step'")
        step = _number(row["step"], f"{where}, entry {i + 1}: step")
        numeric = {
            k: float(v)
            for k, v in row.items()
            if k != "step" and isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        }
        out.append({"step": step, **numeric})
    return out


def load_training_run(folder: str | Path) -> TrainingRun:
    """A run folder's training log: ``metrics.jsonl``, else ``trainer_state.json``'s ``log_history``."""
    folder = Path(folder)
    log_path = folder / METRICS_LOG
    if log_path.is_file():
        rows = []
        with log_path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ResultsError(f"{log_path}, line {n}: not JSON ({exc.msg})") from None
        log = _log_rows(rows, str(log_path))
    else:
        state_path = folder / TRAINER_STATE
        try:
            state = json.loads(state_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ResultsError(f"{folder}: no readable {METRICS_LOG} or {TRAINER_STATE} ({exc})") from None
        history = state.get("log_history") if isinstance(state, dict) else None
        if not isinstance(history, list):
            raise ResultsError(f"{state_path}: expected a 'log_history' list")
        log = _log_rows(history, str(state_path))
    info: dict[str, Any] = {}
    if (folder / RUN_INFO).is_file():
        try:
            info = json.loads((folder / RUN_INFO).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ResultsError(f"{folder / RUN_INFO}: not JSON ({exc.msg})") from None
    return TrainingRun(path=str(folder), name=folder.name, log=log, info=info if isinstance(info, dict) else {})


@dataclass
class Results:
    runs_dir: str
    reports: list[EvalReport] = field(default_factory=list)
    runs: list[TrainingRun] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # files that did not load, one line each

    @property
    def empty(self) -> bool:
        return not self.reports and not self.runs


def find_results(runs_dir: str | Path | None) -> Results:
    """Every evaluation report and training run under ``runs_dir``; a bad file is listed in ``errors``, not raised."""
    out = Results(runs_dir=str(runs_dir) if runs_dir else "")
    if runs_dir is None:
        return out
    root = Path(runs_dir)
    if not root.is_dir():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        depth = len(Path(dirpath).relative_to(root).parts)
        if depth >= MAX_DEPTH:
            dirnames[:] = []
        # Trainer checkpoints repeat the run's own log: the run folder is listed once.
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("checkpoint-"))
        here = Path(dirpath)
        for name in sorted(filenames):
            if Path(name).match(REPORT_GLOB):
                try:
                    out.reports.append(load_report(here / name))
                except ResultsError as exc:
                    out.errors.append(str(exc))
        if METRICS_LOG in filenames or TRAINER_STATE in filenames:
            try:
                out.runs.append(load_training_run(here))
            except ResultsError as exc:
                out.errors.append(str(exc))
    return out
