"""The speculative decoding engine: ONE step loop for chains and trees, for a fixed batch and for a batch that
requests join and leave (``session``).

Each step: the drafter proposes a tree per row (a chain is a tree with one path; the depth per row is fixed
or chosen adaptively from the row's acceptance and the measured costs), the target scores every row's nodes
in ONE forward pass (chains: a plain ragged pass; trees: a tree attention mask), each row's method from the
registry accepts a path and emits one recovered or bonus token, target and drafter keep the accepted path
(rollback), and the tokens are cut where plain decoding would stop (end of sequence, budget, stop strings)
and streamed. Rows are ragged: each keeps its own length, settings and randomness. k = 0 is plain decoding
through the very same code (the baseline).

Not here: the verification math (``verify``), drafting (``drafters``), model loading (``models``).
"""

from __future__ import annotations

import math
import time
from typing import Callable

import torch

from ..core.rng import TorchRNG
from ..verify import CounterGumbel, Method
from ..verify.registry import resolve
from .adaptive import AdaptiveK, batch_depths
from .config import GenerationConfig, GenerationOutput
from .drafts import DraftTree, Drafter, NoDrafter
from .lm import CausalLM
from .sampler import DraftSampler, RowDraw
from .session import Request, Session
from .stops import StopRule
from .verify_step import RowResult, RowVerify, overlaps, verify_rows


