"""Small context-dependent models over tiny vocabularies for the exactness suite.

A model maps a context (tuple of token ids) to a distribution (list of length V),
deterministically from its seed. ``raw`` gives the un-warped distribution when the
model is a warped one (used by injected bugs that mix them up). Nothing here is a
neural network or touches torch's global RNG.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from fractions import Fraction

import torch

from ..core.sampling import SamplingConfig, logits_to_probs


def _rnd(seed, ctx) -> random.Random:
    return random.Random(f"{seed}:{','.join(map(str, ctx))}")


@dataclass(frozen=True)
class RandomModel:
    V: int
    seed: int
    zero_frac: float = 0.0

    def probs(self, ctx):
        r = _rnd(self.seed, ctx)
        w = [r.random() + 0.05 for _ in range(self.V)]
        if self.zero_frac:
            keep = [r.random() >= self.zero_frac for _ in range(self.V)]
            if not any(keep):
                keep[r.randrange(self.V)] = True
            w = [wi if k else 0.0 for wi, k in zip(w, keep)]
        s = sum(w)
        return [wi / s for wi in w]

    raw = probs


@dataclass(frozen=True)
class OneHotModel:
    V: int
    seed: int

    def probs(self, ctx):
        x = _rnd(self.seed, ctx).randrange(self.V)
        return [1.0 if i == x else 0.0 for i in range(self.V)]

    raw = probs


class DeterministicDrafter(OneHotModel):
    """A drafter that proposes its argmax without sampling: verified with q = None."""


@dataclass(frozen=True)
class ParityModel:
    """Mass only on tokens of one parity: two of these with different parity have disjoint support."""

    V: int
    seed: int
    parity: int

    def probs(self, ctx):
        r = _rnd(self.seed, ctx)
        w = [r.random() + 0.05 if i % 2 == self.parity else 0.0 for i in range(self.V)]
        s = sum(w)
        return [wi / s for wi in w]

    raw = probs


@dataclass(frozen=True)
class FractionModel:
    """Exact rational probabilities with exact zeros (denominators up to 12)."""

    V: int
    seed: int

    def probs(self, ctx):
        r = _rnd(self.seed, ctx)
        w = [r.choice([0, 0, 1, 2, 3, 5]) for _ in range(self.V)]
        if sum(w) == 0:
            w[r.randrange(self.V)] = 1
        s = sum(w)
        return [Fraction(wi, s) for wi in w]

    raw = probs


@dataclass(frozen=True)
class WarpedModel:
    """Random logits warped by a SamplingConfig (temperature, top-k, top-p) with specdecode.sampling."""

    V: int
    seed: int
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None

    def _logits(self, ctx):
        r = _rnd(self.seed, ctx)
        return torch.tensor([r.gauss(0, 1.5) for _ in range(self.V)], dtype=torch.float64)

    def probs(self, ctx):
        cfg = SamplingConfig(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p)
        return logits_to_probs(self._logits(ctx), cfg).tolist()

    def raw(self, ctx):
        return self._logits(ctx).softmax(-1).tolist()


@dataclass(frozen=True)
class ConstrainedModel:
    """A model under a toy grammar (the engine's constrained p_c / q_c): after token x the token (x + 1) mod V is
    not allowed (V = 2: a forced run), the rest renormalised; uniform over the allowed tokens where the model
    gives them no mass (as masking logits before warping would)."""

    model: object

    @property
    def V(self) -> int:
        return self.model.V

    def allowed(self, ctx) -> list[bool]:
        return [not ctx or x != (ctx[-1] + 1) % self.V for x in range(self.V)]

    def probs(self, ctx):
        ok = self.allowed(ctx)
        w = [px if a else 0 * px for px, a in zip(self.model.probs(ctx), ok)]
        s = sum(w)
        if s == 0:
            return [Fraction(1, sum(ok)) if a else Fraction(0) for a in ok]
        return [wi / s for wi in w]

    raw = probs


def model_pairs(V: int) -> list[tuple[str, object, object]]:
    """The suite's (name, target, draft) pairs for vocabulary size V."""
    return [
        ("random", RandomModel(V, 1), RandomModel(V, 2)),
        ("zeros in p and q", RandomModel(V, 3, 0.4), RandomModel(V, 4, 0.4)),
        ("p == q", RandomModel(V, 5), RandomModel(V, 5)),
        ("one-hot p", OneHotModel(V, 6), RandomModel(V, 7)),
        ("one-hot q", RandomModel(V, 8), OneHotModel(V, 9)),
        ("disjoint supports", ParityModel(V, 10, 0), ParityModel(V, 11, 1)),
        ("warped T=0.7 top-k=2", WarpedModel(V, 12, 0.7, top_k=2), WarpedModel(V, 13, 0.7, top_k=2)),
        ("warped T=1.3 top-p=0.8", WarpedModel(V, 14, 1.3, top_p=0.8), WarpedModel(V, 15, 1.3, top_p=0.8)),
        ("fractions", FractionModel(V, 16), FractionModel(V, 17)),
        ("constrained p and q", ConstrainedModel(RandomModel(V, 18)), ConstrainedModel(RandomModel(V, 19))),
        ("constrained p, unmasked q", ConstrainedModel(FractionModel(V, 20)), FractionModel(V, 21)),
    ]
