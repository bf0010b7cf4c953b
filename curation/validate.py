"""Validation: Great Expectations suites gate which snapshots count as *validated*.

A snapshot is streamed once into small flat pandas frames holding only what the
expectations read; the Parquet text never becomes a Python object:

    records       id, source, split, synthetic, empty_text, text_hash, id_splits, text_splits
    labels        record_id, task, value, score, label_source, scale (one row per label)
    sources       source, rows (one row per source, including expected sources with 0 rows)
    label_shares  task, value, count, share (share of the task's labels)
    schema        field, type, expected_type (the Parquet schema against RECORD_SCHEMA)

The suites are GX 1.x expectations declared in code and run on an ephemeral
context (no project folder, analytics off). Which checks run, and their bounds,
come from a :class:`SuiteConfig` (a preset per snapshot kind, overridable from
TOML); ``extra`` and ``hooks`` add user expectations. On success the records are
streamed into a NEW snapshot (parent: the input) whose manifest has status
``validated`` and the results summary under ``validation``; on failure nothing
is written.
"""

from __future__ import annotations

import contextlib
import fnmatch
import html
import os
import time
import tomllib
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation import vocabularies
from curation.errors import WorkbenchError
from curation.record import RECORD_SCHEMA, SPLITS
from curation.store import SnapshotStore

#: Every built-in check, in report order.
CHECKS = (
    "schema",
    "ids_unique",
    "ids_well_formed",
    "text_not_empty",
    "labels_in_vocabulary",
    "scores_in_scale",
    "splits_known",
    "no_id_leak",
    "no_text_leak",
    "synthetic_train_only",
    "label_distribution",
    "source_rows",
)

#: Which checks each kind of snapshot runs. Raw ingests keep the sources' own cross-split copies
#: and empty turns (curation removes them), so those two checks start at the curated stage.
KINDS: dict[str, tuple[str, ...]] = {
    "curated": CHECKS,
    "raw": tuple(c for c in CHECKS if c not in ("no_text_leak", "text_not_empty")),
}

FRAMES = ("records", "labels", "sources", "label_shares", "schema")
_INDEX_COLUMN = {
    "records": "id",
    "labels": "record_id",
    "sources": "source",
    "label_shares": "value",
    "schema": "field",
}
_ID_PATTERN = r"^[^:\s]+:(?:train|validation|test):\S+$"
_READ_COLUMNS = ("id", "source", "split", "turns", "labels", "provenance")

Hook = Callable[["ValidationFrames"], Iterable[tuple[str, Any]]]
"""A user hook: sees the frames, returns ``(frame name, GX expectation)`` pairs to run."""


class ValidationFailed(WorkbenchError):
    """A snapshot failed its validation suite; nothing validated was written."""


