"""The sparse warping (``core.warpers``) keeps exactly the tokens Hugging Face's warpers keep, with their
probabilities; unclear cuts go to HF's own steps; draws from it are the dense draws."""

import numpy as np
import pytest
import torch
from transformers.generation.logits_process import MinPLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

import specdecode.core.sampling as sampling
import specdecode.core.warpers as warpers
from specdecode.core.rng import TorchRNG
from specdecode.core.sampling import SamplingConfig, logits_to_probs, sample_sparse, sparse_warp, warp_logits

V = 3000


def sample_rows(logits, cfg, rng) -> list[int]:
    """One token a row, as the engine draws a plain sampled row (``engine.verify_step``)."""
    return [sample_sparse(row, rng) for row in sparse_warp(logits, cfg)]


def _hf_probs(logits: torch.Tensor, cfg: SamplingConfig) -> torch.Tensor:
    x = (logits / cfg.temperature).reshape(-1, logits.shape[-1])
    if cfg.top_k is not None:
        x = TopKLogitsWarper(cfg.top_k)(None, x)
    if cfg.top_p is not None:
        x = TopPLogitsWarper(cfg.top_p)(None, x)
    if cfg.min_p is not None:
        x = MinPLogitsWarper(cfg.min_p)(None, x)
    return x.reshape(logits.shape).softmax(-1)


def _cases(g: torch.Generator) -> list[torch.Tensor]:
    """Language-model-like rows (a few likely tokens over a long tail), flat rows, rows of many exact ties, rows
    with removed (-inf) tokens, float64, and a [B, n, V] batch."""
    peaked = torch.randn(4, V, generator=g) * 2
    peaked[:, :20] += torch.linspace(12, 4, 20)
    flat = torch.randn(2, V, generator=g) * 0.3
    ties = torch.randint(0, 5, (3, 400), generator=g).float()
    masked = torch.randn(2, V, generator=g).double() * 3
    masked[:, ::3] = float("-inf")
    few = torch.full((1, V), float("-inf"))
    few[0, :7] = torch.tensor([3.0, 2.5, 2.0, 1.0, 0.5, 0.2, 0.1])
    return [peaked, flat, ties, masked, few, peaked.reshape(2, 2, V)]


SETTINGS = [
    SamplingConfig(T, top_k=k, top_p=p, min_p=m)
    for T in (0.7, 1.3)
    for k in (None, 1, 40)
    for p in (None, 0.5, 0.95)
    for m in (None, 0.05)
    if (k, p, m) != (None, None, None)
]


@pytest.mark.parametrize("cfg", SETTINGS, ids=lambda c: c.describe())
def test_the_sparse_warping_keeps_hugging_faces_tokens_and_probabilities(cfg):
    g = torch.Generator().manual_seed(0)
    for logits in _cases(g):
        ours, hf = logits_to_probs(logits, cfg), _hf_probs(logits, cfg)
        assert ours.shape == hf.shape and ours.dtype == logits.dtype
        assert torch.equal(ours > 0, hf > 0)
        assert torch.allclose(ours, hf, atol=1e-6, rtol=1e-5)
        assert torch.equal(warp_logits(logits, cfg).softmax(-1) > 0, hf > 0)  # the reference, the same


def test_clear_cuts_take_the_sparse_path_and_unclear_ones_hf_steps(monkeypatch):
    answers = []
    real = sampling.sparse_rows

    def spy(*args):
        answers.append(real(*args) is not None)
        return real(*args)

    monkeypatch.setattr(sampling, "sparse_rows", spy)
    peaked = torch.tensor([[5.0, 3.0, 1.0, 0.0, -1.0] + [-4.0] * 300])
    cfg = SamplingConfig(1.0, top_p=0.9)
    assert torch.equal(logits_to_probs(peaked, cfg) > 0, _hf_probs(peaked, cfg) > 0)
    uniform = torch.zeros(1, 4)  # cumulative 0.25, 0.5, ...: the cut falls exactly on 1 - top_p
    cfg = SamplingConfig(1.0, top_p=0.5)
    assert torch.equal(logits_to_probs(uniform, cfg) > 0, _hf_probs(uniform, cfg) > 0)
    tie = torch.tensor([[4.0, 2.0, 2.0, 2.0] + [-9.0] * 100])  # the k-th largest ties a token outside the k
    cfg = SamplingConfig(1.0, top_k=2)
    assert torch.equal(logits_to_probs(tie, cfg) > 0, _hf_probs(tie, cfg) > 0)
    assert answers == [True, False, False]


