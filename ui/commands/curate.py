"""``workbench curate REF... --config F --tag T [--dry-run]`` and ``workbench report REF``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import typer

from ui import state
from ui.pipeline import EXAMPLES_DIR

DEFAULT_CONFIG = EXAMPLES_DIR / "curate.toml"


def curate(
    refs: list[str] = typer.Argument(None, help="Input snapshots (ids or refs), e.g. dd-raw ge-raw."),
    config: Path = typer.Option(
        None,
        "--config",
        "-c",
        help="Curate TOML: an ordered list of step tables (default: the bundled examples/curate.toml).",
    ),
    tag: str = typer.Option(None, "--tag", "-t", help="Ref to point at the new snapshot (e.g. clean)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what each step would drop; write nothing."),
    engine: Literal["local", "ray"] = typer.Option("local", "--engine", help="local (default) or ray (Ray Data)."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Processes for CPU-bound steps (local engine)."),
    list_steps: bool = typer.Option(False, "--list-steps", help="Document every step and its options, then exit."),
) -> None:
    """Clean, filter, deduplicate and fix splits of one or more snapshots into ONE new snapshot."""
    if list_steps:
        _print_steps()
        return
    if not refs:
        raise typer.BadParameter("give at least one input snapshot (or --list-steps)", param_hint="REFS")
    from curation.curate import curate as run_curate
    from curation.curate import load_steps

    steps = load_steps(config or DEFAULT_CONFIG)
    store = state.store()
    with _step_progress() as progress:
        result = run_curate(
            refs, store=store, steps=steps, tag=tag, dry_run=dry_run, progress=progress, engine=engine, workers=workers
        )
    print_curate_summary(result, dry_run=dry_run)


def report(
    ref: str = typer.Argument(..., help="A curated snapshot (id or ref)."),
    examples: int = typer.Option(3, "--examples", "-n", help="Examples shown per drop reason and clusters shown."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable report."),
) -> None:
    """What each step dropped and why (with examples), duplicate clusters, splits fixed, label balance."""
    from curation.report import build_report

    rep = build_report(state.store(), ref, examples=examples)
    if as_json:
        print(json.dumps(rep, indent=1, ensure_ascii=False, default=str))
        return
    _print_report(rep)


# ------------------------------------------------------------------ printing


def print_curate_summary(result: Any, *, dry_run: bool) -> None:
    from rich.table import Table

    con = state.console()
    table = Table(title="curate" + (" (dry run: nothing written)" if dry_run else ""), title_justify="left")
    for col in ("step", "read", "kept", "dropped", "by reason", "counted"):
        table.add_column(col, justify="right" if col in ("read", "kept", "dropped") else "left")
    for rep in result.steps:
        reasons = ", ".join(f"{k}={v:,}" for k, v in sorted(rep.dropped.items()))
        counted = ", ".join(f"{k}={v:,}" for k, v in sorted(rep.counters.items()))
        table.add_row(rep.name, f"{rep.read:,}", f"{rep.kept:,}", f"{sum(rep.dropped.values()):,}", reasons, counted)
    con.print(table)
    counts = ", ".join(f"{src} {by}" for src, by in result.counts.items())
    if dry_run:
        con.print(f"would write {result.rows:,} records: {counts}")
    else:
        note = " (identical data already stored)" if result.reused else ""
        con.print(f"snapshot {result.snapshot_id}{note}: {result.rows:,} records: {counts}")
        con.print(f"next: workbench report {result.tag or result.snapshot_id}")


def _print_steps() -> None:
    from rich.markup import escape
    from rich.table import Table

    from curation.steps.base import GlobalStep, steps_registry

    con = state.console()
    for name, cls in steps_registry().items():
        kind = "global" if issubclass(cls, GlobalStep) else "record"
        table = Table(title=escape(f"{name} ({kind} step): {cls.description}"), title_justify="left")
        for col in ("option", "type", "default", "help"):
            table.add_column(col)
        for opt in cls.Config.describe():
            bounds = []
            if opt["min"] is not None:
                bounds.append(f">= {opt['min']}")
            if opt["max"] is not None:
                bounds.append(f"<= {opt['max']}")
            if opt["choices"]:
                bounds.append("one of " + ", ".join(map(str, opt["choices"])))
            help_text = opt["help"] + (f" ({'; '.join(bounds)})" if bounds else "")
            table.add_row(opt["name"], opt["type"], escape(json.dumps(opt["default"])), escape(help_text))
        con.print(table)


def _print_report(rep: dict[str, Any]) -> None:
    from rich.table import Table

    con = state.console()
    con.print(f"[bold]snapshot {rep['id']}[/] from {', '.join(rep['parents'])}: {rep['rows']:,} records")
    steps = Table(title="steps", title_justify="left")
    for col in ("step", "read", "kept", "dropped", "counters"):
        steps.add_column(col, justify="right" if col in ("read", "kept", "dropped") else "left")
    for st in rep["steps"]:
        c = dict(st["counters"])
        read, kept, dropped = c.pop("read", 0), c.pop("kept", 0), c.pop("dropped", 0)
        by_reason = c.pop("dropped_by_reason", {})
        extra = ", ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in c.items())
        reasons = ", ".join(f"{k}={v:,}" for k, v in by_reason.items())
        steps.add_row(st["name"], f"{read:,}", f"{kept:,}", f"{dropped:,}", "; ".join(x for x in (reasons, extra) if x))
    con.print(steps)
    for group in rep["drops"]:
        con.print(f"[bold]dropped by {group['step']}: {group['reason']}[/] ({group['count']:,})")
        for ex in group["examples"]:
            con.print(f"  {ex['id']} [{ex['split']}] {ex['detail']}", markup=False)
            con.print(f"    {ex['text']}", markup=False, soft_wrap=False, overflow="ellipsis", no_wrap=True)
    for art in rep["clusters"]:
        con.print(f"[bold]{art['name']}[/]: {art['clusters']:,} clusters, {art['members']:,} members")
        for cl in art["largest"]:
            con.print(f"  cluster {cl['cluster']} ({len(cl['members'])} members)", markup=False)
            for m in cl["members"]:
                mark = "keep" if m["kept"] else "drop"
                sim = f"{m['similarity']:.2f}" if m.get("similarity") is not None else "-"
                con.print(f"    {mark} {m['id']} [{m['split']}] sim={sim}  {m['text']}", markup=False, no_wrap=True)
    for art in rep["tables"]:
        con.print(f"[bold]{art['name']}[/]: {art['rows']:,} rows (workbench report --json for all)")
    bal = Table(title="label balance (gold labels): before -> after", title_justify="left")
    for col in ("task", "source", "split", "labels", "distinct", "majority", "minority", "imbalance", "missing"):
        bal.add_column(col, justify="right" if col in ("labels", "distinct", "imbalance") else "left")
    for row in rep["balance"]:
        if row["label_source"] != "gold":
            continue
        b, a = row.get("before") or {}, row.get("after") or {}
        bal.add_row(
            row["task"],
            row["source"],
            row["split"],
            f"{b.get('total', 0):,} -> {a.get('total', 0):,}",
            f"{b.get('distinct', 0)} -> {a.get('distinct', 0)}",
            f"{a.get('majority', ['-', 0])[0]} {a.get('majority', ['-', 0])[1]:,}" if a else "-",
            f"{a.get('minority', ['-', 0])[0]} {a.get('minority', ['-', 0])[1]:,}" if a else "-",
            f"{b.get('imbalance', 0):.1f} -> {a.get('imbalance', 0):.1f}",
            str(len(a.get("missing", []))),
        )
    con.print(bal)


def _step_progress():
    from ui.progress import step_progress

    return step_progress("curate")
