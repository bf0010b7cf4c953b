"""Progress display for long work: a live counter with rate, on stderr."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from ui import state


@contextmanager
def record_progress(description: str) -> Iterator:
    """Yields a ``progress(kept, rejected)`` callback that drives a live display."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        TextColumn("{task.completed:,} records"),
        TextColumn("[red]{task.fields[rejected]} rejected"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
    )
    start = time.perf_counter()
    console = state.err_console()
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(description, total=None, rejected=0, rate="")

        def update(kept: int, rejected: int) -> None:
            elapsed = max(time.perf_counter() - start, 1e-9)
            bar.update(task, completed=kept, rejected=rejected, rate=f"{(kept + rejected) / elapsed:,.0f}/s")

        yield update


@contextmanager
def step_progress(description: str) -> Iterator:
    """Yields a ``progress(step, seen)`` callback: one live line per step of a pipeline."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = state.err_console()
    columns = (
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        TextColumn("{task.completed:,} records"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        tasks: dict[str, object] = {}

        def update(step: str, seen: int) -> None:
            if step not in tasks:
                tasks[step] = bar.add_task(f"{description}: {step}", total=None)
            bar.update(tasks[step], completed=seen)

        yield update


@contextmanager
def completion_progress(description: str) -> Iterator:
    """Yields a callback taking a ``labeling.batch.BatchProgress``: done/total, rate, cache hits, tokens, $."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = state.err_console()
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TextColumn("cached {task.fields[hits]:,}"),
        TextColumn("tokens {task.fields[tokens]:,}"),
        TextColumn("{task.fields[cost]}"),
        TimeElapsedColumn(),
    )
    start = time.perf_counter()
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(description, total=None, rate="", hits=0, tokens=0, cost="")

        def update(p: object) -> None:
            elapsed = max(time.perf_counter() - start, 1e-9)
            cost = getattr(p, "cost_usd", None)
            bar.update(
                task,
                total=getattr(p, "total", None),
                completed=getattr(p, "done", 0),
                rate=f"{getattr(p, 'done', 0) / elapsed:,.1f}/s",
                hits=getattr(p, "cache_hits", 0),
                tokens=getattr(p, "prompt_tokens", 0) + getattr(p, "completion_tokens", 0),
                cost="$?" if cost is None else f"${cost:,.4f}",
            )

        yield update
