"""Randomness for verification, routed through exactly two calls.

Every verification method draws its randomness through ``bernoulli(a)`` (True with
probability ``a``, realised as ``u < a`` with ``u ~ U[0, 1)``) and ``categorical(w)``
(index ``i`` with probability ``w_i / sum(w)``). Routing all randomness through these
two calls is what lets :mod:`specdecode.exactness` replay a method down every branch
and compute its exact output distribution.

This module does not seed anything and never touches torch's or Python's global RNG:
callers pass an explicit ``torch.Generator`` (or ``random.Random``).
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate
from typing import Protocol, runtime_checkable

import numpy as np
import torch


@runtime_checkable
class RNG(Protocol):
    def bernoulli(self, a):  # a: tensor [...] of probabilities -> bool tensor [...]
        ...

    def categorical(self, w):  # w: tensor [..., V] of weights -> long tensor [...]
        ...


class TorchRNG:
    """Production randomness backed by an explicit ``torch.Generator``."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator
        self._u: torch.Tensor | None = None  # one-row draws' uniform, drawn in place: torch.rand(1)'s very numbers

    def bernoulli(self, a: torch.Tensor) -> torch.Tensor:
        # a: [...] probabilities in [0, 1]; strict '<' with u in [0, 1) so a = 0 never fires
        u = torch.rand(a.shape, generator=self.generator, dtype=torch.float64, device=a.device)
        return u < a

    def categorical(self, w: torch.Tensor) -> torch.Tensor:
        # w: [..., V] non-negative weights with a positive sum per row. Inverse CDF in float64: the first
        # index whose cumulative weight exceeds u * total, u ~ U[0, 1) (a zero-weight cell never is the
        # first one to exceed it). ~15x faster than torch.multinomial over a 49k vocabulary on CPU.
        flat = w.reshape(-1, w.shape[-1])
        cum = flat.cumsum(-1, dtype=torch.float64)  # [R, V] (the same sums as a cast first, one pass less)
        if flat.shape[0] == 1 and cum.is_cpu:  # one row: the same draw through numpy (four torch calls fewer)
            idx = self._inverse_cdf(cum.detach().numpy()[0])
            if idx is None:
                idx = int(np.flatnonzero((flat[0] > 0).numpy())[-1])  # bool: any dtype of weights
            return torch.tensor(idx, device=cum.device).reshape(w.shape[:-1])
        u = (
            torch.rand(flat.shape[0], 1, generator=self.generator, dtype=torch.float64, device=flat.device)
            * cum[:, -1:]
        )
        idx = torch.searchsorted(cum, u, right=True)  # [R, 1]
        over = idx >= flat.shape[-1]  # rounding put u at the very top: the last positive cell
        if over.any():
            last = (flat > 0).to(torch.long) * torch.arange(flat.shape[-1], device=flat.device)
            idx = torch.where(over, last.argmax(-1, keepdim=True), idx)
        return idx.reshape(w.shape[:-1])

    def _uniform(self) -> float:
        """One U[0, 1) float64 of the generator, drawn in place: ``torch.rand(1)``'s very number."""
        if self._u is None:
            self._u = torch.empty(1, dtype=torch.float64, device="cpu")
        return self._u.uniform_(generator=self.generator).item()

    def _inverse_cdf(self, cum: np.ndarray) -> int | None:
        """cum: [V] float64 cumulative weights -> the first index whose cumulative weight exceeds u * total, None
        when rounding puts u at the very top (then the last positive cell is the draw)."""
        idx = int(np.searchsorted(cum, self._uniform() * float(cum[-1]), side="right"))
        return idx if idx < len(cum) else None

    def draw_index(self, weights: np.ndarray) -> int:
        """``categorical`` of one row of float64 numpy weights [n]: the same uniform, the same float64 sums (summed
        in order, as numpy's and torch's cumsum), in Python: a sampler's few candidates, where each numpy or torch
        call costs ~20-60 us right after a llama.cpp pass."""
        w = weights.tolist()
        cum = list(accumulate(w))
        u = self._uniform() * cum[-1]
        idx = bisect_right(cum, u)  # the first index whose cumulative weight exceeds u
        if idx >= len(cum):  # rounding put u at the very top: the last positive cell
            idx = max(i for i, x in enumerate(w) if x > 0)
        return idx


class RecordingRNG:
    """A ``TorchRNG`` that keeps the uniform draws of its last ``bernoulli`` call (``last_u``), for showing why a
    token was accepted. Draws the same numbers in the same order, so results equal the unrecorded ones."""

    def __init__(self, generator: torch.Generator):
        self.inner = TorchRNG(generator)
        self.last_u: torch.Tensor | None = None

    def bernoulli(self, a: torch.Tensor) -> torch.Tensor:
        self.last_u = torch.rand(a.shape, generator=self.inner.generator, dtype=torch.float64, device=a.device)
        return self.last_u < a

    def categorical(self, w: torch.Tensor) -> torch.Tensor:
        return self.inner.categorical(w)


class PyRNG:
    """Randomness for the scalar reference implementations, backed by ``random.Random``."""

    def __init__(self, rnd: random.Random):
        self.rnd = rnd

    def bernoulli(self, a) -> bool:
        return self.rnd.random() < a

    def categorical(self, w: Sequence) -> int:
        total = sum(w)
        u = self.rnd.random() * float(total)
        cum = 0.0
        last = 0
        for i, wi in enumerate(w):
            if wi <= 0:
                continue
            cum += float(wi)
            last = i
            if u < cum:
                return i
        return last  # rounding left u just above the float sum: the last positive cell


def as_rng(rng) -> RNG:
    """Accept a ``torch.Generator`` (the public API) or anything following the RNG protocol."""
    if isinstance(rng, torch.Generator):
        return TorchRNG(rng)
    if isinstance(rng, random.Random):
        return PyRNG(rng)
    if hasattr(rng, "bernoulli") and hasattr(rng, "categorical"):
        return rng
    raise TypeError(
        f"rng must be a torch.Generator (or an object with bernoulli/categorical), got {type(rng).__name__}"
    )
