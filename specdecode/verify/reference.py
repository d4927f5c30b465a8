"""Slow scalar reference implementations of every verification method.

Written line by line from docs (the math in ``verification-math.md``), on plain Python
lists of floats or ``fractions.Fraction`` (exact zeros, exact results), with randomness
only through ``rng.bernoulli(a)`` and ``rng.categorical(w)``. They are the ground truth
the fast batched torch implementations are tested against; they are not meant to be fast
and do no input validation.

Distributions are lists indexed by token. ``ps[i]`` is p at draft position i (``ps[k]``
is the bonus position), ``qs[i]`` the draft distribution at position i (None = one-hot
drafts).
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction


def _pos(v):
    return v if v > 0 else 0 * v


def residual_ref(p, q):
    r = [_pos(pi - qi) for pi, qi in zip(p, q)]
    return r if sum(r) > 0 else list(p)  # fallback p, never uniform


def onehot(x, V, one=1):
    return [one if i == x else 0 * one for i in range(V)]


def tokenwise_ref(ps, qs, xs, rng):
    V = len(ps[0])
    for i, x in enumerate(xs):
        q = onehot(x, V) if qs is None else qs[i]
        if rng.bernoulli(min(1, ps[i][x] / q[x])):
            continue
        return list(xs[:i]) + [rng.categorical(residual_ref(ps[i], q))]  # recovered token
    return list(xs) + [rng.categorical(ps[len(xs)])]  # bonus token


def argmax_ref(p):
    best = 0
    for i, v in enumerate(p):
        if v > p[best]:
            best = i
    return best


def greedy_ref(ps, xs):
    for i, x in enumerate(xs):
        if x != argmax_ref(ps[i]):
            return list(xs[:i]) + [argmax_ref(ps[i])]
    return list(xs) + [argmax_ref(ps[len(xs)])]


def block_weights_ref(ps, qs, xs):
    """w_0 = 1; w_i = min(1, w_{i-1} p_i(x_i) / q_i(x_i))."""
    w = [1]
    for i, x in enumerate(xs):
        w.append(min(1, w[-1] * ps[i][x] / qs[i][x]))
    return w


def block_h_ref(ps, qs, w, i, k):
    """h_i = Z_i / (Z_i + 1 - w_i) with Z_i = sum_x (w_i p_{i+1} - q_{i+1})_+ (1 if 0/0); h_k = w_k."""
    if i == k:
        return w[k]
    Z = sum(_pos(w[i] * pv - qv) for pv, qv in zip(ps[i], qs[i]))
    den = Z + 1 - w[i]
    return 1 if den == 0 else Z / den


def block_ref(ps, qs, xs, rng):
    k, V = len(xs), len(ps[0])
    qs = [onehot(x, V) for x in xs] if qs is None else qs
    w = block_weights_ref(ps, qs, xs)
    tau = 0
    for i in range(1, k + 1):
        if rng.bernoulli(block_h_ref(ps, qs, w, i, k)):
            tau = i  # the LARGEST passing i: do not stop at the first failure
    if tau == k:
        return list(xs) + [rng.categorical(ps[k])]
    r = [_pos(w[tau] * pv - qv) for pv, qv in zip(ps[tau], qs[tau])]
    return list(xs[:tau]) + [rng.categorical(r if sum(r) > 0 else ps[tau])]


def typical_ref(ps, xs, rng, eps=0.09, delta=0.3):
    for i, x in enumerate(xs):
        H = -sum(float(v) * math.log(float(v)) for v in ps[i] if v > 0)
        if not float(ps[i][x]) > min(eps, delta * math.exp(-H)):
            return list(xs[:i]) + [rng.categorical(ps[i])]
    return list(xs) + [rng.categorical(ps[len(xs)])]


# ------------------------------------------------------------ multi-draft


def spectr_beta_ref(p, q, rho):
    return sum(min(qi, pi / rho) for pi, qi in zip(p, q))


def rho_star_ref(p, q, K, iters=200):
    if K == 1:
        return 1
    return _rho_star_floats(tuple(float(v) for v in p), tuple(float(v) for v in q), K, iters)


@functools.lru_cache(maxsize=4096)
def _rho_star_floats(pf, qf, K, iters):
    lo, hi = 1.0, float(K)
    for _ in range(iters):
        mid = (lo + hi) / 2
        b = spectr_beta_ref(pf, qf, mid)
        if 1 - (1 - b) ** K - mid * b > 0:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-13:
            break
    return hi  # upper bracket: any rho >= rho* is valid


def spectr_select_ref(p, q, xs, rng, rho=None):
    """K-SEQ over candidates xs (i.i.d. from q, sampling order). Returns (token, accepted index or -1)."""
    K = len(xs)
    rho = rho_star_ref(p, q, K) if rho is None else rho
    if isinstance(p[0], Fraction) and not isinstance(rho, Fraction):
        rho = Fraction(rho)
    for j, x in enumerate(xs):
        if rng.bernoulli(min(1, p[x] / (rho * q[x]))):
            return x, j
    beta = spectr_beta_ref(p, q, rho)
    if beta == 0:
        return rng.categorical(p), -1
    c = (1 - (1 - beta) ** K) / beta
    r = [_pos(pi - min(qi, pi / rho) * c) for pi, qi in zip(p, q)]
    return rng.categorical(r if sum(r) > 0 else p), -1


def _normalise(v):
    s = sum(v)
    return [x / s for x in v]


def rrs_select_ref(p, q, xs, rng, replacement=True):
    """Recursive rejection sampling over candidates xs. q: one distribution, or a list per
    candidate. Returns (token, accepted index or -1)."""
    per_cand = isinstance(q[0], (list, tuple))
    r, s = list(p), (None if per_cand else list(q))
    for j, x in enumerate(xs):
        sj = q[j] if per_cand else s
        if rng.bernoulli(min(1, r[x] / sj[x])):
            return x, j
        nr = [_pos(ri - si) for ri, si in zip(r, sj)]
        r = _normalise(nr) if sum(nr) > 0 else r
        if not replacement:
            s = list(s)
            s[x] = 0 * s[x]
            s = _normalise(s) if sum(s) > 0 else s
    return rng.categorical(r), -1


def tree_ref(p_at, q_at, children, tokens, rng, method="spectr"):
    """Generic frontier walker. p_at(n) / q_at(n): distributions at node n; children[n]: child ids
    in sampling order; tokens[n]: token of node n. Returns (emitted tokens, accepted path)."""
    select = {
        "spectr": lambda p, q, xs: spectr_select_ref(p, q, xs, rng),
        "rrs": lambda p, q, xs: rrs_select_ref(p, q, xs, rng, True),
        "rrs-wor": lambda p, q, xs: rrs_select_ref(p, q, xs, rng, False),
        # q_at None: deterministic distinct children, one-hot q per candidate
        "deterministic": lambda p, q, xs: rrs_select_ref(
            p, [[1 if i == x else 0 for i in range(len(p))] for x in xs], xs, rng, True
        ),
    }["deterministic" if q_at is None else method]
    frontier, out, path = [0], [], []
    while True:
        node = frontier[0]
        cands = [c for n in frontier for c in children[n]]
        if not cands:
            out.append(rng.categorical(p_at(node)))
            return out, path
        y, _ = select(p_at(node), None if q_at is None else q_at(node), [tokens[c] for c in cands])
        out.append(y)
        frontier = [c for c in cands if tokens[c] == y]
        if not frontier:
            return out, path
        path.append(frontier[0])


# --------------------------------------------------------------- Gumbel


def gumbel_match_prob(p, q, x):
    """P(argmax(log q + g) = argmax(log p + g) = x) for i.i.d. Gumbel g: 1 / sum_y max(q_y/q_x, p_y/p_x)."""
    if not (p[x] > 0 and q[x] > 0):
        return 0 * p[x]
    return 1 / sum(max(qy / q[x], py / p[x]) for py, qy in zip(p, q))


def gumbel_ref(p_at, q_at, k, rng):
    """Gumbel-coupled step, with the coupling drawn exactly: at each position the pair
    (target token b, whether the draft's token equals b) is one categorical draw over 2V
    cells with weights P(match, b) = gumbel_match_prob and P(mismatch, b) = p_b - that."""
    out = []
    for _ in range(k):
        p, q = p_at(out), q_at(out)
        V = len(p)
        both = [gumbel_match_prob(p, q, b) for b in range(V)]
        cell = rng.categorical(both + [_pos(p[b] - both[b]) for b in range(V)])
        out.append(cell % V)
        if cell >= V:
            return out  # target and draft disagree: the target's token ends the step
    out.append(rng.categorical(p_at(out)))  # bonus
    return out