class SpeculativeGenerator:
    """target: a backend (``CausalLM``, ``LlamaCppLM``); drafter: any Drafter (NoDrafter = plain decoding);
    tokenizer: for stop strings."""

    def __init__(self, target: CausalLM, drafter: Drafter | None = None, tokenizer=None):
        self.target = target
        self.drafter = drafter or NoDrafter()
        self.tokenizer = tokenizer
        lm = getattr(self.drafter, "lm", None)
        if lm is not None and lm.vocab_size != target.vocab_size:
            raise ValueError(f"the draft model's vocabulary ({lm.vocab_size} tokens) differs from the target's "
                             f"({target.vocab_size}): a drafter must share the target's tokenizer")

    def method_for(self, config: GenerationConfig) -> Method:
        """The verification method this generator runs for ``config`` (refuses a mismatch with the drafter)."""
        return resolve(config.method, config.sampling.is_greedy, self.drafter.branching)

    def session(self) -> Session:
        return Session(self.target, self.drafter, self.tokenizer)

    def requests(self, prompts: list[list[int]], config: GenerationConfig, generator: torch.Generator,
                 on_tokens: Callable | None = None, *, own_stream: bool = False) -> list[Request]:
        """Checked requests for ``prompts`` sharing ``config`` and ``generator``. on_tokens(row, tokens, kinds).
        Gumbel noise: row i of this call uses stream i (own_stream: stream 0, a request on its own)."""
        if not isinstance(generator, torch.Generator):
            raise TypeError("generator must be a torch.Generator")
        method = self.method_for(config)
        limit = self.drafter.max_depth or config.k
        self.check_prompts(prompts, config, limit)
        rng = TorchRNG(generator)
        noise = CounterGumbel.from_generator(generator) if method.noise else None
        stops = StopRule(config, self.tokenizer)
        costs = self.target.pass_costs() if config.adaptive else None  # fixed: seeded adaptive runs repeat
        out = []
        for i, p in enumerate(prompts):
            ctrl = AdaptiveK(1, limit, nodes=self.drafter.nodes_at_depth, costs=costs,
                             draft_cost=self.drafter.fixed_cost()) if config.adaptive else None
            cb = (lambda toks, kinds, i=i: on_tokens(i, toks, kinds)) if on_tokens else None
            out.append(Request(list(p), config, method, rng, noise, 0 if own_stream else i, stops, limit, ctrl, cb))
        return out

    @torch.inference_mode()
    def generate(self, prompts: list[list[int]], config: GenerationConfig, generator: torch.Generator,
                 on_tokens: Callable | None = None) -> GenerationOutput:
        """prompts: B lists of token ids. on_tokens(row, tokens, kinds) streams each step's tokens."""
        reqs = self.requests(prompts, config, generator, on_tokens)
        session = self.session()
        t_start = time.perf_counter()
        session.join(reqs)
        d_time0, d_calls0 = self.drafter.time_spent, self.drafter.calls
        while session.requests:
            self.step(session)
        stats = session.stats
        stats.draft_time = self.drafter.time_spent - d_time0
        stats.draft_calls = self.drafter.calls - d_calls0
        stats.total_time = time.perf_counter() - t_start
        return GenerationOutput([r.new for r in reqs], [r.kinds for r in reqs], stats, [r.reason for r in reqs],
                                reqs[0].method.name)

    # ------------------------------------------------------------------ one step
    @torch.inference_mode()
    def step(self, session: Session) -> list[Request]:
        """One step for every request of ``session`` -> the requests that finished or were cancelled (they have left
        the batch)."""
        cancelled = session.leave()
        reqs = session.requests
        if not reqs:
            return cancelled
        caps = [max(0, min(r.limit, r.config.max_new_tokens - len(r.new) - 1)) for r in reqs]
        ks = batch_depths([(r.ctrl, cap) for r, cap in zip(reqs, caps)], self.target.batch_tokens)
        td = time.perf_counter()
        if max(ks) > 0:
            draws = [RowDraw(r.config.sampling, r.method.children, r.rng, r.noise, r.stream, r.seq) for r in reqs]
            trees = self.drafter.propose([r.seq for r in reqs], ks, DraftSampler.per_row(draws))
        else:
            trees = [DraftTree.chain(r.seq[-1], []) for r in reqs]
        draft_dt = time.perf_counter() - td
        logits, chain_pass = self._score(session, trees)
        drafted = sum(t.size for t in trees)
        for r in reqs:
            if r.ctrl and drafted:
                r.ctrl.observe_draft(draft_dt / drafted)
        rows = [RowVerify(r.method, r.config.sampling, r.rng, r.noise, r.stream, r.seq) for r in reqs]
        results = verify_rows(logits, trees, rows)
        if any(r.config.measure_overlap for r in reqs):
            for r, ov in zip(reqs, overlaps(logits, trees, results, rows)):
                if ov and r.config.measure_overlap:
                    for s in (r.stats, session.stats):
                        s.overlap_sum, s.overlap_count = s.overlap_sum + ov[0], s.overlap_count + ov[1]
        self._commit(session, trees, results, chain_pass)
        session.stats.steps += 1
        for r, tree, res in zip(reqs, trees, results):
            self._emit(r, tree, res, session)
        return cancelled + session.leave()

    def _score(self, session: Session, trees: list[DraftTree]):
        """ONE target pass over every row's nodes -> (logits [B, n_max, V], whether it was a plain chain pass)."""
        feed = [t.tokens for t in trees]
        chain_pass = all(t.is_chain for t in trees)
        t0 = time.perf_counter()
        if chain_pass:  # the fast path: no tree mask, the cache compacted right away
            logits = self.target.extend(feed)
        else:
            logits = self.target.extend_tree(feed, [t.parents for t in trees])
        dt = time.perf_counter() - t0
        session.stats.target_time += dt
        session.stats.target_calls += 1
        computed = self.target.batch_tokens([len(f) for f in feed])
        for r in session.requests:
            if r.ctrl:
                r.ctrl.observe_pass(computed, dt)
        for b, f in enumerate(feed):  # a NaN or inf anywhere makes the sum NaN or inf (one reduction, no mask)
            if not math.isfinite(logits[b, : len(f)].sum()):
                raise ValueError(f"the target model produced NaN/inf logits at step {session.stats.steps + 1}")
        return logits, chain_pass

    def _commit(self, session: Session, trees: list[DraftTree], results: list[RowResult], chain_pass: bool) -> None:
        """Target and drafter keep each row's accepted path (the root and the accepted nodes)."""
        paths = [[0] + res.accepted for res in results]
        if chain_pass:
            self.target.rollback([len(r.seq) - 1 + len(path) for r, path in zip(session.requests, paths)])
        else:
            self.target.keep_paths(paths)
        self.drafter.observe(paths)

    @staticmethod
    def _emit(r: Request, tree: DraftTree, res: RowResult, session: Session) -> None:
        """Statistics, stops and streaming for one row's emitted tokens."""
        n, depth = len(res.accepted), tree.depth
        last = res.accepted[-1] if res.accepted else 0
        leaf = not any(par == last for par in tree.parents)
        for s in (r.stats, session.stats):
            s.record_step(depth, n, nodes=tree.size, bonus=leaf)
        r.stats.target_calls += 1
        if r.ctrl:
            r.ctrl.observe(0, depth, n)
        kinds = ["accepted"] * n + ["plain" if tree.size == 0 else ("bonus" if leaf else "recovered")]
        keep, reason = r.stops.cut(res.tokens, r.new)
        toks, kinds = res.tokens[:keep], kinds[:keep]
        r.seq.extend(toks)
        r.new.extend(toks)
        r.kinds.extend(kinds)
        r.stats.new_tokens += len(toks)
        session.stats.new_tokens += len(toks)
        if r.on_tokens and toks:
            r.on_tokens(toks, kinds)
        if reason:
            r.done, r.reason = True, reason

    def check_prompts(self, prompts, config: GenerationConfig, limit: int) -> None:
        if not isinstance(prompts, (list, tuple)) or not prompts:
            raise ValueError("prompts must be a non-empty list of prompts, each a list of token ids")
        room = self.drafter.nodes_at_depth(limit) if self.drafter.branching else 0
        for i, pr in enumerate(prompts):
            if not isinstance(pr, (list, tuple)) or not all(isinstance(t, int) and not isinstance(t, bool) for t in pr):
                raise TypeError(f"prompts[{i}] must be a list of token ids (ints); prompts is a list of such lists")
            if len(pr) == 0:
                raise ValueError(f"prompt {i} is empty: give at least one token")
            if len(pr) + config.max_new_tokens + room > self.target.max_length:
                extra = f" + {room} tree nodes" if room else ""
                raise ValueError(f"prompt {i} has {len(pr)} tokens; with max_new_tokens={config.max_new_tokens}{extra} it "
                                 f"exceeds the model's context of {self.target.max_length} tokens")
            if min(pr) < 0 or max(pr) >= self.target.vocab_size:
                raise ValueError(f"prompt {i} has token ids outside [0, {self.target.vocab_size - 1}]")
        cells = sum(len(pr) + config.max_new_tokens + room for pr in prompts)
        if self.target.capacity is not None and cells > self.target.capacity:
            raise ValueError(f"the batch needs up to {cells} cache cells but the {self.target.backend} context holds "
                             f"{self.target.capacity}: generate fewer or shorter prompts at once")
