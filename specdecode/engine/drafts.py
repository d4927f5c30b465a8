"""What a drafter proposes, and the one drafter protocol the engine loop runs.

A draft is a tree per row whose root is the row's last verified token; a chain of k drafted tokens is
the tree with one path (``DraftTree.chain``). ``q`` holds the distribution each node's children were
drawn from (None: a deterministic drafter, one-hot q). ``TreeShape`` describes how a model drafter
grows its trees: a *static* shape (children per depth) or a *dynamic* one that gives children to the
most probable frontier nodes within a node budget (EAGLE-2 style; the number of children is fixed
before they are drawn, which keeps verification exact).

Not here: how children are drawn (``sampler``), the drafters themselves (``drafters/``) or verification.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch

if TYPE_CHECKING:
    from .backend import Backend
    from .costs import CostBook

MAX_TREE_NODES = 1024


@dataclass
class DraftTree:
    tokens: list[int]  # [N] node tokens; node 0 = the root (the row's last verified token)
    parents: list[int]  # [N] parent of each node (parents[0] = -1, parents[i] < i)
    q: torch.Tensor | None = None  # [M, V], M <= N: row n = the distribution node n's children were drawn
    # from (nodes >= M, and zero rows, drew none); None: deterministic drafts (one-hot q)
    match: int = 0  # lookup drafters: how many of the row's last tokens matched where the draft was copied from

    forced: int = 0  # the last ``forced`` nodes of a chain: tokens the row's grammar forces, q = 1 (``constrained``)

    def cut(self, depth: int) -> DraftTree:
        """The nodes at depth <= ``depth`` (deterministic drafts: no q to cut), in the same order."""
        at = self.depths()
        if depth >= max(at):
            return self
        if self.q is not None:
            raise ValueError("only deterministic drafts (q = None) are cut to a depth")
        return self.select([d <= depth for d in at])

    def select(self, keep: list[bool]) -> DraftTree:
        """The nodes with ``keep[n]`` (the root and every kept node's parent among them), in the same order;
        deterministic drafts only."""
        if self.q is not None:
            raise ValueError("only deterministic drafts (q = None) lose nodes")
        kept, new_id = [0], {0: 0}
        for n in range(1, len(self.parents)):
            if keep[n]:
                new_id[n] = len(kept)
                kept.append(n)
        parents = [-1] + [new_id[self.parents[n]] for n in kept[1:]]
        return DraftTree([self.tokens[n] for n in kept], parents, None, self.match)

    @staticmethod
    def chain(root: int, drafts: list[int], q: torch.Tensor | None = None) -> DraftTree:
        """A chain of k drafts after ``root``; q [k, V] the distribution each draft was drawn from."""
        return DraftTree([root] + list(drafts), list(range(-1, len(drafts))), q)

    @property
    def size(self) -> int:
        """Draft nodes (the root excluded)."""
        return len(self.tokens) - 1

    @property
    def is_chain(self) -> bool:
        return all(par == i - 1 for i, par in enumerate(self.parents))

    @property
    def depth(self) -> int:
        return max(self.depths())

    def depths(self) -> list[int]:
        """[N] each node's depth (the root's is 0)."""
        d = [0] * len(self.parents)
        for n in range(1, len(self.parents)):
            d[n] = d[self.parents[n]] + 1
        return d

    def children(self) -> list[list[int]]:
        kids: list[list[int]] = [[] for _ in self.parents]
        for n, par in enumerate(self.parents[1:], start=1):
            kids[par].append(n)
        return kids

    def q_matrix(self, dtype: torch.dtype) -> torch.Tensor | None:
        """q as [N, V] (zero rows for nodes that drew no children), or None for deterministic drafts."""
        if self.q is None:
            return None
        q = self.q.to(dtype)
        missing = len(self.tokens) - q.shape[0]
        return torch.cat([q, q.new_zeros(missing, q.shape[1])]) if missing > 0 else q


@dataclass(frozen=True)
class TreeShape:
    branching: tuple = ()  # static: children per node at each depth
    budget: int = 0  # dynamic: total draft nodes
    max_depth: int = 8

    @staticmethod
    def parse(spec: str) -> TreeShape:
        """'static:B1,B2,...' (children per depth) or 'dynamic:N' (node budget)."""
        kind, _, arg = spec.partition(":")
        if kind == "static":
            try:
                br = tuple(int(x) for x in arg.split(",") if x.strip())
            except ValueError:
                br = ()
            if not br or any(b < 1 for b in br):
                raise ValueError(f"--tree static:B1,B2,... needs branching factors >= 1 per depth, got {spec!r}")
            shape = TreeShape(branching=br)
        elif kind == "dynamic":
            try:
                budget = int(arg)
            except ValueError:
                budget = 0
            if budget < 1:
                raise ValueError(f"--tree dynamic:N needs a node budget N >= 1, got {spec!r}")
            shape = TreeShape(budget=budget)
        else:
            raise ValueError(f"--tree must be static:B1,B2,... or dynamic:N, got {spec!r}")
        if shape.num_nodes > MAX_TREE_NODES:
            raise ValueError(f"the tree {spec!r} has {shape.num_nodes} nodes; keep it under {MAX_TREE_NODES}")
        return shape

    @property
    def num_nodes(self) -> int:
        return self.budget or self.nodes_up_to(len(self.branching))

    @property
    def depth(self) -> int:
        return len(self.branching) if self.branching else min(self.max_depth, self.budget)

    @property
    def branches(self) -> bool:
        return bool(self.budget) or any(b > 1 for b in self.branching)

    def nodes_up_to(self, depth: int) -> int:
        """Draft nodes of a tree cut at ``depth`` (dynamic: at most the budget, <= 5 new nodes per depth)."""
        if self.budget:
            return min(self.budget, 5 * depth)
        total, width = 0, 1
        for b in self.branching[:depth]:
            width *= b
            total += width
        return total

    def allocate(self, scores: list[float], depth: int, used: int) -> list[int]:
        """Children for each frontier node (scores: their path probabilities) at ``depth``, ``used`` nodes so far."""
        if self.branching:
            return [self.branching[depth]] * len(scores)
        left = self.budget - used
        order = sorted(range(len(scores)), key=lambda i: -scores[i])
        counts = [0] * len(scores)
        for rank, i in enumerate(order[:4]):  # the 4 most probable frontier nodes grow
            c = min(2 if rank == 0 else 1, left)
            counts[i], left = c, left - c
        return counts


def prefix_tree(root: int, chains: list[list[int]]) -> tuple[list[int], list[int]]:
    """Token chains hanging from ``root`` -> (tokens, parents) of their prefix tree (shared prefixes
    merged, so siblings carry distinct tokens; children in the order the chains are given)."""
    tokens, parents = [root], [-1]
    child: dict[tuple[int, int], int] = {}
    for chain in chains:
        node = 0
        for t in chain:
            if (node, t) not in child:
                tokens.append(int(t))
                parents.append(node)
                child[(node, t)] = len(tokens) - 1
            node = child[(node, t)]
    return tokens, parents


class Drafter(Protocol):
    """The one drafter protocol. ``draft_cost`` once when a session opens; ``begin`` when a batch starts
    (``add_rows`` / ``remove_rows`` as requests join and leave); then every step ``propose`` a tree per row
    (depth <= ks[b]; ks[b] = 0: the root alone) and ``observe`` the accepted path of every row (node ids,
    root first) so the drafter can keep or roll back its own state. ``seqs[b]`` is row b's whole sequence;
    its last token is the root and is in no cache yet."""

    name: str
    lm: Backend | None  # the draft model it runs (its vocabulary must be the target's), or None
    branching: bool  # may propose several children per node (trees): needs a tree verification method
    deterministic: bool  # q is always None (one-hot drafts)
    needs_target_features: bool  # the engine makes the target record its hidden states (EAGLE heads)
    cheap: bool  # proposing costs ~nothing: drafts to the cap, then each adaptive row is cut to what it is worth
    max_depth: int | None  # the depth of its trees (None: bounded by GenerationConfig.k)
    time_spent: float
    calls: int

    def begin(self, prompts: list[list[int]]) -> None: ...

    def add_rows(self, prompts: list[list[int]]) -> None:
        """Rows join the running batch between steps (continuous batching)."""

    def remove_rows(self, keep: list[int]) -> None:
        """Only the rows ``keep`` stay (their order)."""

    def propose(self, seqs: list[list[int]], ks: list[int], sampler) -> list[DraftTree]: ...

    def observe(self, paths: list[list[int]]) -> None:
        """paths[b]: row b's accepted path, root first. Every path empty (not even the root): the step was undone
        (bad output in some row) and the drafter forgets what it cached during it, the roots included."""

    def nodes_at_depth(self, k: int) -> int: ...

    def draft_cost(self, book: CostBook) -> float | None:
        """Seconds per draft token, fixed (from a cost table, measured when a session opens before any row
        exists), or None: timed as it drafts."""


class NoDrafter:
    """Plain decoding through the same loop (k = 0 everywhere): the fair baseline."""

    name = "none"
    lm = None
    branching = False
    deterministic = True
    needs_target_features = False
    cheap = False
    max_depth = None

    def __init__(self):
        self.time_spent, self.calls = 0.0, 0

    def begin(self, prompts):
        pass

    def add_rows(self, prompts):
        pass

    def remove_rows(self, keep):
        pass

    def propose(self, seqs, ks, sampler):
        return [DraftTree.chain(s[-1], []) for s in seqs]

    def observe(self, paths):
        pass

    def nodes_at_depth(self, k):
        return k

    def draft_cost(self, book):
        return 0.0
