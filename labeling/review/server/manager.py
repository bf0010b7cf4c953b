"""``workbench review serve``: a local Argilla server with no Docker and no Elasticsearch.

The real ``argilla-server`` runs from a virtualenv of its own (it pins old pydantic,
starlette and typer that conflict with the workbench's), created on first use:
``$WORKBENCH_HOME/argilla-server-<version>``. Its state lives in a *home* folder
(default ``$WORKBENCH_HOME/argilla``): the SQLite database, the server log, and two
JSON files -- ``server.json`` (pid, URL, what we started) and ``credentials.json``
(URL and API key, which ``review push`` / ``pull`` fall back to).

Start-up, each step idempotent: create the virtualenv if missing; ping Redis at the
configured URL and start Debian's ``redis-server`` on 127.0.0.1 if it is local and
down; ``database migrate`` and ``database users create_default`` with argilla-server's
own CLI; then ``launch.py`` (one process: index rebuilt from the database, rq worker
thread, web app); wait until ``/api/v1/status`` answers.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from curation.errors import WorkbenchError
from curation.liveness import process_alive

ARGILLA_SERVER_VERSION = "2.8.0"
# click<8.2: argilla-server 2.8.0's typer CLI fails with "Secondary flag is not valid for non-boolean flag" on 8.2.
REQUIREMENTS = (f"argilla-server=={ARGILLA_SERVER_VERSION}", "click<8.2")
DEFAULT_PORT = 6900
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_USERNAME = "argilla"  # argilla-server's default owner
_LAUNCHER = Path(__file__).with_name("launch.py")
_READY_MARKER = ".workbench-ready"


class ServerError(WorkbenchError):
    """The local Argilla server could not be installed, started or stopped."""


def workbench_home(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env.get("WORKBENCH_HOME") or Path.home() / ".cache" / "workbench")


def default_home(environ: Mapping[str, str] | None = None) -> Path:
    """The local server's state folder; its ``credentials.json`` is what push / pull fall back to."""
    return workbench_home(environ) / "argilla"


def default_venv() -> Path:
    return workbench_home() / f"argilla-server-{ARGILLA_SERVER_VERSION}"


@dataclass
class ServerInfo:
    """What ``serve`` started: enough to reach it, and to stop it."""

    api_url: str
    api_key: str
    username: str
    password: str
    pid: int
    home: str
    log: str
    redis_url: str
    redis_pid: int | None = None
    started_at: float = field(default_factory=time.time)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


# ------------------------------------------------------------------ the virtualenv


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_venv(venv: Path | None = None, *, echo: Callable[[str], None] = print) -> Path:
    """argilla-server's own virtualenv; created (minutes, once) when missing or half-made."""
    venv = Path(venv or default_venv())
    python = venv_python(venv)
    if (venv / _READY_MARKER).exists() and python.exists():
        return python
    if venv.exists():
        shutil.rmtree(venv)  # an install that was interrupted: start over
    venv.parent.mkdir(parents=True, exist_ok=True)
    echo(f"installing argilla-server {ARGILLA_SERVER_VERSION} into {venv} (once; a few minutes)...")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, text=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *REQUIREMENTS],
            check=True,
            capture_output=True,
            text=True,
        )
    except subprocess.CalledProcessError as e:
        tail = "\n".join((e.stderr or e.stdout or "").strip().splitlines()[-5:])
        raise ServerError(f"could not install {' '.join(REQUIREMENTS)} into {venv}: {tail}") from None
    (venv / _READY_MARKER).write_text(" ".join(REQUIREMENTS) + "\n")
    return python


# ------------------------------------------------------------------ Redis


def _redis_address(url: str) -> tuple[str, int]:
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss"):
        raise ServerError(f"--redis-url must be redis://host:port/db, got {url!r}")
    return parsed.hostname or "127.0.0.1", parsed.port or 6379


def redis_ping(url: str, timeout: float = 1.0) -> bool:
    host, port = _redis_address(url)
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def ensure_redis(url: str, home: Path) -> int | None:
    """Ping Redis; start Debian's redis-server on 127.0.0.1 when the URL is local and nothing answers.

    Returns the pid of a server this call started, None when one was already running.
    """
    if redis_ping(url):
        return None
    host, port = _redis_address(url)
    if host not in ("127.0.0.1", "localhost"):
        raise ServerError(f"Redis at {url} is not answering, and it is not local: start it, or pass --redis-url")
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServerError(
            f"Redis at {url} is not answering and redis-server is not installed "
            "(Debian/Ubuntu: apt-get install redis-server), or pass --redis-url"
        )
    log = home / "redis.log"
    proc = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(home), "--save", "", "--appendonly", "no"],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if redis_ping(url):
            _write_json(home / "redis.json", {"pid": proc.pid, "url": url})
            return proc.pid
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise ServerError(f"redis-server did not start on 127.0.0.1:{port}; see {log}")


# ------------------------------------------------------------------ the server


