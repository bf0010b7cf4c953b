"""``workbench evaluate EXPORT --base-model M --adapter RUN ... --suites ... --judge-model J --out DIR``."""

from __future__ import annotations

from pathlib import Path

import typer

from ui import state


def evaluate(
    export: str = typer.Argument(..., help="Export id, id prefix or ref: prompts come from its test split."),
    base_model: str = typer.Option(
        None, "--base-model", "-m", help="Base model: a local folder or a hub id in the local HF cache."
    ),
    adapters: list[str] = typer.Option(
        [], "--adapter", "-a", help="A run folder, its adapter/ or a checkpoint folder; NAME=PATH names it (repeat)."
    ),
    model_url: str = typer.Option(None, "--model-url", help="An OpenAI-compatible endpoint serving a model to test."),
    model: str = typer.Option(None, "--model", help="The served model's name (with --model-url)."),
    tiny: bool = typer.Option(
        False, "--tiny", help="The tiny random base model (beside --out): demonstrates the path only."
    ),
    suites: str = typer.Option(
        "empathy,traits,classification,safety",
        "--suites",
        help="Comma-separated: empathy, traits, classification, safety.",
    ),
    judge_model: str = typer.Option(
        "local", "--judge-model", "--judge", help="Judge model at --judge-url (or OPENAI_BASE_URL), or 'local' (proxy)."
    ),
    judge_url: str = typer.Option(None, "--judge-url", help="The judge's OpenAI-compatible base URL."),
    limit: int = typer.Option(50, "--limit", help="Prompts per suite (a fixed sample); 0 for all."),
    seed: int = typer.Option(0, "--seed", help="Seed of the prompt sample and of generation."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", help="Longest reply, in tokens."),
    temperature: float = typer.Option(0.0, "--temperature", help="0: greedy decoding (the default)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Prompts per generation batch (local models)."),
    system_prompt: str = typer.Option(None, "--system-prompt", help="The same system prompt for every model."),
    tag: str = typer.Option(None, "--tag", "-t", help="Ref to point at the evaluation snapshot."),
    out: Path = typer.Option(None, "--out", "-o", help="Report folder: eval.json, eval.md, eval.html."),
    allow_unvalidated: bool = typer.Option(False, "--allow-unvalidated", help="Evaluate an unvalidated export."),
) -> None:
    """Compare the base model with fine-tuned adapters: judged empathy, traits, classification, safety."""
    from curation.errors import WorkbenchError
    from evaluate.run import EvalOptions, evaluate_export

    options = EvalOptions(
        suites=tuple(s.strip() for s in suites.split(",") if s.strip()),
        limit=limit or None,
        seed=seed,
        system_prompt=system_prompt,
        allow_unvalidated=allow_unvalidated,
    )
    if out is None:
        raise WorkbenchError("give --out REPORT_FOLDER for the report")
    from evaluate.generate import Decoding
    from evaluate.models import build_judge, model_specs
    from evaluate.report import write_report
    from labeling.runner import open_cache

    store = state.store()
    specs = model_specs(base_model=base_model, adapters=adapters, model_url=model_url, model=model, tiny=tiny, out=out)
    decoding = Decoding(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed, batch_size=batch_size)
    con = state.console()
    say = con.print if con.is_terminal else print
    with open_cache(store) as cache:
        judge = build_judge(judge_model, judge_url, cache)
        evaluation = evaluate_export(
            export,
            store=store,
            models=specs,
            decoding=decoding,
            judge=judge,
            cache=cache,
            options=options,
            tag=tag,
            say=say,
        )
    written = write_report(evaluation, out)
    for line in written.summary_lines:
        con.print(line, soft_wrap=True)
    con.print(f"report: {written.markdown}  {written.html}  {written.json}", soft_wrap=True)


def evaluate_report(
    snapshot: str = typer.Argument(..., help="An evaluation snapshot, or a reviewed descendant of one (review pull)."),
    out: Path = typer.Option(..., "--out", "-o", help="Report folder: eval.json, eval.md, eval.html."),
) -> None:
    """The report of an evaluation again, from its snapshot: with judge-human agreement when humans rated replies."""
    from evaluate.from_snapshot import judge_agreement, load_evaluation
    from evaluate.report import write_report

    evaluation, records = load_evaluation(state.store(), snapshot)
    agreement = judge_agreement(records)
    written = write_report(evaluation, out, agreement=agreement)
    con = state.console()
    for line in written.summary_lines:
        con.print(line, soft_wrap=True)
    if agreement:
        judge = agreement.get("human_judge") or {}
        con.print(
            f"judge against humans: alpha {judge.get('alpha', float('nan')):.3f} on "
            f"{agreement['replies_rated_by_humans']} rated replies",
            soft_wrap=True,
        )
    else:
        con.print("no human ratings on these replies: the judge is not audited (see the report)")
    con.print(f"report: {written.markdown}  {written.html}  {written.json}", soft_wrap=True)
