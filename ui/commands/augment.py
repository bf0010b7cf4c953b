"""``workbench augment``: generate verified synthetic train examples until a target distribution is met."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import typer

from ui import state


def augment(
    ref: str = typer.Argument(..., help="Snapshot to augment (id or ref), e.g. labeled."),
    task: Literal["emotion", "strategy", "traits", "empathy"] = typer.Option(..., "--task", help="Task to balance."),
    target: Path = typer.Option(..., "--target", help="Targets TOML, e.g. examples/targets.toml."),
    model: str = typer.Option(..., "--model", "-m", help="Generator (and LLM verifier) model, e.g. gpt-4o-mini."),
    base_url: str = typer.Option(None, "--base-url", help="Any OpenAI-compatible endpoint (default: OpenAI)."),
    verify: Literal["llm", "local"] = typer.Option("llm", "--verify", help="Re-label with the LLM task or local."),
    max_cost: float = typer.Option(None, "--max-cost", min=0.0, help="Stop sending new requests at this spend ($)."),
    tag: str = typer.Option(None, "--tag", "-t", help="Ref to point at the new snapshot (e.g. augmented)."),
    per_request: int = typer.Option(5, "--per-request", min=1, help="Examples asked for per generation request."),
    shots: int = typer.Option(4, "--shots", min=1, help="Real examples of the class shown per request."),
    rounds: int = typer.Option(3, "--rounds", min=1, help="Generation rounds to refill rejected examples."),
    dedup_threshold: float = typer.Option(
        0.7, "--dedup-threshold", min=0.01, max=1.0, help="Estimated Jaccard above which an example is a duplicate."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the few-shot draws."),
    concurrency: int = typer.Option(8, "--concurrency", min=1, max=256, help="Requests in flight at once."),
    max_failures: float = typer.Option(
        0.1,
        "--max-failures",
        min=0.0,
        max=1.0,
        help="Share of a batch's requests that may fail or not parse; past it nothing is published.",
    ),
    deadline: float = typer.Option(
        None, "--deadline", min=0.001, help="Seconds for the whole run; past them it stops and publishes nothing."
    ),
    timeout: float = typer.Option(30.0, "--timeout", min=0.001, help="Seconds per HTTP attempt."),
) -> None:
    """Fill minority classes of the TRAIN split with verified, deduplicated synthetic examples (a NEW snapshot).

    A run that fails publishes nothing and exits non-zero (see `workbench label --help`); what was received
    stays in the cache.
    """
    from labeling.augment import augment as run_augment

    result = run_augment(
        ref,
        store=state.store(),
        task=task,
        targets=target,
        model=model,
        base_url=base_url,
        verify=verify,
        max_cost=max_cost,
        tag=tag,
        per_request=per_request,
        shots=shots,
        rounds=rounds,
        dedup_threshold=dedup_threshold,
        seed=seed,
        concurrency=concurrency,
        max_failure_share=max_failures,
        deadline=deadline,
        timeout=timeout,
    )
    _print_result(result)


def _print_result(result: Any) -> None:
    from rich.table import Table

    con = state.console()
    table = Table(title=f"augment {result.task} -> snapshot {result.snapshot_id}", title_justify="left")
    for col in ("class", "before", "target", "generated", "kept", "after"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for cls, rep in result.classes.items():
        if rep.target <= rep.before and not rep.kept:
            continue  # already at target: nothing to show
        note = " (no real example)" if rep.no_examples else ""
        table.add_row(
            f"{cls}{note}",
            f"{rep.before:,}",
            f"{rep.target:,}",
            f"{rep.generated:,}",
            f"{rep.kept:,}",
            f"{rep.after:,}",
        )
    con.print(table)
    c = result.counters
    con.print(
        f"kept {c['kept']:,} of {c['generated']:,} generated: {c['rejected_duplicate']:,} near duplicates, "
        f"{c['rejected_label']:,} failed label verification; {c['requests_sent']:,} requests sent, "
        f"{c['cache_hits']:,} from the cache" + (f"; ${result.cost_usd:.4f}" if result.cost_usd else "")
    )
    if result.budget_stopped:
        con.print(
            "[yellow]stopped at the budget[/]: re-run with a larger --max-cost to continue (cached work is reused)"
        )
