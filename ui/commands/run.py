"""``workbench run [--config F]``: the whole pipeline; with no config, on the bundled examples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ui import state
from ui.progress import record_progress


def run(
    config: Path = typer.Option(
        None, "--config", "-c", help="Pipeline TOML (default: the bundled examples/pipeline.toml)."
    ),
) -> None:
    """Run every stage of a pipeline config, offline on the bundled example data by default."""
    from ui.pipeline import load_config

    cfg = load_config(config)
    store = state.store()
    state.console().print(f"pipeline {cfg.path} -> store {store.url}")
    refs_before = store.refs()
    try:
        _run_stages(cfg, store)
    finally:
        _say_moved_refs(store, refs_before)


def _say_moved_refs(store: Any, before: dict[str, str]) -> None:
    """Name every ref that pointed somewhere before this run and now points elsewhere (it is logged too).

    ``latest`` gets a line of its own: every snapshot a run writes moves it (it names the newest snapshot of
    the store), so its move is news, not a warning; a re-run that ends where it began says nothing.
    """
    after = store.refs()
    moved = sorted(name for name, sid in before.items() if name != "latest" and after.get(name) not in (sid, None))
    con = state.console()
    if moved:
        con.print(
            f"[yellow]moved {len(moved)} existing ref(s)[/]: "
            + ", ".join(f"{name} {before[name][:12]} -> {after[name][:12]}" for name in moved)
            + " (workbench snapshots log REF shows every move; snapshots tag REF ID points one back)",
            soft_wrap=True,
        )
    if after.get("latest") not in (before.get("latest"), None) and "latest" in before:
        con.print(
            f"latest {before['latest'][:12]} -> {after['latest'][:12]} (the newest snapshot of the store; "
            "workbench snapshots log latest shows where it pointed)",
            soft_wrap=True,
        )


def _run_stages(cfg: Any, store: Any) -> None:
    from curation.ingest import ingest
    from ui.commands.ingest import print_ingest_summary

    results = []
    for stage in cfg.ingest:
        with record_progress(f"ingest {stage.source}") as progress:
            results.append(
                ingest(
                    stage.source, stage.paths, store=store, tag=stage.tag, on_error=stage.on_error, progress=progress
                )
            )
    print_ingest_summary(results)
    if cfg.curate:
        from curation.curate import curate, load_steps
        from ui.commands.curate import print_curate_summary
        from ui.progress import step_progress

        stage = cfg.curate
        with step_progress("curate") as progress:
            result = curate(
                stage.inputs,
                store=store,
                steps=load_steps(stage.config),
                tag=stage.tag,
                progress=progress,
                engine=stage.engine,
                workers=stage.workers,
            )
        print_curate_summary(result, dry_run=False)
    if cfg.label:
        from labeling.tasks.base import get_tasks
        from ui.commands.label import _print_label_result

        stage = cfg.label
        if stage.labeler == "local":
            from labeling.runner import label_local
            from ui.progress import step_progress

            with step_progress("label (local)") as progress:
                labeled = label_local(
                    stage.input,
                    store=store,
                    tasks=get_tasks(stage.tasks),
                    tag=stage.tag,
                    progress=lambda counters: progress("records labeled", counters.get("records", 0)),
                )
        else:
            from labeling.runner import label_llm

            labeled = label_llm(
                stage.input,
                store=store,
                tasks=get_tasks(stage.tasks),
                model=stage.model,
                base_url=stage.base_url,
                tag=stage.tag,
                max_cost=stage.max_cost,
                max_failure_share=stage.max_failures,
                deadline=stage.deadline,
                timeout=stage.timeout,
            )
        _print_label_result(labeled, dry_run=False)
    if cfg.validate:
        from curation.validate import ValidationFailed, load_config, validate
        from ui.commands.validate import print_validation

        stage = cfg.validate
        checked = validate(
            stage.input,
            store=store,
            config=load_config(stage.config) if stage.config else None,
            report_path=stage.report,
            tag=stage.tag,
        )
        print_validation(checked)
        if not checked.success:
            raise ValidationFailed(f"{len(checked.failed)} expectations failed on {stage.input}; nothing validated")
    if cfg.export:
        from finetune.export import export_snapshot, parse_mix
        from ui.commands.export import print_export_result
        from ui.progress import step_progress

        stage = cfg.export
        with step_progress("export") as progress:
            exported = export_snapshot(
                stage.input,
                store=store,
                tasks=list(stage.tasks),
                mix_alpha=parse_mix(stage.mix),
                seed=stage.seed,
                system_prompt=stage.system_prompt,
                tokenizer=stage.tokenizer,
                tag=stage.tag,
                allow_unvalidated=stage.allow_unvalidated,
                progress=progress,
            )
        print_export_result(exported, tag=stage.tag)
    if cfg.finetune:
        run_finetune_stage(cfg.finetune, store=store)
    if cfg.evaluate:
        run_evaluate_stage(cfg.evaluate, store=store)
    if not cfg.curate and not cfg.label:
        state.console().print("next: workbench snapshots list | workbench snapshots show dd-raw")


def run_finetune_stage(stage: Any, *, store: Any) -> None:
    """Fine-tune on an export into ``<runs>/<out>``; a folder that already holds a finished run of the
    same export and config is reported and kept (a pipeline re-run trains nothing twice)."""
    from curation.errors import WorkbenchError
    from evaluate.results import default_runs_dir
    from finetune.config import load_config, require_finetune_extra
    from finetune.export import ExportStore
    from finetune.runs import RunFolder
    from ui.commands.finetune import print_result

    runs = default_runs_dir(store.url)
    if runs is None:
        raise WorkbenchError("[finetune]: a remote store has no runs folder beside it: set WORKBENCH_RUNS")
    out = runs / stage.out
    cfg = load_config(stage.config, overrides=dict(stage.overrides))
    export_id = ExportStore(store).resolve(stage.input)
    con = state.console()
    folder = RunFolder(out)
    if folder.exists():
        info = folder.info()
        if info["status"] == "finished" and info.get("export") == export_id:
            con.print(f"fine-tune: {out} already holds the finished run on export {export_id} (nothing trained)")
            return
    require_finetune_extra()
    from finetune import train as training

    if stage.tiny:
        from finetune.tiny import build_tiny_model

        cfg.base_model = str(build_tiny_model(runs / "tiny-qwen2"))
    elif stage.base_model:
        cfg.base_model = stage.base_model
    say = con.print if con.is_terminal else print
    print_result(training.finetune(stage.input, store=store, config=cfg, out=out, say=say))


def run_evaluate_stage(stage: Any, *, store: Any) -> None:
    """Base model against the runs' adapters on an export's test split; the report lands in ``<runs>/<out>``."""
    from curation.errors import WorkbenchError
    from evaluate.results import default_runs_dir
    from finetune.config import require_finetune_extra

    runs = default_runs_dir(store.url)
    if runs is None:
        raise WorkbenchError("[evaluate]: a remote store has no runs folder beside it: set WORKBENCH_RUNS")
    require_finetune_extra()
    from evaluate.generate import Decoding
    from evaluate.models import build_judge, model_specs
    from evaluate.report import write_report
    from evaluate.run import EvalOptions, evaluate_export
    from labeling.runner import open_cache

    base_model = stage.base_model
    if stage.tiny:
        from finetune.tiny import build_tiny_model

        base_model = str(build_tiny_model(runs / "tiny-qwen2"))
    specs = model_specs(base_model=base_model, adapters=[str(runs / a) for a in stage.adapters])
    con = state.console()
    say = con.print if con.is_terminal else print
    options = EvalOptions(suites=stage.suites, limit=stage.limit, seed=stage.seed)
    decoding = Decoding(max_new_tokens=stage.max_new_tokens, seed=stage.seed, batch_size=stage.batch_size)
    with open_cache(store) as cache:
        evaluation = evaluate_export(
            stage.input,
            store=store,
            models=specs,
            decoding=decoding,
            judge=build_judge(stage.judge, stage.judge_url, cache),
            cache=cache,
            options=options,
            tag=stage.tag,
            say=say,
        )
    written = write_report(evaluation, runs / stage.out)
    for line in written.summary_lines:
        con.print(line, soft_wrap=True)
    con.print(f"report: {written.html} (and eval.md, eval.json; the dashboard's Results page shows it)", soft_wrap=True)
