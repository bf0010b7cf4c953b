"""``workbench export REF --tasks ... | export list | export show REF [--json] [--preview N]``: training sets."""

from __future__ import annotations

import json
import os
from typing import Any

import typer
from typer.core import TyperGroup

from ui import state


class _ExportGroup(TyperGroup):
    """``export REF ...`` runs the hidden ``create`` command; ``export list`` / ``export show`` are subcommands."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["create", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_ExportGroup,
    help=(
        "Training sets from a validated snapshot: `export REF --tasks ...` writes one; "
        "`export list`, `export show REF` inspect them."
    ),
    no_args_is_help=True,
)


@app.command("create", hidden=True)
def create(
    ref: str = typer.Argument(..., help="Snapshot id, id prefix or ref (validated unless --allow-unvalidated)."),
    tasks: str = typer.Option(
        "response,emotion,strategy,traits", "--tasks", help="Comma-separated: response, emotion, strategy, traits."
    ),
    mix: str = typer.Option(
        None, "--mix", help="temperature:ALPHA: resample the train split so (task, source) group i gets p_i ∝ n_i^α."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the mixing draw."),
    system_prompt: str = typer.Option(None, "--system-prompt", help="System message of response/strategy examples."),
    tokenizer: str = typer.Option(
        None, "--tokenizer", help="qwen2.5, a folder or a cached hub id: token-length statistics (default: words)."
    ),
    tag: str = typer.Option(None, "--tag", help="Export ref to point at the result."),
    allow_unvalidated: bool = typer.Option(
        False, "--allow-unvalidated", help="Export a snapshot that is not validated."
    ),
) -> None:
    """Export REF to chat `messages` rows: Parquet + JSONL per split, content-addressed in the store."""
    from finetune.export import export_snapshot, parse_mix
    from ui.progress import step_progress

    names = [t.strip() for t in tasks.split(",") if t.strip()]
    alpha = parse_mix(mix)
    with step_progress("export") as progress:
        result = export_snapshot(
            ref,
            store=state.store(),
            tasks=names,
            mix_alpha=alpha,
            seed=seed,
            system_prompt=system_prompt,
            tokenizer=tokenizer,
            tag=tag,
            allow_unvalidated=allow_unvalidated,
            progress=progress,
        )
    print_export_result(result, tag=tag)


def print_export_result(result: Any, *, tag: str | None) -> None:
    """The summary ``export`` and ``run`` print for a new (or reused) export."""
    m = result.manifest
    con = state.console()
    verb = "already in the store (nothing written)" if result.reused else "written"
    con.print(f"export [bold]{result.export_id}[/] {verb}: {m['rows']:,} rows from snapshot {m['snapshot']['id']}")
    _print_summary(m)
    if tag:
        con.print(f"export ref [bold]{_escape(tag)}[/] -> {result.export_id}")


@app.command("list")
def list_exports(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Every export in the store, oldest first, with its refs."""
    from rich.table import Table

    from finetune.export import ExportStore

    infos = ExportStore(state.store()).list()
    if as_json:
        print(json.dumps([i.__dict__ for i in infos], indent=1))
        return
    con = state.console()
    if not infos:
        con.print(f"no exports in {state.store().url} yet: try `workbench export validated --tag e1`")
        return
    table = Table(title=f"exports in {state.store().url}", title_justify="left")
    for col in ("id", "refs", "created", "snapshot", "tasks", "mix", "rows"):
        table.add_column(col, justify="right" if col == "rows" else "left")
    for i in infos:
        if i.problem:
            table.add_row(i.id, ", ".join(i.refs), "", "", "[red]corrupt[/]", "", "")
            continue
        created = i.created_at.replace("+00:00", "Z")
        table.add_row(i.id, ", ".join(i.refs), created, i.snapshot, ", ".join(i.tasks), i.mix, f"{i.rows:,}")
    con.print(table)
    for i in infos:
        if i.problem:
            con.print(f"[red]corrupt[/] export {i.id}: {_escape(i.problem)}", soft_wrap=True)


