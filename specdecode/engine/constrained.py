"""Where a row's grammar (``constraint.RowGrammar``) meets one step: its draft is cut to what the grammar allows
and extended by the tokens it forces (``constrain_drafts``), a drafter's logits are masked before q is warped
(``mask_logits``), and the target's logits at every node are masked before verification (``mask_tree_logits``).
Rows without a grammar (None) pass through untouched.

Not here: the matcher and the grammar (``constraint``), verification (``verify_step``).
"""

from __future__ import annotations

import torch

from .constraint import FORCED_MAX, RowGrammar
from .drafts import DraftTree


def node_paths(tree: DraftTree) -> list[tuple]:
    """[N] the draft tokens from the root to each node (the root's path is empty)."""
    paths: list[tuple] = [()]
    for n in range(1, len(tree.tokens)):
        paths.append(paths[tree.parents[n]] + (tree.tokens[n],))
    return paths


def mask_logits(logits: torch.Tensor, grammars: list, paths: list[tuple]) -> torch.Tensor:
    """logits [R, V] of R draft nodes; grammars[i] / paths[i]: node i's row grammar (None: none) and its draft path
    -> the logits with the tokens not allowed there at -inf (a copy when any is masked)."""
    out = logits
    for i, (g, path) in enumerate(zip(grammars, paths)):
        blocked = None if g is None else g.blocked(tuple(path))
        if blocked is not None:
            if out is logits:
                out = logits.clone()
            out[i].masked_fill_(blocked.to(out.device), float("-inf"))
    return out


def mask_tree_logits(logits: torch.Tensor, trees: list[DraftTree], grammars: list) -> None:
    """logits [B, n_max, V] of every row's nodes: each constrained row's node rows masked in place to the tokens the
    grammar allows after that node (a node whose own path is not allowed is left as it is: it is never accepted)."""
    for b, (tree, g) in enumerate(zip(trees, grammars)):
        if g is None:
            continue
        paths = node_paths(tree)
        blocked = [g.blocked(path) for path in paths]
        if all(x is not None for x in blocked):  # one fill for the row's nodes
            logits[b, : len(paths)].masked_fill_(torch.stack(blocked).to(logits.device), float("-inf"))
            continue
        for n, x in enumerate(blocked):
            if x is not None:
                logits[b, n].masked_fill_(x.to(logits.device), float("-inf"))


def one_token_nodes(trees: list[DraftTree], grammars: list) -> list[set[int]]:
    """Per row, the nodes after which its grammar allows exactly one token: their logits are not needed (the
    mask alone makes p_c one-hot), so a backend may skip computing them (``Backend.extend_skipping``)."""
    return [
        set() if g is None else {n for n, path in enumerate(node_paths(tree)) if g.single(path)}
        for tree, g in zip(trees, grammars)
    ]


def constrain_drafts(trees: list[DraftTree], grammars: list, rooms: list[int]) -> list[DraftTree]:
    """Each constrained row's draft: cut where the grammar does not allow a deterministic draft token, then the
    forced run appended (q = 1) within ``rooms[b]`` draft tokens in all (0: the row does not speculate)."""
    return [tree if g is None else _constrain(tree, g, room) for tree, g, room in zip(trees, grammars, rooms)]


def _constrain(tree: DraftTree, g: RowGrammar, room: int) -> DraftTree:
    if not tree.is_chain:
        return _prune(tree, g) if tree.q is None else tree  # drawn from a masked q: every node is allowed
    drafts = tree.tokens[1:]
    valid = 0
    while valid < len(drafts):
        blocked = g.blocked(tuple(drafts[:valid]))
        if blocked is None or bool(blocked[drafts[valid]]):
            break
        valid += 1
    if valid < len(drafts) and tree.q is not None:
        return tree  # a drafter that did not mask its q: the disallowed draft is rejected by verification
    drafts = drafts[:valid]
    forced = g.forced_run(tuple(drafts), min(FORCED_MAX, room - valid)) if g.forced and room > valid else []
    if valid == tree.size and not forced:
        return tree
    q = tree.q
    if q is not None:
        onehot = torch.zeros(len(forced), q.shape[1], dtype=q.dtype, device=q.device)
        onehot[torch.arange(len(forced)), torch.tensor(forced, dtype=torch.long)] = 1.0
        q = torch.cat([q[:valid], onehot])
    out = DraftTree.chain(tree.tokens[0], drafts + forced, q)
    out.match, out.forced = tree.match, len(forced)
    return out


def _prune(tree: DraftTree, g: RowGrammar) -> DraftTree:
    """A deterministic tree without the nodes the grammar does not allow (and their subtrees)."""
    paths = node_paths(tree)
    keep = [True] * len(tree.tokens)
    for n in range(1, len(tree.tokens)):
        par = tree.parents[n]
        blocked = g.blocked(paths[par]) if keep[par] else None
        keep[n] = blocked is not None and not bool(blocked[tree.tokens[n]])
    return tree if all(keep) else tree.select(keep)
