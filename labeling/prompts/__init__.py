"""Versioned prompt templates, kept as data: one TOML file per task and version (``<task>-v<N>.toml``).

A template names its ``version`` (part of every completion's cache key and of
the agent written on labels), a ``system`` and a ``user`` message. Placeholders
are ``string.Template`` style (``$text``, ``${context}``) so JSON examples in a
prompt need no brace escaping; a placeholder the caller does not fill is an
error, never silently left in the prompt.
"""

from __future__ import annotations

import string
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from curation.errors import WorkbenchError


@dataclass(frozen=True)
class PromptTemplate:
    """A system + user message pair with ``$placeholders``."""

    version: str
    system: str
    user: str
    description: str = ""

    def render(self, **fields: str) -> list[dict[str, str]]:
        """The chat messages with every placeholder filled; raises naming a missing one."""
        try:
            return [
                {"role": "system", "content": string.Template(self.system).substitute(fields).strip()},
                {"role": "user", "content": string.Template(self.user).substitute(fields).strip()},
            ]
        except KeyError as exc:
            raise WorkbenchError(f"prompt {self.version!r}: placeholder ${exc.args[0]} was not filled") from None


@cache
def load_prompt(version: str) -> PromptTemplate:
    """The template ``labeling/prompts/<version>.toml`` (e.g. ``emotion-v1``)."""
    resource = resources.files(__name__).joinpath(f"{version}.toml")
    if not resource.is_file():
        known = sorted(
            p.name.removesuffix(".toml") for p in resources.files(__name__).iterdir() if p.name.endswith(".toml")
        )
        raise WorkbenchError(f"no prompt template {version!r} (known: {', '.join(known)})")
    data = tomllib.loads(resource.read_text(encoding="utf-8"))
    if data.get("version") != version:
        raise WorkbenchError(f"prompt file {version}.toml declares version {data.get('version')!r}")
    for key in ("system", "user"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise WorkbenchError(f"prompt file {version}.toml: {key!r} must be a non-empty string")
    return PromptTemplate(
        version=version, system=data["system"], user=data["user"], description=data.get("description", "")
    )
