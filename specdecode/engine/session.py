"""A running batch that requests join and leave at step boundaries: the state behind the one step loop.

Each ``Request`` carries its own settings (sampling, verification method, draft length, stops, token budget),
its own randomness (a generator; Gumbel noise on its own stream) and its own results and statistics, so its
output does not depend on which other requests share its batch (greedy: the same tokens as alone; sampled:
the same distribution, and with ``gumbel`` and a seed the same tokens). ``Session.join`` prefills new requests
into the running batch, ``Session.step`` runs one step for every request in it (``loop.step``), finished and
cancelled requests leave, and their cache rows are freed.

Not here: the step itself (``loop``), threads or servers (``serve``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from ..core.rng import TorchRNG
from ..verify import CounterGumbel, Method
from .adaptive import AdaptiveK
from .config import GenerationConfig
from .drafts import Drafter
from .stats import GenerationStats
from .stops import StopRule


@dataclass(eq=False)
class Request:
    prompt: list[int]
    config: GenerationConfig
    method: Method
    rng: TorchRNG
    noise: CounterGumbel | None
    stream: int  # Gumbel noise stream (0 for a request on its own; the row within a generate() batch)
    stops: StopRule
    limit: int  # the draft depth bound (k, or the drafter's tree depth)
    ctrl: AdaptiveK | None = None
    on_tokens: Callable | None = None  # on_tokens(tokens, kinds) after every step that emitted some
    new: list = field(default_factory=list)
    kinds: list = field(default_factory=list)
    done: bool = False
    reason: str = "length"  # "eos" | "stop" | "length" | "cancelled"
    stats: GenerationStats = field(default_factory=GenerationStats)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self):
        self.seq = list(self.prompt)

    def cancel(self) -> None:
        """Leave at the next step boundary (safe from any thread)."""
        self.cancelled.set()


class Session:
    def __init__(self, target, drafter: Drafter, tokenizer=None):
        self.target, self.drafter, self.tokenizer = target, drafter, tokenizer
        self.requests: list[Request] = []  # the running batch, in cache-row order
        self.stats = GenerationStats()  # every request's steps and every pass, for the whole session

    def join(self, requests: list[Request]) -> None:
        """Prefill ``requests`` into the running batch (all but each prompt's last token; it is fed by its first step)."""
        if not requests:
            return
        t0 = time.perf_counter()
        fresh = not self.requests
        prompts = [r.prompt for r in requests]
        if fresh:
            self.target.reset(len(requests))
            self.target.record_features = self.drafter.needs_target_features
            self.target.extend([p[:-1] for p in prompts], need_logits=False)
            self.drafter.begin(prompts)
        else:
            old = len(self.requests)
            self.target.add_rows(len(requests))
            try:
                self.target.extend([[] for _ in range(old)] + [p[:-1] for p in prompts], need_logits=False)
                self.drafter.add_rows(prompts)
            except Exception:  # the running rows go on as they were: the new rows leave target and drafter
                self.target.remove_rows(list(range(old)))
                self.drafter.remove_rows(list(range(old)))
                raise
        self.requests += requests
        self.stats.prefill_time += time.perf_counter() - t0

    def leave(self) -> list[Request]:
        """Requests that finished or were cancelled leave; their rows are freed. -> those requests."""
        gone = [r for r in self.requests if r.done or r.cancelled.is_set()]
        if not gone:
            return []
        for r in gone:
            if not r.done:
                r.done, r.reason = True, "cancelled"
        keep = [b for b, r in enumerate(self.requests) if r not in gone]
        if keep:
            self.target.remove_rows(keep)
            self.drafter.remove_rows(keep)
        self.requests = [self.requests[b] for b in keep]
        return gone
