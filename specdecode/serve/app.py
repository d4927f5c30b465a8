"""The ASGI app of ``specdecode serve`` (Starlette): OpenAI-compatible endpoints over the engine thread, Prometheus
metrics, and a page for people learning speculative decoding.

Routes: ``POST /v1/chat/completions``, ``POST /v1/completions`` (streaming as server-sent events ending with
``data: [DONE]``, or one JSON body), ``GET /v1/models``, ``GET /health``, ``GET /metrics``, ``GET /`` (the page).
A streaming client that disconnects cancels its request; it leaves the batch at the next step.

Not here: the engine loop (``worker``), request checks and response shapes (``openai_api``).
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
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

from ..engine import SpeculativeGenerator
from .openai_api import ApiError, Envelope, TextStream, finish_reason, parse, speculative, usage
from .worker import EngineWorker, Job


class Server:
    """What the routes share: the generator, its tokenizer and the engine thread."""

    def __init__(self, gen: SpeculativeGenerator, tokenizer, encode, model_id: str, eos: tuple, *, max_batch: int = 8,
                 k: int = 4, adaptive: bool = False, max_tokens: int = 256, drafter: str = "none"):
        self.gen, self.tok, self.encode, self.model_id, self.eos = gen, tokenizer, encode, model_id, eos
        self.k, self.adaptive, self.max_tokens, self.drafter = k, adaptive, max_tokens, drafter
        # the pass costs adaptive requests read: measured now, while no batch runs (measuring resets the backends)
        gen.target.pass_costs()
        gen.drafter.fixed_cost()
        self.worker = EngineWorker(gen, max_batch)
        self.started = time.time()

    def app(self) -> Starlette:
        routes = [Route("/v1/chat/completions", self.chat, methods=["POST"]),
                  Route("/v1/completions", self.completions, methods=["POST"]),
                  Route("/v1/models", self.models), Route("/health", self.health), Route("/metrics", self.metrics),
                  Route("/", self.page)]
        return Starlette(routes=routes, lifespan=self._lifespan)

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
        env = Envelope(chat, self.model_id)
        self.worker.submit(job)
        if stream:
            return StreamingResponse(self._events(job, env, include_usage), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        try:
            return await self._whole(request, job, env)
        finally:
            job.request.cancel()  # no effect once it is done; frees the row if the client went away

    async def _job(self, request: HttpRequest, chat: bool) -> tuple[Job, bool, bool]:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError("the request body is not valid JSON", None) from None
        try:
            prompt, config, seed, stream, include_usage = parse(body, chat, self.model_id, self.eos, self.k, self.adaptive,
                                                                self.max_tokens)
            ids = self.encode(prompt, chat)
            g = torch.Generator()
            if seed is not None:
                g.manual_seed(seed)
            else:
                g.seed()
            req = self.gen.requests([ids], config, g, own_stream=True)[0]
        except (ValueError, TypeError) as exc:
            raise ApiError(str(exc), _field_of(str(exc), chat)) from None
        job = Job(req, asyncio.get_running_loop())
        req.on_tokens = lambda toks, kinds: job.put(("tokens", toks, kinds))
        room = self.gen.drafter.nodes_at_depth(req.limit) if self.gen.drafter.branching else 0
        job.cells = len(ids) + config.max_new_tokens + room
        return job, stream, include_usage

    async def _whole(self, request: HttpRequest, job: Job, env: Envelope):
        text = TextStream(self.tok, job.request.config.stop_strings)
        out = []
        while True:
            event = await job.events.get()
            if event[0] == "tokens":
                out.append(text.feed(event[1]))
            elif event[0] == "error":
                return JSONResponse(ApiError(event[1], None, 500, "server_error").body(), status_code=500)
            else:
                out.append(text.feed([], final=True))
                return JSONResponse(env.whole("".join(out), job.request))

    async def _events(self, job: Job, env: Envelope, include_usage: bool):
        """Server-sent events of one request; closing the stream (client gone) cancels the request."""
        text = TextStream(self.tok, job.request.config.stop_strings)
        r = job.request
        first = True
        try:
            while True:
                event = await job.events.get()
                if event[0] == "error":
                    yield _sse(ApiError(event[1], None, 500, "server_error").body())
                    break
                done = event[0] == "done"
                # one text piece per token, with where the token came from (accepted draft, recovered, bonus, plain)
                pieces = [[text.feed([] if done else [t], final=done), k] for t, k in
                          ([(None, "plain")] if done else zip(event[1], event[2]))]
                piece = "".join(p for p, _ in pieces)
                if piece or first or not done:
                    yield _sse(env.chunk(piece, None, {"speculative": {**speculative(r), "pieces": pieces}}, first))
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
        return JSONResponse({"object": "list", "data": [{"id": self.model_id, "object": "model", "created": int(self.started),
                                                         "owned_by": "specdecode"}]})

    async def health(self, request: HttpRequest):
        alive = self.worker.thread.is_alive()
        return JSONResponse({"status": "ok" if alive else "engine stopped", "model": self.model_id,
                             "drafter": self.drafter}, status_code=200 if alive else 503)

    async def metrics(self, request: HttpRequest):
        return PlainTextResponse(prometheus(self.worker, self.model_id), media_type="text/plain; version=0.0.4")

    async def page(self, request: HttpRequest):
        html = resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")
        return HTMLResponse(html.replace("{{MODEL}}", self.model_id).replace("{{DRAFTER}}", self.drafter)
                            .replace("{{K}}", str(self.k)))


def _sse(obj: dict) -> str:
    return f"data: {json.dumps(obj)}\n\n"


def _field_of(message: str, chat: bool) -> str | None:
    """The request field an engine-side error is about (a prompt too long for the context, ...)."""
    for word, field in (("prompt", "messages" if chat else "prompt"), ("max_new_tokens", "max_tokens"),
                        ("temperature", "temperature"), ("top_p", "top_p"), ("top_k", "top_k"), ("method", "method"),
                        ("stop", "stop"), ("context", "messages" if chat else "prompt")):
        if word in message:
            return field
    return None


def prometheus(worker: EngineWorker, model: str) -> str:
    m = worker.metrics
    lab = f'model="{model}"'
    with m.lock:
        lines = ["# HELP specdecode_requests_total Finished requests by finish reason.",
                 "# TYPE specdecode_requests_total counter"]
        lines += [f'specdecode_requests_total{{{lab},reason="{k}"}} {v}' for k, v in sorted(m.requests.items())]
        rows = [("prompt_tokens_total", "counter", "Prompt tokens of finished requests.", m.prompt_tokens),
                ("generated_tokens_total", "counter", "Tokens generated for finished requests.", m.generated),
                ("target_calls_total", "counter", "Target passes per request, summed over finished requests.", m.row_steps),
                ("draft_tokens_proposed_total", "counter", "Draft tokens proposed.", m.proposed),
                ("draft_tokens_accepted_total", "counter", "Draft tokens accepted.", m.accepted),
                ("recovered_tokens_total", "counter", "Tokens drawn from the residual after a rejection.", m.recovered),
                ("bonus_tokens_total", "counter", "Tokens drawn after every draft was accepted.", m.bonus),
                ("tokens_per_target_call", "gauge", "Generated tokens per target pass (finished requests).",
                 m.generated / m.row_steps if m.row_steps else 0.0),
                ("acceptance_rate", "gauge", "Accepted / proposed draft tokens.", m.accepted / m.proposed if m.proposed else 0.0),
                ("queue_length", "gauge", "Requests waiting for a row.", m.queue),
                ("batch_size", "gauge", "Requests in the running batch.", m.batch),
                ("tokens_per_second", "gauge", "Generated tokens per second over the last 10 s.", m.tokens_per_second()),
                ("engine_steps_total", "counter", "Steps of the running batch.", m.steps)]
        for name, kind, help_, value in rows:
            lines += [f"# HELP specdecode_{name} {help_}", f"# TYPE specdecode_{name} {kind}", f"specdecode_{name}{{{lab}}} {value}"]
        lines += ["# HELP specdecode_position_acceptance Fraction of drafts of length >= i whose first i tokens were all accepted.",
                  "# TYPE specdecode_position_acceptance gauge"]
        lines += [f'specdecode_position_acceptance{{{lab},position="{i + 1}"}} {a / p:.6f}'
                  for i, (p, a) in enumerate(zip(m.pos_proposed, m.pos_accepted)) if p]
    return "\n".join(lines) + "\n"