@pytest.mark.parametrize("cfg", [SamplingConfig(1.0, top_k=5), SamplingConfig(1.0, top_p=0.9)])
def test_bad_logits_fail_on_the_sparse_path_as_on_the_dense_one(cfg):
    for bad, word in ((float("nan"), "NaN"), (float("inf"), "inf")):
        x = torch.randn(2, 50)
        x[1, 7] = bad
        with pytest.raises(ValueError, match=word):
            logits_to_probs(x, cfg)
    with pytest.raises(ValueError, match="-inf"):
        logits_to_probs(torch.full((1, 50), float("-inf")), cfg)


@pytest.mark.parametrize("cfg", [SamplingConfig(0.9, top_k=30, top_p=0.9), SamplingConfig(1.0, min_p=0.1)])
def test_sample_rows_draws_what_the_dense_draw_draws(cfg):
    """Same generator state: the token of the inverse CDF over the candidates is the one over the vocabulary."""
    g = torch.Generator().manual_seed(1)
    logits = _cases(g)[0]
    for seed in range(200):
        ours = sample_rows(logits, cfg, torch.Generator().manual_seed(seed))
        dense = TorchRNG(torch.Generator().manual_seed(seed)).categorical(logits_to_probs(logits, cfg).double())
        assert ours == dense.tolist()


def test_sample_rows_follows_the_warped_distribution():
    logits = torch.tensor([[2.0, 1.5, 1.0, 0.0, -3.0] + [-6.0] * 60])
    cfg = SamplingConfig(0.8, top_k=4, top_p=0.9)
    p = _hf_probs(logits, cfg)[0]
    g = torch.Generator().manual_seed(0)
    n = 20000
    counts = torch.bincount(torch.tensor([sample_rows(logits, cfg, g)[0] for _ in range(n)]), minlength=p.numel())
    se = (p * (1 - p) / n).sqrt()
    assert ((counts / n - p).abs() <= 5 * se + 1e-9).all()


def test_half_precision_logits_take_hf_steps():
    """numpy has no bfloat16: such logits (an HF bf16 model's own dtype) keep the dense path, as before."""
    x = torch.randn(2, 300, generator=torch.Generator().manual_seed(2)).bfloat16()
    cfg = SamplingConfig(0.8, top_k=20, top_p=0.9)
    assert sampling.sparse_warp(x, cfg) is None
    assert torch.equal(logits_to_probs(x, cfg) > 0, _hf_probs(x, cfg) > 0)


@pytest.mark.parametrize("cfg", [c for c in SETTINGS if c.top_p is not None], ids=lambda c: c.describe())
def test_the_top_p_cut_read_by_value_is_hf_sorts_bit_for_bit(cfg, monkeypatch):
    """HF's steps with numpy's sort of the values for the top-p cut (``dense_rows``' ``by_value``) give the very
    probabilities of HF's steps with torch's sort, and a cut between tied values goes to torch's sort."""
    calls = []
    real = sampling._top_p_removed_by_value
    monkeypatch.setattr(sampling, "_top_p_removed_by_value", lambda x, p: calls.append(real(x, p)) or calls[-1])
    g = torch.Generator().manual_seed(3)
    for logits in _cases(g):
        assert torch.equal(sampling.dense_probs(logits, cfg, by_value=True), sampling.dense_probs(logits, cfg))
    uniform = torch.zeros(1, 40)  # every value ties: the cut falls between tied tokens
    assert torch.equal(sampling.dense_probs(uniform, cfg, by_value=True), sampling.dense_probs(uniform, cfg))
    assert calls[-1] is None and any(c is not None for c in calls)


