"""The speculative decoding engine: ONE step loop for chains and trees.

Each step: the drafter proposes a tree per row (a chain is a tree with one path; the depth per row is
fixed or chosen adaptively from the row's running acceptance and the measured costs), the target scores
every row's nodes in ONE forward pass (chains: a plain ragged pass; trees: a tree attention mask), the
method from the registry accepts a path and emits one recovered or bonus token per row, target and
drafter keep the accepted path (rollback), and the tokens are cut where plain decoding would stop (end of
sequence, budget, stop strings) and streamed. Rows are ragged: each keeps its own length. k = 0 is plain
decoding through the very same code (the baseline).

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
from .adaptive import AdaptiveK
from .config import GenerationConfig, GenerationOutput
from .drafts import DraftTree, Drafter, NoDrafter
from .lm import CausalLM
from .sampler import DraftSampler
from .stats import GenerationStats
from .stops import StopRule
from .verify_step import RowResult, record_overlap, verify_rows


class _Rows:
    """The state of one generation's rows: sequences, new tokens, their kinds, finish reasons."""

    def __init__(self, prompts: list[list[int]]):
        self.seqs = [list(p) for p in prompts]
        self.new: list[list[int]] = [[] for _ in prompts]
        self.kinds: list[list[str]] = [[] for _ in prompts]
        self.done = [False] * len(prompts)
        self.reasons = ["length"] * len(prompts)

    @property
    def live(self) -> list[bool]:
        return [not d for d in self.done]


