"""``workbench dashboard [--host H] [--port P] [--runs DIR]``: the Streamlit app over the store."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import typer

from ui import state

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"


def dashboard(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind; 127.0.0.1 keeps it on this machine."),
    port: int = typer.Option(8501, "--port", "-p", min=1, max=65535, help="Port of the web app."),
    runs: Path = typer.Option(
        None,
        "--runs",
        envvar="WORKBENCH_RUNS",
        help="Training runs and evaluation reports to show. Default: runs/ beside a local store.",
        show_default=False,
    ),
) -> None:
    """Open the dashboard: snapshots and records, distributions, disagreements, review, curation, results."""
    from curation.errors import WorkbenchError

    if importlib.util.find_spec("streamlit") is None:
        raise WorkbenchError("the dashboard needs Streamlit: pip install -e '.[dashboard]'")
    url = state.store().url
    if "://" not in url:
        url = os.path.abspath(url)  # the app may run from another folder
    env = {**os.environ, "WORKBENCH_STORE": url}
    if runs is not None:
        env["WORKBENCH_RUNS"] = str(runs.resolve())
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "viewer",
    ]
    con = state.console()
    con.print(f"dashboard on [bold]http://{host}:{port}[/bold] over store {url}; Ctrl-C stops it")
    proc = subprocess.Popen(command, env=env)
    # `kill <pid>` of this command stops the app too, instead of leaving Streamlit running alone.
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        code = 0
    raise typer.Exit(code)
