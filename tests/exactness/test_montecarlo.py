"""Monte-Carlo chi-square / TV tests of the batched torch implementations."""

import pytest
import torch

from specdecode.core.rng import TorchRNG
from specdecode.exactness import harness as H
from specdecode.exactness import montecarlo as MC
from specdecode.exactness.models import model_pairs
from specdecode.verify import (
    CounterGumbel,
    block_verify,
    greedy_verify,
    gumbel_sample,
    gumbel_verify,
    rrs_select,
    spectr_select,
    tokenwise_verify,
    typical_verify,
    verify_sequences,
)


def _case(pair_index, V=3, k=3, N=3):
    name, t, d = model_pairs(V)[pair_index]
    return H.Case(name, t, d, V, k, N)


@pytest.mark.parametrize("fn", [tokenwise_verify, block_verify], ids=["tokenwise", "block"])
@pytest.mark.parametrize("pair", [0, 1, 6, 7], ids=["random", "zeros", "top-k", "top-p"])
def test_chain_methods_chi_square(fn, pair):
    case = _case(pair)
    s = MC.sample_first_n(fn, case, 60_000, torch.Generator().manual_seed(7))
    r = MC.chi_square_tv(s, case)
    assert r.passed, r


def test_deterministic_drafter_chi_square():
    V = 3
    _, t, _ = model_pairs(V)[0]
    case = H.Case("det", t, H.DeterministicDrafter(V, 3), V, 3, 3)
    r = MC.chi_square_tv(MC.sample_first_n(tokenwise_verify, case, 60_000, torch.Generator().manual_seed(8)), case)
    assert r.passed, r


def test_greedy_is_deterministic_argmax_chain():
    case = _case(0)
    s = MC.sample_first_n(greedy_verify, case, 200, torch.Generator().manual_seed(1))
    r = MC.chi_square_tv(s, case, greedy=True)
    assert r.support_ok and r.tv < 1e-12


def test_typical_acceptance_is_detected_as_lossy():
    case = _case(0)
    r = MC.chi_square_tv(MC.sample_first_n(typical_verify, case, 60_000, torch.Generator().manual_seed(2)), case)
    assert not r.passed


def test_reseeding_inside_the_loop_is_caught():
    good, bad = MC.reseeding_bug_check(tokenwise_verify, _case(0, k=2), n_samples=20_000)
    assert good.passed and not bad.passed


@pytest.mark.parametrize("method", ["spectr", "rrs", "rrs-wor"])
def test_select_chi_square(method):
    V, K, n = 5, 3, 100_000
    g = torch.Generator().manual_seed(3)
    p = torch.tensor([0.4, 0.3, 0.2, 0.1, 0.0], dtype=torch.float64)
    q = torch.tensor([0.1, 0.1, 0.2, 0.3, 0.3], dtype=torch.float64)
    rng = TorchRNG(g)
    if method == "rrs-wor":
        keys = torch.log(q) - torch.log(-torch.log(torch.rand(n, V, generator=g, dtype=torch.float64)))
        cands = keys.topk(K, -1).indices  # Gumbel-top-K: without replacement, in sampling order
        tok, _ = rrs_select(p.expand(n, V), q.expand(n, V), cands, g, replacement=False)
    else:
        cands = rng.categorical(q.expand(n, K, V))
        fn = spectr_select if method == "spectr" else rrs_select
        tok, _ = fn(p.expand(n, V), q.expand(n, V), cands, g)
    counts = torch.bincount(tok, minlength=V).double()
    assert counts[4] == 0  # support
    tv = 0.5 * (counts / n - p).abs().sum()
    assert tv < 0.5 * (3 / n) ** 0.5 + (13.8 / (2 * n)) ** 0.5


def test_sequences_chi_square():
    V, K, L, n = 3, 2, 2, 6_000
    name, t, d = model_pairs(V)[0]
    g = torch.Generator().manual_seed(4)
    rng = TorchRNG(g)
    P = MC.ContextTable(t, V, L + 1)
    Q = MC.ContextTable(d, V, L + 1)
    ctx = torch.zeros(n, K, dtype=torch.long)
    drafts, qs, ps = [], [], [P.probs[ctx]]
    for _ in range(L):
        q = Q.probs[ctx]
        x = rng.categorical(q)
        drafts.append(x)
        qs.append(q)
        ctx = P.child[ctx, x]
        ps.append(P.probs[ctx])
    res = verify_sequences(
        torch.stack(ps, 2), torch.stack(qs, 2), torch.stack(drafts, 2), g, method="spectr", validate=False
    )
    first = res.tokens[:, 0]
    p0 = torch.tensor(t.probs(()), dtype=torch.float64)
    tv = 0.5 * (torch.bincount(first, minlength=V).double() / n - p0).abs().sum()
    assert tv < 0.5 * (2 / n) ** 0.5 + (13.8 / (2 * n)) ** 0.5


def test_gumbel_seeded_speculative_equals_seeded_plain():
    V, k, N = 4, 3, 12
    name, t, d = model_pairs(V)[0]
    P = lambda ctx: torch.tensor(t.probs(tuple(ctx)), dtype=torch.float64)  # noqa: E731
    Q = lambda ctx: torch.tensor(d.probs(tuple(ctx)), dtype=torch.float64)  # noqa: E731
    for seed in range(5):
        noise = CounterGumbel(seed)
        plain = []
        for pos in range(N):
            plain.append(int(gumbel_sample(P(plain), noise.noise([0], torch.tensor([[pos]]), V)[0, 0])))
        spec = []
        while len(spec) < N:
            pos = len(spec)
            g = noise.noise([0], torch.arange(pos, pos + k + 1)[None], V)  # [1, k+1, V]
            xs = []
            for i in range(k):
                xs.append(int(gumbel_sample(Q(spec + xs), g[0, i])))
            p = torch.stack([P(spec + xs[:i]) for i in range(k + 1)])[None]
            spec += gumbel_verify(p, None, torch.tensor([xs]), g).emitted(0)
        assert spec[:N] == plain


def test_gumbel_max_samples_follow_p():
    V, n = 4, 20_000
    p = torch.tensor([0.5, 0.25, 0.2, 0.05], dtype=torch.float64)
    noise = CounterGumbel(11).noise(list(range(n)), torch.zeros(n, 1, dtype=torch.long), V)[:, 0]
    counts = torch.bincount(gumbel_sample(p.expand(n, V), noise), minlength=V).double()
    assert 0.5 * (counts / n - p).abs().sum() < 0.5 * (3 / n) ** 0.5 + (13.8 / (2 * n)) ** 0.5
