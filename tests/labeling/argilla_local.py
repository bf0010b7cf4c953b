"""A real local Argilla server for tests, started and stopped with the workbench's own CLI.

``workbench review serve --detach`` on a free port with a Redis of its own (a free port
too, so parallel or leftover servers never share a job queue) and a temporary home;
argilla-server's virtualenv is the default one ($WORKBENCH_HOME/argilla-server-2.8.0,
installed on first use).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

WORKBENCH = [sys.executable, "-m", "ui.cli"]
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalArgilla:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.redis_url = f"redis://127.0.0.1:{free_port()}/0"
        self.api_url = f"http://127.0.0.1:{self.port}"
        self.api_key = ""
        self.password = ""
        self.username = "argilla"
        self.pid = 0

    # -- lifecycle, through the CLI a user runs
    def _cli(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [*WORKBENCH, "review", *args, "--home", str(self.home)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"workbench review {args[0]} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def start(self) -> LocalArgilla:
        self._cli("serve", "--detach", "--port", str(self.port), "--redis-url", self.redis_url)
        info = json.loads((self.home / "server.json").read_text())
        self.api_key, self.password, self.pid = info["api_key"], info["password"], info["pid"]
        return self

    def stop(self, *, keep_redis: bool = True) -> None:
        self._cli("stop", *(["--keep-redis"] if keep_redis else []))

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill(self) -> None:
        """SIGKILL the server process: no shutdown, as a crash or a pulled plug."""
        os.kill(self.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.api_url}/api/v1/status", timeout=0.5)
            except httpx.HTTPError:
                return
            time.sleep(0.1)
        raise RuntimeError("the Argilla server survived SIGKILL")

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.stop(keep_redis=False)

    # -- REST helpers for tests
    def client(self, api_key: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.api_url}/api/v1", headers={"X-Argilla-Api-Key": api_key or self.api_key}, timeout=30
        )

    def workspace_id(self, name: str = "workbench") -> str:
        with self.client() as c:
            for ws in c.get("/me/workspaces").raise_for_status().json()["items"]:
                if ws["name"] == name:
                    return ws["id"]
            return c.post("/workspaces", json={"name": name}).raise_for_status().json()["id"]

    def create_annotator(self, username: str, password: str = "annotator-pass-1", workspace: str = "workbench"):
        """A user with role annotator in ``workspace``; returns (user_id, api_key)."""
        with self.client() as c:
            found = [u for u in c.get("/users").raise_for_status().json()["items"] if u["username"] == username]
            if found:
                user = found[0]
            else:
                user = (
                    c.post(
                        "/users",
                        json={"first_name": username, "username": username, "password": password, "role": "annotator"},
                    )
                    .raise_for_status()
                    .json()
                )
            ws = self.workspace_id(workspace)
            members = c.get(f"/workspaces/{ws}/users").raise_for_status().json()["items"]
            if not any(m["id"] == user["id"] for m in members):
                c.post(f"/workspaces/{ws}/users", json={"user_id": user["id"]}).raise_for_status()
            return user["id"], user["api_key"]