def _environment(home: Path, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARGILLA_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(
        ARGILLA_HOME_PATH=str(home),
        ARGILLA_REDIS_URL=redis_url,
        ARGILLA_SEARCH_ENGINE="workbench",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_OFFLINE="1",
    )
    return env


def _argilla_cli(python: Path, env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [str(python), "-m", "argilla_server", *args], env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise ServerError(f"argilla_server {' '.join(args[:3])} failed: {tail}")
    return proc.stdout


def _credentials(home: Path) -> tuple[str, str]:
    """The owner's API key and password for this home: generated once, kept in credentials.json."""
    path = home / "credentials.json"
    if path.exists():
        data = json.loads(path.read_text())
        return data["api_key"], data["password"]
    return f"wb.{secrets.token_urlsafe(24)}", secrets.token_urlsafe(12)


def http_ok(url: str, api_key: str | None = None, timeout: float = 2.0) -> bool:
    req = urllib.request.Request(url, headers={"X-Argilla-Api-Key": api_key} if api_key else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, TimeoutError):
        return False


def read_info(home: Path | None = None) -> ServerInfo | None:
    path = Path(home or default_home()) / "server.json"
    if not path.exists():
        return None
    return ServerInfo(**json.loads(path.read_text()))


def start(
    *,
    home: Path | None = None,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    redis_url: str = DEFAULT_REDIS_URL,
    venv: Path | None = None,
    timeout: float = 120.0,
    echo: Callable[[str], None] = print,
) -> tuple[ServerInfo, subprocess.Popen]:
    """Install if needed, set up the database, start Redis if needed and the server; return once it answers."""
    home = Path(home or default_home()).resolve()
    home.mkdir(parents=True, exist_ok=True)
    running = read_info(home)
    if running and process_alive(running.pid):
        raise ServerError(
            f"an Argilla server of {home} is already running at {running.api_url} (pid {running.pid}); "
            "stop it with `workbench review stop`"
        )
    python = ensure_venv(venv, echo=echo)
    redis_pid = ensure_redis(redis_url, home)
    try:
        info, proc = _start_server(python, home, host, port, redis_url, redis_pid, timeout)
    except BaseException:
        if redis_pid is not None:  # leave nothing running that this call started
            _stop_redis(home)
        raise
    _write_json(home / "server.json", asdict(info))
    return info, proc


def _start_server(
    python: Path, home: Path, host: str, port: int, redis_url: str, redis_pid: int | None, timeout: float
) -> tuple[ServerInfo, subprocess.Popen]:
    env = _environment(home, redis_url)
    api_key, password = _credentials(home)
    _argilla_cli(python, env, "database", "migrate")
    _argilla_cli(
        python, env, "database", "users", "create_default", "--api-key", api_key, "--password", password, "--quiet"
    )
    api_url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"
    _write_json(home / "credentials.json", {"api_url": api_url, "api_key": api_key, "password": password})

    log = home / "server.log"
    proc = subprocess.Popen(
        [str(python), str(_LAUNCHER), "--host", host, "--port", str(port)],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    info = ServerInfo(
        api_url=api_url,
        api_key=api_key,
        username=DEFAULT_USERNAME,
        password=password,
        pid=proc.pid,
        home=str(home),
        log=str(log),
        redis_url=redis_url,
        redis_pid=redis_pid,
    )
    deadline = time.monotonic() + timeout
    try:
        while not http_ok(f"{api_url}/api/v1/me", api_key):
            if proc.poll() is not None:
                tail = "\n".join(log.read_text(errors="replace").strip().splitlines()[-8:])
                raise ServerError(
                    f"the Argilla server exited with code {proc.returncode}; last lines of {log}:\n{tail}"
                )
            if time.monotonic() > deadline:
                raise ServerError(f"the Argilla server did not answer at {api_url} within {timeout:.0f}s; see {log}")
            time.sleep(0.25)
    except BaseException:  # an error or Ctrl-C while waiting: no server left behind
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise
    return info, proc


def _terminate(pids: list[int], timeout: float) -> None:
    """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL what is left."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for pid in pids:
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if process_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _stop_redis(home: Path, timeout: float = 10.0) -> None:
    """Stop the Redis that ``serve`` started for ``home`` (recorded in redis.json), if any."""
    redis_file = home / "redis.json"
    if redis_file.exists():
        _terminate([json.loads(redis_file.read_text())["pid"]], timeout)
        redis_file.unlink()


def stop(home: Path | None = None, *, redis: bool = True, timeout: float = 20.0) -> ServerInfo | None:
    """Stop the server of ``home`` (and the Redis it started); None when none was running."""
    home = Path(home or default_home()).resolve()
    info = read_info(home)
    if info is None and not (redis and (home / "redis.json").exists()):
        return None
    _terminate([info.pid] if info and process_alive(info.pid) else [], timeout)
    with contextlib.suppress(FileNotFoundError):
        (home / "server.json").unlink()
    if redis:
        _stop_redis(home, timeout)
    return info
