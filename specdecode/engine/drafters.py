"""Drafters (proposers): propose up to k tokens per row with the q they were drawn from.

One interface: ``begin(prompts)`` once, then every step ``propose(seqs, ks, sampler)`` and
``observe(num_accepted)`` with the verify result so the drafter can roll its state back.
``seqs[b]`` is row b's full token sequence (prompt + output); the last token of it is
not yet in any cache. Drafters never verify and never touch the target's sampling.

* ``ModelDrafter``: a small model with its own KV cache (catches up on the bonus token).
* ``PromptLookupDrafter``: n-gram match over prompt + output; deterministic (q = None).
* ``EarlyExitDrafter``: the first n layers of the target + its head, sharing the target's
  KV cache for the verified prefix.
* ``EagleDrafter``: a trained head on the target's own hidden states (batch 1).
* ``NoDrafter``: plain decoding (k = 0).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from ..sampling import SamplingConfig, logits_to_probs
from .lm import CausalLM

# sampler(q [B, V], rows [B] row ids, offsets [B] draft index within the step) -> tokens [B]
Sampler = Callable[[torch.Tensor, list, list], torch.Tensor]


@dataclass
class Proposal:
    tokens: list[list[int]]  # B rows of drafted tokens (ragged)
    q: list[torch.Tensor | None]  # B tensors [k_b, V] (None: deterministic one-hot drafts)

    @property
    def counts(self) -> list[int]:
        return [len(t) for t in self.tokens]


class Drafter(Protocol):
    name: str
    deterministic: bool
    needs_target_features: bool  # the generator makes the target record its hidden states (EAGLE heads)
    time_spent: float
    calls: int

    def begin(self, prompts: list[list[int]]) -> None: ...

    def propose(self, seqs: list[list[int]], ks: list[int], sampler: Sampler) -> Proposal: ...

    def observe(self, num_accepted: list[int]) -> None: ...


class NoDrafter:
    name = "none"
    deterministic = True
    needs_target_features = False

    def __init__(self):
        self.time_spent, self.calls = 0.0, 0

    def begin(self, prompts):
        pass

    def propose(self, seqs, ks, sampler):
        return Proposal([[] for _ in seqs], [None for _ in seqs])

    def observe(self, num_accepted):
        pass


def ngram_continuations(seq: list[int], k: int, max_ngram: int, min_ngram: int = 1):
    """Yield (n, the k tokens after an earlier occurrence of the last n tokens): longest n first, most
    recent occurrence first. Each continuation has at least one token."""
    L = len(seq)
    for n in range(min(max_ngram, L - 1), min_ngram - 1, -1):
        tail = seq[L - n:]
        for start in range(L - n - 1, -1, -1):
            if seq[start : start + n] == tail:
                yield n, seq[start + n : start + n + k]


class PromptLookupDrafter:
    """Propose the k tokens that followed the most recent earlier occurrence of the last n-gram."""

    deterministic = True
    needs_target_features = False

    def __init__(self, max_ngram: int = 3, min_ngram: int = 1):
        if not 1 <= min_ngram <= max_ngram:
            raise ValueError(f"need 1 <= min_ngram <= max_ngram, got {min_ngram}, {max_ngram}")
        self.max_ngram, self.min_ngram = max_ngram, min_ngram
        self.name = "prompt-lookup"
        self.time_spent, self.calls = 0.0, 0

    def begin(self, prompts):
        pass

    def lookup(self, seq: list[int], k: int) -> list[int]:
        return next((cont for _, cont in ngram_continuations(seq, k, self.max_ngram, self.min_ngram)), [])

    def propose(self, seqs, ks, sampler):
        t0 = time.perf_counter()
        out = Proposal([self.lookup(s, k) if k > 0 else [] for s, k in zip(seqs, ks)], [None for _ in seqs])
        self.time_spent += time.perf_counter() - t0
        self.calls += 1
        return out

    def observe(self, num_accepted):
        pass


class ModelDrafter:
    """A small draft model sharing the target's tokenizer, with its own KV cache."""

    deterministic = False
    needs_target_features = False

    def __init__(self, lm: CausalLM, cfg: SamplingConfig, name: str | None = None):
        self.lm = lm
        self.cfg = cfg
        self.name = name or f"model:{lm.name}"
        self.deterministic = cfg.is_greedy
        self.time_spent, self.calls = 0.0, 0
        self._base: list[int] = []
        self._counts: list[int] = []

    def begin(self, prompts):
        self.lm.reset(len(prompts))
        t0 = time.perf_counter()
        self.lm.extend([p[:-1] for p in prompts])
        self.time_spent += time.perf_counter() - t0

    def _forward(self, rows: list[list[int]]) -> torch.Tensor:
        return self.lm.extend(rows)

    def propose(self, seqs, ks, sampler):
        t0 = time.perf_counter()
        B = len(seqs)
        self._base = [len(s) for s in seqs]
        toks: list[list[int]] = [[] for _ in range(B)]
        qs: list[list[torch.Tensor]] = [[] for _ in range(B)]
        feed = [s[self.lm.lengths[b]:] if ks[b] > 0 else [] for b, s in enumerate(seqs)]
        for i in range(max(ks, default=0)):
            logits = self._forward(feed)  # [B, n, V]
            self.calls += 1
            rows = [b for b in range(B) if ks[b] > i]
            last = torch.stack([logits[b, len(feed[b]) - 1] for b in rows])
            q = logits_to_probs(last, self.cfg)
            x = sampler(q, rows, [i] * len(rows)).tolist()
            for j, b in enumerate(rows):
                toks[b].append(int(x[j]))
                qs[b].append(q[j])
            feed = [[toks[b][-1]] if ks[b] > i + 1 else [] for b in range(B)]
        self._counts = [len(t) for t in toks]
        self.time_spent += time.perf_counter() - t0
        q_out = [torch.stack(q) if q else None for q in qs]
        if self.deterministic:
            q_out = [None for _ in q_out]
        return Proposal(toks, q_out)

    def observe(self, num_accepted):
        # the cache holds seq + drafts x_1..x_{k-1}; keep seq + the accepted ones among them
        keep = [min(self.lm.lengths[b], self._base[b] + min(n, max(self._counts[b] - 1, 0)))
                for b, n in enumerate(num_accepted)]
        self.lm.rollback(keep)


