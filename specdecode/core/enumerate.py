"""Replay enumeration: the exact distribution of a function's output over its random choices.

A function under test takes an RNG and calls only ``bernoulli(a)`` and ``categorical(w)``.
``enumerate_outcomes`` runs it once per leaf of its choice tree: on each run an
``ExactRNG`` replays a recorded prefix of choices, takes the first option at every new
choice point, and remembers the other options so that later runs take them. The weight
of a run is the product of the probabilities of its choices. Zero-probability options
are never taken, so "impossible" outputs never appear.

Works on Python scalars / lists (including ``Fraction``, giving exact results) and on
torch tensors (the batched fast implementations; every element of a tensor call is a
separate choice, so keep batch sizes at 1 here).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable
from fractions import Fraction

import torch


class TooManyBranches(RuntimeError):
    pass


def _bernoulli_options(a):
    """a -> list of (outcome, weight) with weight > 0."""
    if torch.is_tensor(a):
        vals = a.detach().to(torch.float64).reshape(-1).tolist()
        per = [[(True, v), (False, 1 - v)] for v in vals]
        per = [[o for o in opts if o[1] > 0] for opts in per]
        out = []
        for combo in itertools.product(*per):
            w = 1.0
            for _, wi in combo:
                w *= wi
            out.append((torch.tensor([c[0] for c in combo], dtype=torch.bool).reshape(a.shape), w))
        return out
    one = 1 if isinstance(a, (Fraction, int)) else 1.0
    return [o for o in ((True, a), (False, one - a)) if o[1] > 0]


def _categorical_options(w):
    """w ([V] list or [..., V] tensor) -> list of (outcome, weight) with weight > 0."""
    if torch.is_tensor(w):
        rows = w.detach().to(torch.float64).reshape(-1, w.shape[-1]).tolist()
        per = []
        for row in rows:
            s = sum(row)
            per.append([(i, v / s) for i, v in enumerate(row) if v > 0])
        out = []
        for combo in itertools.product(*per):
            wt = 1.0
            for _, wi in combo:
                wt *= wi
            out.append((torch.tensor([c[0] for c in combo], dtype=torch.long).reshape(w.shape[:-1]), wt))
        return out
    s = sum(w)
    if not s > 0:
        raise ValueError("categorical() called with weights that sum to 0")
    return [(i, wi / s) for i, wi in enumerate(w) if wi > 0]


class ExactRNG:
    """One replay of the choice tree (see module docstring)."""

    def __init__(self, script: list[int]):
        self.script = script
        self.taken: list[int] = []
        self.new_points: list[tuple[int, int]] = []  # (choice index, number of options)
        self.weight = 1

    def _choose(self, options):
        i = len(self.taken)
        if i < len(self.script):
            c = self.script[i]
        else:
            c = 0
            if len(options) > 1:
                self.new_points.append((i, len(options)))
        self.taken.append(c)
        value, w = options[c]
        self.weight = self.weight * w
        return value

    def bernoulli(self, a):
        return self._choose(_bernoulli_options(a))

    def categorical(self, w):
        return self._choose(_categorical_options(w))


def enumerate_outcomes(fn: Callable, *, max_leaves: int = 2_000_000) -> dict:
    """fn(rng) -> hashable outcome. Returns {outcome: exact probability}."""
    dist: dict = defaultdict(int)
    stack: list[list[int]] = [[]]
    leaves = 0
    while stack:
        script = stack.pop()
        rng = ExactRNG(script)
        out = fn(rng)
        dist[out] = dist[out] + rng.weight
        leaves += 1
        if leaves > max_leaves:
            raise TooManyBranches(f"more than {max_leaves} branches; use a smaller case")
        for i, n in rng.new_points:
            base = rng.taken[:i]
            for c in range(1, n):
                stack.append(base + [c])
    return dict(dist)
