"""A local OpenAI-compatible chat-completions server for the labeling tests and the benchmark.

Real wire format over real HTTP (stdlib ``ThreadingHTTPServer``, HTTP/1.1 keep-alive, one thread per
connection, so 64 concurrent clients are 64 threads sleeping through the simulated latency):

* ``POST /v1/chat/completions`` with ``model``, ``messages``, ``temperature``, ``response_format``
  (``{"type": "json_schema", "json_schema": {"name", "schema", "strict"?}}``, ``{"type": "json_object"}``
  or ``{"type": "text"}``); answers ``id``, ``object``, ``created``, ``model``, ``choices[0].message.content``,
  ``choices[0].finish_reason`` and ``usage`` {prompt_tokens, completion_tokens, total_tokens}.
* ``GET /v1/models``.
* ``GET /_stats`` (not OpenAI: for a test or bench that runs the server in another process): request counts.

Answers are deterministic: a *responder* ``(messages, response_format) -> content`` makes the content;
the default one answers from the JSON schema it is given (in ``response_format``, or in the messages
when a client falls back to ``json_object`` / plain text and puts the schema in the prompt), choosing
enum members and integers by a hash of the messages.

Fault injection, by rules checked in order (the first that matches the request and has uses left
applies; ``times=None`` means always)::

    server.add_fault(Fault.rate_limit(retry_after=0.5), times=2)       # the first 2 requests get 429
    server.add_fault(Fault.server_error(), match=lambda m: "poison" in m[-1]["content"])
    server.add_fault(Fault.slow(5.0), times=1)                          # past the client's timeout
    server.add_fault(Fault.truncated(), times=1)                        # cut JSON, finish_reason "length"
    server.add_fault(Fault.invalid_json(), times=1)                     # prose instead of JSON
    server.add_fault(Fault.auth(), times=None)                          # 401 invalid_api_key (echoes the key)
    server.add_fault(Fault.model_not_found(), times=None)               # 404 model_not_found, OpenAI's words
    server.add_fault(Fault.junk(), times=None)                          # HTTP 200 with an HTML body
    server.supports_json_schema = False   # 400 invalid_request_error naming response_format, like real servers

Endpoints that do not answer at all, for the circuit breaker: :class:`HangingServer` (accepts TCP
connections and never answers) and :func:`refusing_port` (a bound port nobody listens on).

It counts requests (total and per hash of the messages) and records every Authorization header value,
so a test can assert how many requests were sent and that the key was sent (and never written).

Run standalone (the benchmark does this, so the server has its own process and GIL)::

    python tests/labeling/openai_server.py --port 0 --latency 0.2    # prints "PORT <n>" then serves
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import re
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Messages = list[dict[str, Any]]
Responder = Callable[[Messages, dict[str, Any] | None], str]


def messages_hash(messages: Messages) -> str:
    """The hash the server counts requests by (canonical JSON of the messages as received)."""
    canonical = json.dumps(messages, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


# ----------------------------------------------------------------------------- answers from a schema


def _pick(seed: int, salt: str, n: int) -> int:
    digest = hashlib.sha256(f"{seed}:{salt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        node: Any = root
        for part in ref[2:].split("/"):
            node = node[part]
        return _resolve(node, root)
    return schema


def instance_from_schema(schema: dict[str, Any], *, seed: int = 0, root: dict[str, Any] | None = None, path: str = ""):
    """A deterministic value that validates against ``schema`` (the subset of JSON Schema tasks use)."""
    root = root if root is not None else schema
    schema = _resolve(schema, root)
    for combinator in ("anyOf", "oneOf", "allOf"):
        if combinator in schema:
            return instance_from_schema(schema[combinator][0], seed=seed, root=root, path=path)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][_pick(seed, path, len(schema["enum"]))]
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {
            name: instance_from_schema(sub, seed=seed, root=root, path=f"{path}.{name}") for name, sub in props.items()
        }
    if kind == "array":
        items = _resolve(schema.get("items", {"type": "string"}), root)
        count = max(1, int(schema.get("minItems", 1)))
        count = min(count, int(schema.get("maxItems", count)))
        if "enum" in items and schema.get("uniqueItems"):
            start = _pick(seed, path, len(items["enum"]))
            return [items["enum"][(start + i) % len(items["enum"])] for i in range(min(count, len(items["enum"])))]
        return [instance_from_schema(items, seed=seed, root=root, path=f"{path}[{i}]") for i in range(count)]
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        high = schema.get("maximum", schema.get("exclusiveMaximum", low + 10))
        if kind == "integer":
            low, high = int(low), int(high)
            return low + _pick(seed, path, high - low + 1) if high >= low else low
        return round(low + (high - low) * _pick(seed, path, 1001) / 1000, 3)
    if kind == "boolean":
        return bool(_pick(seed, path, 2))
    if kind == "null":
        return None
    return f"deterministic answer {_pick(seed, path, 1000)}"


_SCHEMA_IN_PROMPT = re.compile(r"```json\s*(\{.*?\})\s*```", re.DOTALL)


def _schema_from_messages(messages: Messages) -> dict[str, Any] | None:
    """The JSON schema a client put in the prompt (as a ```json fenced block) when it fell back."""
    for message in messages:
        content = message.get("content")
        if not isinstance(content, str):
            continue
        for block in _SCHEMA_IN_PROMPT.findall(content):
            try:
                candidate = json.loads(block)
            except json.JSONDecodeError:
                continue
            if isinstance(candidate, dict) and ("properties" in candidate or "type" in candidate):
                return candidate
    return None


def schema_responder(messages: Messages, response_format: dict[str, Any] | None) -> str:
    """Default responder: a JSON answer valid for the schema in use, chosen by a hash of the messages.

    json_schema mode: the schema from ``response_format``; json_object / text mode: the schema found in
    the prompt. Plain text mode wraps the JSON in a sentence and a fenced block (as chat models do),
    so a client's tolerant parser is exercised.
    """
    seed = int(messages_hash(messages)[:12], 16)
    kind = (response_format or {}).get("type", "text")
    schema = None
    if kind == "json_schema":
        schema = response_format["json_schema"].get("schema")
    if schema is None:
        schema = _schema_from_messages(messages)
    value = instance_from_schema(schema, seed=seed) if schema else {"answer": f"deterministic answer {seed % 1000}"}
    body = json.dumps(value, ensure_ascii=False)
    if kind == "text":
        return f"Sure, here is my answer:\n```json\n{body}\n```"
    return body


def estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4)


# ----------------------------------------------------------------------------- faults


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour; build with the class methods."""

    kind: str  # rate_limit, server_error, slow, truncated, invalid_json, bad_request, auth, model_not_found, junk
    status: int = 200
    retry_after: float | None = None
    delay: float = 0.0
    message: str = ""  # {model} and {key} are filled in from the request
    code: str | None = None

    @classmethod
    def rate_limit(cls, retry_after: float | None = 1.0) -> Fault:
        return cls("rate_limit", status=429, retry_after=retry_after, message="Rate limit reached for requests")

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        return cls("server_error", status=status, message="The server had an error while processing your request.")

    @classmethod
    def slow(cls, delay: float) -> Fault:
        return cls("slow", delay=delay)

    @classmethod
    def truncated(cls) -> Fault:
        return cls("truncated")

    @classmethod
    def invalid_json(cls) -> Fault:
        return cls("invalid_json")

    @classmethod
    def bad_request(cls, message: str = "Invalid request") -> Fault:
        return cls("bad_request", status=400, message=message)

    @classmethod
    def auth(cls, status: int = 401) -> Fault:
        """OpenAI's answer to a wrong key, which quotes the key (the client must not print it back)."""
        message = "Incorrect API key provided: {key}. You can find your API key at https://platform.openai.com."
        return cls("auth", status=status, message=message, code="invalid_api_key")

    @classmethod
    def model_not_found(cls, status: int = 404, code: str | None = "model_not_found") -> Fault:
        message = "The model `{model}` does not exist or you do not have access to it."
        return cls("model_not_found", status=status, message=message, code=code)

    @classmethod
    def junk(cls, body: str = "<html><body>Service temporarily unavailable</body></html>", json: bool = False) -> Fault:
        """HTTP 200 with a body that is not a chat completion (a captive portal, a proxy's error page).

        ``json=True`` labels it ``application/json`` (a server that writes broken JSON), else ``text/html``.
        """
        return cls("junk", message=body, code="application/json" if json else "text/html")


@dataclass
class _Rule:
    fault: Fault
    times: int | None
    match: Callable[[Messages], bool] | None
    used: int = 0


@dataclass(frozen=True)
class RequestLog:
    """What the server saw of one chat-completions request, and what it answered."""

    number: int  # 1-based, in arrival order
    message_hash: str
    model: str
    response_format: str  # json_schema | json_object | text
    authorization: str | None
    status: int
    fault: str | None
    messages: Messages = field(repr=False, default_factory=list)


# ----------------------------------------------------------------------------- the server


class FakeOpenAIServer:
    """The server object tests configure and inspect; :meth:`start` serves it on 127.0.0.1."""

    def __init__(self, *, latency: float = 0.0, responder: Responder | None = None, port: int = 0) -> None:
        self.latency = latency
        self.responder: Responder = responder or schema_responder
        self.supports_json_schema = True
        self.supports_json_object = True
        self.models = ["fake-model", "gpt-4o-mini"]
        self._port = port
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self.log: list[RequestLog] = []
        self.authorizations: list[str | None] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._arrivals: list[str] = []  # message hash of every request, in arrival order
        self.in_flight = 0
        self.max_in_flight = 0  # the most chat requests it was handling at once

    # -- configuration
    def add_fault(self, fault: Fault, *, times: int | None = 1, match: Callable[[Messages], bool] | None = None):
        """Inject ``fault`` into the next ``times`` matching requests (``None``: every matching request)."""
        with self._lock:
            self._rules.append(_Rule(fault, times, match))

    def clear_faults(self) -> None:
        with self._lock:
            self._rules.clear()

    def reset_counts(self) -> None:
        with self._lock:
            self.log.clear()
            self._arrivals.clear()
            self.authorizations.clear()
            self.max_in_flight = 0

    # -- inspection
    @property
    def request_count(self) -> int:
        """Chat-completions requests received (every attempt, faulted, answered or still in progress)."""
        with self._lock:
            return len(self._arrivals)

    def counts_by_hash(self) -> Counter[str]:
        """Requests received per hash of their messages."""
        with self._lock:
            return Counter(self._arrivals)

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until no request is being handled (after a client abandoned some), so counts are final."""
        deadline = time.monotonic() + timeout
        time.sleep(0.05)  # let requests already on the wire arrive
        while time.monotonic() < deadline:
            with self._lock:
                if self.in_flight == 0:
                    return
            time.sleep(0.01)

    def requests(self, *, status: int | None = None, response_format: str | None = None) -> list[RequestLog]:
        with self._lock:
            return [
                e
                for e in self.log
                if (status is None or e.status == status)
                and (response_format is None or e.response_format == response_format)
            ]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            by_status = Counter(str(e.status) for e in self.log)
            return {
                "requests": len(self._arrivals),
                "distinct_messages": len(set(self._arrivals)),
                "by_status": dict(by_status),
                "max_in_flight": self.max_in_flight,
            }

    # -- lifecycle
    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAIServer:
        self._httpd = _HTTPServer(("127.0.0.1", self._port), _Handler)
        self._httpd.app = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request handling (called from handler threads)
    def _take_fault(self, messages: Messages) -> Fault | None:
        for rule in self._rules:
            if rule.times is not None and rule.used >= rule.times:
                continue
            if rule.match is not None and not rule.match(messages):
                continue
            rule.used += 1
            return rule.fault
        return None

    def handle_chat(self, body: dict[str, Any], authorization: str | None) -> tuple[int, dict, dict[str, str]]:
        """(status, JSON body, extra headers) for one chat-completions request; sleeps for latency and faults."""
        messages = body.get("messages")
        model = body.get("model")
        response_format = body.get("response_format")
        kind = (response_format or {}).get("type", "text") if isinstance(response_format, dict) else "text"
        digest = messages_hash(messages) if isinstance(messages, list) else "-"

        with self._lock:
            self._arrivals.append(digest)  # counted on arrival: a request the client abandons still counts
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            status, payload, headers, fault = self._answer(body, messages, model, response_format, kind, authorization)
        finally:
            with self._lock:
                self.in_flight -= 1
        with self._lock:
            self.authorizations.append(authorization)
            self.log.append(
                RequestLog(
                    number=len(self.log) + 1,
                    message_hash=digest,
                    model=str(model),
                    response_format=kind,
                    authorization=authorization,
                    status=status,
                    fault=fault.kind if fault else None,
                    messages=messages if isinstance(messages, list) else [],
                )
            )
        return status, payload, headers

    def _answer(self, body, messages, model, response_format, kind, authorization=None):
        if not isinstance(messages, list) or not messages or not isinstance(model, str):
            return 400, _error("'messages' and 'model' are required", param="messages"), {}, None
        if kind == "json_schema":
            spec = response_format.get("json_schema")
            if not self.supports_json_schema:
                msg = "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model."
                return 400, _error(msg, param="response_format"), {}, None
            if not isinstance(spec, dict) or not spec.get("name") or not isinstance(spec.get("schema"), dict):
                msg = "Missing required parameter: 'response_format.json_schema.name' / 'schema'."
                return 400, _error(msg, param="response_format"), {}, None
        if kind == "json_object" and not self.supports_json_object:
            msg = "Invalid parameter: 'response_format' of type 'json_object' is not supported with this model."
            return 400, _error(msg, param="response_format"), {}, None

        with self._lock:
            fault = self._take_fault(messages)
        time.sleep(self.latency)
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay)
        if fault is not None and fault.status >= 400:
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = f"{fault.retry_after:g}"
            err_type = {429: "requests", 400: "invalid_request_error", 401: "invalid_request_error"}.get(
                fault.status, "server_error"
            )
            key = (authorization or "").removeprefix("Bearer ")
            message = fault.message.replace("{model}", str(model)).replace("{key}", key)
            return fault.status, _error(message, type_=err_type, code=fault.code), headers, fault
        if fault is not None and fault.kind == "junk":
            return 200, fault.message.encode(), {"Content-Type": fault.code or "text/html"}, fault

        content = self.responder(messages, response_format)
        finish_reason = "stop"
        if fault is not None and fault.kind == "truncated":
            content, finish_reason = content[: max(1, len(content) // 2)], "length"
        elif fault is not None and fault.kind == "invalid_json":
            content = "I think the answer is joy, with a score of about seven."
        prompt_tokens = sum(estimate_tokens(str(m.get("content", ""))) + 4 for m in messages) + 3
        completion_tokens = estimate_tokens(content)
        payload = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        return 200, payload, {}, fault


def _error(message: str, *, type_: str = "invalid_request_error", param: str | None = None, code: str | None = None):
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 512  # 64 clients opening connections at once must not overflow the listen backlog


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the openai SDK's connection pool expects
    disable_nagle_algorithm = True  # else headers and body, written separately, wait ~40 ms for a delayed ACK
    server_version = "fake-openai/1.0"

    @property
    def app(self) -> FakeOpenAIServer:
        return self.server.app  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read counts, not logs
        pass

    def _send(self, status: int, payload: dict[str, Any] | bytes, headers: dict[str, str] | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = dict(headers or {})
        try:
            self.send_response(status)
            self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (its timeout): nothing to answer

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.app.models]
            self._send(200, {"object": "list", "data": data})
        elif self.path == "/_stats":
            self._send(200, self.app.stats())
        else:
            self._send(404, _error(f"Unknown path {self.path}", type_="not_found"))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._send(404, _error(f"Unknown path {self.path}", type_="not_found"))
            return
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            self._send(400, _error("We could not parse the JSON body of your request."))
            return
        status, payload, headers = self.app.handle_chat(body, self.headers.get("Authorization"))
        self._send(status, payload, headers)


class HangingServer:
    """A TCP server that accepts connections, reads what comes, and never answers: a hung endpoint."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.base_url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/v1"
        self._conns: list[socket.socket] = []
        self._closed = threading.Event()
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, name="hanging", daemon=True)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            self._conns.append(conn)  # kept open, never answered

    def start(self) -> HangingServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closed.set()
        self._sock.close()
        for conn in self._conns:
            conn.close()

    def __enter__(self) -> HangingServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def refusing_port() -> Iterator[str]:
    """A base URL whose port refuses connections: bound (so nobody else takes it) but not listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        sock.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds each completion takes")
    args = parser.parse_args(argv)
    server = FakeOpenAIServer(latency=args.latency, port=args.port).start()
    print(f"PORT {server.port}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
