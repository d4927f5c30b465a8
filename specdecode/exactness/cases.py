"""The exactness harness's cases (a target p and a draft q on a tiny vocabulary, as functions of the context)
and the exact distributions it compares: the output of a method's step enumerated down every branch of its
randomness, and the target's own n-token distribution.

Not here: the methods and their slow references (``harness``), Monte Carlo (``montecarlo``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from ..core.enumerate import enumerate_outcomes
from ..verify import reference as ref
from .models import DeterministicDrafter, model_pairs


@dataclass(frozen=True)
class Case:
    pair: str
    target: object
    draft: object
    V: int
    k: int  # draft length (chain), or depth of a tree / sequence length
    N: int  # tokens whose joint distribution is compared
    K: int = 1  # number of drafts (multi-draft methods)
    branching: tuple = ()  # tree shape, children per depth

    @property
    def label(self) -> str:
        extra = f" K={self.K}" if self.K > 1 else ""
        extra += f" tree={self.branching}" if self.branching else ""
        return f"{self.pair} V={self.V} k={self.k} N={self.N}{extra}"


CHAIN_SIZES = [(2, 1, 3), (2, 2, 3), (2, 4, 2), (3, 1, 3), (3, 2, 2), (3, 3, 2), (4, 2, 2), (5, 1, 2)]


CHAIN_SIZES_FAST = [(2, 1, 3), (2, 3, 2), (3, 2, 2), (4, 1, 2), (5, 1, 2)]


def _pairs(V, deterministic=True):
    pairs = model_pairs(V)
    if deterministic:
        pairs.append(("deterministic drafter (q=None)", pairs[0][1], DeterministicDrafter(V, 18)))
    return pairs


def chain_cases(sizes=CHAIN_SIZES, deterministic=True):
    return [Case(name, t, d, V, k, N) for V, k, N in sizes for name, t, d in _pairs(V, deterministic)]


def select_cases(Ks=(1, 2, 3), Vs=(2, 3, 4)):
    return [Case(name, t, d, V, 1, 2, K=K) for V in Vs for K in Ks for name, t, d in _pairs(V, False)]


def tree_cases(shapes=((2, 1), (2, 2), (3,)), Vs=(2, 3)):
    return [
        Case(name, t, d, V, len(b), 2, K=b[0], branching=b)
        for V in Vs
        for b in shapes
        for name, t, d in _pairs(V, False)
    ]


def seq_cases(Vs=(2, 3)):
    return [
        Case(name, t, d, V, L, 2, K=K)
        for V in Vs
        for K, L in ((2, 1), (2, 2), (3, 1))
        for name, t, d in _pairs(V, False)
    ]


def n_token_distribution(step: Callable, case: Case, ctx: tuple = ()) -> dict:
    """Exact joint distribution of the first case.N tokens produced by repeating ``step``."""
    step_cache: dict = {}

    def step_dist(c):
        if c not in step_cache:
            step_cache[c] = enumerate_outcomes(lambda rng: tuple(step(case, c, rng)))
        return step_cache[c]

    def rec(c, n):
        out: dict = defaultdict(int)
        for toks, w in step_dist(c).items():
            if len(toks) == 0:
                raise AssertionError(f"a step emitted no token at context {c}")
            if len(toks) >= n:
                out[toks[:n]] += w
            else:
                for rest, w2 in rec(c + toks, n - len(toks)).items():
                    out[toks + rest] += w * w2
        return out

    return dict(rec(ctx, case.N))


def target_distribution(case: Case, greedy: bool = False, ctx: tuple = ()) -> dict:
    dist = {(): 1}
    for _ in range(case.N):
        nxt: dict = defaultdict(int)
        for seq, w in dist.items():
            p = case.target.probs(ctx + seq)
            if greedy:
                nxt[seq + (ref.argmax_ref(p),)] += w
            else:
                for x, px in enumerate(p):
                    if px > 0:
                        nxt[seq + (x,)] += w * px
        dist = dict(nxt)
    return dist


def compare(out: dict, target: dict) -> tuple[float, float]:
    """-> (max |P_out - P_target| over outcomes, total variation)."""
    keys = set(out) | set(target)
    diffs = [
        abs(
            float(Fraction(out.get(s, 0)) - Fraction(target.get(s, 0)))
            if _exact(out.get(s, 0), target.get(s, 0))
            else float(out.get(s, 0)) - float(target.get(s, 0))
        )
        for s in keys
    ]
    return max(diffs, default=0.0), 0.5 * sum(diffs)


def _exact(a, b) -> bool:
    return isinstance(a, (Fraction, int)) and isinstance(b, (Fraction, int))
