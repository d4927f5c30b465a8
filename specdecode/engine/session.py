"""A running batch that the engine owns: the one way in for every caller (``generate``, the CLI, the server, the
benches). ``SpeculativeGenerator.open(max_batch)`` makes a ``Session`` (pass costs resolved there, before any
row exists); then:

* ``admit(prompt, config, generator)`` checks a request at once and queues it -> a ``Request``, or raises a
  ``Refusal`` naming the field it concerns (safe from any thread);
* ``step()`` lets cancelled and finished requests leave, prefills queued requests into the batch while rows
  and cache cells allow (a failed prefill fails only the joining requests), runs ONE step for every running
  request (``step.run_step``) and returns the requests that finished, were cancelled or failed;
* ``cancel(request)`` makes it leave at the next step boundary (safe from any thread).

Each ``Request`` has its own ``RowPolicy`` (sampling, method, randomness, adaptive controller) and its own
results and statistics, so its output does not depend on which other requests share its batch (greedy: the
same tokens as alone; sampled: the same distribution, and with ``gumbel`` and a seed the same tokens). A step
that raises fails the requests running in it (``reason`` "error", the exception in ``error``); the batch is
rebuilt from the queue at the next step. NaN or inf logits in some rows fail those rows only (``RowFault``).
``stats`` merges the requests' own statistics with the batch's passes.

Not here: the step itself (``step``), threads or HTTP (``serve``).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..core.rng import TorchRNG
from ..verify import CounterGumbel
from ..verify.registry import resolve
from .adaptive import AdaptiveK, MatchCounts
from .config import GenerationConfig, Refusal, RowFault
from .constraint import GrammarBook, RowGrammar
from .costs import CostTable, read_table
from .drafts import Drafter
from .policy import RowPolicy
from .stats import GenerationStats
from .step import run_step
from .stops import StopRule


class TypeRefusal(Refusal, TypeError):
    """A refusal of a request whose field has the wrong type (a flat prompt, token ids that are not ints)."""


@dataclass(eq=False)
class Request:
    prompt: list[int]
    config: GenerationConfig
    policy: RowPolicy
    stops: StopRule
    cells: int  # worst-case cache cells: prompt + max_new_tokens + tree nodes
    on_tokens: Callable | None = None  # on_tokens(tokens, kinds) after every step that emitted some
    new: list = field(default_factory=list)
    kinds: list = field(default_factory=list)
    done: bool = False
    reason: str = "length"  # "eos" | "stop" | "length" | "cancelled" | "error"
    error: BaseException | None = None  # why it failed (reason "error")
    stats: GenerationStats = field(default_factory=GenerationStats)
    cancelled: threading.Event = field(default_factory=threading.Event)
    grammar: RowGrammar | None = None  # the matcher of a constrained request (its state: the tokens emitted)
    logprobs: list = field(default_factory=list)  # a logprobs.TokenLogprob per emitted token (config.logprobs)
    pending: torch.Tensor | None = None  # [V] logits of the prompt's last token, prefilled (the first step's root)
    cached: int = 0  # prompt tokens the backend's prefix cache restored instead of prefilling them

    def __post_init__(self):
        self.seq = list(self.prompt)

    @property
    def method(self):
        """The verification method that runs this request (``verify.registry``)."""
        return self.policy.method

    def cancel(self) -> None:
        """Leave at the next step boundary (safe from any thread)."""
        self.cancelled.set()

    def finish(self, reason: str, error: BaseException | None = None) -> None:
        self.done, self.reason, self.error = True, reason, error


class Session:
    """A running batch on one generator's target and drafter (made by ``SpeculativeGenerator.open``)."""

    def __init__(
        self,
        target,
        drafter: Drafter,
        tokenizer,
        max_batch: int,
        costs: CostTable | None,
        named: dict[str, CostTable] | None = None,
        lookup: MatchCounts | None = None,
        grammars: GrammarBook | None = None,
    ):
        """costs: the table adaptive requests read (None: they time passes); named: tables already resolved for
        cost files that requests may name (``GenerationConfig.costs``); lookup: the generator's acceptance of
        lookup drafts by match length, which greedy adaptive requests start from and hand back when they leave;
        grammars: the generator's grammar vocabulary and compiled constraints (None: a new one)."""
        self.target, self.drafter, self.tokenizer = target, drafter, tokenizer
        self.max_batch, self.costs = max_batch, costs
        self.requests: list[Request] = []  # the running batch, in cache-row order
        self.passes = GenerationStats()  # the batch's own steps, passes and times
        self._done = GenerationStats()  # the merged statistics of requests that left
        self._queue: deque[Request] = deque()
        self._lock = threading.Lock()
        self._work = threading.Event()
        self._tables: dict[str, CostTable] = dict(named or {})  # cost files named by requests, read once
        self.lookup = lookup if lookup is not None else MatchCounts()
        self.grammars = grammars if grammars is not None else GrammarBook(tokenizer, target.vocab_size)

    # ------------------------------------------------------------------ admission
    def admit(
        self, prompt: list[int], config: GenerationConfig, generator: torch.Generator, on_tokens: Callable | None = None
    ) -> Request:
        """Check one request and queue it (it joins at the next step with room) -> the Request; a request the
        engine cannot run raises ``Refusal`` (its ``field`` names what is wrong) and leaves nothing behind."""
        method = self.method_for(config)
        rng, noise = _randomness(generator, method)
        return self._queue_all([self._request(prompt, config, method, rng, noise, 0, on_tokens)])[0]

    def admit_batch(
        self,
        prompts: list[list[int]],
        config: GenerationConfig,
        generator: torch.Generator,
        on_tokens: Callable | None = None,
    ) -> list[Request]:
        """Requests for ``prompts`` sharing ``config`` and ``generator`` (drawn together, in row order; Gumbel
        noise: row i on stream i) -> their Requests. on_tokens(row, tokens, kinds). All or none are queued."""
        if not isinstance(prompts, (list, tuple)) or not prompts:
            raise Refusal("prompts must be a non-empty list of prompts, each a list of token ids", "prompt")
        method = self.method_for(config)
        rng, noise = _randomness(generator, method)
        reqs = [
            self._request(
                p,
                config,
                method,
                rng,
                noise,
                i,
                (lambda toks, kinds, i=i: on_tokens(i, toks, kinds)) if on_tokens else None,
            )
            for i, p in enumerate(prompts)
        ]
        if self.target.capacity is not None and sum(r.cells for r in reqs) > self.target.capacity:
            raise Refusal(
                f"the batch needs up to {sum(r.cells for r in reqs)} cache cells but the "
                f"{self.target.backend} context holds {self.target.capacity}: generate fewer or shorter "
                f"prompts at once",
                "prompt",
            )
        return self._queue_all(reqs)

    def _request(
        self, prompt, config: GenerationConfig, method, rng: TorchRNG, noise, stream: int, on_tokens
    ) -> Request:
        limit = self.drafter.max_depth or config.k
        cells = self.check_prompt(prompt, config, limit, stream)
        adaptive, source = None, ""
        if config.adaptive:
            table = self._table_for(config)
            source = "timed per pass (no cost table)" if table is None else table.source
            adaptive = AdaptiveK(
                limit,
                nodes=self.drafter.nodes_at_depth,
                costs=None if table is None else list(table.seconds),
                draft_cost=None if table is None else table.draft_token,
                # greedy requests share what they learn (their output does not depend on k); a sampled request
                # starts from the prior, so a seeded run repeats whatever ran before it
                match_counts=self.lookup if config.sampling.is_greedy else None,
            )
        policy = RowPolicy.for_method(method, config.sampling, rng, noise, stream, limit, adaptive)
        req = Request(list(prompt), config, policy, StopRule(config, self.tokenizer), cells, on_tokens)
        if config.constraint is not None:
            try:
                req.grammar = self.grammars.row(config.constraint)
            except ValueError as exc:
                raise Refusal(str(exc), "constraint") from None
        req.stats.costs = source
        return req

    def _queue_all(self, reqs: list[Request]) -> list[Request]:
        with self._lock:
            self._queue.extend(reqs)
        self._work.set()
        return reqs

    def method_for(self, config: GenerationConfig):
        """The verification method this session runs for ``config`` (refuses a mismatch with the drafter)."""
        return method_for(config, self.drafter)

    def check_prompt(self, prompt, config: GenerationConfig, limit: int, row: int = 0) -> int:
        """Refuse a prompt the target cannot run -> the cache cells it may need (prompt + new tokens + nodes)."""
        if not isinstance(prompt, (list, tuple)) or not all(
            isinstance(t, int) and not isinstance(t, bool) for t in prompt
        ):
            raise TypeRefusal(
                f"prompts[{row}] must be a list of token ids (ints); prompts is a list of such lists", "prompt"
            )
        if len(prompt) == 0:
            raise Refusal(f"prompt {row} is empty: give at least one token", "prompt")
        room = self.drafter.nodes_at_depth(limit) if self.drafter.branching else 0
        cells = len(prompt) + config.max_new_tokens + room
        if cells > self.target.max_length:
            extra = f" + {room} tree nodes" if room else ""
            raise Refusal(
                f"prompt {row} has {len(prompt)} tokens; with max_new_tokens={config.max_new_tokens}{extra} "
                f"it exceeds the model's context of {self.target.max_length} tokens",
                "prompt",
            )
        if min(prompt) < 0 or max(prompt) >= self.target.vocab_size:
            raise Refusal(f"prompt {row} has token ids outside [0, {self.target.vocab_size - 1}]", "prompt")
        if self.target.capacity is not None and cells > self.target.capacity:
            raise Refusal(
                f"the request needs up to {cells} cache cells but the {self.target.backend} context holds "
                f"{self.target.capacity}",
                "prompt",
            )
        return cells

    def _table_for(self, config: GenerationConfig) -> CostTable | None:
        """The cost table an adaptive request reads: the file it names (read, never measured here), else the
        session's (None: passes are timed as they run)."""
        if config.costs is None:
            return self.costs
        if config.costs not in self._tables:
            try:
                self._tables[config.costs] = read_table(config.costs)
            except ValueError as exc:
                raise Refusal(
                    f"{exc} (a session measures a missing table only when it opens: open(costs=FILE))", "costs"
                ) from None
        return self._tables[config.costs]

    # ------------------------------------------------------------------ running
    def cancel(self, request: Request) -> None:
        """``request`` leaves at the next step boundary, queued or running (safe from any thread)."""
        request.cancel()
        self._work.set()

    @property
    def waiting(self) -> int:
        return len(self._queue)

    @property
    def busy(self) -> bool:
        """Requests are running or queued."""
        return bool(self.requests or self._queue)

    def close(self) -> list[Request]:
        """Cancel every queued and running request and free their rows (no step runs) -> those requests."""
        with self._lock:
            queued = list(self._queue)
            self._queue.clear()
        for r in self.requests + queued:
            r.cancel()
        for r in queued:
            r.finish("cancelled")
        self._done = GenerationStats.merged([self._done] + [r.stats for r in queued])
        return queued + self._leave()

    def cancel_wait(self) -> None:
        """Wake a thread blocked in ``wait``."""
        self._work.set()

    def wait(self, timeout: float) -> None:
        """Block until a request is admitted or cancelled (or ``timeout`` seconds)."""
        self._work.wait(timeout)
        self._work.clear()

    def step(self) -> list[Request]:
        """One step of the running batch -> the requests that left it (finished, cancelled or failed)."""
        gone = self._leave()
        gone += self._join()
        if not self.requests:
            return gone
        try:
            run_step(self.target, self.drafter, self.requests, self.passes)
        except RowFault as fault:  # bad output in some rows: they fail, the others run the step again
            for b in fault.rows:
                self.requests[b].finish("error", fault)
            return gone + self._leave()
        except Exception as exc:  # noqa: BLE001 - the requests of this step fail; the session goes on
            for r in self.requests:
                r.finish("error", exc)
        return gone + self._leave()

    @property
    def stats(self) -> GenerationStats:
        """Every request's own counts (those that left and those running) and the batch's passes and times."""
        return GenerationStats.merged([self._done] + [r.stats for r in self.requests], self.passes)

    def _leave(self) -> list[Request]:
        """Requests that finished, failed or were cancelled leave; their rows are freed. -> those requests."""
        gone = [r for r in self.requests if r.done or r.cancelled.is_set()]
        if not gone:
            return []
        for r in gone:
            if not r.done:
                r.finish("cancelled")
            if r.policy.adaptive and r.policy.adaptive.matched and r.config.sampling.is_greedy:
                self.lookup.take(r.policy.adaptive.matches)
        keep = [b for b, r in enumerate(self.requests) if r not in gone]
        kept = [self.requests[b] for b in keep]
        try:
            for b, r in enumerate(self.requests):
                if r in gone and r.reason != "error":
                    self.target.park(b, r.seq)  # a backend with a prefix cache keeps the row's cells
            self.target.remove_rows(keep)
            self.drafter.remove_rows(keep)
            self.requests = kept
        except Exception:  # noqa: BLE001 - a backend left inconsistent: the next join starts a fresh batch
            for r in kept:
                r.finish("error", RuntimeError("the batch was rebuilt after a backend error"))
            gone += kept
            self.requests = []
            self.target.forget_prefixes()
        self._done = GenerationStats.merged([self._done] + [r.stats for r in gone])
        return gone

    def _join(self) -> list[Request]:
        """Queued requests join while rows and cache cells allow -> the ones that left the queue without joining
        (cancelled, or failed in their prefill)."""
        if not self._queue:  # the common step: nothing queued (a request queued meanwhile joins at the next step)
            return []
        gone, joining = [], []
        used = sum(r.cells for r in self.requests)
        cap = self.target.capacity
        with self._lock:
            for r in [r for r in self._queue if r.cancelled.is_set()]:  # cancelled while queued: leave at once
                self._queue.remove(r)
                r.finish("cancelled")
                gone.append(r)
            while self._queue and len(self.requests) + len(joining) < self.max_batch:
                r = self._queue[0]
                if cap is not None and used + r.cells > cap and (self.requests or joining):
                    break  # waits for rows to leave
                joining.append(self._queue.popleft())
                used += r.cells
        if joining:
            try:
                self._prefill(joining)
            except Exception as exc:  # noqa: BLE001 - the running rows go on; the joining requests fail
                for r in joining:
                    r.finish("error", exc)
                gone += joining
        if gone:
            self._done = GenerationStats.merged([self._done] + [r.stats for r in gone])
        return gone

    def _prefill(self, joining: list[Request]) -> None:
        """Prefill ``joining`` into the batch: all but each prompt's last token, which its first step feeds; or,
        where the backend computes its logits in the same pass, the whole prompt (the logits kept as ``pending``).
        A failed prefill leaves the running rows as they were (the new rows leave target and drafter)."""
        t0 = time.perf_counter()
        prompts, old = [r.prompt for r in joining], len(self.requests)
        if old:
            self.target.add_rows(len(joining))
        else:
            self.target.reset(len(joining))
            self.target.record_features = self.drafter.needs_target_features
        try:
            starts = [self.target.reuse_prefix(old + i, p[:-1]) for i, p in enumerate(prompts)]
            for r, start in zip(joining, starts):
                r.cached = start
            rows = [[] for _ in range(old)] + [p[s:] for p, s in zip(prompts, starts)]
            if self.target.prefill_gives_logits:
                for r, row_logits in zip(joining, self.target.prefill(rows)[old:]):
                    r.pending = row_logits
            else:
                self.target.extend([row[:-1] for row in rows], need_logits=False)
            if old:
                self.drafter.add_rows(prompts)
            else:
                self.drafter.begin(prompts)
        except Exception:
            if old:
                self.target.remove_rows(list(range(old)))
                self.drafter.remove_rows(list(range(old)))
            raise
        self.requests += joining
        self.passes.prefill_time += time.perf_counter() - t0


def method_for(config: GenerationConfig, drafter: Drafter):
    """The verification method for ``config`` with ``drafter`` (a ``Refusal`` on "method" for a mismatch)."""
    try:
        return resolve(config.method, config.sampling.is_greedy, drafter.branching)
    except ValueError as exc:
        raise Refusal(str(exc), "method") from None


def _randomness(generator: torch.Generator, method):
    """A request's randomness: its generator, and Gumbel noise keyed from it when its method takes noise."""
    if not isinstance(generator, torch.Generator):
        raise TypeError("generator must be a torch.Generator")
    noise = CounterGumbel.from_generator(generator) if method.noise else None
    return TorchRNG(generator), noise
