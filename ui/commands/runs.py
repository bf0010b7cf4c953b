"""``workbench runs list [--runs DIR]`` and ``workbench runs show RUN [--json]``: fine-tuning runs."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ui import state

app = typer.Typer(help="Fine-tuning runs: status, lineage, loss curves, throughput.", no_args_is_help=True)


def _runs_dir(runs: Path | None) -> Path:
    if runs is not None:
        return runs
    from evaluate.results import default_runs_dir

    found = default_runs_dir(state.STORE_URL or "./workbench-store")
    return found if found is not None else Path("runs")


@app.command("list")
def list_runs(
    runs: Path = typer.Option(None, "--runs", help="Folder of run folders (default: $WORKBENCH_RUNS, else ./runs)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Every run under the runs folder: status, steps, losses, tokens/s."""
    from rich.markup import escape
    from rich.table import Table

    from finetune.runs import list_runs as find_runs

    folder = _runs_dir(runs)
    found = find_runs(folder)
    if as_json:
        print(json.dumps([_summary_dict(s) for s in found], indent=1))
        return
    if not found:
        state.console().print(f"no runs in {folder}: try `workbench finetune EXPORT --out {folder}/r1 ...`")
        return
    table = Table(title=f"runs in {folder}", title_justify="left")
    for col in ("run", "status", "started", "base model", "export", "steps", "loss", "best eval", "tok/s"):
        table.add_column(col, justify="right" if col in ("steps", "loss", "best eval", "tok/s") else "left")
    for s in found:
        status = s.status if s.status == "finished" else f"[red]{s.status}[/]" if s.status != "running" else s.status
        table.add_row(
            escape(s.name),
            status,
            str(s.info.get("started_at", "")).replace("+00:00", "Z"),
            escape(str(s.info.get("base_model", ""))) + (" (tiny)" if s.info.get("tiny_model") else ""),
            str(s.info.get("export") or "")[:12],
            str(s.steps),
            _num(s.last_loss),
            _num(s.best_eval_loss),
            f"{s.tokens_per_second:,.0f}" if s.tokens_per_second else "",
        )
    state.console().print(table)
    for s in found:
        if s.reason and s.status != "finished":
            state.console().print(f"{escape(s.name)}: {escape(s.reason)}", soft_wrap=True)


@app.command("show")
def show(
    run: Path = typer.Argument(..., help="A run folder (runs/r1)."),
    as_json: bool = typer.Option(False, "--json", help="Print run.json and the summary as JSON."),
) -> None:
    """Lineage, config, loss curve summary, tokens/s and the best checkpoint of one run."""
    from rich.markup import escape

    from finetune.runs import CONFIG_TOML, summarize

    s = summarize(run)
    if as_json:
        print(json.dumps(_summary_dict(s), indent=1, default=str))
        return
    con = state.console()
    info = s.info
    line = f"run [bold]{escape(s.name)}[/] ({escape(s.path)}): {s.status}"
    if s.reason:
        line += f": {escape(s.reason)}"
    con.print(line, soft_wrap=True)
    if info.get("tiny_model"):
        con.print("[yellow]tiny random base model[/]: this run only demonstrates the path")
    con.print("lineage", style="bold")
    for key in ("base_model", "export", "snapshot", "tasks", "tokenizer", "chat_template_sha256", "code_version"):
        if info.get(key) is not None:
            value = info[key]
            if isinstance(value, dict):
                value = ", ".join(f"{k} {v}" for k, v in value.items())
            elif isinstance(value, list):
                value = ", ".join(map(str, value))
            con.print(f"  {key}: {escape(str(value))}", soft_wrap=True)
    examples = info.get("examples") or {}
    if examples:
        share = info.get("trained_token_share")
        tail = f"; {share:.1%} of the training tokens carry loss" if isinstance(share, int | float) else ""
        validation = f"{examples.get('validation', 0):,}"
        if examples.get("validation_of", 0) > examples.get("validation", 0):
            validation += f" (a fixed sample of {examples['validation_of']:,})"
        con.print(f"  examples: {examples.get('train', 0):,} train, {validation} validation{tail}")
    con.print("training", style="bold")
    con.print(
        f"  {s.steps} steps on {info.get('device', '?')} ({info.get('precision', '?')}), "
        f"{info.get('attempts', 1)} attempt(s)"
    )
    if s.losses:
        first, last = s.losses[0][0], s.losses[-1][0]
        con.print(f"  loss {_num(s.first_loss)} (step {first}) -> {_num(s.last_loss)} (step {last})")
    if s.evals:
        curve = "  ".join(f"{step}: {value:.4f}" for step, value in s.evals[-8:])
        con.print(f"  eval loss by step: {curve}")
        con.print(f"  best eval loss {s.best_eval_loss:.4f} at step {s.best_eval_step}")
    for head in ("emotion", "strategy"):
        got = {k.removeprefix(f"eval_{head}_"): v for k, v in s.heads.items() if k.startswith(f"eval_{head}_")}
        if got:
            scores = ", ".join(f"{k} {v:.3f}" for k, v in got.items() if k not in ("n", "loss"))
            con.print(f"  {head} head on validation: {scores} (n {int(got.get('n', 0)):,} assistant messages)")
    if info.get("best_checkpoint"):
        con.print(f"  best checkpoint: {escape(str(Path(s.path) / info['best_checkpoint']))}", soft_wrap=True)
    if s.tokens_per_second:
        con.print(f"  throughput: {s.tokens_per_second:,.0f} trained tokens/s (median of the log)")
    if info.get("stopped_early"):
        con.print("  stopped early (validation loss stopped improving)")
    if s.status == "finished":
        con.print(f"  adapter: {escape(str(Path(s.path) / info.get('adapter', 'adapter')))}", soft_wrap=True)
    config = Path(s.path) / CONFIG_TOML
    if config.is_file():
        con.print("config", style="bold")
        con.print(escape(config.read_text(encoding="utf-8").rstrip()), soft_wrap=True)


def _summary_dict(s) -> dict:
    return {
        "path": s.path,
        "name": s.name,
        "status": s.status,
        "reason": s.reason,
        "steps": s.steps,
        "first_loss": s.first_loss,
        "last_loss": s.last_loss,
        "best_eval_loss": s.best_eval_loss,
        "best_eval_step": s.best_eval_step,
        "tokens_per_second": s.tokens_per_second,
        "heads": s.heads,
        "info": s.info,
    }


def _num(value: float | None) -> str:
    return f"{value:.4f}" if value is not None else ""
