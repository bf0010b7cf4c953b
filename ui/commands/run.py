"""``workbench run [--config F]``: the whole pipeline; with no config, on the bundled examples."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer

from ui import state
from ui.progress import record_progress


def run(
    config: Path = typer.Option(
        None, "--config", "-c", help="Pipeline TOML (default: the bundled examples/pipeline.toml)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Recompute every stage, even those whose inputs, config and code are unchanged."
    ),
) -> None:
    """Run every stage of a pipeline config, offline on the bundled example data by default.

    A stage whose inputs (snapshot ids, file contents), config and code are those of an earlier run
    in this store is answered from that run at once (its snapshot, its refs); --force recomputes.
    """
    from ui.pipeline import load_config

    cfg = load_config(config)
    store = state.store()
    state.console().print(f"pipeline {cfg.path} -> store {store.url}")
    refs_before = store.refs()
    memo = Memo(store, force=force)
    try:
        _run_stages(cfg, store, memo)
    finally:
        _say_moved_refs(store, refs_before)
        memo.summary()


class Memo:
    """The pipeline's stage cache (:mod:`curation.memo`): look a stage up before running it, remember it after."""

    def __init__(self, store: Any, *, force: bool = False) -> None:
        self.store = store
        self.force = force
        self.hits: list[str] = []
        self.runs: list[str] = []

    def key(self, kind: str, *, parents: Any = (), config: Any = None) -> str:
        from curation.memo import derivation_key

        return derivation_key(kind, parents=list(parents), config=config)

    def hit(self, key: str, exists: Any = None) -> str | None:
        """The output an earlier run of this stage produced, if it is still there (never with --force)."""
        from curation.memo import lookup

        if self.force:
            return None
        entry = lookup(self.store, key, exists=exists)
        return entry["output"] if entry else None

    def answered(self, what: str, output: str, tags: dict[str, str | None]) -> None:
        """Point the stage's refs at its earlier output, as the stage would, and say so."""
        for name, sid in tags.items():
            if name and sid:
                self.store.set_ref(name, sid)
        self.hits.append(what)
        state.console().print(f"{what}: unchanged -> {output} (memoised; --force recomputes)", soft_wrap=True)

    def keep(self, key: str, what: str, kind: str, output: str) -> None:
        from curation.memo import remember

        remember(self.store, key, kind, output)
        self.runs.append(what)

    def summary(self) -> None:
        if self.hits:
            state.console().print(
                f"{len(self.hits)} stage(s) unchanged since an earlier run, {len(self.runs)} computed "
                "(workbench run --force recomputes them all)"
            )


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


def _file_digest(path: Any) -> str | None:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else None


