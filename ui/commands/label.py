"""``workbench label``, ``workbench audit`` and ``workbench cache stats|prune``."""

from __future__ import annotations

import json
from typing import Any, Literal

import typer

from ui import state

cache_app = typer.Typer(help="The completion cache: every paid completion, content-addressed.", no_args_is_help=True)


def label(
    ref: str = typer.Argument(..., help="Snapshot to label (id or ref), e.g. clean."),
    tasks: list[str] = typer.Option(..., "--task", help="emotion | strategy | traits | empathy (repeatable)."),
    labeler: Literal["llm", "local"] = typer.Option("llm", "--labeler", help="llm (an endpoint) or local (offline)."),
    model: str = typer.Option(None, "--model", "-m", help="Model name at the endpoint, e.g. gpt-4o-mini."),
    base_url: str = typer.Option(None, "--base-url", help="Any OpenAI-compatible endpoint (default: OpenAI)."),
    tag: str = typer.Option(None, "--tag", "-t", help="Ref to point at the new snapshot (e.g. labeled)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Requests, tokens and $ estimate; nothing sent."),
    max_cost: float = typer.Option(None, "--max-cost", min=0.0, help="Stop sending new requests at this spend ($)."),
    concurrency: int = typer.Option(8, "--concurrency", min=1, max=256, help="Requests in flight at once."),
    train_from: list[str] = typer.Option(None, "--train-from", help="local: snapshots whose gold labels train it."),
    paid: bool = typer.Option(
        False, "--paid", help="Price a localhost endpoint anyway (a local proxy in front of a paid API)."
    ),
    max_failures: float = typer.Option(
        0.1,
        "--max-failures",
        min=0.0,
        max=1.0,
        help="Share of items that may fail (request errors + unparseable answers); past it nothing is published.",
    ),
    deadline: float = typer.Option(
        None, "--deadline", min=0.001, help="Seconds for the whole run; past them it stops and publishes nothing."
    ),
    timeout: float = typer.Option(30.0, "--timeout", min=0.001, help="Seconds per HTTP attempt."),
) -> None:
    """Label a snapshot into a NEW snapshot (gold labels untouched).

    A run that fails publishes nothing and exits non-zero: a refused key or unknown model stops at once,
    an unreachable endpoint trips a breaker, too many failures or the deadline stop it. What was received
    stays in the cache: a re-run resumes.
    """
    from labeling.tasks.base import get_tasks

    store = state.store()
    task_objs = get_tasks(tasks)
    if labeler == "local":
        from labeling.runner import label_local
        from ui.progress import step_progress

        with step_progress("label (local)") as progress:
            result = label_local(
                ref,
                store=store,
                tasks=task_objs,
                tag=tag,
                train_from=train_from or (),
                progress=lambda counters: progress("records labeled", counters.get("records", 0)),
            )
    else:
        if not model:
            raise typer.BadParameter("give --model (or --labeler local for the offline labeler)", param_hint="--model")
        from labeling.runner import label_llm
        from ui.progress import completion_progress

        with completion_progress(f"label {', '.join(tasks)}") as progress:
            result = label_llm(
                ref,
                store=store,
                tasks=task_objs,
                model=model,
                base_url=base_url,
                tag=tag,
                dry_run=dry_run,
                max_cost=max_cost,
                concurrency=concurrency,
                progress=progress,
                free=False if paid else None,
                max_failure_share=max_failures,
                deadline=deadline,
                timeout=timeout,
            )
    _print_label_result(result, dry_run=dry_run)


