"""``workbench review serve | stop | status``: the local Argilla server."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import typer

from ui import state

_HOME_HELP = "Server state folder: SQLite database, log, credentials. Default: $WORKBENCH_HOME/argilla."


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind; 127.0.0.1 keeps it on this machine."),
    port: int = typer.Option(6900, "--port", "-p", help="Port of the web UI and API."),
    home: Path = typer.Option(None, "--home", help=_HOME_HELP),
    redis_url: str = typer.Option(
        "redis://127.0.0.1:6379/0", "--redis-url", help="Redis for the server's job queue; started here if local."
    ),
    venv: Path = typer.Option(None, "--venv", help="argilla-server's virtualenv. Default: $WORKBENCH_HOME/..."),
    detach: bool = typer.Option(False, "--detach", "-d", help="Return once the server answers; stop it later."),
    install_only: bool = typer.Option(False, "--install-only", help="Create the server's virtualenv and exit."),
) -> None:
    """Start a local Argilla server (argilla-server + SQLite + Redis, no Elasticsearch) and print URL and key."""
    from labeling.review.server import manager

    con = state.console()
    if install_only:
        python = manager.ensure_venv(venv, echo=con.print)
        con.print(f"argilla-server {manager.ARGILLA_SERVER_VERSION} ready: {python}")
        return
    info, proc = manager.start(home=home, host=host, port=port, redis_url=redis_url, venv=venv, echo=con.print)
    con.print(f"Argilla server running at [bold]{info.api_url}[/bold] (pid {info.pid}; log {info.log})")
    con.print(f"  web UI login: {info.username} / {info.password}")
    con.print(f"  export ARGILLA_API_URL={info.api_url}")
    con.print(f"  export ARGILLA_API_KEY={info.api_key}")
    if detach:
        con.print("stop it with: workbench review stop" + (f" --home {home}" if home else ""))
        return
    con.print("Ctrl-C stops it.")

    def _stop(*_: object) -> None:
        manager.stop(info.home)
        sys.exit(0)

    signal.signal(signal.SIGTERM, _stop)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        _stop()
    manager.stop(info.home)
    raise typer.Exit(code)


def stop(
    home: Path = typer.Option(None, "--home", help=_HOME_HELP),
    keep_redis: bool = typer.Option(False, "--keep-redis", help="Leave a Redis that serve started running."),
) -> None:
    """Stop the local Argilla server (and the Redis that serve started)."""
    from labeling.review.server import manager

    info = manager.stop(home, redis=not keep_redis)
    if info is None:
        state.console().print("no local Argilla server was running")
    else:
        state.console().print(f"stopped the Argilla server at {info.api_url} (pid {info.pid})")


def status(home: Path = typer.Option(None, "--home", help=_HOME_HELP)) -> None:
    """Whether the local Argilla server answers, and where."""
    from labeling.review.server import manager

    info = manager.read_info(home)
    con = state.console()
    if info is None:
        con.print("no local Argilla server (start one with `workbench review serve`)")
        raise typer.Exit(1)
    up = manager.http_ok(f"{info.api_url}/api/v1/me", info.api_key)
    con.print(f"{info.api_url} pid {info.pid}: {'up' if up else 'NOT ANSWERING'} (home {info.home})")
    if not up:
        raise typer.Exit(1)