class EarlyExitDrafter(ModelDrafter):
    """Self-draft: the target's first n layers + final norm + head, on the target's own cache."""

    def __init__(self, target: CausalLM, n_layers: int, cfg: SamplingConfig):
        if not target.is_hf:
            raise ValueError("early-exit drafting needs a Hugging Face target model")
        if not 1 <= n_layers < target.num_layers:
            raise ValueError(f"early-exit layers must be in [1, {target.num_layers - 1}], got {n_layers}")
        super().__init__(target, cfg, name=f"early-exit:{n_layers}")
        self.n_layers = n_layers

    def begin(self, prompts):
        pass  # the target's prefill fills the shared cache

    def _forward(self, rows):
        return self.lm.extend(rows, n_layers=self.n_layers)

    def propose(self, seqs, ks, sampler):
        self._verified = list(self.lm.lengths)
        out = super().propose(seqs, ks, sampler)
        self.lm.rollback_layers(self.n_layers, self._verified)  # the target recomputes these positions
        return out

    def observe(self, num_accepted):
        pass  # the shared cache is rolled back by the target


class EagleCache:
    """An EAGLE head's KV cache over the verified pairs (f_j, x_{j+1}), all built from the target's true
    hidden states; entries built on predicted features during drafting are cut off again (``crop``)."""

    def __init__(self, head: torch.nn.Module):
        self.head = head
        self.reset()

    def reset(self) -> None:
        from transformers import DynamicCache

        self.cache, self.synced = DynamicCache(), 0

    def crop(self) -> None:
        extra = self.cache.get_seq_length() - self.synced
        if extra > 0:
            self.cache.crop(-extra)

    def catch_up(self, target: CausalLM, seq: list[int]) -> torch.Tensor:
        """Feed the new verified pairs with true features -> the predicted feature f^_{n-1} [H] of the last one
        (its head gives q for the token after ``seq``)."""
        feats = target.features[0]  # [n - 1, H]: f_0 .. f_{n-2}
        n = len(seq)
        if n < 2:
            raise ValueError("EAGLE drafting needs a prompt of at least 2 tokens")
        if feats is None or feats.shape[0] != n - 1:
            raise ValueError("the target did not record hidden states for every verified position")
        self.crop()
        j = torch.arange(self.synced, n - 1)  # new verified pairs (f_j, x_{j+1})
        h = self.head(feats[j][None], torch.tensor(seq[self.synced + 1 : n])[None], j[None], cache=self.cache)
        self.synced = n - 1
        return h[0, -1]


class EagleDrafter:
    """EAGLE-style drafting (batch 1): a small head on the target's own last hidden states.

    The generator has the target record the hidden state of every cached position
    (``needs_target_features`` -> ``CausalLM.record_features``); each step the head catches up
    on the verified pairs (f_j, x_{j+1}) with true features, then drafts k tokens feeding back
    its predicted features (``EagleCache``).
    """

    deterministic = False
    needs_target_features = True

    def __init__(self, target: CausalLM, head: torch.nn.Module, cfg: SamplingConfig, name: str = "eagle"):
        if not target.is_hf:
            raise ValueError("EAGLE drafting needs a Hugging Face target model")
        self.target, self.head, self.cfg, self.name = target, head.eval(), cfg, name
        self.deterministic = cfg.is_greedy
        self.time_spent, self.calls = 0.0, 0
        self.state = EagleCache(self.head)

    def begin(self, prompts):
        if len(prompts) != 1:
            raise ValueError(f"EAGLE drafts run with batch size 1, got {len(prompts)} prompts")
        self.state.reset()

    @torch.inference_mode()
    def propose(self, seqs, ks, sampler):
        t0 = time.perf_counter()
        seq, k = seqs[0], ks[0]
        if k == 0:
            return Proposal([[]], [None])
        n = len(seq)
        h = self.state.catch_up(self.target, seq)  # [H] = f^_{n-1}
        self.calls += 1
        toks, qs = [], []
        for i in range(k):
            if i > 0:  # the pair (f^, x) of the token just drafted, at position n - 2 + i
                h = self.head(h[None, None], torch.tensor([[toks[-1]]]), torch.tensor([[n - 2 + i]]), cache=self.state.cache)[0, -1]
                self.calls += 1
            q = logits_to_probs(self.head.head(h).float()[None], self.cfg)  # [1, V]
            x = int(sampler(q, [0], [i])[0])
            toks.append(x)
            qs.append(q[0])
        self.time_spent += time.perf_counter() - t0
        return Proposal([toks], [None if self.deterministic else torch.stack(qs)])

    def observe(self, num_accepted):
        pass  # true features arrive through the target's record; the cache is cut in the next catch-up
