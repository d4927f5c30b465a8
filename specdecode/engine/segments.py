"""Draft-tree nodes held in a KV cache after a row's verified prefix, and the attention mask they need.

A ``TreeSegment`` records, for one row, the nodes appended after its verified prefix: each node's parent,
depth and cache slot. Node i sits at position ``base + depth[i]`` (depth 0 = a child of the prefix) and
attends to the prefix and to its own ancestors only. ``tree_attention`` turns the nodes just added to
every row of a batch into one additive mask and the position ids.

Not here: running a model or editing a cache (``lm.CausalLM`` does both).
"""

from __future__ import annotations

import torch


class TreeSegment:
    def __init__(self, base: int):
        self.base = base  # verified prefix length of the row: node positions start here
        self.parents: list[int] = []  # segment index of each node's parent, -1 = the prefix
        self.depths: list[int] = []
        self.slots: list[int] = []  # cache index of each node
        self.tokens: list[int] = []
        self.features: list[torch.Tensor] = []  # [n, H] hidden states per pass, when the model records them

    def __len__(self) -> int:
        return len(self.parents)

    def add(self, tokens: list[int], parents: list[int], slots: list[int]) -> list[int]:
        """Append nodes (parents index the segment, earlier or new nodes; -1 = the prefix) -> their ids."""
        ids = []
        for tok, par, slot in zip(tokens, parents, slots):
            if not -1 <= par < len(self.parents):
                raise ValueError(f"a tree node's parent must be -1 or an earlier node, got {par}")
            self.parents.append(par)
            self.depths.append(0 if par < 0 else self.depths[par] + 1)
            self.slots.append(slot)
            self.tokens.append(int(tok))
            ids.append(len(self.parents) - 1)
        return ids

    def ancestors(self, i: int) -> list[int]:
        """Node i and its ancestors in the segment (i first)."""
        out = []
        while i >= 0:
            out.append(i)
            i = self.parents[i]
        return out

    def hidden_states(self, nodes: list[int]) -> torch.Tensor:
        """The recorded hidden states of ``nodes`` -> [len(nodes), H]."""
        if not self.features:
            raise ValueError("the target records hidden states but the tree pass kept none")
        return torch.cat(self.features)[nodes]


def tree_attention(
    segments: list[TreeSegment], new: list[list[int]], prefix: list[int], total: int, dtype: torch.dtype, device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The nodes ``new[b]`` just added to ``segments[b]`` (rows padded to the longest) ->
    (additive mask [B, 1, n_max, total], position ids [B, n_max]).

    Row b's node attends to cache slots [0, prefix[b]) and to its ancestors' slots; a padding query
    attends to its own slot only (its output is never read), so no row of the mask is empty.
    """
    B, n_max = len(new), max((len(ids) for ids in new), default=0)
    allow = torch.zeros(B, n_max, total, dtype=torch.bool, device="cpu")  # built on the host, moved once
    pos = torch.zeros(B, n_max, dtype=torch.long, device="cpu")
    for b, (seg, ids) in enumerate(zip(segments, new)):
        allow[b, :, : prefix[b]] = True
        for r, i in enumerate(ids):
            allow[b, r, [seg.slots[a] for a in seg.ancestors(i)]] = True
            pos[b, r] = seg.base + seg.depths[i]
        for r in range(len(ids), n_max):
            allow[b, r, total - n_max + r] = True
            pos[b, r] = seg.base
    mask = torch.zeros(allow.shape, dtype=dtype, device="cpu").masked_fill_(~allow, torch.finfo(dtype).min)
    return mask[:, None].to(device), pos.to(device)
