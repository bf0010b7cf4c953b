"""``workbench ingest SOURCE PATH... --tag T``: raw files of one source -> a snapshot."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer

from ui import state
from ui.progress import record_progress


def ingest(
    source: str = typer.Argument(..., help="dailydialog | empatheticdialogues | esconv | goemotions | openwebtext"),
    paths: list[Path] = typer.Argument(..., help="Raw files or folders of that source, as distributed."),
    tag: str = typer.Option(None, "--tag", "-t", help="Ref to point at the new snapshot (e.g. dd-raw)."),
    on_error: Literal["raise", "skip"] = typer.Option(
        "raise",
        "--on-error",
        help="raise: stop at the first bad row, write nothing. skip: write good records, quarantine bad rows.",
    ),
) -> None:
    """Read the raw files of SOURCE into a new immutable snapshot."""
    from curation.ingest import ingest as run_ingest

    store = state.store()
    with record_progress(f"ingest {source}") as progress:
        result = run_ingest(source, paths, store=store, tag=tag, on_error=on_error, progress=progress)
    print_ingest_summary([result])


def print_ingest_summary(results: list) -> None:
    from rich.table import Table

    table = Table(title="ingested", title_justify="left")
    for col in ("source", "snapshot", "tag", "train", "validation", "test", "kept", "rejected", "note"):
        table.add_column(col, justify="right" if col in ("train", "validation", "test", "kept", "rejected") else "left")
    for r in results:
        counts = r.counts.get(r.source, {})
        table.add_row(
            r.source,
            r.snapshot_id,
            r.tag or "",
            f"{counts.get('train', 0):,}",
            f"{counts.get('validation', 0):,}",
            f"{counts.get('test', 0):,}",
            f"{r.kept:,}",
            f"{r.rejected:,}",
            "identical data already stored" if r.reused else "",
        )
    state.console().print(table)
    for r in results:
        if r.rejected:
            state.console().print(
                f"[yellow]{r.rejected} rejected row(s) of {r.source} quarantined[/]: "
                f"workbench snapshots show {r.snapshot_id} --quarantine"
            )
