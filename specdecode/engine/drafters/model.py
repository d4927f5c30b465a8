"""Draft models: a small model with its own KV cache (``ModelDrafter``).

Chains (one batched draft forward per drafted token) or trees (``shape``: one forward with tree attention
per depth over every row's frontier). After verification it keeps, in its own cache, the verified tokens
it already fed and drops the rest; the next step catches up on the others.

Not here: the growth loop (``grow``), early exit (``early_exit``), verification, the target's cache.
"""

from __future__ import annotations

import torch

from ..backend import Backend
from ..costs import CostBook
from ..drafts import TreeShape
from .grow import GrowingTree, TreeGrower


class ModelDrafter(TreeGrower):
    """A small draft model sharing the target's tokenizer, with its own KV cache."""

    def __init__(self, lm: Backend, shape: TreeShape | None = None, name: str | None = None):
        super().__init__(shape)
        self.lm = lm
        self.name = name or f"model:{lm.name}"
        self._base: list[int] = []  # cache length after the catch-up (the root included)
        self._fed: list[dict[int, int]] = []  # per row: tree node -> its index among the nodes fed to the draft

    def draft_cost(self, book: CostBook) -> float:
        """One pass of the draft model per drafted token: its T(1), from its table (measured when a session
        opens, before any row exists: measuring resets the draft model)."""
        self.lm.reset(1)
        return book.table(self.lm).seconds[0]

    def begin(self, prompts):
        self.lm.reset(len(prompts))
        self.lm.extend([p[:-1] for p in prompts], need_logits=False)

    def add_rows(self, prompts):
        old = self.lm.batch_size
        self.lm.add_rows(len(prompts))
        self.lm.extend([[] for _ in range(old)] + [p[:-1] for p in prompts], need_logits=False)

    def remove_rows(self, keep):
        self.lm.remove_rows(keep)

    def _forward(self, rows: list[list[int]]) -> torch.Tensor:
        return self.lm.extend(rows)

    def _start(self, seqs, active, sampler):
        act = set(active)
        feed = [s[self.lm.lengths[b] :] if b in act else [] for b, s in enumerate(seqs)]
        logits = self._forward(feed)  # [B, n, V]
        self.calls += 1
        self._base = list(self.lm.lengths)
        self._fed = [{} for _ in seqs]
        q = sampler.probs(torch.stack([logits[b, len(feed[b]) - 1] for b in active]), active, [()] * len(active))
        return list(q)

    def _expand(self, rows: dict[int, GrowingTree], new, sampler):
        tokens, parents = [[] for _ in range(self.lm.batch_size)], [[] for _ in range(self.lm.batch_size)]
        for b, ids in new.items():
            fed = self._fed[b]
            for i in ids:
                parents[b].append(fed.get(rows[b].parents[i], -1))  # the root is in the cache: -1
                fed[i] = len(fed)
                tokens[b].append(rows[b].tokens[i])
        # chains: the new token of each row in a plain causal pass; trees: one tree-attention pass
        logits = self._forward(tokens) if self.shape is None else self.lm.extend_tree(tokens, parents)
        self.calls += 1
        return {
            b: list(sampler.probs(logits[b, : len(ids)], [b] * len(ids), [rows[b].path(i) for i in ids]))
            for b, ids in new.items()
        }

    def observe(self, paths):
        if not self._base:
            return
        if not any(paths):  # the step was undone: forget what this step cached, the roots included
            self.lm.rollback([min(self.lm.lengths[b], max(0, base - 1)) for b, base in enumerate(self._base)])
            self._base, self._fed = [], []
            return
        kept = []
        for b, path in enumerate(paths):  # the fed nodes on the accepted path: a prefix of it
            fed, row = self._fed[b], []
            for node in path[1:]:
                if node not in fed:
                    break
                row.append(fed[node])
            kept.append(row)
        if self.shape is None:
            self.lm.rollback([min(self.lm.lengths[b], self._base[b] + len(row)) for b, row in enumerate(kept)])
        else:
            self.lm.keep_paths(kept)
        self._base, self._fed = [], []