def audit(
    ref: str = typer.Argument(..., help="A labeled snapshot."),
    task: str = typer.Option(..., "--task", help="emotion | strategy | empathy | trait.<name> ..."),
    source: Literal["llm", "model", "human"] = typer.Option(None, "--source", help="Labels to audit (default: any)."),
    sample: int = typer.Option(0, "--sample", min=0, help="Audit a random sample of this many items (0 = all)."),
    split: Literal["train", "validation", "test"] = typer.Option(
        None, "--split", help="Only records of this split (e.g. test, to audit a labeler trained on train)."
    ),
    include_fitted: bool = typer.Option(
        False, "--include-fitted", help="Also score a labeler on the records it was fitted on (memorised: inflated)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """A labeler's labels against the gold labels of the same records: accuracy, macro-F1, kappa, confusion.

    A labeler is never scored on the records it learnt from (the local labeler's train-split gold) unless
    --include-fitted; every figure says what it was computed on and carries a 95 % bootstrap CI."""
    from labeling.runner import audit_snapshot

    report = audit_snapshot(
        state.store(), ref, task=task, label_source=source, sample=sample, split=split, include_fitted=include_fitted
    )
    if as_json:
        print(json.dumps(report, indent=1, default=str))
        return
    _print_audit(report)


@cache_app.command("stats")
def cache_stats() -> None:
    """Rows, tokens and cost saved, by model and prompt version."""
    from dataclasses import asdict

    from labeling.pricing import PriceTable
    from labeling.runner import open_cache

    with open_cache(state.store()) as cache:
        stats = cache.stats(PriceTable.load())
    print(json.dumps(asdict(stats), indent=1, default=str))


@cache_app.command("prune")
def cache_prune(
    model: str = typer.Option(None, "--model", help="Only completions of this model."),
    prompt_version: str = typer.Option(None, "--prompt-version", help="Only completions of this prompt version."),
) -> None:
    """Delete cached completions (all, or by model / prompt version)."""
    from labeling.runner import open_cache

    with open_cache(state.store()) as cache:
        removed = cache.prune(model=model, prompt_version=prompt_version)
    state.console().print(f"removed {removed:,} cached completions")


def _print_label_result(result: Any, *, dry_run: bool) -> None:
    from rich.table import Table

    con = state.console()
    if dry_run:
        con.print("label --dry-run: what it would send (nothing was sent)")
        estimate = Table(title_justify="left")
        estimate.add_column("estimate")
        estimate.add_column("value", justify="right")
        for key, value in _flat(result.estimate or {}):
            shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
            if isinstance(value, float):
                shown = f"{value:,.4f}"
            estimate.add_row(key, shown)
        con.print(estimate)
        return
    table = Table(title=f"label -> snapshot {result.snapshot_id}", title_justify="left")
    table.add_column("counter")
    table.add_column("value", justify="right")
    for k, v in sorted(result.counters.items()):
        table.add_row(k, f"{v:,}" if isinstance(v, int) else f"{v}")
    con.print(table)
    if result.reused:
        con.print("identical data already stored")


def _print_audit(report: dict[str, Any]) -> None:
    from rich.table import Table

    con = state.console()
    metrics = report.get("metrics") or {}
    con.print(
        f"audit {report['task']} ({report.get('kind')}): agents {', '.join(report.get('agents') or []) or '-'}; "
        f"{report.get('n', 0):,} pairs of {report.get('gold_items', 0):,} gold items"
    )
    on = report.get("computed_on") or {}
    if on:
        con.print(
            f"computed on: split {on['split']}, n {on['pairs']:,} pairs, coders {', '.join(on['coders']) or '-'} "
            "against gold"
        )
        if on.get("fitted_records_left_out"):
            con.print(
                f"left out: {on['fitted_records_left_out']:,} items of records the labeler was fitted on (their "
                "labels are memorised gold; --include-fitted to see them anyway)"
            )
    for key in ("warning", "warning_fitted"):
        if report.get(key):
            con.print(f"[yellow]{report[key]}[/]")
    intervals = report.get("ci") or {}
    head = Table(title="metrics", title_justify="left")
    head.add_column("metric")
    head.add_column("value", justify="right")
    head.add_column("95 % CI", justify="right")
    for k, v in metrics.items():
        if isinstance(v, int | float):
            ci = intervals.get(k) or {}
            shown = f"[{ci['ci_low']:.3f}, {ci['ci_high']:.3f}]" if ci.get("ci_low") is not None else ""
            head.add_row(k, f"{v:.3f}" if isinstance(v, float) else f"{v:,}", shown)
    con.print(head)
    per_label = metrics.get("per_label") or {}
    if per_label:
        t = Table(title="per label", title_justify="left")
        for col in ("label", "precision", "recall", "f1", "support"):
            t.add_column(col, justify="left" if col == "label" else "right")
        for name, m in per_label.items():
            t.add_row(name, *(f"{m.get(c, 0):.3f}" for c in ("precision", "recall", "f1")), f"{m.get('support', 0):,}")
        con.print(t)
    confusion = (metrics.get("single_gold") or metrics).get("confusion") if isinstance(metrics, dict) else None
    if confusion and confusion.get("labels"):
        labels, matrix = confusion["labels"], confusion["matrix"]
        used = [i for i, _ in enumerate(labels) if sum(matrix[i]) or sum(row[i] for row in matrix)]
        t = Table(title="confusion: rows gold, columns predicted (numbered as the rows)", title_justify="left")
        t.add_column("gold")
        for k, _ in enumerate(used, 1):
            t.add_column(str(k), justify="right")
        for k, i in enumerate(used, 1):
            t.add_row(f"{k} {labels[i]}", *(f"{matrix[i][j]:,}" for j in used))
        con.print(t)


def _flat(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """``{"a": {"b": 1}}`` -> ``[("a.b", 1)]`` (lists shown as they are)."""
    if not isinstance(data, dict):
        return [(prefix, data)]
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        out.extend(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out
