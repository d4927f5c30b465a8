"""The engine thread behind the server: it steps one ``engine.Session`` (continuous batching: requests join and
leave it at step boundaries) and hands each request's events to its HTTP handler; the counters ``/metrics``
reports.

HTTP handlers never touch the model: ``admit`` checks a request in the handler's thread (``Session.admit``: a
``Refusal`` at once, or the request is queued), and the handler reads the job's events (tokens as they are
emitted, then the end or an error) from an asyncio queue filled thread-safely. A job whose client went away is
cancelled and leaves the batch at the next step. The session queues requests while the batch is full
(``max_batch``) or its cache could not hold their worst case.

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


@dataclass(eq=False)
class Job:
    loop: asyncio.AbstractEventLoop
    request: Request | None = None
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    submitted: float = field(default_factory=time.perf_counter)

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
        self.prompt_tokens = self.steps = 0
        self.totals = GenerationStats()  # the merged statistics of finished requests
        self.queue = self.batch = 0
        self.recent: collections.deque = collections.deque(maxlen=256)  # (time, tokens) of recent steps

    def step(self, new_tokens: int, batch: int, queued: int) -> None:
        with self.lock:
            self.steps += 1
            self.batch, self.queue = batch, queued
            self.recent.append((time.perf_counter(), new_tokens))

    def finish(self, r: Request) -> None:
        with self.lock:
            self.requests[r.reason] += 1
            self.prompt_tokens += len(r.prompt)
            self.totals = GenerationStats.merged([self.totals, r.stats])

    def tokens_per_second(self, window: float = 10.0) -> float:
        now = time.perf_counter()
        recent = [(t, n) for t, n in self.recent if now - t <= window]
        if len(recent) < 2:
            return 0.0
        return sum(n for _, n in recent[1:]) / max(recent[-1][0] - recent[0][0], 1e-9)


class EngineWorker:
    def __init__(self, session: Session):
        self.session = session
        self.metrics = Metrics()
        self._jobs: dict[Request, Job] = {}  # admitted requests (queued or running) -> their jobs
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="specdecode-engine", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=30)

    def admit(self, job: Job, prompt: list[int], config: GenerationConfig, generator: torch.Generator) -> Request:
        """Check and queue a request for ``job`` (raises ``engine.Refusal``)."""
        with self._lock:
            job.request = self.session.admit(prompt, config, generator, on_tokens=job.tokens)
            self._jobs[job.request] = job
        return job.request

    def _run(self) -> None:
        with torch.inference_mode():
            while not self._stop.is_set():
                if not self.session.busy:
                    self.session.wait(0.05)
                    continue
                before = sum(len(r.new) for r in self.session.requests)
                gone = self.session.step()
                after = sum(len(r.new) for r in self.session.requests) + sum(len(r.new) for r in gone)
                for r in gone:
                    self._finish(r)
                self.metrics.step(max(0, after - before), len(self.session.requests), self.session.waiting)
            for r in self.session.close():
                self._finish(r)

    def _finish(self, r: Request) -> None:
        with self._lock:
            job = self._jobs.pop(r, None)
        self.metrics.finish(r)
        if job is None:
            return
        if r.reason == "error":
            job.put(("error", f"{type(r.error).__name__}: {r.error}"))
        else:
            job.put(("done", r))
