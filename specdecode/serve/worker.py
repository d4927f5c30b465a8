"""The engine thread behind the server: it steps one ``engine.Session`` (continuous batching: requests join and
leave it at step boundaries) and hands each request's events to its HTTP handler; the counters ``/metrics``
reports.

HTTP handlers never touch the model: ``admit`` checks a request in the handler's thread (``Session.admit``: a
``Refusal`` at once, ``Busy`` when ``max_queue`` requests already wait or the server is stopping, or the request
is queued), and the handler reads the job's events (tokens as they are emitted, then "done", "error" or
"timeout") from an asyncio queue filled thread-safely. A job whose client went away is cancelled and leaves the
batch at the next step; so does a job past its deadline (``request_timeout``). The session queues requests
while the batch is full (``max_batch``) or its cache could not hold their worst case. ``drain(seconds)`` stops
admitting and gives the requests in flight that long before they end with an error event.

Not here: HTTP, JSON or OpenAI's formats (``app``, ``openai_api``).
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from dataclasses import dataclass, field

import torch

from ..engine import GenerationConfig, GenerationStats, Request, Session


class Busy(Exception):
    """No room to queue a request (``max_queue`` reached) or the server is stopping; ``retry_after`` in seconds."""

    def __init__(self, message: str, retry_after: int | None):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(eq=False)
class Job:
    loop: asyncio.AbstractEventLoop
    request: Request | None = None
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    submitted: float = field(default_factory=time.perf_counter)
    deadline: float = float("inf")  # perf_counter time after which the request is cancelled
    timed_out: bool = False

    def put(self, event: tuple) -> None:
        """Thread-safe: hand an event to the handler's event loop."""
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)

    def tokens(self, toks: list[int], kinds: list[str]) -> None:
        self.put(("tokens", toks, kinds))


class Metrics:
    """Counters and gauges for /metrics (updated by the engine thread, read by handlers)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = collections.Counter()  # finish reason -> count
        self.prompt_tokens = self.cached_tokens = self.steps = 0
        self.model_seconds = 0.0  # seconds the engine spent in target passes (prefills included)
        self.totals = GenerationStats()  # the merged statistics of finished requests
        self.queue = self.batch = 0
        self.recent: collections.deque = collections.deque(maxlen=256)  # (time, tokens) of recent steps

    def step(self, new_tokens: int, batch: int, queued: int, model_seconds: float) -> None:
        with self.lock:
            self.steps += 1
            self.model_seconds = model_seconds
            self.batch, self.queue = batch, queued
            self.recent.append((time.perf_counter(), new_tokens))

    def finish(self, r: Request) -> None:
        with self.lock:
            self.requests[r.reason] += 1
            self.prompt_tokens += len(r.prompt)
            self.cached_tokens += r.cached
            self.totals = GenerationStats.merged([self.totals, r.stats])

    def tokens_per_second(self, window: float = 10.0) -> float:
        now = time.perf_counter()
        recent = [(t, n) for t, n in self.recent if now - t <= window]
        if len(recent) < 2:
            return 0.0
        return sum(n for _, n in recent[1:]) / max(recent[-1][0] - recent[0][0], 1e-9)


class EngineWorker:
    def __init__(self, session: Session, max_queue: int = 64, request_timeout: float = 600.0):
        self.session, self.max_queue, self.request_timeout = session, max_queue, request_timeout
        self.metrics = Metrics()
        self._jobs: dict[Request, Job] = {}  # admitted requests (queued or running) -> their jobs
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._drain_until: float | None = None  # set by drain(): no admissions; in-flight requests end by then
        self.thread = threading.Thread(target=self._run, name="specdecode-engine", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=30)

    def drain(self, seconds: float) -> None:
        """Stop admitting; requests in flight get ``seconds`` to finish, then end with an error event."""
        self._drain_until = time.perf_counter() + seconds
        self.session.cancel_wait()

    def admit(self, job: Job, prompt: list[int], config: GenerationConfig, generator: torch.Generator) -> Request:
        """Check and queue a request for ``job`` (raises ``engine.Refusal``, or ``Busy``)."""
        with self._lock:
            if self._drain_until is not None:
                raise Busy("the server is shutting down", None)
            if self.session.waiting >= self.max_queue:
                raise Busy(f"{self.session.waiting} requests are waiting already (--max-queue): retry later", 1)
            job.request = self.session.admit(prompt, config, generator, on_tokens=job.tokens)
            job.deadline = job.submitted + self.request_timeout
            self._jobs[job.request] = job
        return job.request

    def _run(self) -> None:
        with torch.inference_mode():
            while not self._stop.is_set():
                self._expire()
                if not self.session.busy:
                    self.session.wait(0.05)
                    continue
                before = sum(len(r.new) for r in self.session.requests)
                gone = self.session.step()
                after = sum(len(r.new) for r in self.session.requests) + sum(len(r.new) for r in gone)
                for r in gone:
                    self._finish(r)
                passes = self.session.passes
                self.metrics.step(
                    max(0, after - before),
                    len(self.session.requests),
                    self.session.waiting,
                    passes.target_time + passes.prefill_time,
                )
            for r in self.session.close():
                self._finish(r, "the server stopped before this request finished")

    def _expire(self) -> None:
        """Cancel requests past their deadline; past the drain time, end every request in flight."""
        now = time.perf_counter()
        if self._drain_until is not None and now >= self._drain_until:
            for r in self.session.close():
                self._finish(r, "the server is shutting down: the request did not finish within --shutdown-timeout")
        with self._lock:
            late = [(r, job) for r, job in self._jobs.items() if not job.timed_out and now > job.deadline]
        for r, job in late:
            job.timed_out = True
            self.session.cancel(r)

    def _finish(self, r: Request, stopped: str | None = None) -> None:
        with self._lock:
            job = self._jobs.pop(r, None)
        self.metrics.finish(r)
        if job is None:
            return
        if job.timed_out:
            job.put(("timeout", f"the request did not finish within {self.request_timeout:g} s (--request-timeout)"))
        elif stopped is not None:
            job.put(("error", stopped))
        elif r.reason == "error":
            job.put(("error", f"{type(r.error).__name__}: {r.error}"))
        else:
            job.put(("done", r))
