"""``workbench validate REF [--report report.html] [--config suite.toml] [--tag T]``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ui import state


def validate(
    ref: str = typer.Argument(..., help="The snapshot to validate (id or ref), e.g. reviewed."),
    report: Path = typer.Option(None, "--report", "-r", help="Write an HTML report of every expectation here."),
    config: Path = typer.Option(
        None, "--config", "-c", help="Suite TOML: kind, checks/skip, label_bounds, source_rows, score_scales."
    ),
    tag: str = typer.Option(None, "--tag", "-t", help="Ref to point at the new validated snapshot."),
) -> None:
    """Run the Great Expectations suites; on success write a VALIDATED snapshot (parent: REF)."""
    from curation.validate import ValidationFailed, load_config
    from curation.validate import validate as run_validate

    suite = load_config(config) if config else None
    result = run_validate(ref, store=state.store(), config=suite, report_path=report, tag=tag)
    print_validation(result)
    if not result.success:
        failed = result.failed
        names = ", ".join(sorted({o.check for o in failed}))
        raise ValidationFailed(
            f"snapshot {result.input_id}: {len(failed)} of {len(result.outcomes)} expectations failed ({names});"
            " nothing validated was written"
        )


def print_validation(result: Any) -> None:
    from rich.table import Table

    con = state.console()
    table = Table(title=f"validate {result.input_id}", title_justify="left")
    for col in ("check", "expectation", "success", "observed", "examples"):
        table.add_column(col)
    for o in result.outcomes:
        mark = "[green]yes[/green]" if o.success else "[red]NO[/red]"
        table.add_row(o.check, o.expectation, mark, o.observed, "\n".join(o.examples))
    con.print(table)
    if result.report_path:
        con.print(f"report: {result.report_path}")
    if result.success:
        note = " (identical data already stored)" if result.reused else ""
        con.print(f"validated snapshot {result.snapshot_id}{note} in {result.seconds:.2f} s")