class SpeculativeGenerator:
    """target: CausalLM; drafter: any Drafter (NoDrafter = plain decoding); tokenizer: for stop strings."""

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

    @torch.inference_mode()
    def generate(self, prompts: list[list[int]], config: GenerationConfig, generator: torch.Generator,
                 on_tokens: Callable | None = None) -> GenerationOutput:
        """prompts: B lists of token ids. on_tokens(row, tokens, kinds) streams each step's tokens."""
        if not isinstance(generator, torch.Generator):
            raise TypeError("generator must be a torch.Generator")
        method = self.method_for(config)
        limit = self.drafter.max_depth or config.k
        self._check_prompts(prompts, config, limit)
        rows, stats, stops = _Rows(prompts), GenerationStats(), StopRule(config, self.tokenizer)
        rng = TorchRNG(generator)
        noise = CounterGumbel.from_generator(generator) if method.noise else None
        sampler = DraftSampler(config.sampling, method.children, rng, noise, rows.seqs)
        ctrl = None
        if config.adaptive:  # fixed costs: the choices depend on acceptance counts only (seeded runs repeat)
            ctrl = AdaptiveK(len(prompts), limit, nodes=self.drafter.nodes_at_depth, costs=self.target.pass_costs(),
                             draft_cost=self.drafter.fixed_cost())
        t_start = time.perf_counter()
        self._prefill(prompts, stats)
        d_time0, d_calls0 = self.drafter.time_spent, self.drafter.calls
        while not all(rows.done):
            ks = self._budgets(rows, config, ctrl, limit)
            td = time.perf_counter()
            trees = self.drafter.propose(rows.seqs, ks, sampler) if max(ks) > 0 else NoDrafter().propose(rows.seqs, ks, sampler)
            draft_dt = time.perf_counter() - td
            logits, chain_pass = self._score(rows, trees, stats, ctrl)
            if ctrl and sum(t.size for t in trees):
                ctrl.observe_draft(draft_dt / sum(t.size for t in trees))
            results = verify_rows(method, logits, trees, rows.live, config.sampling, rng, noise, rows.seqs)
            if config.measure_overlap:
                record_overlap(stats, logits, config.sampling, trees, results)
            self._commit(rows, trees, results, chain_pass)
            stats.steps += 1
            self._emit(rows, trees, results, stats, stops, ctrl, on_tokens)
        stats.draft_time = self.drafter.time_spent - d_time0
        stats.draft_calls = self.drafter.calls - d_calls0
        stats.total_time = time.perf_counter() - t_start
        return GenerationOutput(rows.new, rows.kinds, stats, rows.reasons, method.name)

    # ------------------------------------------------------------------ steps
    def _prefill(self, prompts: list[list[int]], stats: GenerationStats) -> None:
        t0 = time.perf_counter()
        self.target.reset(len(prompts))
        self.target.record_features = self.drafter.needs_target_features
        self.target.extend([p[:-1] for p in prompts], need_logits=False)
        self.drafter.begin(prompts)
        stats.prefill_time = time.perf_counter() - t0

    @staticmethod
    def _budgets(rows: _Rows, config: GenerationConfig, ctrl: AdaptiveK | None, limit: int) -> list[int]:
        """Draft depth per row: fixed or adaptive, never past the tokens the row may still emit."""
        ks = []
        for b, done in enumerate(rows.done):
            k = 0 if done else (ctrl.choose(b) if ctrl else limit)
            ks.append(max(0, min(k, config.max_new_tokens - len(rows.new[b]) - 1)))
        return ks

    def _score(self, rows: _Rows, trees: list[DraftTree], stats: GenerationStats, ctrl: AdaptiveK | None):
        """ONE target pass over every live row's nodes -> (logits [B, n_max, V], whether it was a plain chain pass)."""
        feed = [t.tokens if live else [] for t, live in zip(trees, rows.live)]
        chain_pass = all(t.is_chain for t in trees)
        t0 = time.perf_counter()
        if chain_pass:  # the fast path: no tree mask, the cache compacted right away
            logits = self.target.extend(feed)
        else:
            logits = self.target.extend_tree(feed, [t.parents if f else [] for t, f in zip(trees, feed)])
        dt = time.perf_counter() - t0
        stats.target_time += dt
        stats.target_calls += 1
        if ctrl:
            ctrl.observe_pass(max(len(f) for f in feed), dt)
        for b, f in enumerate(feed):  # a NaN or inf anywhere makes the sum NaN or inf (one reduction, no mask)
            if f and not math.isfinite(logits[b, : len(f)].sum()):
                raise ValueError(f"the target model produced NaN/inf logits at step {stats.steps + 1}")
        return logits, chain_pass

    def _commit(self, rows: _Rows, trees: list[DraftTree], results: list[RowResult | None], chain_pass: bool) -> None:
        """Target and drafter keep each row's accepted path (the root and the accepted nodes)."""
        paths = [[] if r is None else [0] + r.accepted for r in results]
        if chain_pass:
            self.target.rollback([len(s) - 1 + len(path) for s, path in zip(rows.seqs, paths)])
        else:
            self.target.keep_paths(paths)
        self.drafter.observe(paths)

    @staticmethod
    def _emit(rows: _Rows, trees: list[DraftTree], results: list[RowResult | None], stats: GenerationStats,
              stops: StopRule, ctrl: AdaptiveK | None, on_tokens: Callable | None) -> None:
        """Statistics, stops and streaming for each live row's emitted tokens."""
        for b, (tree, res) in enumerate(zip(trees, results)):
            if res is None:
                continue
            n, depth = len(res.accepted), tree.depth
            last = res.accepted[-1] if res.accepted else 0
            leaf = not any(par == last for par in tree.parents)
            stats.record_step(depth, n, nodes=tree.size, bonus=leaf)
            if ctrl:
                ctrl.observe(b, depth, n)
            kinds = ["accepted"] * n + ["plain" if tree.size == 0 else ("bonus" if leaf else "recovered")]
            keep, reason = stops.cut(res.tokens, rows.new[b])
            toks, kinds = res.tokens[:keep], kinds[:keep]
            rows.seqs[b].extend(toks)
            rows.new[b].extend(toks)
            rows.kinds[b].extend(kinds)
            stats.new_tokens += len(toks)
            if on_tokens and toks:
                on_tokens(b, toks, kinds)
            if reason:
                rows.done[b], rows.reasons[b] = True, reason

    def _check_prompts(self, prompts, config: GenerationConfig, limit: int) -> None:
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
