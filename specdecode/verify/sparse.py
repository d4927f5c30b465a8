"""Token-wise verification of a deterministic draft chain (q one-hot: prompt lookup, suffix drafts) on sparse
target distributions: each position's warped p given as the few tokens it can emit and their probabilities
(``core.sampling.sparse_warp``: top-k, top-p or min-p leave tens of tokens of a 49k vocabulary).

The same rule and the same calls on the RNG as ``chain.tokenwise_verify`` with q = None: one ``bernoulli`` over the
k draft tokens' probabilities (accept x_i with probability p_i(x_i)), then one ``categorical`` over the final
distribution: after a rejection at i, p_i with x_i removed (the residual (p - q)_+ of a one-hot q, p_i itself when
that is empty); after k acceptances, the bonus p_k. Drawn over the sparse tokens in token order, it is the same
draw as over the vocabulary (the other cells are 0): tested token for token against the dense function, and
exact by enumeration in the exactness harness.

Not here: the dense methods (``chain``), how the engine finds the sparse distributions (``engine.verify_step``).
"""

from __future__ import annotations

import numpy as np
import torch

from ..core.rng import as_rng
from ..core.sampling import sample_sparse
from .types import prefix


def tokenwise_sparse(dists: list, drafts: list[int], rng) -> tuple[int, list[int]]:
    """dists: k+1 pairs (probs float64 [m], ids int64 [m] in ascending order): p at each draft position and the
    bonus position; drafts: the k draft tokens; rng: a torch.Generator or an RNG object -> (accepted count, emitted
    tokens: the accepted drafts, then one recovered or bonus token)."""
    rng = as_rng(rng)
    k = len(drafts)
    n = 0
    if k:
        p_x = torch.tensor([[_prob_at(d, x) for d, x in zip(dists, drafts)]], dtype=torch.float64, device="cpu")
        n = int(prefix(rng.bernoulli(p_x.clamp(max=1))).sum())
    probs, ids = dists[n]
    if n < k:
        probs = residual(probs, ids, drafts[n])
    return n, list(drafts[:n]) + [sample_sparse((probs, ids), rng)]


def residual(probs: np.ndarray, ids: np.ndarray, token: int) -> np.ndarray:
    """(p - onehot(token))_+ unnormalised: p without the rejected draft token; p itself if nothing is left."""
    rest = np.where(ids == token, 0.0, probs)
    return rest if rest.sum() > 0 else probs


def _prob_at(dist: tuple, token: int) -> float:
    probs, ids = dist
    at = np.searchsorted(ids, token)
    return float(probs[at]) if at < len(ids) and ids[at] == token else 0.0
