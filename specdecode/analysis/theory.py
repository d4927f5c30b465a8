"""Closed-form theory of speculative decoding (Leviathan et al. 2023; Sun et al. 2023/2024).

p = target distribution, q = draft distribution. alpha = E[sum_x min(p, q)] = 1 - E[TV].
Nothing here samples or runs a model; every function is deterministic and cheap.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch

from ..core.enumerate import enumerate_outcomes
from ..core.validation import check_int, check_prob_scalar
from ..verify.multidraft import rho_star as _rho
from ..verify.multidraft import spectr_beta
from ..verify.reference import gumbel_match_prob, rrs_select_ref


def _as_tensor(x) -> torch.Tensor:
    return x.to(torch.float64) if torch.is_tensor(x) else torch.tensor(x, dtype=torch.float64)


def acceptance_rate(p, q):
    """p, q: [..., V] -> sum_x min(p, q) = 1 - TV(p, q), per leading index (a float for 1-D input)."""
    pt, qt = _as_tensor(p), _as_tensor(q)
    if pt.shape != qt.shape:
        raise ValueError(f"p and q must have the same shape, got {tuple(pt.shape)} and {tuple(qt.shape)}")
    a = torch.minimum(pt, qt).sum(-1)
    return float(a) if a.dim() == 0 else a


def total_variation(p, q):
    pt, qt = _as_tensor(p), _as_tensor(q)
    tv = 0.5 * (pt - qt).abs().sum(-1)
    return float(tv) if tv.dim() == 0 else tv


def expected_tokens_per_step(alpha: float, k: int) -> float:
    """E[G] = (1 - alpha^(k+1)) / (1 - alpha): tokens per target call with k drafts (bonus counted)."""
    alpha = check_prob_scalar("alpha", alpha)
    check_int("k", k, 0)
    if alpha == 1:
        return float(k + 1)
    return (1 - alpha ** (k + 1)) / (1 - alpha)


def tokens_per_step_distribution(alpha: float, k: int) -> list[float]:
    """[P(G=1), ..., P(G=k+1)]: P(G=j) = alpha^(j-1)(1-alpha) for j <= k, P(G=k+1) = alpha^k."""
    alpha = check_prob_scalar("alpha", alpha)
    check_int("k", k, 0)
    return [alpha ** (j - 1) * (1 - alpha) for j in range(1, k + 1)] + [alpha**k]


def speedup(alpha: float, k: int, c: float) -> float:
    """Walltime factor S = E[G] / (k c + 1), c = draft/target cost per forward pass."""
    if not c >= 0:
        raise ValueError(f"c (draft/target cost ratio) must be >= 0, got {c}")
    return expected_tokens_per_step(alpha, k) / (k * c + 1)


def optimal_k(alpha: float, c: float, k_max: int = 64) -> int:
    """argmax_k S(alpha, k, c) over 0..k_max (0 = plain decoding; always 0 when alpha <= c)."""
    alpha = check_prob_scalar("alpha", alpha)
    check_int("k_max", k_max, 0)
    if not c >= 0:
        raise ValueError(f"c (draft/target cost ratio) must be >= 0, got {c}")
    if alpha <= c:
        return 0
    best, best_s = 0, 1.0
    for k in range(1, k_max + 1):
        s = speedup(alpha, k, c)
        if s > best_s + 1e-15:
            best, best_s = k, s
    return best


def expected_tokens_positional(accept: Sequence[float], k: int) -> float:
    """E[tokens per step] when draft position i is accepted with probability accept[i-1] given that
    positions 1..i-1 were: 1 + sum_j prod_{i<=j} accept[i-1]. Equals expected_tokens_per_step when
    every accept[i] = alpha (acceptance of real drafters is often bursty, e.g. prompt lookup)."""
    check_int("k", k, 0)
    if len(accept) < k:
        raise ValueError(f"accept must give at least k = {k} conditional acceptance rates, got {len(accept)}")
    total, run = 1.0, 1.0
    for i in range(k):
        run *= accept[i]
        total += run
    return total


def optimal_k_positional(accept: Sequence[float], c: float, k_max: int) -> int:
    """argmax_k expected_tokens_positional(accept, k) / (k c + 1) over 0..k_max (0 = plain decoding)."""
    best, best_s = 0, 1.0
    total, run = 1.0, 1.0
    for k in range(1, min(k_max, len(accept)) + 1):
        run *= accept[k - 1]
        total += run
        s = total / (k * c + 1)
        if s > best_s + 1e-15:
            best, best_s = k, s
    return best


def expected_target_calls(n_tokens: int, alpha: float, k: int) -> float:
    """Exact E[target calls to produce n_tokens]: E_n = 1 + sum_j P(G=j) E_{n-j}, E_m = 0 for m <= 0.

    Bounds: n / E[G] <= E_n <= (n + k) / E[G].
    """
    check_int("n_tokens", n_tokens, 0)
    dist = tokens_per_step_distribution(alpha, k)
    E = [0.0] * (n_tokens + 1)
    for n in range(1, n_tokens + 1):
        E[n] = 1 + sum(pj * E[n - j] for j, pj in enumerate(dist, start=1) if n - j > 0)
    return E[n_tokens]


# ---------------------------------------------------------------- SpecTr


def rho_star(p, q, K: int) -> float:
    """SpecTr rho* in [1, K]: 1 - (1 - beta(rho))^K = rho beta(rho), beta(rho) = sum min(q, p/rho)."""
    pt, qt = _as_tensor(p).reshape(1, -1), _as_tensor(q).reshape(1, -1)
    check_int("K", K, 1)
    return float(_rho(pt, qt, K)[0])


def spectr_acceptance(p, q, K: int) -> float:
    """P(one of K i.i.d. drafts is accepted) = 1 - (1 - beta(rho*))^K."""
    rho = rho_star(p, q, K)
    pt, qt = _as_tensor(p).reshape(1, -1), _as_tensor(q).reshape(1, -1)
    beta = float(spectr_beta(pt, qt, torch.tensor([rho], dtype=torch.float64))[0])
    return 1 - (1 - beta) ** K


def rrs_acceptance(p: Sequence[float], q: Sequence[float], m: int, replacement: bool = True) -> float:
    """P(recursive rejection sampling accepts one of m drafts from q), exact by enumeration (small V)."""
    check_int("m", m, 1)
    p, q = [float(v) for v in p], [float(v) for v in q]

    def run(rng):
        xs, s = [], list(q)
        for _ in range(m):
            x = rng.categorical(s)
            xs.append(x)
            if not replacement:
                s[x] = 0.0
                if sum(s) == 0:
                    break
        return rrs_select_ref(p, q, xs, rng, replacement)[1] >= 0

    return sum(w for accepted, w in enumerate_outcomes(run).items() if accepted)


def gumbel_acceptance(p, q) -> float:
    """P(Gumbel-coupled draft token == target token) = sum_x 1 / sum_y max(q_y/q_x, p_y/p_x) >= (1-TV)/(1+TV)."""
    p, q = [float(v) for v in p], [float(v) for v in q]
    return sum(gumbel_match_prob(p, q, x) for x in range(len(p)))


# ------------------------------------------------------ block verification


def block_expected_tokens(p: Sequence[float], q: Sequence[float], k: int) -> float:
    """Expected tokens per step of block verification when every position has the same p and q
    (context-independent model), exact by enumerating the V^k draft blocks."""
    check_int("k", k, 1)
    p, q = [float(v) for v in p], [float(v) for v in q]
    V = len(p)
    total = 0.0
    for xs in itertools.product(range(V), repeat=k):
        prob = 1.0
        for x in xs:
            prob *= q[x]
        if prob == 0:
            continue
        w = [1.0]
        for x in xs:
            w.append(min(1.0, w[-1] * p[x] / q[x]))
        h = []
        for i in range(1, k + 1):
            if i < k:
                Z = sum(max(0.0, w[i] * p[x] - q[x]) for x in range(V))
                den = Z + 1 - w[i]
                h.append(1.0 if den == 0 else Z / den)
            else:
                h.append(w[k])
        # tau = largest passing i: P(tau = i) = h_i prod_{j > i} (1 - h_j)
        e_tau, tail = 0.0, 1.0
        for i in range(k, 0, -1):
            e_tau += i * h[i - 1] * tail
            tail *= 1 - h[i - 1]
        total += prob * (e_tau + 1)
    return total


def tokenwise_expected_tokens(p, q, k: int) -> float:
    return expected_tokens_per_step(acceptance_rate(p, q), k)
