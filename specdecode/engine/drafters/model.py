"""Draft models: a small model with its own KV cache, and the target's own first layers (early exit).

* ``ModelDrafter``: chains (one batched draft forward per drafted token) or trees (``shape``: one forward
  with tree attention per depth over every row's frontier). After verification it keeps, in its own
  cache, the verified tokens it already fed and drops the rest; the next step catches up on the others.
* ``EarlyExitDrafter``: the target's first n layers + final norm + head, sharing the target's KV cache
  for the verified prefix (chains; for trees use a ``ModelDrafter`` on ``models.early_exit_model``).

Not here: the growth loop (``grow``), verification, the target's cache.
"""

from __future__ import annotations

import torch

from ..drafts import TreeShape
from ..lm import CausalLM
from .grow import TreeGrower, GrowingTree


class ModelDrafter(TreeGrower):
    """A small draft model sharing the target's tokenizer, with its own KV cache."""

    def __init__(self, lm: CausalLM, shape: TreeShape | None = None, name: str | None = None):
        super().__init__(shape)
        self.lm = lm
        self.name = name or f"model:{lm.name}"
        self._base: list[int] = []  # cache length after the catch-up (the root included)
        self._fed: list[dict[int, int]] = []  # per row: tree node -> its index among the nodes fed to the draft

    def fixed_cost(self) -> float:
        """One pass of the draft model per drafted token: its measured T(1)."""
        return self.lm.pass_costs()[0]

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
        feed = [s[self.lm.lengths[b]:] if b in act else [] for b, s in enumerate(seqs)]
        logits = self._forward(feed)  # [B, n, V]
        self.calls += 1
        self._base = list(self.lm.lengths)
        self._fed = [{} for _ in seqs]
        q = sampler.probs(torch.stack([logits[b, len(feed[b]) - 1] for b in active]), active)
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
        return {b: list(sampler.probs(logits[b, : len(ids)], [b] * len(ids))) for b, ids in new.items()}

    def observe(self, paths):
        if not self._base:
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


class EarlyExitDrafter(ModelDrafter):
    """Self-draft: the target's first n layers + final norm + head, on the target's own cache (chains)."""

    def __init__(self, target: CausalLM, n_layers: int):
        if not target.supports_early_exit:
            raise ValueError(f"early-exit drafting needs the Hugging Face backend, not {target.backend}")
        if not 1 <= n_layers < target.num_layers:
            raise ValueError(f"early-exit layers must be in [1, {target.num_layers - 1}], got {n_layers}")
        super().__init__(target, None, name=f"early-exit:{n_layers}")
        self.n_layers = n_layers
        self._verified: list[int] = []

    def fixed_cost(self) -> float:
        """The first n of the target's layers: that share of its measured T(1)."""
        return self.lm.pass_costs()[0] * self.n_layers / self.lm.num_layers

    def begin(self, prompts):
        pass  # the target's prefill fills the shared cache

    def add_rows(self, prompts):
        pass  # rows of the shared cache join and leave with the target's

    def remove_rows(self, keep):
        pass

    def _forward(self, rows):
        return self.lm.extend(rows, n_layers=self.n_layers)

    def _start(self, seqs, active, sampler):
        self._verified = list(self.lm.lengths)
        return super()._start(seqs, active, sampler)

    def _finish(self):
        self.lm.rollback_layers(self.n_layers, self._verified)  # the target recomputes these positions

    def observe(self, paths):
        self._base, self._fed = [], []  # the shared cache is rolled back by the target