def _run_stages(cfg: Any, store: Any, memo: Memo) -> None:
    from curation.adapters.base import get_adapter, require_paths
    from curation.ingest import IngestResult, describe_inputs, ingest
    from ui.commands.ingest import print_ingest_summary

    results = []
    for stage in cfg.ingest:
        adapter = get_adapter(stage.source)
        files = describe_inputs(require_paths(list(stage.paths)))
        key = memo.key(
            "ingest",
            config={
                "source": stage.source,
                "adapter": [adapter.name, adapter.version],
                "files": [[f["bytes"], f["sha256"]] for f in files],
                "on_error": stage.on_error,
            },
        )
        sid = memo.hit(key)
        if sid is not None:
            memo.answered(f"ingest {stage.source}", sid, {stage.tag: sid, "latest": sid})
            m = store.manifest(sid)
            c = dict(m["steps"][0].get("counters") or {})
            results.append(
                IngestResult(
                    snapshot_id=sid,
                    source=stage.source,
                    kept=int(c.pop("kept", m["rows"])),
                    rejected=int(c.pop("rejected", 0)),
                    counts=m["counts"],
                    reused=True,
                    tag=stage.tag,
                    adapter_stats={k: v for k, v in c.items() if k != "read"},
                    manifest=m,
                )
            )
            continue
        with record_progress(f"ingest {stage.source}") as progress:
            result = ingest(
                stage.source,
                stage.paths,
                store=store,
                tag=stage.tag,
                on_error=stage.on_error,
                progress=progress,
                inputs=files,
            )
        memo.keep(key, f"ingest {stage.source}", "ingest", result.snapshot_id)
        results.append(result)
    print_ingest_summary(results)
    if cfg.curate:
        import tomllib

        from curation.curate import curate, load_steps
        from ui.commands.curate import print_curate_summary
        from ui.progress import step_progress

        stage = cfg.curate
        steps = load_steps(stage.config)
        parents = [store.resolve(r) for r in stage.inputs]
        # the engine is left out: both engines give the same snapshot
        key = memo.key("curate", parents=parents, config=tomllib.loads(Path(stage.config).read_text(encoding="utf-8")))
        sid = memo.hit(key)
        if sid is not None:
            memo.answered("curate", sid, {stage.tag: sid, "latest": sid})
        else:
            with step_progress("curate") as progress:
                result = curate(
                    parents,
                    store=store,
                    steps=steps,
                    tag=stage.tag,
                    progress=progress,
                    engine=stage.engine,
                    workers=stage.workers,
                )
            print_curate_summary(result, dry_run=False)
            memo.keep(key, "curate", "curate", result.snapshot_id)
    if cfg.label:
        _label_stage(cfg.label, store, memo)
    if cfg.validate:
        from curation.validate import ValidationFailed, load_config, validate
        from ui.commands.validate import print_validation

        stage = cfg.validate
        parent = store.resolve(stage.input)
        key = memo.key("validate", parents=[parent], config={"suite": _file_digest(stage.config)})
        sid = memo.hit(key)
        if sid is not None and (stage.report is None or Path(stage.report).is_file()):
            memo.answered("validate", sid, {stage.tag: sid, "latest": sid})
        else:
            checked = validate(
                parent,
                store=store,
                config=load_config(stage.config) if stage.config else None,
                report_path=stage.report,
                tag=stage.tag,
            )
            print_validation(checked)
            if not checked.success:
                raise ValidationFailed(f"{len(checked.failed)} expectations failed on {stage.input}; nothing validated")
            memo.keep(key, "validate", "validate", checked.snapshot_id)
    if cfg.export:
        from finetune.export import ExportStore, export_snapshot, parse_mix
        from ui.commands.export import print_export_result
        from ui.progress import step_progress

        stage = cfg.export
        exports = ExportStore(store)
        parent = store.resolve(stage.input)
        options = {k: v for k, v in asdict(stage).items() if k not in ("input", "tag")}
        key = memo.key("export", parents=[parent], config=options)
        export_id = memo.hit(key, exists=exports.exists)
        if export_id is not None:
            if stage.tag:
                exports.set_ref(stage.tag, export_id)
            memo.answered("export", export_id, {})
        else:
            with step_progress("export") as progress:
                exported = export_snapshot(
                    parent,
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
            memo.keep(key, "export", "export", exported.export_id)
    if cfg.finetune:
        run_finetune_stage(cfg.finetune, store=store)
    if cfg.evaluate:
        run_evaluate_stage(cfg.evaluate, store=store, memo=memo)
    if not cfg.curate and not cfg.label:
        state.console().print("next: workbench snapshots list | workbench snapshots show dd-raw")


def _label_stage(stage: Any, store: Any, memo: Memo) -> None:
    from labeling.tasks.base import get_tasks
    from ui.commands.label import _print_label_result

    parent = store.resolve(stage.input)
    options = {k: v for k, v in asdict(stage).items() if k not in ("input", "tag", "deadline", "timeout")}
    key = memo.key("label", parents=[parent], config=options)
    sid = memo.hit(key)
    if sid is not None:
        memo.answered(f"label ({stage.labeler})", sid, {stage.tag: sid, "latest": sid})
        return
    if stage.labeler == "local":
        from labeling.runner import label_local
        from ui.progress import step_progress

        with step_progress("label (local)") as progress:
            labeled = label_local(
                parent,
                store=store,
                tasks=get_tasks(stage.tasks),
                tag=stage.tag,
                progress=lambda counters: progress("records labeled", counters.get("records", 0)),
            )
    else:
        from labeling.runner import label_llm

        labeled = label_llm(
            parent,
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
    if labeled.snapshot_id:
        memo.keep(key, f"label ({stage.labeler})", "label", labeled.snapshot_id)


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


def run_evaluate_stage(stage: Any, *, store: Any, memo: Memo | None = None) -> None:
    """Base model against the runs' adapters on an export's test split; the report lands in ``<runs>/<out>``.

    With ``memo``: an evaluation of the same export, adapters (their run.json: a retrained run differs),
    options and code whose snapshot and report are still there is not run again.
    """
    from curation.errors import WorkbenchError
    from evaluate.results import default_runs_dir
    from finetune.config import require_finetune_extra
    from finetune.export import ExportStore

    runs = default_runs_dir(store.url)
    if runs is None:
        raise WorkbenchError("[evaluate]: a remote store has no runs folder beside it: set WORKBENCH_RUNS")
    key = None
    if memo is not None:
        run_files = [runs / a / "run.json" for a in stage.adapters]
        options = {k: v for k, v in asdict(stage).items() if k not in ("input", "tag", "out")}
        config = {**options, "runs": [_file_digest(f) if f.is_file() else None for f in run_files]}
        key = memo.key("evaluate", parents=[ExportStore(store).resolve(stage.input)], config=config)
        sid = memo.hit(key)
        report = runs / stage.out / "eval.json"
        if sid is not None and report.is_file() and all(f.is_file() for f in run_files):
            memo.answered("evaluate", sid, {stage.tag: sid})
            state.console().print(f"report: {report.with_suffix('.html')}", soft_wrap=True)
            return
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
    if memo is not None and key is not None and evaluation.evaluation_snapshot:
        memo.keep(key, "evaluate", "evaluate", evaluation.evaluation_snapshot)
    for line in written.summary_lines:
        con.print(line, soft_wrap=True)
    con.print(f"report: {written.html} (and eval.md, eval.json; the dashboard's Results page shows it)", soft_wrap=True)
