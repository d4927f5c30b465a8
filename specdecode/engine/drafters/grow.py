"""The growth loop shared by the model drafters: one draft forward per depth over every row's frontier.

A chain of k tokens is grown as a tree with one child per node (``shape`` None); a tree follows its
``TreeShape`` (static children per depth, or a dynamic node budget given to the most probable frontier
nodes). Children are drawn by the engine's ``DraftSampler``, i.e. the way the verification method needs.
Subclasses say only how q is computed: ``_start`` (catch up on the verified tokens -> q for each root's
children), ``_expand`` (new nodes -> q for each) and ``_finish`` (after the last depth).

Not here: a drafter's own cache handling after verification (``observe`` in each subclass).
"""

from __future__ import annotations

import time

import torch

from ..drafts import DraftTree, TreeShape


class GrowingTree:
    """One row's tree while it grows."""

    def __init__(self, root: int, q_root: torch.Tensor, depth: int):
        self.tokens, self.parents, self.qs, self.score = [root], [-1], [q_root], [1.0]
        self.frontier, self.depth, self.used = [0], depth, 0

    def add(self, parent: int, token: int) -> int:
        self.tokens.append(int(token))
        self.parents.append(parent)
        self.qs.append(None)
        self.score.append(self.score[parent] * float(self.qs[parent][token]))
        return len(self.tokens) - 1

    def path(self, node: int) -> tuple:
        """The draft tokens from the root to ``node`` (the root excluded)."""
        out = []
        while node > 0:
            out.append(self.tokens[node])
            node = self.parents[node]
        return tuple(reversed(out))

    def tree(self, keep_q: bool) -> DraftTree:
        if not keep_q:
            return DraftTree(self.tokens, self.parents, None)
        last = max(i for i, q in enumerate(self.qs) if q is not None)
        zero = torch.zeros_like(self.qs[0])
        return DraftTree(
            self.tokens, self.parents, torch.stack([q if q is not None else zero for q in self.qs[: last + 1]])
        )


class TreeGrower:
    shape: TreeShape | None = None  # None: chains
    deterministic = False
    needs_target_features = False
    cheap = False  # a model pass per depth: asked only for the depths the controllers choose
    name = "model"
    lm = None  # the draft model (ModelDrafter); an EAGLE head is no backend

    def __init__(self, shape: TreeShape | None):
        self.shape = shape
        self.branching = shape is not None and shape.branches
        self.max_depth = shape.depth if shape is not None else None
        self.time_spent, self.calls = 0.0, 0

    def nodes_at_depth(self, k: int) -> int:
        return k if self.shape is None else self.shape.nodes_up_to(k)

    def draft_cost(self, book) -> float | None:
        return None  # timed as it drafts

    # subclasses ------------------------------------------------------------
    def _start(self, seqs: list[list[int]], active: list[int], sampler) -> list[torch.Tensor]:
        """Catch up on the verified tokens of the ``active`` rows -> q [V] for each active row's root."""
        raise NotImplementedError

    def _expand(
        self, rows: dict[int, GrowingTree], new: dict[int, list[int]], sampler
    ) -> dict[int, list[torch.Tensor]]:
        """The nodes ``new[b]`` just added to ``rows[b]`` -> q [V] for each (one draft forward for all rows)."""
        raise NotImplementedError

    def _finish(self) -> None:
        pass

    # the loop ---------------------------------------------------------------
    @torch.inference_mode()
    def propose(self, seqs: list[list[int]], ks: list[int], sampler) -> list[DraftTree]:
        t0 = time.perf_counter()
        active = [b for b, k in enumerate(ks) if k > 0]
        trees = [DraftTree.chain(s[-1], []) for s in seqs]
        if active:
            q_roots = self._start(seqs, active, sampler)
            rows = {
                b: GrowingTree(seqs[b][-1], q, min(ks[b], self.max_depth or ks[b])) for b, q in zip(active, q_roots)
            }
            for depth in range(max(r.depth for r in rows.values())):
                new = self._grow_depth(rows, depth, sampler)
                grow = {
                    b: ids for b, ids in new.items() if ids and depth + 1 < rows[b].depth and not self._full(rows[b])
                }
                for b, r in rows.items():
                    if b not in grow:
                        r.depth = min(r.depth, depth + 1)  # this row's tree is complete
                if not grow:
                    break
                for b, qs in self._expand(rows, grow, sampler).items():
                    for i, q in zip(grow[b], qs):
                        rows[b].qs[i] = q
                    rows[b].frontier = grow[b]
            self._finish()
            for b, r in rows.items():
                trees[b] = r.tree(not (self.deterministic or sampler.deterministic(b)))
        self.time_spent += time.perf_counter() - t0
        return trees

    def _full(self, row: GrowingTree) -> bool:
        return bool(self.shape and self.shape.budget and row.used >= self.shape.budget)

    def _grow_depth(self, rows: dict[int, GrowingTree], depth: int, sampler) -> dict[int, list[int]]:
        """Draw the children of every growing row's frontier -> the new node ids per row."""
        requests = []  # (row, node, count)
        for b, r in rows.items():
            if depth >= r.depth:
                continue
            counts = [1] if self.shape is None else self.shape.allocate([r.score[n] for n in r.frontier], depth, r.used)
            requests += [(b, node, c) for node, c in zip(r.frontier, counts) if c]
        if requests and all(c == 1 for _, _, c in requests):  # chains: one batched draw
            picks = sampler.draw(
                torch.stack([rows[b].qs[node] for b, node, _ in requests]),
                [b for b, _, _ in requests],
                [depth] * len(requests),
            )
            children = [[x] for x in picks]
        else:
            children = [sampler.children(rows[b].qs[node], c, b, depth) for b, node, c in requests]
        new: dict[int, list[int]] = {b: [] for b in rows}
        for (b, node, _), xs in zip(requests, children):
            new[b] += [rows[b].add(node, x) for x in xs]
            rows[b].used += len(xs)
        return new