@dataclass(frozen=True)
class SuiteConfig:
    """What a validation suite checks, and within which bounds.

    ``label_bounds`` maps task -> label (or ``"*"`` for every label of the task) -> (min, max)
    share of that task's labels; ``source_rows`` maps source -> (min, max) rows (max may be
    None); ``score_scales`` maps a task name or glob (``trait.*``) -> (min, max) score.
    ``extra`` holds ``(frame, expectation)`` pairs; ``hooks`` callables that return such pairs.
    """

    kind: str = "curated"
    checks: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    splits: tuple[str, ...] = SPLITS
    synthetic_splits: tuple[str, ...] = ("train",)
    score_scales: Mapping[str, tuple[float, float]] = field(
        default_factory=lambda: {"empathy": (1.0, 5.0), "trait.*": (1.0, 10.0)}
    )
    label_bounds: Mapping[str, Mapping[str, tuple[float, float]]] = field(default_factory=dict)
    source_rows: Mapping[str, tuple[int, int | None]] = field(default_factory=dict)
    examples: int = 3
    extra: tuple[tuple[str, Any], ...] = ()
    hooks: tuple[Hook, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise WorkbenchError(f"unknown snapshot kind {self.kind!r} (expected one of: {', '.join(KINDS)})")
        for name in (*self.checks, *self.skip):
            if name not in CHECKS:
                raise WorkbenchError(f"unknown validation check {name!r} (expected one of: {', '.join(CHECKS)})")
        if not self.checks:
            object.__setattr__(self, "checks", KINDS[self.kind])
        for task, bounds in self.label_bounds.items():
            for value, (lo, hi) in bounds.items():
                if not 0.0 <= lo <= hi <= 1.0:
                    raise WorkbenchError(f"label_bounds.{task}.{value}: need 0 <= min <= max <= 1, got [{lo}, {hi}]")
        for source, (lo, hi) in self.source_rows.items():
            if lo < 0 or (hi is not None and hi < lo):
                raise WorkbenchError(f"source_rows.{source}: need 0 <= min <= max, got [{lo}, {hi}]")
        for task, (lo, hi) in self.score_scales.items():
            if lo > hi:
                raise WorkbenchError(f"score_scales.{task}: min {lo} > max {hi}")
        for frame, _ in self.extra:
            if frame not in FRAMES:
                raise WorkbenchError(f"extra expectation on unknown frame {frame!r} (frames: {', '.join(FRAMES)})")
        if self.examples < 0:
            raise WorkbenchError("examples must be >= 0")

    @property
    def enabled(self) -> tuple[str, ...]:
        return tuple(c for c in self.checks if c not in self.skip)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able part of the configuration (hashed into the validated snapshot's id)."""
        return {
            "kind": self.kind,
            "checks": list(self.enabled),
            "splits": list(self.splits),
            "synthetic_splits": list(self.synthetic_splits),
            "score_scales": {k: list(v) for k, v in sorted(self.score_scales.items())},
            "label_bounds": {
                t: {v: list(b) for v, b in sorted(d.items())} for t, d in sorted(self.label_bounds.items())
            },
            "source_rows": {k: list(v) for k, v in sorted(self.source_rows.items())},
            "extra": [f"{frame}:{_expectation_name(e)}" for frame, e in self.extra],
            "hooks": [getattr(h, "__qualname__", repr(h)) for h in self.hooks],
        }


def load_config(path: str | Path) -> SuiteConfig:
    """A :class:`SuiteConfig` from TOML (top level, or a ``[validation]`` table)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise WorkbenchError(f"{path}: cannot read validation config: {exc}") from None
    data = data.get("validation", data)
    known = {f.name for f in fields(SuiteConfig)} - {"extra", "hooks"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise WorkbenchError(f"{path}: unknown validation option {unknown[0]!r} (known: {', '.join(sorted(known))})")
    kwargs: dict[str, Any] = dict(data)
    for key in ("checks", "skip", "splits", "synthetic_splits"):
        if key in kwargs:
            kwargs[key] = tuple(kwargs[key])
    if "score_scales" in kwargs:
        kwargs["score_scales"] = {k: _pair(v, f"score_scales.{k}", path) for k, v in kwargs["score_scales"].items()}
    if "source_rows" in kwargs:
        kwargs["source_rows"] = {k: _pair(v, f"source_rows.{k}", path) for k, v in kwargs["source_rows"].items()}
    if "label_bounds" in kwargs:
        kwargs["label_bounds"] = {
            t: {v: _pair(b, f"label_bounds.{t}.{v}", path) for v, b in d.items()}
            for t, d in kwargs["label_bounds"].items()
        }
    try:
        return SuiteConfig(**kwargs)
    except WorkbenchError as exc:
        raise WorkbenchError(f"{path}: {exc}") from None


def _pair(value: Any, where: str, path: Path) -> tuple[Any, Any]:
    if not isinstance(value, list) or len(value) != 2:
        raise WorkbenchError(f"{path}: {where} must be [min, max], got {value!r}")
    return value[0], value[1]


# ------------------------------------------------------------------ frames


@dataclass
class ValidationFrames:
    """The flat pandas frames one snapshot is validated on (see the module docstring)."""

    records: Any
    labels: Any
    sources: Any
    label_shares: Any
    schema: Any

    def get(self, name: str) -> Any:
        return getattr(self, name)


def build_frames(store: SnapshotStore, snapshot_id: str, config: SuiteConfig) -> ValidationFrames:
    """Stream a snapshot into :class:`ValidationFrames` (only the needed columns are read)."""
    import pandas as pd

    file_schema = _file_schema(store, snapshot_id)
    schema = pd.DataFrame(
        {
            "field": [f.name for f in RECORD_SCHEMA],
            "type": [
                _type_signature(file_schema.field(f.name).type) if f.name in file_schema.names else "<missing>"
                for f in RECORD_SCHEMA
            ],
            "expected_type": [_type_signature(f.type) for f in RECORD_SCHEMA],
        }
    )
    columns = [c for c in _READ_COLUMNS if c in file_schema.names]
    rec_parts: list[dict[str, np.ndarray]] = []
    lab_parts: list[dict[str, np.ndarray]] = []
    if len(columns) == len(_READ_COLUMNS):
        for batch in store.iter_batches(snapshot_id, columns=columns, batch_size=8192):
            rec, lab = _flatten(batch)
            rec_parts.append(rec)
            lab_parts.append(lab)
    records = _concat(rec_parts, ["id", "source", "split", "synthetic", "empty_text", "text_hash"])
    records["synthetic"] = records["synthetic"].astype(bool)
    records["empty_text"] = records["empty_text"].astype(bool)
    # Leakage: in how many distinct splits each id and each normalised text appears.
    records["id_splits"] = records.groupby("id")["split"].transform("nunique").astype("int64")
    records["text_splits"] = records.groupby("text_hash")["split"].transform("nunique").astype("int64")
    labels = _concat(lab_parts, ["record_id", "task", "value", "score", "label_source"])
    labels["score"] = labels["score"].astype("float64")
    labels["scale"] = _scale_column(labels["task"], config.score_scales)

    counts = records["source"].value_counts()
    names = sorted(set(counts.index) | set(config.source_rows))
    sources = pd.DataFrame({"source": names, "rows": [int(counts.get(n, 0)) for n in names]})

    per_value = labels.groupby(["task", "value"]).size().rename("count").reset_index()
    totals = per_value.groupby("task")["count"].transform("sum")
    per_value["share"] = per_value["count"] / totals
    wanted = [
        (t, v) for t, d in config.label_bounds.items() for v in d if v != "*"
    ]  # a bounded label absent from the data has share 0, not no row
    have = set(zip(per_value["task"], per_value["value"], strict=True))
    missing = [(t, v) for t, v in wanted if (t, v) not in have]
    if missing:
        per_value = pd.concat(
            [per_value, pd.DataFrame({"task": [t for t, _ in missing], "value": [v for _, v in missing], "count": 0})],
            ignore_index=True,
        )
        per_value["share"] = per_value["share"].fillna(0.0)
    return ValidationFrames(records, labels, sources, per_value, schema)


def _type_signature(t: pa.DataType) -> str:
    """A type as a string that ignores the names Parquet gives list items and map entries."""
    if pa.types.is_map(t):
        return f"map<{_type_signature(t.key_type)}, {_type_signature(t.item_type)}>"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"list<{_type_signature(t.value_type)}>"
    if pa.types.is_struct(t):
        return "struct<" + ", ".join(f"{f.name}: {_type_signature(f.type)}" for f in t) + ">"
    return str(t)


def _file_schema(store: SnapshotStore, snapshot_id: str) -> pa.Schema:

    return store.record_schema(snapshot_id)


def _flatten(batch: pa.RecordBatch) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One Arrow batch -> the record columns and the exploded label columns, vectorised."""
    n = batch.num_rows
    ids = batch.column("id")
    turns = batch.column("turns")
    offsets = pc.subtract(turns.offsets, turns.offsets[0])
    texts = pc.struct_field(turns.flatten(), "text")
    joined = pc.binary_join(pa.ListArray.from_arrays(offsets, texts), "\n")
    normalised = pc.utf8_trim_whitespace(pc.replace_substring_regex(pc.utf8_lower(joined), r"\s+", " "))
    blank_turn = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(texts)), 0).to_numpy(zero_copy_only=False)
    parents = turns.value_parent_indices().to_numpy()
    empty = np.bincount(parents, weights=blank_turn, minlength=n) > 0
    empty |= pc.list_value_length(turns).to_numpy(zero_copy_only=False) == 0
    import pandas as pd

    hashes = pd.util.hash_pandas_object(pd.Series(normalised.to_numpy(zero_copy_only=False)), index=False).to_numpy()
    rec = {
        "id": ids.to_numpy(zero_copy_only=False),
        "source": batch.column("source").to_numpy(zero_copy_only=False),
        "split": batch.column("split").to_numpy(zero_copy_only=False),
        "synthetic": pc.struct_field(batch.column("provenance"), "synthetic").to_numpy(zero_copy_only=False),
        "empty_text": empty,
        "text_hash": hashes,
    }
    labs = batch.column("labels")
    values = labs.flatten()
    lab = {
        "record_id": pc.take(ids, labs.value_parent_indices()).to_numpy(zero_copy_only=False),
        "task": pc.struct_field(values, "task").to_numpy(zero_copy_only=False),
        "value": pc.struct_field(values, "value").to_numpy(zero_copy_only=False),
        "score": pc.struct_field(values, "score").to_numpy(zero_copy_only=False),
        "label_source": pc.struct_field(values, "source").to_numpy(zero_copy_only=False),
    }
    return rec, lab


