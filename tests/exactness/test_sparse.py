"""The engine's sparse token-wise verification (one-hot drafts, p on a few tokens): the same draws as the dense
``tokenwise_verify`` under one seed, exact by enumeration (the suite entry runs in test_exactness), and the harness
catches a bug injected into it."""

import numpy as np
import torch

from specdecode.exactness import harness as H
from specdecode.verify import sparse, tokenwise_verify


def _dense(dists, V: int) -> torch.Tensor:
    p = torch.zeros(1, len(dists), V, dtype=torch.float64)
    for i, (probs, ids) in enumerate(dists):
        p[0, i, torch.from_numpy(ids)] = torch.from_numpy(probs)
    return p


def test_sparse_tokenwise_draws_what_the_dense_function_draws():
    g = np.random.default_rng(0)
    V, k = 50, 4
    for seed in range(300):
        dists = []
        for _ in range(k + 1):
            ids = np.sort(g.choice(V, size=int(g.integers(1, 8)), replace=False)).astype(np.int64)
            w = g.random(len(ids)) ** 3
            dists.append((w / w.sum(), ids))
        drafts = [int(d[1][g.integers(len(d[1]))]) if g.random() < 0.8 else int(g.integers(V)) for d in dists[:k]]
        n, tokens = sparse.tokenwise_sparse(dists, drafts, torch.Generator().manual_seed(seed))
        dense = tokenwise_verify(_dense(dists, V), None, torch.tensor([drafts]), torch.Generator().manual_seed(seed))
        assert (n, tokens) == (int(dense.num_accepted[0]), dense.emitted(0))


def _sparse_entry():
    return next(m for m in H.methods() if m.impl == "sparse")


def test_the_harness_catches_a_residual_that_keeps_the_rejected_draft(monkeypatch):
    monkeypatch.setattr(sparse, "residual", lambda probs, ids, token: probs)
    assert H.run_method(_sparse_entry()).max_err > 1e-3


def test_the_harness_catches_a_wrong_acceptance_probability(monkeypatch):
    real = sparse._prob_at
    monkeypatch.setattr(sparse, "_prob_at", lambda dist, token: real(dist, token) ** 2)
    assert H.run_method(_sparse_entry()).max_err > 1e-3
