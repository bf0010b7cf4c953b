"""``workbench review push | pull``: a snapshot's units to Argilla as suggestions, the answers back as labels."""

from __future__ import annotations

import typer

from ui import state

_URL_HELP = "Argilla server URL (default: $ARGILLA_API_URL, else the local server of `workbench review serve`)."
_KEY_HELP = "Argilla API key (default: $ARGILLA_API_KEY, else the local server's)."


def push(
    ref: str = typer.Argument(..., help="Snapshot to review (id or ref), e.g. labeled."),
    tasks: list[str] = typer.Option(..., "--task", help="emotion | strategy | empathy | traits (repeatable)."),
    name: str = typer.Option(..., "--name", "-n", help="Argilla dataset to create or add to, e.g. ed-emotions."),
    sample: int = typer.Option(0, "--sample", min=0, help="Push a seeded random sample of this many units (0 = all)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sample."),
    overlap: int = typer.Option(1, "--overlap", min=1, help="Annotators per record (submitted responses needed)."),
    workspace: str = typer.Option(None, "--workspace", help="Argilla workspace (default: your first one)."),
    show_gold: bool = typer.Option(
        False,
        "--show-gold/--hide-gold",
        help="Show gold labels to annotators (hidden by default: gold anchors answers).",
    ),
    min_suggestion_score: float = typer.Option(
        0.5,
        "--min-suggestion-score",
        min=0.0,
        max=1.0,
        help="Pre-fill a machine label only at this confidence or above (the guidelines say so).",
    ),
    api_url: str = typer.Option(None, "--api-url", help=_URL_HELP),
    api_key: str = typer.Option(None, "--api-key", help=_KEY_HELP),
) -> None:
    """Push the units of a snapshot to an Argilla dataset; machine labels become suggestions (no duplicates)."""
    from labeling.review.sync import push as run_push
    from labeling.review.sync import resolve_credentials
    from ui.progress import step_progress

    credentials = resolve_credentials(api_url, api_key)
    with step_progress("review push") as progress:
        result = run_push(
            ref,
            store=state.store(),
            tasks=tasks,
            name=name,
            credentials=credentials,
            workspace=workspace,
            sample=sample,
            seed=seed,
            overlap=overlap,
            show_gold=show_gold,
            min_suggestion_score=min_suggestion_score,
            progress=lambda done, total: progress(f"records (of {total:,})", done),
        )
    state.console().print(
        f"pushed {result.records:,} records ({result.counters['suggestions']:,} suggestions; "
        f"{result.available:,} units available) from snapshot {result.snapshot} to dataset "
        f"[bold]{result.dataset}[/bold] (workspace {result.workspace}, overlap {overlap}"
        f"{', created' if result.created else ''}) at {result.api_url}"
    )


def pull(
    name: str = typer.Argument(..., help="Argilla dataset to pull, e.g. ed-emotions."),
    tag: str = typer.Option(None, "--tag", "-t", help="Ref to point at the new snapshot (e.g. reviewed)."),
    from_ref: str = typer.Option(
        None, "--from", help="Parent snapshot (default: the one the dataset was pushed from)."
    ),
    workspace: str = typer.Option(None, "--workspace", help="Argilla workspace (default: any that has the dataset)."),
    api_url: str = typer.Option(None, "--api-url", help=_URL_HELP),
    api_key: str = typer.Option(None, "--api-key", help=_KEY_HELP),
) -> None:
    """Pull every response (submitted, draft, discarded) into a NEW snapshot as `human` labels."""
    from labeling.review.sync import pull as run_pull
    from labeling.review.sync import resolve_credentials
    from ui.progress import step_progress

    credentials = resolve_credentials(api_url, api_key)
    with step_progress("review pull") as progress:
        result = run_pull(
            name,
            store=state.store(),
            credentials=credentials,
            workspace=workspace,
            parent=from_ref,
            tag=tag,
            progress=lambda done, total: progress(f"records (of {total:,})", done),
        )
    statuses = ", ".join(
        f"{result.counters[f'responses.{s}']:,} {s}"
        for s in ("submitted", "draft", "discarded")
        if result.counters[f"responses.{s}"]
    )
    con = state.console()
    con.print(
        f"pulled {result.responses:,} responses ({statuses or 'none'}) from {len(result.annotators)} annotators "
        f"({', '.join(result.annotators) or '-'}) in dataset [bold]{result.dataset}[/bold] at {result.api_url}: "
        f"{result.labels:,} human labels -> snapshot {result.snapshot_id}"
        + (f" ({result.tag})" if result.tag else "")
        + f", parent {result.parent}"
    )
    skipped = {k: v for k, v in result.counters.items() if k in _SKIPPED and v}
    if skipped:
        con.print("[yellow]not written as labels:[/] " + ", ".join(f"{k} {v:,}" for k, v in sorted(skipped.items())))
    if result.reused:
        con.print("identical data already stored")


_SKIPPED = ("invalid_values", "unknown_questions", "unmatched_records", "labels_outside_turns")


def status_list(
    workspace: str = typer.Option(None, "--workspace", help="Only the datasets of this workspace."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    api_url: str = typer.Option(None, "--api-url", help=_URL_HELP),
    api_key: str = typer.Option(None, "--api-key", help=_KEY_HELP),
) -> None:
    """Every Argilla dataset with its progress: records completed / pending, each annotator's answers."""
    import json

    from rich.table import Table

    from labeling.review.sync import resolve_credentials, review_status

    credentials = resolve_credentials(api_url, api_key)
    datasets = review_status(credentials, workspace=workspace)
    if as_json:
        print(json.dumps([d.to_dict() for d in datasets], indent=1))
        return
    table = Table(title=f"Argilla datasets at {credentials.api_url}", title_justify="left")
    for col in ("dataset", "workspace", "records", "completed", "pending", "overlap", "annotators", "snapshot"):
        table.add_column(col, justify="right" if col in ("records", "completed", "pending", "overlap") else "left")
    for d in datasets:
        who = ", ".join(
            f"{name} {c['submitted']}/{c['draft']}/{c['discarded']}" for name, c in sorted(d.annotators.items())
        )
        table.add_row(
            d.name,
            d.workspace,
            f"{d.records:,}",
            f"{d.completed:,}",
            f"{d.pending:,}",
            str(d.min_submitted or "-"),
            who or "-",
            ", ".join(s[:12] for s in d.snapshots) or "-",
        )
    con = state.console()
    con.print(table)
    con.print("annotators: submitted/draft/discarded; `workbench review pull DATASET --tag T` brings answers back")
