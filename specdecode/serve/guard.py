"""What stands between the network and the engine: API keys, the limits a request must fit, and reading a body
that may be hostile.

* ``BearerAuth``: an ASGI middleware. Every ``/v1/*`` route and ``/metrics`` need ``Authorization: Bearer KEY``
  with one of the server's keys (compared in constant time, every key tried); a missing or wrong key gets 401
  with an OpenAI-style error body. ``/health`` and the page at ``/`` stay open (the page asks for the key and
  keeps it in the tab only).
* ``Limits``: body bytes (413), messages per request, prompt tokens and ``max_tokens`` (400 naming the field),
  the queue (429 with Retry-After), the deadline of a request (504 or a final error event) and the time the
  server gives in-flight requests when it is stopped.
* ``read_json``: the body read in chunks up to the limit, then parsed; malformed, non-UTF-8, too deeply nested
  or non-JSON bodies are a 4xx, never a 500.

Not here: the routes (``app``), the OpenAI fields (``openai_api``).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .openai_api import ApiError

ENV_KEY = "SPECDECODE_API_KEY"


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 1 << 20  # 1 MiB
    max_messages: int = 256
    max_prompt_tokens: int | None = None  # None: the model's context decides (the engine refuses what does not fit)
    max_tokens_cap: int = 4096
    max_queue: int = 64  # requests waiting for a row; more get 429
    request_timeout: float = 600.0  # seconds from arrival to the last token
    shutdown_timeout: float = 30.0  # seconds in-flight requests get to finish when the server stops

    def __post_init__(self):
        for name in ("max_body_bytes", "max_messages", "max_tokens_cap", "max_queue"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 1:
            raise ValueError(f"max_prompt_tokens must be >= 1, got {self.max_prompt_tokens}")
        if not self.request_timeout > 0 or not self.shutdown_timeout >= 0:
            raise ValueError("request_timeout must be > 0 and shutdown_timeout >= 0 seconds")


def load_keys(keys: list[str] | None = None, key_file: str | None = None, env: dict | None = None) -> tuple[str, ...]:
    """API keys from ``--api-key`` (repeatable), ``--api-key-file`` (one key a line; # comments) and the
    SPECDECODE_API_KEY variable, in that order; empty lines dropped."""
    out = list(keys or [])
    if key_file:
        try:
            text = Path(key_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or exc
            raise ValueError(f"cannot read --api-key-file {key_file}: {why}") from None
        out += [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    env_key = (os.environ if env is None else env).get(ENV_KEY, "").strip()
    if env_key:
        out.append(env_key)
    if any(len(k) < 8 or any(c.isspace() for c in k) for k in out):
        raise ValueError("--api-key: a key needs 8 or more characters and no spaces")
    return tuple(dict.fromkeys(out))


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server to this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def key_matches(header: bytes, keys: tuple[str, ...]) -> bool:
    """Constant-time check of an Authorization header against every key (no early exit on a match)."""
    scheme, _, token = header.partition(b" ")
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(token.strip(), key.encode())
    return ok and scheme.lower() == b"bearer"


class BearerAuth:
    """ASGI middleware: /v1/* and /metrics need a valid bearer key (no keys: everything is open)."""

    def __init__(self, app, keys: tuple[str, ...]):
        self.app, self.keys = app, keys

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if self.keys and scope["type"] == "http" and (path.startswith("/v1/") or path == "/metrics"):
            header = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not key_matches(header, self.keys):
                body = json.dumps(
                    {
                        "error": {
                            "message": "a valid API key is needed: send Authorization: Bearer <key>",
                            "type": "invalid_request_error",
                            "param": None,
                            "code": "invalid_api_key",
                        }
                    }
                ).encode()
                headers = [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]
                await send({"type": "http.response.start", "status": 401, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


async def read_json(request, limit: int):
    """The request's JSON body, read up to ``limit`` bytes -> the parsed value; ApiError 413 / 415 / 400."""
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if kind not in ("application/json", ""):
        raise ApiError(f"the body must be JSON (Content-Type: application/json), got {kind}", None, 415)
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise ApiError(f"the request body has {length} bytes; this server takes at most {limit}", None, 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(f"the request body is over {limit} bytes, the most this server takes", None, 413)
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError("the request body is not valid JSON", None) from None
    except RecursionError:
        raise ApiError("the request body is nested too deeply", None) from None