def _concat(parts: list[dict[str, np.ndarray]], columns: list[str]) -> Any:
    import pandas as pd

    if not parts:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})
    return pd.DataFrame({c: np.concatenate([p[c] for p in parts]) for c in columns})


def _scale_column(tasks: Any, scales: Mapping[str, tuple[float, float]]) -> Any:
    """The name of the score scale each label's task falls under (exact name first, then globs)."""
    out = np.full(len(tasks), None, dtype=object)
    values = tasks.to_numpy()
    for name in sorted(set(values)):
        scale = name if name in scales else next((p for p in scales if fnmatch.fnmatchcase(name, p)), None)
        if scale is not None:
            out[values == name] = scale
    return out


# ------------------------------------------------------------------ suites


def build_expectations(frames: ValidationFrames, config: SuiteConfig) -> list[tuple[str, str, Any]]:
    """``(check name, frame, GX expectation)`` for every enabled check, then the user's."""
    with _quiet_gx():
        return _build_expectations(frames, config)


@contextlib.contextmanager
def _quiet_gx() -> Iterator[None]:
    """String row conditions are deprecated in GX 1.9 but are the one form that works across 1.x."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*deprecated as of GX Core", category=DeprecationWarning)
        yield


def _build_expectations(frames: ValidationFrames, config: SuiteConfig) -> list[tuple[str, str, Any]]:
    import great_expectations.expectations as gxe

    enabled = set(config.enabled)
    out: list[tuple[str, str, Any]] = []

    def add(check: str, frame: str, exp: Any) -> None:
        if check in enabled:
            out.append((check, frame, exp))

    add("schema", "schema", gxe.ExpectColumnPairValuesToBeEqual(column_A="type", column_B="expected_type"))
    add("ids_unique", "records", gxe.ExpectColumnValuesToBeUnique(column="id"))
    add("ids_well_formed", "records", gxe.ExpectColumnValuesToMatchRegex(column="id", regex=_ID_PATTERN))
    add("ids_well_formed", "records", gxe.ExpectColumnValuesToNotBeNull(column="id"))
    add("text_not_empty", "records", gxe.ExpectColumnValuesToBeInSet(column="empty_text", value_set=[False]))
    for task in vocabularies.TASK_VOCABULARIES:
        labels = list(vocabularies.load(task).labels)
        add(
            "labels_in_vocabulary",
            "labels",
            gxe.ExpectColumnValuesToBeInSet(
                column="value", value_set=labels, row_condition=f"task == {task!r}", condition_parser="pandas"
            ),
        )
    for scale, (lo, hi) in sorted(config.score_scales.items()):
        cond = f"scale == {scale!r}"
        add(
            "scores_in_scale",
            "labels",
            gxe.ExpectColumnValuesToBeBetween(
                column="score", min_value=lo, max_value=hi, row_condition=cond, condition_parser="pandas"
            ),
        )
    add("splits_known", "records", gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(config.splits)))
    add("no_id_leak", "records", gxe.ExpectColumnValuesToBeBetween(column="id_splits", min_value=1, max_value=1))
    add("no_text_leak", "records", gxe.ExpectColumnValuesToBeBetween(column="text_splits", min_value=1, max_value=1))
    add(
        "synthetic_train_only",
        "records",
        gxe.ExpectColumnValuesToBeInSet(
            column="split",
            value_set=list(config.synthetic_splits),
            row_condition="synthetic == True",
            condition_parser="pandas",
        ),
    )
    for task, bounds in sorted(config.label_bounds.items()):
        for value, (lo, hi) in sorted(bounds.items()):
            cond = f"task == {task!r}" + ("" if value == "*" else f" and value == {value!r}")
            add(
                "label_distribution",
                "label_shares",
                gxe.ExpectColumnValuesToBeBetween(
                    column="share", min_value=lo, max_value=hi, row_condition=cond, condition_parser="pandas"
                ),
            )
    for source, (lo, hi) in sorted(config.source_rows.items()):
        add(
            "source_rows",
            "sources",
            gxe.ExpectColumnValuesToBeBetween(
                column="rows",
                min_value=lo,
                max_value=hi,
                row_condition=f"source == {source!r}",
                condition_parser="pandas",
            ),
        )
    user = list(config.extra)
    for hook in config.hooks:
        user.extend(hook(frames))
    for frame, exp in user:
        if frame not in FRAMES:
            raise WorkbenchError(f"a user expectation targets unknown frame {frame!r} (frames: {', '.join(FRAMES)})")
        out.append(("user", frame, exp))
    return out


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation's result: what it checked, whether it passed, what was seen, a few examples."""

    check: str
    frame: str
    expectation: str
    kwargs: dict[str, Any]
    success: bool
    observed: str
    examples: tuple[str, ...]
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "frame": self.frame,
            "expectation": self.expectation,
            "kwargs": self.kwargs,
            "success": self.success,
            "observed": self.observed,
            "examples": list(self.examples),
            **({"error": self.error} if self.error else {}),
        }


