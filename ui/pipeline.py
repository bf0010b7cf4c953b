"""The pipeline `workbench run` executes: a TOML config, validated, then each stage in order.

Each stage calls the same library function as its own CLI verb; this module
only reads the config and sequences them.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from curation.errors import WorkbenchError


def _examples_dir() -> Path:
    """The bundled examples (configs and data slices).

    An installed wheel carries the checkout's examples/ folder as the package ``ui.examples``
    (pyproject.toml's package-dir); a checkout, and an editable install of it, reads examples/ itself.
    """
    installed = resources.files("ui") / "examples"
    if isinstance(installed, Path) and installed.is_dir():
        return installed
    return Path(__file__).resolve().parent.parent / "examples"


EXAMPLES_DIR = _examples_dir()
DEFAULT_CONFIG = EXAMPLES_DIR / "pipeline.toml"

_SECTIONS = {"ingest", "curate", "label", "validate", "export", "finetune", "evaluate"}
_FINETUNE_KEYS = {"input", "config", "base_model", "tiny", "out", "set"}
_EVALUATE_KEYS = {
    "input",
    "adapters",
    "base_model",
    "tiny",
    "suites",
    "judge",
    "judge_url",
    "limit",
    "seed",
    "max_new_tokens",
    "batch_size",
    "tag",
    "out",
}
_EXPORT_KEYS = {"input", "tasks", "mix", "seed", "system_prompt", "tokenizer", "tag", "allow_unvalidated"}
_INGEST_KEYS = {"source", "paths", "tag", "on_error"}
_CURATE_KEYS = {"inputs", "config", "tag", "engine", "workers"}
_VALIDATE_KEYS = {"input", "config", "report", "tag"}
_LABEL_KEYS = {
    "input",
    "tasks",
    "labeler",
    "model",
    "base_url",
    "tag",
    "max_cost",
    "max_failures",
    "deadline",
    "timeout",
}


@dataclass(frozen=True)
class IngestStage:
    source: str
    paths: tuple[Path, ...]
    tag: str | None = None
    on_error: str = "raise"


@dataclass(frozen=True)
class CurateStage:
    inputs: tuple[str, ...]
    config: Path
    tag: str | None = None
    engine: str = "local"
    workers: int = 1


@dataclass(frozen=True)
class LabelStage:
    input: str
    tasks: tuple[str, ...]
    labeler: str = "local"
    model: str | None = None
    base_url: str | None = None
    tag: str | None = None
    max_cost: float | None = None
    max_failures: float = 0.1  # the share of items that may fail before the run stops, publishing nothing
    deadline: float | None = None  # seconds for the whole labeling stage
    timeout: float = 30.0  # seconds per HTTP attempt


@dataclass(frozen=True)
class ValidateStage:
    input: str
    config: Path | None = None
    report: Path | None = None
    tag: str | None = None


@dataclass(frozen=True)
class ExportStage:
    input: str
    tasks: tuple[str, ...] = ("response", "emotion", "strategy", "traits")
    mix: str | None = None  # "temperature:0.5"
    seed: int = 0
    system_prompt: str | None = None
    tokenizer: str | None = None  # for token-length statistics; None: a whitespace proxy
    tag: str | None = None
    allow_unvalidated: bool = False


@dataclass(frozen=True)
class FinetuneStage:
    input: str  # an export ref
    config: Path | None = None  # a FinetuneConfig TOML (relative to the pipeline file)
    base_model: str | None = None
    tiny: bool = False  # the tiny random model: demonstrates the path only
    out: str = "pipeline"  # the run folder, under the runs folder (workbench runs list)
    overrides: dict[str, Any] = field(default_factory=dict)  # FinetuneConfig fields


@dataclass(frozen=True)
class EvaluateStage:
    input: str  # an export ref: prompts from its test split
    adapters: tuple[str, ...] = ("pipeline",)  # run folders under the runs folder
    base_model: str | None = None
    tiny: bool = False  # the tiny random base model (the [finetune] stage's)
    suites: tuple[str, ...] = ("empathy", "classification", "traits", "safety")
    judge: str = "local"  # the local proxy, or a judge model name at judge_url
    judge_url: str | None = None
    limit: int = 50  # prompts per suite
    seed: int = 0
    max_new_tokens: int = 256
    batch_size: int = 32
    tag: str | None = None
    out: str = "evaluation"  # the report folder, under the runs folder (the dashboard's Results page finds it)


@dataclass(frozen=True)
class PipelineConfig:
    path: Path
    ingest: tuple[IngestStage, ...] = field(default_factory=tuple)
    curate: CurateStage | None = None
    label: LabelStage | None = None
    validate: ValidateStage | None = None
    export: ExportStage | None = None
    finetune: FinetuneStage | None = None
    evaluate: EvaluateStage | None = None


def load_config(path: Path | None = None) -> PipelineConfig:
    """Read and validate a pipeline TOML; errors name the file and the bad key."""
    path = Path(path) if path else DEFAULT_CONFIG
    if not path.is_file():
        hint = " (the bundled examples are missing: reinstall, or pass --config)" if path == DEFAULT_CONFIG else ""
        raise WorkbenchError(f"{path}: pipeline config not found{hint}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise WorkbenchError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - _SECTIONS)
    if unknown:
        raise WorkbenchError(
            f"{path}: unknown section {unknown[0]!r} (expected one of: {', '.join(sorted(_SECTIONS))})"
        )
    stages = []
    for i, raw in enumerate(data.get("ingest", [])):
        where = f"{path}: [[ingest]] #{i + 1}"
        stages.append(_ingest_stage(raw, where, base=path.parent))
    curate = _curate_stage(data["curate"], f"{path}: [curate]", base=path.parent) if "curate" in data else None
    label = _label_stage(data["label"], f"{path}: [label]") if "label" in data else None
    validate = (
        _validate_stage(data["validate"], f"{path}: [validate]", base=path.parent) if "validate" in data else None
    )
    export = _export_stage(data["export"], f"{path}: [export]") if "export" in data else None
    finetune = (
        _finetune_stage(data["finetune"], f"{path}: [finetune]", base=path.parent) if "finetune" in data else None
    )
    evaluate = _evaluate_stage(data["evaluate"], f"{path}: [evaluate]") if "evaluate" in data else None
    return PipelineConfig(
        path=path,
        ingest=tuple(stages),
        curate=curate,
        label=label,
        validate=validate,
        export=export,
        finetune=finetune,
        evaluate=evaluate,
    )


def _evaluate_stage(raw: Any, where: str) -> EvaluateStage:
    _check_table(raw, where, allowed=_EVALUATE_KEYS, required=("input",))
    tiny = raw.get("tiny", False)
    if not isinstance(tiny, bool) or tiny == bool(raw.get("base_model")):
        raise WorkbenchError(f"{where}: give either 'base_model' or tiny = true (not both)")
    for key in ("adapters", "suites"):
        value = raw.get(key, list(getattr(EvaluateStage, key)))
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise WorkbenchError(f"{where}: {key!r} must be a list of names")
    for key in ("limit", "seed", "max_new_tokens", "batch_size"):
        value = raw.get(key, getattr(EvaluateStage, key))
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "seed" else 1):
            raise WorkbenchError(f"{where}: {key!r} must be a positive integer, got {value!r}")
    out = str(raw.get("out", "evaluation"))
    if not out or Path(out).is_absolute() or ".." in Path(out).parts:
        raise WorkbenchError(f"{where}: 'out' must be a folder name under the runs folder, got {out!r}")
    return EvaluateStage(
        input=str(raw["input"]),
        adapters=tuple(raw.get("adapters", EvaluateStage.adapters)),
        base_model=raw.get("base_model"),
        tiny=tiny,
        suites=tuple(raw.get("suites", EvaluateStage.suites)),
        judge=str(raw.get("judge", "local")),
        judge_url=raw.get("judge_url"),
        limit=raw.get("limit", EvaluateStage.limit),
        seed=raw.get("seed", 0),
        max_new_tokens=raw.get("max_new_tokens", EvaluateStage.max_new_tokens),
        batch_size=raw.get("batch_size", EvaluateStage.batch_size),
        tag=raw.get("tag"),
        out=out,
    )


def _finetune_stage(raw: Any, where: str, *, base: Path) -> FinetuneStage:
    _check_table(raw, where, allowed=_FINETUNE_KEYS, required=("input",))
    tiny = raw.get("tiny", False)
    if not isinstance(tiny, bool):
        raise WorkbenchError(f"{where}: 'tiny' must be true or false, got {tiny!r}")
    if tiny == bool(raw.get("base_model")):
        raise WorkbenchError(f"{where}: give either 'base_model' or tiny = true (not both)")
    overrides = raw.get("set", {})
    if not isinstance(overrides, dict):
        raise WorkbenchError(f"{where}: 'set' must be a table of fine-tuning config fields")
    out = str(raw.get("out", "pipeline"))
    if not out or Path(out).is_absolute() or ".." in Path(out).parts:
        raise WorkbenchError(f"{where}: 'out' must be a folder name under the runs folder, got {out!r}")
    return FinetuneStage(
        input=str(raw["input"]),
        config=base / raw["config"] if raw.get("config") else None,
        base_model=raw.get("base_model"),
        tiny=tiny,
        out=out,
        overrides=dict(overrides),
    )


def _export_stage(raw: Any, where: str) -> ExportStage:
    _check_table(raw, where, allowed=_EXPORT_KEYS, required=("input",))
    tasks = raw.get("tasks", list(ExportStage.tasks))
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
        raise WorkbenchError(f"{where}: 'tasks' must be a non-empty list of task names")
    mix = raw.get("mix")
    if mix is not None:
        from finetune.export import parse_mix

        try:
            parse_mix(mix)
        except WorkbenchError as exc:
            raise WorkbenchError(f"{where}: 'mix': {exc}") from None
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise WorkbenchError(f"{where}: 'seed' must be an integer, got {seed!r}")
    return ExportStage(
        input=str(raw["input"]),
        tasks=tuple(tasks),
        mix=mix,
        seed=seed,
        system_prompt=raw.get("system_prompt"),
        tokenizer=raw.get("tokenizer"),
        tag=raw.get("tag"),
        allow_unvalidated=bool(raw.get("allow_unvalidated", False)),
    )


def _validate_stage(raw: Any, where: str, *, base: Path) -> ValidateStage:
    _check_table(raw, where, allowed=_VALIDATE_KEYS, required=("input",))
    return ValidateStage(
        input=str(raw["input"]),
        config=base / raw["config"] if raw.get("config") else None,
        report=Path(raw["report"]) if raw.get("report") else None,
        tag=raw.get("tag"),
    )


def _label_stage(raw: Any, where: str) -> LabelStage:
    _check_table(raw, where, allowed=_LABEL_KEYS, required=("input", "tasks"))
    tasks = raw["tasks"]
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
        raise WorkbenchError(f"{where}: 'tasks' must be a non-empty list of task names")
    labeler = raw.get("labeler", "local")
    if labeler not in ("local", "llm"):
        raise WorkbenchError(f"{where}: 'labeler' must be 'local' or 'llm', got {labeler!r}")
    if labeler == "llm" and not raw.get("model"):
        raise WorkbenchError(f"{where}: labeler 'llm' needs 'model'")
    return LabelStage(
        input=str(raw["input"]),
        tasks=tuple(tasks),
        labeler=labeler,
        model=raw.get("model"),
        base_url=raw.get("base_url"),
        tag=raw.get("tag"),
        max_cost=raw.get("max_cost"),
        max_failures=_number(raw, "max_failures", where, default=0.1, low=0.0, high=1.0),
        deadline=_number(raw, "deadline", where, default=None, low=0.0),
        timeout=_number(raw, "timeout", where, default=30.0, low=0.0),
    )


def _number(raw: dict[str, Any], key: str, where: str, *, default: Any, low: float, high: float | None = None) -> Any:
    """A number in (low, high] from a stage table (``default`` when absent); errors name the key."""
    if key not in raw:
        return default
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WorkbenchError(f"{where}: {key!r} must be a number, got {value!r}")
    if value < low or (value == low and key != "max_failures") or (high is not None and value > high):
        bounds = f"between {low:g} and {high:g}" if high is not None else f"above {low:g}"
        raise WorkbenchError(f"{where}: {key!r} must be {bounds}, got {value!r}")
    return float(value)


def _curate_stage(raw: Any, where: str, *, base: Path) -> CurateStage:
    _check_table(raw, where, allowed=_CURATE_KEYS, required=("inputs", "config"))
    inputs = raw["inputs"]
    if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs):
        raise WorkbenchError(f"{where}: 'inputs' must be a non-empty list of snapshot refs")
    engine = raw.get("engine", "local")
    if engine not in ("local", "ray"):
        raise WorkbenchError(f"{where}: 'engine' must be 'local' or 'ray', got {engine!r}")
    workers = raw.get("workers", 1)
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise WorkbenchError(f"{where}: 'workers' must be a positive integer, got {workers!r}")
    return CurateStage(
        inputs=tuple(inputs), config=base / raw["config"], tag=raw.get("tag"), engine=engine, workers=workers
    )


def _ingest_stage(raw: dict[str, Any], where: str, *, base: Path) -> IngestStage:
    _check_table(raw, where, allowed=_INGEST_KEYS, required=("source", "paths"))
    paths = raw["paths"]
    if isinstance(paths, str):
        paths = [paths]
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise WorkbenchError(f"{where}: 'paths' must be a list of strings")
    return IngestStage(
        source=str(raw["source"]),
        paths=tuple((base / p) for p in paths),
        tag=raw.get("tag"),
        on_error=raw.get("on_error", "raise"),
    )


def _check_table(raw: Any, where: str, *, allowed: set[str], required: tuple[str, ...]) -> dict[str, Any]:
    """A config table with only ``allowed`` keys and every ``required`` one; errors name the key."""
    if not isinstance(raw, dict):
        raise WorkbenchError(f"{where}: expected a table")
    bad = sorted(set(raw) - allowed)
    if bad:
        raise WorkbenchError(f"{where}: unknown key {bad[0]!r} (expected: {', '.join(sorted(allowed))})")
    for key in required:
        if key not in raw:
            raise WorkbenchError(f"{where}: missing key {key!r}")
    return raw
