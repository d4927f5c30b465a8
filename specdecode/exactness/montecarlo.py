"""Monte-Carlo checks of the batched torch implementations (large batches, real RNG).

Many independent rows run the full loop (draft k tokens from q, verify, append, repeat
until N tokens) in one batch with an explicit ``torch.Generator``; the first N tokens'
empirical joint distribution is checked against the exact target with a support check,
Pearson chi-square (cells with n p < 5 merged; fail at p-value < 1e-6) and the TV bound
TV_hat <= 0.5 sqrt((m-1)/n) + sqrt(ln(1/delta)/(2n)) from verification-math.md.
Not here: exact enumeration (see ``harness``) or real language models (see the engine tests).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..core.rng import TorchRNG
from .harness import target_distribution
from .models import DeterministicDrafter


class ContextTable:
    """Dense table of a small model's distributions for every context up to max_len tokens."""

    def __init__(self, model, V: int, max_len: int):
        self.V = V
        ids: dict = {}
        rows = []
        for L in range(max_len + 1):
            for ctx in itertools.product(range(V), repeat=L):
                ids[ctx] = len(rows)
                rows.append([float(x) for x in model.probs(ctx)])
        self.probs = torch.tensor(rows, dtype=torch.float64)  # [C, V]
        child = torch.full((len(rows), V), -1, dtype=torch.long)
        for ctx, i in ids.items():
            if len(ctx) < max_len:
                for x in range(V):
                    child[i, x] = ids[ctx + (x,)]
        self.child = child  # [C, V]


@dataclass
class MCResult:
    n: int
    cells: int
    chi2: float
    df: int
    p_value: float
    tv: float
    tv_threshold: float
    support_ok: bool

    @property
    def passed(self) -> bool:
        return self.support_ok and self.p_value >= 1e-6 and self.tv <= self.tv_threshold


def sample_first_n(
    verify: Callable, case, n_samples: int, generator: torch.Generator, *, reseed: int | None = None
) -> torch.Tensor:
    """Run the speculative loop for n_samples independent rows; returns their first case.N tokens [n, N].

    verify(p [B, k+1, V], q [B, k, V] | None, drafts [B, k], rng) -> VerifyResult.
    reseed: if set, the generator is re-seeded before every step (a known bug, for tests).
    """
    V, k, N = case.V, case.k, case.N
    P = ContextTable(case.target, V, N + k)
    Q = ContextTable(case.draft, V, N + k)
    det = isinstance(case.draft, DeterministicDrafter)
    rng = TorchRNG(generator)
    out = torch.full((n_samples, N + k + 1), -1, dtype=torch.long)
    count = torch.zeros(n_samples, dtype=torch.long)
    ctx = torch.zeros(n_samples, dtype=torch.long)  # context id of the emitted prefix
    active = torch.arange(n_samples)  # every row steps every time (finished rows are ignored)
    while bool((count < N).any()):
        if reseed is not None:
            generator.manual_seed(reseed)
        c = ctx[active]
        drafts, qs, cs = [], [], [c]
        for _ in range(k):
            q = Q.probs[cs[-1]]
            x = q.argmax(-1) if det else rng.categorical(q)
            drafts.append(x)
            qs.append(q)
            cs.append(P.child[cs[-1], x])
        d = torch.stack(drafts, 1)
        p = torch.stack([P.probs[ci] for ci in cs], 1)
        res = verify(p, None if det else torch.stack(qs, 1), d, rng)
        for j in range(k + 1):
            emit = (res.num_accepted >= j) & (count < N + k + 1 - j)  # position j exists, buffer has room
            rows = active[emit]
            tok = res.tokens[emit, j]
            out[rows, count[rows]] = tok
            ctx[rows] = P.child[ctx[rows], tok]
            count[rows] += 1
    return out[:, :N]


def chi_square_tv(samples: torch.Tensor, case, *, greedy: bool = False, delta: float = 1e-6) -> MCResult:
    """samples: [n, N] token sequences -> support check, chi-square and TV test against the target."""
    n, N = samples.shape
    V = case.V
    target = target_distribution(case, greedy=greedy)
    codes = (samples * (V ** torch.arange(N - 1, -1, -1))).sum(1)
    counts = torch.bincount(codes, minlength=V**N).double()
    expected = torch.zeros(V**N, dtype=torch.float64)
    for seq, w in target.items():
        expected[sum(t * V ** (N - 1 - i) for i, t in enumerate(seq))] = float(w)
    return compare_counts(counts, expected, delta)


def compare_counts(counts: torch.Tensor, expected: torch.Tensor, delta: float = 1e-6) -> MCResult:
    """counts [C] observed per cell, expected [C] probabilities per cell -> support check, Pearson chi-square
    (cells with expected count < 5 merged into one) and the TV bound 0.5 sqrt((m-1)/n) + sqrt(ln(1/delta)/(2n))."""
    counts, expected = counts.double(), expected.double()
    n = int(counts.sum())
    support_ok = bool((counts[expected == 0] == 0).all())
    m = int((expected > 0).sum())
    tv = 0.5 * float((counts / n - expected).abs().sum())
    tv_threshold = 0.5 * math.sqrt((m - 1) / n) + math.sqrt(math.log(1 / delta) / (2 * n))
    e = expected[expected > 0] * n
    o = counts[expected > 0]
    small = e < 5
    e_cells = torch.cat([e[~small], e[small].sum().reshape(1)]) if small.any() else e
    o_cells = torch.cat([o[~small], o[small].sum().reshape(1)]) if small.any() else o
    keep = e_cells > 0
    e_cells, o_cells = e_cells[keep], o_cells[keep]
    chi2 = float(((o_cells - e_cells) ** 2 / e_cells).sum())
    df = max(int(e_cells.numel()) - 1, 1)
    p_value = float(
        torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64), torch.tensor(chi2 / 2, dtype=torch.float64))
    )
    if e_cells.numel() <= 1:
        p_value = 1.0
    return MCResult(n, m, chi2, df, p_value, tv, tv_threshold, support_ok)


def reseeding_bug_check(verify: Callable, case, n_samples: int = 20000, seed: int = 0) -> tuple[MCResult, MCResult]:
    """(correct run, run that re-seeds the generator before every step): the second must fail."""
    g = torch.Generator().manual_seed(seed)
    good = chi_square_tv(sample_first_n(verify, case, n_samples, g), case)
    g = torch.Generator().manual_seed(seed)
    bad = chi_square_tv(sample_first_n(verify, case, n_samples, g, reseed=seed), case)
    return good, bad
