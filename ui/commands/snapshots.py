"""``workbench snapshots list | show REF [--json] | diff A B | tag NAME REF | verify [REF | --all]``: the store."""

from __future__ import annotations

import json
from typing import Any

import typer

from ui import state

app = typer.Typer(help="List, inspect and compare snapshots in the store.", no_args_is_help=True)


@app.command("list")
def list_snapshots(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Every snapshot in the store, oldest first, with its refs."""
    from rich.table import Table

    store = state.store()
    infos = store.list()
    ref_problems = store.ref_problems()
    if as_json:
        print(json.dumps([info.__dict__ for info in infos], indent=1))
        return
    if not infos:
        state.console().print(f"no snapshots in {state.store().url} yet: try `workbench run`")
        return
    table = Table(title=f"snapshots in {state.store().url}", title_justify="left")
    for col in ("id", "refs", "created", "status", "step", "sources", "rows", "parents"):
        table.add_column(col, justify="right" if col == "rows" else "left")
    for i in infos:
        if i.problem:
            table.add_row(i.id, ", ".join(i.refs), "", "[red]corrupt[/]", "", "", "", "")
            continue
        table.add_row(
            i.id,
            ", ".join(i.refs),
            i.created_at.replace("+00:00", "Z"),
            i.status,
            i.step,
            ", ".join(i.sources),
            f"{i.rows:,}",
            ", ".join(p[:8] for p in i.parents),
        )
    state.console().print(table)
    _print_problems([f"snapshot {i.id}: {i.problem}" for i in infos if i.problem], ref_problems)


def _print_problems(snapshot_problems: list[str], ref_problems: dict[str, str]) -> None:
    con = state.console()
    for line in snapshot_problems:
        con.print("[red]corrupt[/] " + _escape(line), soft_wrap=True)
    for name, problem in ref_problems.items():
        con.print(f"[red]bad ref[/] {_escape(name)}: " + _escape(problem), soft_wrap=True)
    if snapshot_problems or ref_problems:
        con.print("run `workbench snapshots verify --all` for a full check")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


@app.command("show")
def show(
    ref: str = typer.Argument(..., help="Snapshot id, id prefix or ref."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
    top: int = typer.Option(12, "--top", help="Labels shown per task (most frequent first)."),
    quarantine: bool = typer.Option(False, "--quarantine", help="List the rejected rows kept beside the snapshot."),
) -> None:
    """Counts per source/split, label distributions and provenance of one snapshot."""
    store = state.store()
    manifest = store.manifest(ref)
    if as_json:
        print(json.dumps(manifest, indent=1, ensure_ascii=False))
        return
    if quarantine:
        _print_quarantine(store, manifest["id"])
        return
    _print_manifest(manifest, refs=[n for n, sid in store.refs().items() if sid == manifest["id"]], top=top)
    from curation.integrity import quick_problems

    problems = quick_problems(store, manifest["id"])
    for line in problems:
        state.console().print("[red]damaged[/] " + _escape(line), soft_wrap=True)
    if problems:
        state.console().print(f"run `workbench snapshots verify {manifest['id']}` for a full check")
        raise typer.Exit(1)


@app.command("diff")
def diff(
    a: str = typer.Argument(..., help="Older snapshot"), b: str = typer.Argument(..., help="Newer snapshot")
) -> None:
    """Row counts and gold/other label counts of B against A."""
    from rich.table import Table

    from curation.manifest import diff_manifests

    store = state.store()
    d = diff_manifests(store.manifest(a), store.manifest(b))
    table = Table(title=f"{d['a']} -> {d['b']}", title_justify="left")
    for col in ("what", "key", "a", "b", "change"):
        table.add_column(col, justify="right" if col in ("a", "b", "change") else "left")
    for row in d["rows"]:
        table.add_row(row["what"], row["key"], f"{row['a']:,}", f"{row['b']:,}", f"{row['b'] - row['a']:+,}")
    state.console().print(table)


@app.command("tag")
def tag(
    name: str = typer.Argument(..., help="Ref name"), ref: str = typer.Argument(..., help="Snapshot to point at")
) -> None:
    """Point a ref at a snapshot (refs are pointers; snapshots never change)."""
    store = state.store()
    sid = store.resolve(ref)
    store.set_ref(name, sid)
    state.console().print(f"{name} -> {sid}")


@app.command("compact")
def compact(
    ref: str = typer.Argument(..., help="Snapshot (a label layer) to copy flat"),
    tag: str = typer.Option(None, "--tag", help="Name the flat copy."),
) -> None:
    """Write one flat copy of a label layer and the chain under it (for engines that read shard files)."""
    from ui.progress import record_progress

    store = state.store()
    sid = store.resolve(ref)
    if not store.is_layer(sid):
        state.console().print(f"{sid} is already flat (its records are all in its own shards): nothing to do")
        return
    chain = store.chain(sid)
    with record_progress(f"compact {sid}") as progress:
        new = store.compact(sid, tag=tag, progress=lambda rows: progress(rows, 0))
    m = store.manifest(new)
    size = sum(int(s.get("bytes", 0)) for s in m["shards"])
    state.console().print(
        f"{sid} (a layer over {len(chain) - 1} snapshot(s)) -> flat copy {new}: {m['rows']:,} records, {size:,} B"
        + (f", tagged {tag}" if tag else "")
    )


def _print_manifest(m: dict[str, Any], *, refs: list[str], top: int) -> None:
    from rich.table import Table

    from curation.manifest import label_table

    con = state.console()
    con.print(f"[bold]snapshot {m['id']}[/]  refs: {', '.join(refs) or '-'}  status: {m['status']}")
    con.print(
        f"created {m['created_at']}  schema v{m['schema_version']}  code {m['code_version'].get('workbench')}"
        f" ({(m['code_version'].get('git') or 'no git')[:12]})"
    )
    con.print(f"parents: {', '.join(m['parents']) or '-'}")
    if m.get("layer"):
        lay = m["layer"]
        con.print(
            f"label layer over {lay['base']}: {lay['labels']['rows']:,} record(s) relabelled, "
            f"{m['rows'] - lay['base_rows']:,} appended; read merged with its base "
            f"(`workbench snapshots compact {m['id']}` writes a flat copy)"
        )
        if m.get("content_id"):
            con.print(f"content id {m['content_id']}: the id of the same records written in full (its flat copy)")
    elif m.get("compacted_from"):
        con.print(f"flat copy of the label layer {m['compacted_from']}")
    counts = Table(title="records (turns) per source and split", title_justify="left")
    splits = ("train", "validation", "test")
    counts.add_column("source")
    for s in (*splits, "total"):
        counts.add_column(s, justify="right")
    for source, by_split in m["counts"].items():
        turns = m["turns"].get(source, {})
        cells = [f"{by_split.get(s, 0):,} ({turns.get(s, 0):,})" for s in splits]
        cells.append(f"{sum(by_split.values()):,} ({sum(turns.values()):,})")
        counts.add_row(source, *cells)
    con.print(counts)
    for task, rows in label_table(m, top=top).items():
        t = Table(title=f"labels: {task}", title_justify="left")
        for col in ("source", "value", *splits, "total", "share"):
            t.add_column(col, justify="left" if col in ("source", "value") else "right")
        for r in rows:
            t.add_row(r["source"], r["value"], *(f"{r[s]:,}" for s in splits), f"{r['total']:,}", f"{r['share']:.1%}")
        con.print(t)
    for step in m["steps"]:
        con.print(f"[bold]step[/] {step['kind']}: {json.dumps(step['config'], sort_keys=True)}")
        counters = step.get("counters") or {}
        if counters:
            con.print("  counters: " + _format_counters(counters), soft_wrap=True)
        for inp in step.get("inputs", [])[:8]:
            con.print(f"  input {inp['path']}  {inp['bytes']:,} B  sha256:{inp['sha256'][:16]}")
        if len(step.get("inputs", [])) > 8:
            con.print(f"  ... {len(step['inputs']) - 8} more inputs (see --json)")
    if m.get("quarantine"):
        con.print(f"[yellow]quarantine: {m['quarantine']['rows']:,} rejected rows[/] (--quarantine to list)")


def _format_counters(counters: dict[str, Any]) -> str:
    """``k=v`` pairs; nested counters (e.g. ``dropped_by_reason``) as ``k={a=1, b=2}``, empty ones left out."""

    def fmt(value: Any) -> str:
        if isinstance(value, dict):
            return "{" + ", ".join(f"{k}={fmt(v)}" for k, v in value.items()) + "}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return str(value)
        return f"{value:,}" if isinstance(value, int) else f"{value:,.4g}"

    return ", ".join(f"{k}={fmt(v)}" for k, v in counters.items() if v != {})


@app.command("log")
def log(
    ref: str = typer.Argument(..., help="A ref name (dd-raw, clean, latest, ...)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Every move of a ref: when, from which snapshot to which, and the command that moved it."""
    from rich.table import Table

    entries = state.store().ref_log(ref)
    if as_json:
        print(json.dumps(entries, indent=1))
        return
    con = state.console()
    if not entries:
        con.print(f"no moves of ref {ref!r} recorded (refs set before the log existed have none)")
        return
    table = Table(title=f"ref {ref}: moves, oldest first", title_justify="left")
    for col in ("at", "from", "to", "command"):
        table.add_column(col)
    for e in entries:
        table.add_row(e["at"], e.get("old") or "-", e.get("new") or "(deleted)", _escape(e.get("command") or ""))
    con.print(table)


@app.command("verify")
def verify(
    ref: str = typer.Argument(None, help="Snapshot id, id prefix or ref (or --all)."),
    all_: bool = typer.Option(False, "--all", help="Every snapshot and ref in the store."),
    quick: bool = typer.Option(False, "--quick", help="Checksums and row counts only; do not recompute ids."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Recompute checksums, row counts and content ids; list what is wrong (exit 1 if anything is)."""
    import time
    from dataclasses import asdict

    from rich.table import Table

    if (ref is None) == (not all_):
        raise typer.BadParameter("give a snapshot REF or --all (not both)")
    store = state.store()
    start = time.perf_counter()
    reports = store.verify(None if all_ else ref, recompute_id=not quick)
    ref_problems = store.ref_problems() if all_ else {}
    if all_:
        refs = store.refs()
        ref_problems.update(
            {
                name: f"points at snapshot {sid}, which is not in the store"
                for name, sid in refs.items()
                if not store.exists(sid)
            }
        )
    bad = [r for r in reports if not r.ok]
    if as_json:
        payload = {"snapshots": [{**asdict(r), "ok": r.ok} for r in reports], "refs": ref_problems}
        print(json.dumps(payload, indent=1))
    else:
        table = Table(title=f"verify {store.url}", title_justify="left")
        for col in ("id", "status", "files", "MB", "rows", "id recomputed", "s"):
            table.add_column(col, justify="left" if col in ("id", "status") else "right")
        for r in reports:
            status = "[green]ok[/]" if r.ok else f"[red]{len(r.problems)} problem(s)[/]"
            table.add_row(
                r.id,
                status,
                f"{r.files}",
                f"{r.bytes / 1e6:,.1f}",
                f"{r.rows:,}",
                "yes" if r.id_recomputed else "no",
                f"{r.seconds:.2f}",
            )
        con = state.console()
        con.print(table)
        for r in reports:
            for line in r.problems:
                con.print(f"[red]{r.id}[/] " + _escape(line), soft_wrap=True)
            for line in r.notes:
                con.print(f"[yellow]{r.id}[/] " + _escape(line), soft_wrap=True)
        for name, problem in ref_problems.items():
            con.print(f"[red]bad ref[/] {_escape(name)}: " + _escape(problem), soft_wrap=True)
        total_mb = sum(r.bytes for r in reports) / 1e6
        con.print(
            f"{len(reports)} snapshot(s), {total_mb:,.1f} MB checked in {time.perf_counter() - start:.2f} s: "
            + ("all good" if not bad and not ref_problems else f"{len(bad)} damaged, {len(ref_problems)} bad ref(s)")
        )
    if bad or ref_problems:
        raise typer.Exit(1)


def _print_quarantine(store: Any, sid: str) -> None:
    con = state.console()
    n = 0
    for row in store.iter_quarantine(sid):
        n += 1
        where = row["file"] + (f", line {row['line']}" if row.get("line") is not None else "")
        where += f", record {row['record']}" if row.get("record") else ""
        con.print(f"{where}: {row['reason']}", soft_wrap=True, markup=False)
    if not n:
        con.print("no rejected rows")
