"""The engine thread behind the server: one running batch (``engine.Session``) that requests join and leave at
step boundaries (continuous batching), and the counters ``/metrics`` reports.

HTTP handlers never touch the model: they hand a ``Job`` to the worker and read its events (tokens as they are
emitted, then the end) from an asyncio queue filled thread-safely. A job whose client went away is cancelled
and leaves the batch at the next step. Jobs wait in a queue while the batch is full (``max_batch``) or its
cache could not hold their worst case.

Not here: HTTP, JSON or OpenAI's formats (``app``, ``openai_api``).
"""

from __future__ import annotations

import asyncio
import collections
import queue
import threading
import time
from dataclasses import dataclass, field

import torch

from ..engine import SpeculativeGenerator
from ..engine.session import Request


@dataclass(eq=False)
class Job:
    request: Request
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cells: int = 0  # worst-case cache cells: prompt + max new tokens + tree nodes
    submitted: float = field(default_factory=time.perf_counter)

    def put(self, event: tuple) -> None:
        """Thread-safe: hand an event to the handler's event loop."""
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)


class Metrics:
    """Counters and gauges for /metrics (updated by the engine thread, read by handlers)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = collections.Counter()  # finish reason -> count
        self.prompt_tokens = self.generated = self.row_steps = self.steps = 0
        self.proposed = self.accepted = self.recovered = self.bonus = 0
        self.pos_proposed: list[int] = []
        self.pos_accepted: list[int] = []
        self.queue = self.batch = 0
        self.recent: collections.deque = collections.deque(maxlen=256)  # (time, tokens) of recent steps

    def step(self, new_tokens: int, batch: int, queued: int) -> None:
        with self.lock:
            self.steps += 1
            self.batch, self.queue = batch, queued
            self.recent.append((time.perf_counter(), new_tokens))

    def finish(self, r: Request) -> None:
        s = r.stats
        with self.lock:
            self.requests[r.reason] += 1
            self.prompt_tokens += len(r.prompt)
            self.generated += s.new_tokens
            self.row_steps += s.row_steps
            self.proposed, self.accepted = self.proposed + s.proposed, self.accepted + s.accepted
            self.recovered, self.bonus = self.recovered + s.recovered, self.bonus + s.bonus
            for i, (p, a) in enumerate(zip(s.per_position_proposed, s.per_position_accepted)):
                if i >= len(self.pos_proposed):
                    self.pos_proposed.append(0)
                    self.pos_accepted.append(0)
                self.pos_proposed[i] += p
                self.pos_accepted[i] += a

    def tokens_per_second(self, window: float = 10.0) -> float:
        now = time.perf_counter()
        recent = [(t, n) for t, n in self.recent if now - t <= window]
        if len(recent) < 2:
            return 0.0
        return sum(n for _, n in recent[1:]) / max(recent[-1][0] - recent[0][0], 1e-9)


class EngineWorker:
    def __init__(self, generator: SpeculativeGenerator, max_batch: int):
        self.gen, self.max_batch = generator, max_batch
        self.session = generator.session()
        self.pending: queue.Queue[Job] = queue.Queue()
        self.metrics = Metrics()
        self._jobs: dict[int, Job] = {}  # id(request) -> job, for the running batch
        self._waiting: list[Job] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="specdecode-engine", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self.thread.join(timeout=30)

    def submit(self, job: Job) -> None:
        self.pending.put(job)
        self._wake.set()

    def _run(self) -> None:
        with torch.inference_mode():
            while not self._stop.is_set():
                self._admit()
                if not self.session.requests:
                    self._wake.wait(0.05)
                    self._wake.clear()
                    continue
                before = self.session.stats.new_tokens
                try:
                    finished = self.gen.step(self.session)
                except Exception as exc:  # noqa: BLE001 - a failed step ends the jobs of its batch, not the server
                    self._fail(f"{type(exc).__name__}: {exc}")
                    continue
                for r in finished:
                    self._finish(r)
                self.metrics.step(self.session.stats.new_tokens - before, len(self.session.requests), len(self._waiting))

    def _admit(self) -> None:
        """Move submitted jobs into the batch while it has room (rows and cache cells); cancelled ones are dropped."""
        while True:
            try:
                self._waiting.append(self.pending.get_nowait())
            except queue.Empty:
                break
        self._waiting = [j for j in self._waiting if not self._drop_cancelled(j)]
        cap = self.gen.target.capacity
        used = sum(j.cells for j in self._jobs.values())
        joining = []
        while self._waiting and len(self.session.requests) + len(joining) < self.max_batch:
            job = self._waiting[0]
            if cap is not None and used + job.cells > cap and (self._jobs or joining):
                break  # wait for rows to leave
            joining.append(self._waiting.pop(0))
            used += job.cells
        if joining:
            try:
                self.session.join([j.request for j in joining])
            except Exception as exc:  # noqa: BLE001 - e.g. a cache that cannot hold the prompt: the batch goes on
                for j in joining:
                    j.put(("error", f"{type(exc).__name__}: {exc}"))
                return
            self._jobs.update({id(j.request): j for j in joining})
        self.metrics.queue, self.metrics.batch = len(self._waiting), len(self.session.requests)

    def _drop_cancelled(self, job: Job) -> bool:
        if job.request.cancelled.is_set():
            job.request.done, job.request.reason = True, "cancelled"
            self.metrics.finish(job.request)
            return True
        return False

    def _finish(self, r: Request) -> None:
        job = self._jobs.pop(id(r), None)
        self.metrics.finish(r)
        if job is not None:
            job.put(("done", r))

    def _fail(self, message: str) -> None:
        for job in self._jobs.values():
            job.put(("error", message))
        self._jobs.clear()
        self.session = self.gen.session()
