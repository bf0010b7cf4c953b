"""``workbench finetune EXPORT --base-model M --config F --out RUN [--set KEY=VALUE ...]`` and ``--resume RUN``."""

from __future__ import annotations

from pathlib import Path

import typer

from ui import state


def finetune(
    export: str = typer.Argument(..., help="Export id, id prefix or ref (workbench export list)."),
    base_model: str = typer.Option(
        None, "--base-model", "-m", help="A local model folder, or a hub id already in the local HF cache."
    ),
    config: Path = typer.Option(None, "--config", "-c", help="Fine-tuning TOML (e.g. examples/qlora.toml)."),
    out: Path = typer.Option(None, "--out", "-o", help="Run folder to create (must not hold a run)."),
    resume: Path = typer.Option(
        None, "--resume", help="Continue the run in this folder from its newest checkpoint, with its own config."
    ),
    overrides: list[str] = typer.Option(
        [], "--set", help="Override a config key, e.g. --set max_steps=20 --set lora_r=8 (repeatable)."
    ),
    max_steps: int = typer.Option(None, "--max-steps", help="Shortcut for --set max_steps=N."),
    tiny: bool = typer.Option(
        False, "--tiny", help="Train the tiny random model (built in RUN/../tiny-qwen2): demonstrates the path only."
    ),
) -> None:
    """QLoRA-fine-tune a base model on an export (TRL SFTTrainer + peft + bitsandbytes)."""
    from curation.errors import WorkbenchError
    from finetune.config import load_config, parse_overrides, require_finetune_extra

    if resume is not None:
        if out is not None or config is not None or overrides or max_steps is not None or base_model or tiny:
            raise WorkbenchError("--resume continues a run with the config it recorded: drop --out/--config/--set")
    elif out is None:
        raise WorkbenchError("give --out RUN_FOLDER for a new run (or --resume RUN_FOLDER)")
    values = parse_overrides(overrides)
    if max_steps is not None:
        values["max_steps"] = max_steps
    if base_model:
        values["base_model"] = base_model
    cfg = None if resume is not None else load_config(config, overrides=values)
    require_finetune_extra()
    from finetune import train as training

    con = state.console()
    say = con.print if con.is_terminal else print
    if resume is not None:
        result = training.resume(resume, store=state.store(), export_ref=export, say=say)
    else:
        assert cfg is not None and out is not None
        if tiny:
            from finetune.tiny import build_tiny_model

            if cfg.base_model:
                raise WorkbenchError("--tiny and --base-model are exclusive")
            cfg.base_model = str(build_tiny_model(out.resolve().parent / "tiny-qwen2"))
        result = training.finetune(export, store=state.store(), config=cfg, out=out, say=say)
    print_result(result)


def print_result(result) -> None:
    con = state.console()
    best = (
        f", best checkpoint {result.best_checkpoint} (eval loss {result.best_eval_loss:.4f})"
        if result.best_checkpoint and result.best_eval_loss is not None
        else ""
    )
    rate = f", {result.tokens_per_second:,.0f} trained tokens/s" if result.tokens_per_second else ""
    con.print(f"run [bold]{result.run}[/] finished at step {result.global_step}{best}{rate}", soft_wrap=True)
    con.print(f"adapter: {result.adapter}", soft_wrap=True)
    if result.info.get("stopped_early"):
        con.print("stopped early: the validation loss stopped improving (the best checkpoint was kept)")
    con.print(f"next: workbench runs show {result.run}", soft_wrap=True)