@app.command("show")
def show(
    ref: str = typer.Argument(..., help="Export id, id prefix or export ref."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
    preview: int = typer.Option(
        0, "--preview", help="Render N examples through the chat template, trained tokens marked."
    ),
    split: str = typer.Option("train", "--split", help="Split the preview takes its examples from."),
    task: str = typer.Option(None, "--task", help="Preview only examples of this task."),
    tokenizer: str = typer.Option(
        None, "--tokenizer", help="Tokenizer of the preview: qwen2.5, a folder or a cached hub id (default: qwen2.5)."
    ),
) -> None:
    """Counts, label sources, token lengths and files of one export; --preview shows what carries loss."""
    from finetune.export import ExportStore

    exports = ExportStore(state.store())
    manifest = exports.manifest(ref)
    if as_json and not preview:
        print(json.dumps(manifest, indent=1, ensure_ascii=False))
        return
    if preview < 0:
        raise typer.BadParameter("--preview must be >= 0")
    if not preview:
        con = state.console()
        con.print(f"export [bold]{manifest['id']}[/] from snapshot {manifest['snapshot']['id']}")
        _print_summary(manifest, files=True)
        return
    _preview(exports, manifest, n=preview, split=split, task=task, tokenizer=tokenizer or "qwen2.5")


def _preview(exports: Any, manifest: dict, *, n: int, split: str, task: str | None, tokenizer: str) -> None:
    from curation.errors import WorkbenchError
    from finetune.masking import assistant_masks, check_masks, training_chat_template
    from finetune.tokenizer import load_tokenizer, tokenizer_name

    rows = exports.read_rows(manifest["id"], split)
    if task:
        rows = [r for r in rows if r["task"] == task]
    if not rows:
        raise WorkbenchError(f"export {manifest['id']}: no {task + ' ' if task else ''}rows in split {split!r}")
    rows = _spread(rows, n)
    tok = load_tokenizer(tokenizer)
    template = training_chat_template(tok)
    con = state.console()
    plain = not con.is_terminal or con.no_color or bool(os.environ.get("NO_COLOR"))
    legend = "[[...]] marks" if plain else "[bold black on green]highlighted[/] text marks"
    con.print(
        f"{len(rows)} example(s) of export {manifest['id']} ({split}) through {tokenizer_name(tok)}'s chat template "
        f"as TRL trains it (assistant_only_loss=True); {legend} the tokens that carry loss"
    )
    for row in rows:
        ids, mask = assistant_masks(tok, row["messages"], chat_template=template)
        con.rule(f"{row['id']}  ({row['task']}, {row['source']}, target {row['target_source']}, {row['template']})")
        _print_marked(con, tok, ids, mask, plain=plain)
        con.print(f"{sum(mask):,} of {len(ids):,} tokens trained ({sum(mask) / len(ids):.1%})")
    share = check_masks(tok, rows, chat_template=template)
    con.rule()
    con.print(
        f"mask check passed on {len(rows)} example(s): every assistant turn trained, no user/system words; "
        f"trained-token share {share:.1%}"
    )


def _spread(rows: list[dict], n: int) -> list[dict]:
    """Up to ``n`` rows, one of each task first (in file order), then the next rows."""
    picked: list[dict] = []
    seen: set[str] = set()
    for r in rows:
        if r["task"] not in seen:
            seen.add(r["task"])
            picked.append(r)
    for r in rows:
        if len(picked) >= n:
            break
        if r not in picked:
            picked.append(r)
    return picked[:n]


def _print_marked(con: Any, tok: Any, ids: list[int], mask: list[int], *, plain: bool) -> None:
    from rich.text import Text

    text = Text()
    start = 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or mask[i] != mask[start]:
            piece = tok.decode(ids[start:i], skip_special_tokens=False)
            if mask[start]:
                if plain:
                    text.append(f"[[{piece}]]")
                else:
                    text.append(piece, style="bold black on green")
            else:
                text.append(piece)
            start = i
    con.print(text, soft_wrap=True, markup=False, highlight=False)


def _print_summary(m: dict, *, files: bool = False) -> None:
    from rich.table import Table

    con = state.console()
    con.print(f"tasks: {', '.join(m['templates'])}   system prompt: {_escape(repr(m['system_prompt']))}")
    mix = m.get("mix")
    if mix:
        con.print(
            f"mix: temperature α={mix['alpha']} seed {mix['seed']} over (task, source) groups of the train split; "
            "validation and test untouched"
        )
    else:
        con.print("mix: none (every example kept)")
    before, after = m["counts"]["before_mix"], m["counts"]["after_mix"]
    table = Table(title="rows per split / task / source (before mix -> after)", title_justify="left")
    for col in ("split", "task", "source", "rows"):
        table.add_column(col, justify="right" if col == "rows" else "left")
    for split, by_task in after.items():
        for task, by_source in by_task.items():
            for source, n in by_source.items():
                was = before.get(split, {}).get(task, {}).get(source, 0)
                table.add_row(split, task, source, f"{was:,} -> {n:,}" if was != n else f"{n:,}")
    con.print(table)
    sources = Table(title="targets by label source (after mix)", title_justify="left")
    for col in ("task", "split", "gold", "human", "llm", "model"):
        sources.add_column(col, justify="left" if col in ("task", "split") else "right")
    for task, by_split in m["label_sources"]["after_mix"].items():
        for split, counts in by_split.items():
            sources.add_row(task, split, *(f"{counts.get(s, 0):,}" for s in ("gold", "human", "llm", "model")))
    con.print(sources)
    lengths = m["token_lengths"]
    unit = f"tokens ({lengths['tokenizer']})" if lengths.get("tokenizer") else lengths["unit"]
    table = Table(title=f"length per example, in {unit}", title_justify="left")
    for col in ("split", "task", "n", "mean", "p50", "p95", "max"):
        table.add_column(col, justify="left" if col in ("split", "task") else "right")
    for split, by_task in lengths["by_split"].items():
        for task, s in by_task.items():
            table.add_row(
                split, task, f"{s['n']:,}", f"{s['mean']:.0f}", f"{s['p50']:.0f}", f"{s['p95']:.0f}", f"{s['max']:,}"
            )
    con.print(table)
    for task, counters in (m.get("task_counters") or {}).items():
        con.print(f"{task}: " + "; ".join(f"{k} {v:,}" for k, v in counters.items()))
    if files:
        for formats in m["files"].values():
            for desc in formats.values():
                con.print(
                    f"  {desc['path']}: {desc['rows']:,} rows, {desc['bytes']:,} B, sha256 {desc['sha256'][:16]}..."
                )


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
