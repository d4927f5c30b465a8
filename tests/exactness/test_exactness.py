"""The exactness harness on every method, plus injected bugs it must catch."""

import pytest
import torch

from specdecode.core.enumerate import enumerate_outcomes
from specdecode.exactness import harness as H
from specdecode.exactness.mutants import mutants, run_mutant
from specdecode.verify import chain

METHODS = H.methods()


@pytest.mark.parametrize("method", METHODS, ids=[f"{m.name}[{m.impl}]" for m in METHODS])
def test_method_exact_on_suite(method):
    row = H.run_method(method)
    assert row.cases > 0
    if method.lossy:
        assert row.max_tv > 0.01, "the lossy method should visibly differ from the target"
    else:
        assert row.max_err < 1e-12, f"{method.name} [{method.impl}] error {row.max_err} at {row.worst_case}"


def test_fraction_models_are_exact_with_reference():
    method = next(m for m in METHODS if m.name == "tokenwise" and m.impl == "reference")
    cases = [c for c in H.chain_cases() if c.pair == "fractions"]
    for case in cases:
        out = H.n_token_distribution(method.step, case)
        tgt = H.target_distribution(case)
        assert out == tgt  # Fractions: identical, not just close


def test_enumerator_weights_sum_to_one():
    def fn(rng):
        a = rng.bernoulli(0.3)
        return (a, rng.categorical([1, 2, 0, 3]))

    d = enumerate_outcomes(fn)
    assert sum(d.values()) == pytest.approx(1)
    assert all(k[1] != 2 for k in d)  # zero-weight option never taken


@pytest.mark.parametrize("m", mutants(), ids=[m.name for m in mutants()])
def test_injected_bug_is_caught(m):
    row = run_mutant(m)
    assert row.caught and row.max_tv > 1e-3, f"harness missed: {m.name} (TV {row.max_tv})"


def _torch_tokenwise_rows():
    method = next(m for m in METHODS if m.name == "tokenwise" and m.impl == "torch")
    cases = [c for c in H.chain_cases(H.CHAIN_SIZES_FAST) if c.pair in ("random", "zeros in p and q")]
    return H.run_method(method, cases)


def test_harness_catches_bug_injected_into_torch_residual(monkeypatch):
    monkeypatch.setattr(chain, "residual", lambda p_sel, q_sel: p_sel)  # resample from p
    assert _torch_tokenwise_rows().max_err > 1e-3


def test_harness_catches_bug_injected_into_torch_ratio(monkeypatch):
    real = chain.accept_probability
    monkeypatch.setattr(chain, "accept_probability", lambda p_x, q_x: real(q_x, p_x))  # q/p
    assert _torch_tokenwise_rows().max_err > 1e-3


def test_harness_catches_block_weights_bug(monkeypatch):
    real = chain.block_weights

    def bad(p, q, x):
        w, h, qf = real(p, q, x)
        return torch.ones_like(w), h, qf  # token-wise residual inside block verification

    monkeypatch.setattr(chain, "block_weights", bad)
    method = next(m for m in METHODS if m.name == "block" and m.impl == "torch")
    cases = [c for c in H.chain_cases(H.CHAIN_SIZES_FAST) if c.pair in ("random", "zeros in p and q")]
    assert H.run_method(method, cases).max_err > 1e-4
