"""The speculative decoding engine: draft, verify in one target pass, roll back, repeat.

One step per loop: the drafter proposes k_b tokens per row (k chosen per row: fixed, or
adaptively from the row's running alpha and the measured costs), the target scores
``[last token] + drafts`` of every row in ONE forward pass, the selected verification
method accepts a prefix and emits one recovered or bonus token, and target and drafter
caches are rolled back to the verified prefix. Rows are ragged: each keeps its own
length. k = 0 is plain decoding through the very same code (the baseline).

Not here: the verification math (``specdecode.verify``), model loading (``specdecode.models``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..rng import TorchRNG
from ..sampling import SamplingConfig, logits_to_probs
from ..validation import check_int
from ..verify import CounterGumbel, block_verify, greedy_verify, gumbel_sample, gumbel_verify, tokenwise_verify, typical_verify
from .drafters import Drafter, NoDrafter
from .lm import CausalLM
from .stats import GenerationStats

METHODS = ("tokenwise", "block", "greedy", "gumbel", "typical")
K_MAX = 64


@dataclass(frozen=True)
class GenerationConfig:
    max_new_tokens: int = 64
    k: int = 4  # draft length (the seed's lookahead_distance); the upper bound when adaptive
    adaptive: bool = False
    method: str = "tokenwise"
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    eos_token_ids: tuple = ()
    stop_strings: tuple = ()
    measure_overlap: bool = False  # record sum_x min(p, q) at every checked draft position (exact alpha)

    def __post_init__(self):
        check_int("max_new_tokens", self.max_new_tokens, 1)
        check_int("k", self.k, 0, K_MAX)
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")

    @property
    def effective_method(self) -> str:
        return "greedy" if self.sampling.is_greedy and self.method != "gumbel" else self.method


@dataclass
class GenerationOutput:
    tokens: list  # B lists of new token ids
    kinds: list  # B lists: "accepted" | "recovered" | "bonus" | "plain" per token
    stats: GenerationStats
    finish_reasons: list  # "eos" | "stop" | "length"


class AdaptiveK:
    """Per-row online acceptance and measured costs -> k each step.

    Each row keeps exponentially forgotten counts of accepted / checked drafts overall (its alpha)
    and per draft position i (the conditional rate a_i = P(accept i | accepted 1..i-1), shrunk
    towards alpha). k maximises E[G(k)] / (T(k+1) + k t_draft), with T(n) the measured time of a
    target pass over n tokens and t_draft the measured draft time per token. With every a_i = alpha
    and T linear in n this is exactly k = optimal_k(alpha, c); per-position rates let bursty drafters
    (prompt lookup copies whole spans) use long drafts, and the measured T(n) follows CPU kernels
    whose cost is not linear (here a pass over 2-3 tokens costs more than one over 5). k = 0 (plain
    decoding) when nothing beats it; rows at k = 0 probe every ``probe_every`` steps. The first
    step is plain, so that T(1) (the cost of plain decoding) is measured, not guessed.
    """

    def __init__(self, batch: int, k_max: int, decay: float = 0.9, probe_every: int = 8, shrink: float = 2.0):
        self.k_max, self.decay, self.probe_every, self.shrink = k_max, decay, probe_every, shrink
        self.acc = [1.0] * batch
        self.chk = [2.0] * batch
        self.pos_acc = [[0.0] * k_max for _ in range(batch)]
        self.pos_chk = [[0.0] * k_max for _ in range(batch)]
        self.idle = [0] * batch
        self.t_by_n: dict[int, float] = {}  # tokens fed -> seconds per target pass (EMA)
        self.draft_tok_time = 0.0

    def alpha(self, b: int) -> float:
        return self.acc[b] / self.chk[b]

    def position_rates(self, b: int) -> list[float]:
        a = self.alpha(b)
        return [(self.pos_acc[b][i] + self.shrink * a) / (self.pos_chk[b][i] + self.shrink) for i in range(self.k_max)]

    def observe(self, b: int, k: int, n_accepted: int) -> None:
        if k == 0:
            return
        checked = n_accepted + (n_accepted < k)
        self.acc[b] = self.decay * self.acc[b] + n_accepted
        self.chk[b] = self.decay * self.chk[b] + checked
        for i in range(min(checked, self.k_max)):
            self.pos_acc[b][i] = self.decay * self.pos_acc[b][i] + (i < n_accepted)
            self.pos_chk[b][i] = self.decay * self.pos_chk[b][i] + 1

    def observe_pass(self, n_fed: int, seconds: float) -> None:
        """Target pass over n_fed tokens took ``seconds`` (kept per n: on CPUs the cost is not linear in n)."""
        old = self.t_by_n.get(n_fed)
        self.t_by_n[n_fed] = seconds if old is None else 0.7 * old + 0.3 * seconds

    def pass_cost(self, n: int) -> float:
        """Estimated seconds of a target pass over n tokens: measured if seen, else interpolated."""
        if n in self.t_by_n:
            return self.t_by_n[n]
        seen = sorted(self.t_by_n)
        if not seen:
            return 1.0 + 0.015 * (n - 1)
        lo = [m for m in seen if m < n]
        hi = [m for m in seen if m > n]
        if lo and hi:
            a, b = lo[-1], hi[0]
            return self.t_by_n[a] + (self.t_by_n[b] - self.t_by_n[a]) * (n - a) / (b - a)
        base = self.t_by_n[seen[0]]
        if lo:  # extrapolate up with a slope of 1.5% of the smallest pass per token (optimistic: it gets measured)
            return self.t_by_n[lo[-1]] + 0.015 * base * (n - lo[-1])
        return self.t_by_n[hi[0]]

    def best_k(self, b: int, k_min: int = 0) -> int:
        """argmax_k E[G(k)] / (T(k+1) + k t_draft) with E[G(k)] from the per-position acceptance rates."""
        rates = self.position_rates(b)
        best, best_rate = 0, -1.0
        total, run = 1.0, 1.0
        for k in range(0, self.k_max + 1):
            if k > 0:
                run *= rates[k - 1]
                total += run
            if k < k_min:
                continue
            r = total / (self.pass_cost(k + 1) + k * self.draft_tok_time)
            if r > best_rate * (1 + 1e-9):
                best, best_rate = k, r
        return best

    def choose(self, b: int) -> int:
        if 1 not in self.t_by_n and self.k_max > 0:
            # measure one plain pass first: without T(1) plain decoding would be priced like the smallest pass
            # seen so far (a 4-6 token pass costs 1.5x a 1-token one here), and k = 0 would never win
            return 0
        k = self.best_k(b)
        if k == 0:
            self.idle[b] += 1
            if self.idle[b] >= self.probe_every and self.k_max > 0:
                self.idle[b] = 0
                return self.best_k(b, k_min=1)  # probe with the cheapest useful draft length
        else:
            self.idle[b] = 0
        return k


class SpeculativeGenerator:
    """target: CausalLM; drafter: any Drafter (NoDrafter = plain decoding baseline)."""

    def __init__(self, target: CausalLM, drafter: Drafter | None = None, tokenizer=None):
        self.target = target
        self.drafter = drafter or NoDrafter()
        self.tokenizer = tokenizer

    @torch.inference_mode()
    def generate(self, prompts: list[list[int]], config: GenerationConfig, generator: torch.Generator,
                 on_tokens: Callable | None = None) -> GenerationOutput:
        """prompts: B lists of token ids. on_tokens(row, tokens, kinds) streams each step's tokens."""
        if not isinstance(generator, torch.Generator):
            raise TypeError("generator must be a torch.Generator")
        self._check_prompts(prompts, config)
        B = len(prompts)
        cfg = config.sampling
        method = config.effective_method
        rng = TorchRNG(generator)
        noise = CounterGumbel(generator.initial_seed()) if method == "gumbel" else None
        stats = GenerationStats()
        ctrl = AdaptiveK(B, config.k) if config.adaptive else None
        t_start = time.perf_counter()
        seqs = [list(p) for p in prompts]
        new: list[list[int]] = [[] for _ in range(B)]
        kinds: list[list[str]] = [[] for _ in range(B)]
        done = [False] * B
        reasons = ["length"] * B

        self.target.reset(B)
        self.target.record_features = self.drafter.needs_target_features
        t0 = time.perf_counter()
        self.target.extend([p[:-1] for p in prompts])
        self.drafter.begin(prompts)
        stats.prefill_time = time.perf_counter() - t0
        d_time0, d_calls0 = self.drafter.time_spent, self.drafter.calls

        def sampler(q, rows, offsets):
            if noise is None:
                return rng.categorical(q)
            g = torch.stack([noise.noise([r], torch.tensor([[len(seqs[r]) + o]]), q.shape[-1])[0, 0] for r, o in zip(rows, offsets)])
            return gumbel_sample(q, g)

        while not all(done):
            ks = []
            for b in range(B):
                if done[b]:
                    ks.append(0)
                    continue
                k = ctrl.choose(b) if ctrl else config.k
                ks.append(max(0, min(k, config.max_new_tokens - len(new[b]) - 1)))
            td = time.perf_counter()
            drafting = max(ks) > 0
            prop = self.drafter.propose(seqs, ks, sampler) if drafting else NoDrafter().propose(seqs, ks, sampler)
            draft_dt = time.perf_counter() - td
            counts = prop.counts
            feed = [[] if done[b] else [seqs[b][-1]] + prop.tokens[b] for b in range(B)]
            tt = time.perf_counter()
            logits = self.target.extend(feed)  # [B, n_max, V]
            stats.target_time += time.perf_counter() - tt
            if ctrl:
                ctrl.observe_pass(max(len(f) for f in feed), time.perf_counter() - tt)
                drafted = sum(counts)
                if drafted:
                    per_tok = draft_dt / drafted
                    ctrl.draft_tok_time = per_tok if ctrl.draft_tok_time == 0 else 0.8 * ctrl.draft_tok_time + 0.2 * per_tok
            stats.target_calls += 1
            if self._has_nonfinite(logits, feed):
                raise ValueError(f"the target model produced NaN/inf logits at step {stats.steps + 1}")
            p = logits_to_probs(logits, cfg) if method not in ("greedy",) else logits
            emitted = self._verify(method, p, prop, counts, feed, seqs, rng, noise)
            if config.measure_overlap:
                self._record_overlap(stats, logits, cfg, prop, emitted, feed)
            lengths = [len(seqs[b]) - 1 + (1 + n if feed[b] else 0) for b, (n, _) in enumerate(emitted)]
            self.target.rollback(lengths)
            if drafting:
                self.drafter.observe([n for n, _ in emitted])
            stats.steps += 1
            for b in range(B):
                if done[b]:
                    continue
                n, toks = emitted[b]
                stats.record_step(counts[b], n)
                if ctrl:
                    ctrl.observe(b, counts[b], n)
                last_kind = "plain" if counts[b] == 0 else ("bonus" if n == counts[b] else "recovered")
                kk = ["accepted"] * n + [last_kind]
                toks, kk, reason = self._apply_stops(toks, kk, new[b], config)
                seqs[b].extend(toks)
                new[b].extend(toks)
                kinds[b].extend(kk)
                stats.new_tokens += len(toks)
                if on_tokens and toks:
                    on_tokens(b, toks, kk)
                if reason:
                    done[b], reasons[b] = True, reason
        stats.draft_time = self.drafter.time_spent - d_time0
        stats.draft_calls = self.drafter.calls - d_calls0
        stats.total_time = time.perf_counter() - t_start
        return GenerationOutput(new, kinds, stats, reasons)

    # ------------------------------------------------------------------
    def _check_prompts(self, prompts, config):
        if not prompts:
            raise ValueError("prompts must hold at least one prompt")
        for i, pr in enumerate(prompts):
            if len(pr) == 0:
                raise ValueError(f"prompt {i} is empty: give at least one token")
            if len(pr) + config.max_new_tokens > self.target.max_length:
                raise ValueError(f"prompt {i} has {len(pr)} tokens; with max_new_tokens={config.max_new_tokens} it exceeds "
                                 f"the model's context of {self.target.max_length} tokens")
            if min(pr) < 0 or max(pr) >= self.target.vocab_size:
                raise ValueError(f"prompt {i} has token ids outside [0, {self.target.vocab_size - 1}]")

    @staticmethod
    def _has_nonfinite(logits, feed):
        for b, f in enumerate(feed):
            if f and not torch.isfinite(logits[b, : len(f)]).all():
                return True
        return False

    def _verify(self, method, p, prop, counts, feed, seqs, rng, noise):
        """-> per row (num_accepted, emitted tokens). Rows with equal draft counts are verified together."""
        B = len(feed)
        out: list = [(0, [])] * B
        groups: dict = {}
        for b in range(B):
            if feed[b]:
                groups.setdefault(counts[b], []).append(b)
        for k, rows in groups.items():
            pr = p[rows, : k + 1]  # [G, k+1, V]
            if k == 0:
                if method == "greedy":
                    y = pr[:, 0].argmax(-1)
                elif method == "gumbel":
                    y = gumbel_sample(pr[:, 0], self._noise(noise, rows, seqs, 1, pr.shape[-1])[:, 0])
                else:
                    y = rng.categorical(pr[:, 0])
                for j, b in enumerate(rows):
                    out[b] = (0, [int(y[j])])
                continue
            drafts = torch.tensor([prop.tokens[b] for b in rows], dtype=torch.long)
            q = None
            if prop.q[rows[0]] is not None:
                q = torch.stack([prop.q[b] for b in rows]).to(pr.dtype)
            if method == "greedy":
                res = greedy_verify(pr, None, drafts, None, validate=False)
            elif method == "gumbel":
                res = gumbel_verify(pr, None, drafts, self._noise(noise, rows, seqs, k + 1, pr.shape[-1]), validate=False)
            else:
                fn = {"tokenwise": tokenwise_verify, "block": block_verify, "typical": typical_verify}[method]
                res = fn(pr, q, drafts, rng, validate=False)
            for j, b in enumerate(rows):
                out[b] = (int(res.num_accepted[j]), res.emitted(j))
        return out

    @staticmethod
    def _record_overlap(stats, logits, cfg, prop, emitted, feed):
        """sum_x min(p_i, q_i) at each checked draft position (accepted ones and the first rejected)."""
        for b, (n, _) in enumerate(emitted):
            k = len(prop.tokens[b])
            if not feed[b] or k == 0:
                continue
            checked = min(n + 1, k)
            p = logits_to_probs(logits[b, :checked], cfg)  # [checked, V]
            if prop.q[b] is None:
                x = torch.tensor(prop.tokens[b][:checked])
                ov = p.gather(1, x[:, None]).squeeze(1)
            else:
                ov = torch.minimum(p, prop.q[b][:checked].to(p.dtype)).sum(-1)
            stats.overlap_sum += float(ov.sum())
            stats.overlap_count += checked

    @staticmethod
    def _noise(noise, rows, seqs, n, V):
        pos = torch.tensor([[len(seqs[b]) + i for i in range(n)] for b in rows])
        return torch.cat([noise.noise([b], pos[j : j + 1], V) for j, b in enumerate(rows)])

    def _apply_stops(self, toks, kinds, so_far, config):
        room = config.max_new_tokens - len(so_far)
        reason = None
        for i, t in enumerate(toks):
            if t in config.eos_token_ids:
                toks, kinds, reason = toks[: i + 1], kinds[: i + 1], "eos"
                break
        if len(toks) >= room:
            toks, kinds = toks[:room], kinds[:room]
            reason = reason or "length"
        if config.stop_strings and self.tokenizer is not None and reason != "eos":
            text = self.tokenizer.decode(so_far + toks)
            for s in config.stop_strings:
                if s in text:
                    reason = "stop"
                    break
        return toks, kinds, reason
