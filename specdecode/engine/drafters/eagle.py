"""EAGLE-style drafting (batch 1): a trained head on the target's own last hidden states.

The engine has the target record the hidden state of every cached position (``needs_target_features``).
Each step the head catches up on the verified pairs (f_j, x_{j+1}) with the target's true features, then
grows a chain or a tree (EAGLE-2 style) one head pass per depth over the frontier, with tree attention on
the head's own cache; a node's input feature is its parent's predicted one. Entries built on predicted
features are cut off again before the next step.

Not here: the head's architecture (``models.eagle``) or training (``distill``).
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from ..drafts import TreeShape
from ..lm import CausalLM
from ..segments import TreeSegment, tree_attention
from .grow import TreeGrower


class EagleCache:
    """An EAGLE head's KV cache over the verified pairs (f_j, x_{j+1}), all built from the target's true
    hidden states; entries built on predicted features during drafting are cut off again (``crop``)."""

    def __init__(self, head: torch.nn.Module):
        self.head = head
        self.reset()

    def reset(self) -> None:
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
        dev = feats.device
        j = torch.arange(self.synced, n - 1, device=dev)  # new verified pairs (f_j, x_{j+1})
        h = self.head(
            feats[j][None], torch.tensor(seq[self.synced + 1 : n], device=dev)[None], j[None], cache=self.cache
        )
        self.synced = n - 1
        return h[0, -1]


class EagleDrafter(TreeGrower):
    needs_target_features = True

    def __init__(self, target: CausalLM, head: torch.nn.Module, shape: TreeShape | None = None, name: str = "eagle"):
        if not target.supports_features:
            raise ValueError(
                f"EAGLE drafting needs the target's hidden states, which the {target.backend} backend "
                f"does not give here"
            )
        super().__init__(shape)
        self.target, self.head, self.name = target, head.eval(), name
        self.state = EagleCache(self.head)
        self._seg: TreeSegment | None = None
        self._feats: dict[int, torch.Tensor] = {}  # tree node -> its predicted feature [H] (0: the root)
        self._node: dict[int, int] = {}  # tree node -> segment index

    def begin(self, prompts):
        if len(prompts) != 1:
            raise ValueError(f"EAGLE drafts run with batch size 1, got {len(prompts)} prompts")
        self.state.reset()

    def add_rows(self, prompts):
        raise ValueError("EAGLE drafts run with batch size 1: one request at a time")

    def remove_rows(self, keep):
        if keep:
            raise ValueError("EAGLE drafts run with batch size 1")

    def _start(self, seqs, active, sampler):
        h = self.state.catch_up(self.target, seqs[0])  # [H] = f^_{n-1}: the root's children
        self.calls += 1
        self._feats, self._node = {0: h}, {}
        self._seg = TreeSegment(len(seqs[0]) - 1)
        return [self._probs(h[None], sampler, [()])[0]]  # row 0: EAGLE drafts run with batch size 1

    def _expand(self, rows, new, sampler):
        row, ids = rows[0], new[0]
        seg = self._seg
        parents = [self._node.get(row.parents[i], -1) for i in ids]
        seg_ids = seg.add([row.tokens[i] for i in ids], parents, [seg.base + len(seg) + r for r in range(len(ids))])
        self._node.update(zip(ids, seg_ids))
        dev = self.target.device
        mask, pos = tree_attention([seg], [seg_ids], [seg.base], seg.base + len(seg), self.head.fc.weight.dtype, dev)
        f_in = torch.stack([self._feats[row.parents[i]] for i in ids])[None]
        h = self.head(
            f_in,
            torch.tensor([[row.tokens[i] for i in ids]], device=dev),
            pos,
            cache=self.state.cache,
            attention_mask=mask,
        )
        self.calls += 1
        self._feats.update(zip(ids, h[0]))
        return {0: list(self._probs(h[0], sampler, [row.path(i) for i in ids]))}

    def _finish(self):
        self.state.crop()

    def _probs(self, h: torch.Tensor, sampler, paths: list[tuple]) -> torch.Tensor:
        """h [n, H] predicted features of nodes with draft paths ``paths`` -> q [n, V]."""
        return sampler.probs(self.head.head(h).float(), [0] * h.shape[0], paths)

    def observe(self, paths):
        pass  # true features arrive through the target's record; the cache is cut in the next catch-up