@dataclass
class ValidationResult:
    success: bool
    input_id: str
    outcomes: list[ExpectationOutcome]
    seconds: float
    snapshot_id: str | None = None
    reused: bool = False
    tag: str | None = None
    report_path: Path | None = None
    gx_version: str = ""

    @property
    def failed(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def summary(self) -> dict[str, Any]:
        """What goes into the validated snapshot's manifest (``validation``)."""
        return {
            "success": self.success,
            "validated_snapshot": self.input_id,
            "engine": f"great_expectations {self.gx_version}",
            "statistics": {
                "evaluated": len(self.outcomes),
                "successful": len(self.outcomes) - len(self.failed),
                "unsuccessful": len(self.failed),
            },
            "seconds": round(self.seconds, 3),
            "results": [o.to_dict() for o in self.outcomes],
        }


def run_suites(frames: ValidationFrames, config: SuiteConfig) -> list[ExpectationOutcome]:
    """Run the expectations on an ephemeral GX context, one batch (and suite) per frame."""
    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    planned = build_expectations(frames, config)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    datasource = context.data_sources.add_pandas("workbench")
    outcomes: list[ExpectationOutcome] = []
    for frame in FRAMES:
        items = [(check, exp) for check, f, exp in planned if f == frame]
        if not items:
            continue
        df = frames.get(frame)
        batch = (
            datasource.add_dataframe_asset(frame)
            .add_batch_definition_whole_dataframe(frame)
            .get_batch(batch_parameters={"dataframe": df})
        )
        suite = gx.ExpectationSuite(name=f"workbench.{config.kind}.{frame}")
        for i, (_, exp) in enumerate(items):
            # GX does not keep the suite's order in its results: tag each expectation to match them up.
            exp.meta = {**(exp.meta or {}), "workbench_index": i}
            suite.add_expectation(exp)
        index = _INDEX_COLUMN[frame]
        result_format: dict[str, Any] = {
            "result_format": "SUMMARY",
            "partial_unexpected_count": max(config.examples, 1),
        }
        if index in df.columns:
            result_format["unexpected_index_column_names"] = [index]
        with _quiet_gx():
            res = batch.validate(suite, result_format=result_format).to_json_dict()
        for r in sorted(res["results"], key=lambda r: r["expectation_config"]["meta"]["workbench_index"]):
            check = items[r["expectation_config"]["meta"]["workbench_index"]][0]
            outcomes.append(_outcome(check, frame, r, config.examples))
    order = {c: i for i, c in enumerate((*CHECKS, "user"))}
    return sorted(outcomes, key=lambda o: order[o.check])


def _outcome(check: str, frame: str, r: Mapping[str, Any], n_examples: int) -> ExpectationOutcome:
    cfg = r["expectation_config"]
    kwargs = {k: v for k, v in cfg["kwargs"].items() if k != "batch_id"}
    if isinstance(kwargs.get("value_set"), list) and len(kwargs["value_set"]) > 12:
        kwargs["value_set"] = [*kwargs["value_set"][:12], f"... ({len(kwargs['value_set'])} values)"]
    result = r.get("result") or {}
    exc = r.get("exception_info") or {}
    error = exc.get("exception_message") if exc.get("raised_exception") else None
    if "unexpected_count" in result:
        observed = f"{result['unexpected_count']:,} unexpected of {result.get('element_count', 0):,}"
    elif "observed_value" in result:
        observed = str(result["observed_value"])
    else:
        observed = error or ""
    examples: list[str] = []
    index_list = result.get("partial_unexpected_index_list") or []
    values = result.get("partial_unexpected_list") or []
    if index_list and isinstance(index_list[0], dict):
        for item in index_list[:n_examples]:
            examples.append(", ".join(f"{k}={v}" for k, v in item.items()))
    else:
        examples.extend(repr(v) for v in values[:n_examples])
    return ExpectationOutcome(
        check=check,
        frame=frame,
        expectation=cfg["type"],
        kwargs=kwargs,
        success=bool(r["success"]),
        observed=observed,
        examples=tuple(examples),
        error=error,
    )


def _expectation_name(exp: Any) -> str:
    return getattr(exp, "expectation_type", None) or type(exp).__name__


# ------------------------------------------------------------------ entry point


def validate(
    ref: str,
    *,
    store: SnapshotStore,
    config: SuiteConfig | None = None,
    report_path: str | Path | None = None,
    tag: str | None = None,
) -> ValidationResult:
    """Validate snapshot ``ref``; on success write a new snapshot with status ``validated``.

    On failure nothing is written and the result lists the failed expectations
    with examples (the caller decides whether that is an error: the CLI raises
    :class:`ValidationFailed`). ``report_path`` gets an HTML report either way.
    """
    config = config or SuiteConfig()
    start = time.perf_counter()
    sid = store.resolve(ref)
    frames = build_frames(store, sid, config)
    outcomes = run_suites(frames, config)
    import great_expectations as gx

    result = ValidationResult(
        success=all(o.success for o in outcomes),
        input_id=sid,
        outcomes=outcomes,
        seconds=time.perf_counter() - start,
        gx_version=gx.__version__,
    )
    if result.success:
        step = {"kind": "validate", "config": config.to_dict()}
        # A layer that changes nothing: the validated snapshot is its parent's records, with a new status.
        with store.writer(step=step, parents=[sid], layer=True) as writer:
            result.seconds = time.perf_counter() - start
            result.snapshot_id = writer.commit(extra={"status": "validated", "validation": result.summary()})
            result.reused = writer.reused
        if tag:
            store.set_ref(tag, result.snapshot_id)
            result.tag = tag
        store.set_ref("latest", result.snapshot_id)
    if report_path is not None:
        result.report_path = Path(report_path)
        write_html_report(result, result.report_path)
    return result


def with_defaults(config: SuiteConfig | None, **changes: Any) -> SuiteConfig:
    """A copy of ``config`` (or the default) with fields changed, e.g. ``extra=(...)``."""
    return replace(config or SuiteConfig(), **changes)


# ------------------------------------------------------------------ report


def write_html_report(result: ValidationResult, path: Path) -> None:
    """A self-contained Data Docs-style HTML page: one row per expectation."""
    esc = html.escape
    rows = []
    for o in result.outcomes:
        status = "pass" if o.success else "FAIL"
        kwargs = ", ".join(f"{k}={v}" for k, v in o.kwargs.items())
        examples = "<br>".join(esc(e) for e in o.examples)
        rows.append(
            f'<tr class="{status.lower()}"><td>{status}</td><td>{esc(o.check)}</td><td>{esc(o.frame)}</td>'
            f"<td><code>{esc(o.expectation)}</code><br><small>{esc(kwargs)}</small></td>"
            f"<td>{esc(o.observed)}</td><td>{examples}</td></tr>"
        )
    verdict = "validated" if result.success else f"{len(result.failed)} expectation(s) failed"
    new = f" &rarr; validated snapshot <code>{esc(result.snapshot_id)}</code>" if result.snapshot_id else ""
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Validation of {esc(result.input_id)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; vertical-align: top; text-align: left; }}
tr.pass td:first-child {{ color: #1a7f37; font-weight: bold; }}
tr.fail td:first-child {{ color: #cf222e; font-weight: bold; }}
tr.fail {{ background: #fff0f0; }}
</style></head><body>
<h1>Validation of snapshot <code>{esc(result.input_id)}</code></h1>
<p><b>{esc(verdict)}</b>{new}: {len(result.outcomes)} expectations,
{len(result.outcomes) - len(result.failed)} passed, in {result.seconds:.2f} s
(great_expectations {esc(result.gx_version)}).</p>
<table><tr><th>status</th><th>check</th><th>frame</th><th>expectation</th><th>observed</th><th>examples</th></tr>
{chr(10).join(rows)}
</table></body></html>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")


class UnvalidatedSnapshotError(WorkbenchError):
    """A step that needs a validated snapshot (export, fine-tuning, evaluation) was given a draft."""


def require_validated(store: SnapshotStore, ref: str, *, allow_unvalidated: bool = False, verb: str = "use") -> dict:
    """The manifest of ``ref`` when it is validated; otherwise refuse, unless ``allow_unvalidated``.

    The gate of every step downstream of validation: ``export``, ``finetune`` and ``evaluate``
    call it with their ``--allow-unvalidated`` flag, so training data has passed the suites
    unless the user says otherwise, out loud.
    """
    manifest = store.manifest(ref)
    if manifest.get("status") != "validated" and not allow_unvalidated:
        raise UnvalidatedSnapshotError(
            f"refusing to {verb} snapshot {manifest['id']} ({ref}): its status is {manifest.get('status')!r}, "
            f"not 'validated'; run `workbench validate {ref}` first, or pass --allow-unvalidated"
        )
    return manifest
