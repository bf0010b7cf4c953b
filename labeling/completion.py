"""What a completion request gives back (:class:`Completion` or :class:`Failure`) and who answered it.

Shared by the client (which makes them), the cache (which stores and serves them) and the batch
runner, without importing the ``openai`` SDK.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from urllib.parse import urlsplit

from curation.errors import WorkbenchError

ResponseFormatKind = Literal["json_schema", "json_object", "text"]
RESPONSE_FORMATS: tuple[ResponseFormatKind, ...] = ("json_schema", "json_object", "text")

OPENAI_PROVIDER = "openai"
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}


@dataclass(frozen=True)
class Completion:
    """One chat completion: the raw content (never parsed here), its usage and how it was asked for.

    ``response_format_used`` says whether the server honoured the JSON schema (``json_schema``), only
    JSON mode (``json_object``) or neither (``text``: the schema was in the prompt). ``cached`` is True
    when it was served from the completion cache without sending anything. ``key`` is the cache key.
    ``created_at`` is when the server's answer arrived (UTC, whole seconds), kept as-is by the cache: a
    label made from a cached completion carries the time it was paid for, not the time of the run, so
    the same inputs give the same snapshot id.
    """

    content: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None
    response_format_used: ResponseFormatKind
    cached: bool
    key: str
    model: str
    attempts: int = 0  # HTTP attempts made for it in this run (0 when cached)
    created_at: datetime | None = None


FailureKind = Literal[
    "rate_limited",
    "server_error",
    "timeout",
    "connection",
    "invalid_response",  # an HTTP 200 whose body is not a chat completion (HTML, junk JSON)
    "bad_request",
    "auth",
    "budget",
    "error",
]


@dataclass(frozen=True)
class Failure:
    """A request that produced no completion: after the retries, refused, or not sent (budget)."""

    reason: str
    kind: FailureKind
    key: str
    attempts: int = 0
    status: int | None = None


class EndpointError(WorkbenchError):
    """The endpoint cannot serve this run: the key is refused, the model is unknown, or it is unreachable.

    Raised at once (no retry can fix it), it stops a whole batch. The message names the endpoint by its
    identity (``provider`` and ``model``, never the key) and quotes what the server said.
    """

    def __init__(
        self,
        problem: str,
        *,
        provider: str,
        model: str,
        status: int | None = None,
        server_message: str | None = None,
    ) -> None:
        self.provider = provider
        self.model = model
        self.status = status
        self.server_message = server_message
        self.problem = problem
        super().__init__(f"{endpoint_name(provider, model)} {problem}")


def endpoint_name(provider: str, model: str) -> str:
    """How errors name an endpoint: ``endpoint <provider> (model <model>)``; never the key."""
    return f"endpoint {provider} (model {model})"


def provider_identity(base_url: str | None) -> str:
    """``openai`` for the default endpoint, else the base URL normalised to scheme://host:port/path.

    Part of every cache key: the same model name on two servers is two different models.
    """
    if not base_url:
        return OPENAI_PROVIDER
    parts = urlsplit(base_url.strip())
    scheme = (parts.scheme or "http").lower()
    host = (parts.hostname or "").lower()
    port = parts.port or (443 if scheme == "https" else 80)
    path = parts.path.rstrip("/")
    if scheme == "https" and host == "api.openai.com" and path == "/v1":
        return OPENAI_PROVIDER
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port}{path}"


def is_local_provider(provider: str) -> bool:
    """True for a server on this machine (127.0.0.1, localhost, ::1): no key needed, costs nothing."""
    if provider == OPENAI_PROVIDER:
        return False
    return (urlsplit(provider).hostname or "") in _LOCAL_HOSTS
