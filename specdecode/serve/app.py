"""The ASGI app of ``specdecode serve`` (Starlette): OpenAI-compatible endpoints over the engine thread, Prometheus
metrics, and a page for people learning speculative decoding.

Routes: ``POST /v1/chat/completions``, ``POST /v1/completions`` (streaming as server-sent events ending with
``data: [DONE]``, or one JSON body), ``GET /v1/models``, ``GET /health``, ``GET /metrics``, ``GET /`` (the page).
A streaming client that disconnects cancels its request; it leaves the batch at the next step.

The server uses only the engine's public surface: a ``SpeculativeGenerator`` opens one ``Session`` (pass costs
resolved before any request runs), requests are admitted into it (a typed ``Refusal`` becomes HTTP 400 naming
the OpenAI field) and leave it by ``cancel``.

Not here: the engine loop (``worker``), request checks and response shapes (``openai_api``), the metric
families (``metrics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from importlib import resources

import torch
from starlette.applications import Starlette
from starlette.requests import Request as HttpRequest
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..engine import Refusal, SpeculativeGenerator
from .guard import BearerAuth, Limits, read_json
from .metrics import CONTENT_TYPE, exposition, registry_of
from .openai_api import ApiError, Envelope, Rules, TextStream, finish_reason, logprobs_json, parse, speculative, usage
from .worker import Busy, EngineWorker, Job


class Server:
    """What the routes share: the engine thread (on a session of the generator), the tokenizer and the defaults.
    costs: the pass-cost table adaptive requests read ("auto", a file, or None; see ``SpeculativeGenerator.open``)."""

    def __init__(
        self,
        gen: SpeculativeGenerator,
        tokenizer,
        encode,
        model_id: str,
        eos: tuple,
        *,
        max_batch: int = 8,
        k: int = 4,
        adaptive: bool = False,
        max_tokens: int = 256,
        drafter: str = "none",
        costs: str | None = "auto",
        api_keys: tuple[str, ...] = (),
        limits: Limits | None = None,
    ):
        self.tok, self.encode, self.model_id = tokenizer, encode, model_id
        self.k, self.label, self.api_keys = k, drafter, tuple(api_keys)
        self.limits = limits or Limits()
        self.rules = Rules(model_id, eos, k, adaptive, max_tokens, self.limits.max_messages, self.limits.max_tokens_cap)
        self.worker = EngineWorker(gen.open(max_batch, costs), self.limits.max_queue, self.limits.request_timeout)
        self.registry = registry_of(self.worker.metrics, model_id)
        self.started = time.time()

    def app(self) -> Starlette:
        routes = [
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/completions", self.completions, methods=["POST"]),
            Route("/v1/models", self.models),
            Route("/health", self.health),
            Route("/metrics", self.metrics),
            Route("/", self.page),
        ]
        return BearerAuth(Starlette(routes=routes, lifespan=self._lifespan), self.api_keys)

    def begin_shutdown(self) -> None:
        """The process is asked to stop: refuse new requests; those in flight get --shutdown-timeout to finish."""
        self.worker.drain(self.limits.shutdown_timeout)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app):
        self.worker.start()
        try:
            yield
        finally:
            self.worker.stop()

    # ------------------------------------------------------------ completions
    async def chat(self, request: HttpRequest):
        return await self._complete(request, chat=True)

    async def completions(self, request: HttpRequest):
        return await self._complete(request, chat=False)

    async def _complete(self, request: HttpRequest, chat: bool):
        try:
            job, stream, include_usage = await self._job(request, chat)
        except ApiError as err:
            return JSONResponse(err.body(), status_code=err.status)
        except Busy as busy:
            headers = {"Retry-After": str(busy.retry_after)} if busy.retry_after else {}
            status, kind = (429, "rate_limit_error") if busy.retry_after else (503, "server_error")
            return JSONResponse(ApiError(str(busy), None, status, kind).body(), status_code=status, headers=headers)
        env = Envelope(chat, self.model_id)
        if stream:
            return StreamingResponse(
                self._events(job, env, include_usage),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        try:
            return await self._whole(request, job, env)
        finally:
            job.request.cancel()  # no effect once it is done; frees the row if the client went away

    async def _job(self, request: HttpRequest, chat: bool) -> tuple[Job, bool, bool]:
        body = await read_json(request, self.limits.max_body_bytes)
        try:
            prompt, config, seed, stream, include_usage = parse(body, chat, self.rules)
        except (ValueError, TypeError) as exc:  # a setting the engine's own checks refuse (parse checks first)
            raise ApiError(str(exc), None) from None
        field = "messages" if chat else "prompt"
        try:
            ids = self.encode(prompt, chat)
        except (ValueError, TypeError) as exc:
            raise ApiError(str(exc), field) from None
        cap = self.limits.max_prompt_tokens
        if cap is not None and len(ids) > cap:
            raise ApiError(f"the prompt has {len(ids)} tokens; this server takes at most {cap}", field)
        g = torch.Generator()
        if seed is not None:
            g.manual_seed(seed)
        else:
            g.seed()
        job = Job(asyncio.get_running_loop())
        try:
            self.worker.admit(job, ids, config, g)
        except Refusal as exc:
            raise ApiError(str(exc), openai_param(exc.field, chat)) from None
        return job, stream, include_usage

    async def _whole(self, request: HttpRequest, job: Job, env: Envelope):
        text = TextStream(self.tok, job.request.config.stop_strings)
        out = []
        while True:
            event = await job.events.get()
            if event[0] == "tokens":
                out.append(text.feed(event[1]))
            elif event[0] in ("error", "timeout"):
                status = 504 if event[0] == "timeout" else 500
                return JSONResponse(ApiError(event[1], None, status, "server_error").body(), status_code=status)
            else:
                out.append(text.feed([], final=True))
                r = job.request
                lps = None if r.config.logprobs is None else logprobs_json(r.logprobs, self.tok, env.chat)
                return JSONResponse(env.whole("".join(out), r, lps))

    async def _events(self, job: Job, env: Envelope, include_usage: bool):
        """Server-sent events of one request; closing the stream (client gone) cancels the request."""
        text = TextStream(self.tok, job.request.config.stop_strings)
        r = job.request
        first, sent, got = True, 0, 0  # characters streamed (completions' text_offset), tokens with logprobs
        try:
            while True:
                event = await job.events.get()
                if event[0] in ("error", "timeout"):  # a final error event naming the cause
                    yield _sse(ApiError(event[1], None, 504 if event[0] == "timeout" else 500, "server_error").body())
                    break
                done = event[0] == "done"
                # one text piece per token, with where the token came from (accepted draft, recovered, bonus, plain)
                pieces = [
                    [text.feed([] if done else [t], final=done), k]
                    for t, k in ([(None, "plain")] if done else zip(event[1], event[2]))
                ]
                piece = "".join(p for p, _ in pieces)
                lps = None
                if not done and r.config.logprobs is not None:  # the engine records them before it hands out tokens
                    lps = logprobs_json(r.logprobs[got : got + len(event[1])], self.tok, env.chat, sent)
                    got += len(event[1])
                sent += len(piece)
                if piece or first or not done:
                    extra = {"speculative": {**speculative(r), "pieces": pieces}}
                    yield _sse(env.chunk(piece, None, extra, first, lps))
                    first = False
                if done:
                    last = {"speculative": speculative(r), **({"usage": usage(r)} if include_usage else {})}
                    yield _sse(env.chunk(None, finish_reason(r), last))
                    break
            yield "data: [DONE]\n\n"
        finally:
            r.cancel()

    # ------------------------------------------------------------------ info
    async def models(self, request: HttpRequest):
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"id": self.model_id, "object": "model", "created": int(self.started), "owned_by": "specdecode"}
                ],
            }
        )

    async def health(self, request: HttpRequest):
        alive = self.worker.thread.is_alive()
        return JSONResponse(
            {"status": "ok" if alive else "engine stopped", "model": self.model_id, "drafter": self.label},
            status_code=200 if alive else 503,
        )

    async def metrics(self, request: HttpRequest):
        return Response(exposition(self.registry), media_type=CONTENT_TYPE)

    async def page(self, request: HttpRequest):
        html = resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")
        return HTMLResponse(
            html.replace("{{MODEL}}", self.model_id).replace("{{DRAFTER}}", self.label).replace("{{K}}", str(self.k))
        )


def _sse(obj: dict) -> str:
    return f"data: {json.dumps(obj)}\n\n"


# engine fields (``engine.Refusal.field``) -> OpenAI request fields; "prompt" is "messages" in chat requests
_PARAMS = {
    "max_new_tokens": "max_tokens",
    "k": "k",
    "adaptive": "adaptive",
    "method": "method",
    "sampling": "temperature",
    "stop_strings": "stop",
    "costs": None,
    "constraint": "response_format",
}


def openai_param(field: str | None, chat: bool) -> str | None:
    """The OpenAI request field an engine refusal concerns."""
    if field == "prompt":
        return "messages" if chat else "prompt"
    return _PARAMS.get(field)