@pytest.mark.parametrize("cfg", SETTINGS, ids=lambda c: c.describe())
def test_the_python_cut_of_a_few_candidates_equals_numpys(cfg, monkeypatch):
    """``warpers._cut_small`` (Python floats, at most ``SMALL`` candidates) against ``_cut`` on numpy (the
    reference, forced by SMALL = 0): the same rows answered, the same tokens, probabilities within 1e-12."""
    g = torch.Generator().manual_seed(4)
    rows = [*_cases(g), torch.randn(6, 200, generator=g).double() * 4]
    fast = [sparse_warp(x, cfg) for x in rows]
    monkeypatch.setattr(warpers, "SMALL", 0)
    answered = 0
    for x, got in zip(rows, fast):
        want = sparse_warp(x, cfg)
        assert (got is None) == (want is None)
        for (p, ids), (p_ref, ids_ref) in zip(got or [], want or []):
            assert p.dtype == p_ref.dtype == np.float64 and ids.dtype == ids_ref.dtype == np.int64
            assert np.array_equal(ids, ids_ref) and np.allclose(p, p_ref, rtol=0, atol=1e-12)
            answered += 1
    assert answered > 0


def test_draw_index_is_the_numpy_inverse_cdf_draw():
    """``TorchRNG.draw_index`` in Python: the uniform of ``torch.rand(1)`` and the index numpy's cumsum and
    searchsorted give, the top cell when rounding puts u above every sum, and the same generator state after."""
    gen = np.random.default_rng(5)
    for trial in range(300):
        w = gen.random(int(gen.integers(1, 60))) * (gen.random(1) < 0.5)
        w[int(gen.integers(0, len(w)))] += 0.1  # a positive cell
        if trial % 7 == 0:
            w = np.concatenate([w, np.zeros(3)])  # zero cells at the end
        ours, ref = torch.Generator().manual_seed(trial), torch.Generator().manual_seed(trial)
        got = TorchRNG(ours).draw_index(w)
        cum = np.cumsum(w, dtype=np.float64)
        u = float(torch.rand(1, generator=ref, dtype=torch.float64)) * cum[-1]
        want = int(np.searchsorted(cum, u, side="right"))
        assert got == (want if want < len(w) else int(np.flatnonzero(w > 0)[-1]))
        assert torch.equal(ours.get_state(), ref.get_state())
    one = np.array([0.0, 1.0, 0.0])
    assert TorchRNG(torch.Generator().manual_seed(0)).draw_index(one) == 1


def test_one_row_categorical_is_the_batched_inverse_cdf_draw():
    """A one-row ``categorical`` on the CPU draws through numpy: the same token as the batched torch path (the
    uniform of ``torch.rand``, searchsorted over the float64 cumulative sums), the same generator state after,
    for [V] and [1, V] weights in float32 and float64."""
    g = torch.Generator().manual_seed(6)
    for trial in range(200):
        w = torch.rand(300, generator=g) * (torch.rand(300, generator=g) < 0.3)
        w[int(torch.randint(0, 300, (1,), generator=g))] = 0.5
        w = w.double() if trial % 2 else w
        shape = (1, 300) if trial % 3 else (300,)
        ours, ref = torch.Generator().manual_seed(trial), torch.Generator().manual_seed(trial)
        got = TorchRNG(ours).categorical(w.reshape(shape))
        cum = w.reshape(1, -1).cumsum(-1, dtype=torch.float64)
        u = torch.rand(1, 1, generator=ref, dtype=torch.float64) * cum[:, -1:]
        want = torch.searchsorted(cum, u, right=True).reshape(shape[:-1])
        assert got.shape == want.shape and got.dtype == torch.long and torch.equal(got, want)
        assert torch.equal(ours.get_state(), ref.get_state())


def test_a_uniform_rounded_to_the_top_draws_the_last_positive_cell(monkeypatch):
    """u * total at the very top of the sums (float rounding): the one-row draws give the last positive cell, not
    a zero cell after it (as the batched path does)."""
    monkeypatch.setattr(TorchRNG, "_uniform", lambda self: 1.0)
    rng = TorchRNG(torch.Generator().manual_seed(0))
    w = torch.tensor([0.2, 0.0, 0.5, 0.3, 0.0, 0.0])
    assert int(rng.categorical(w)) == 3
    assert rng.draw_index(w.double().numpy()) == 3
