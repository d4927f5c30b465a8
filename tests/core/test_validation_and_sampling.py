import pytest
import torch

from specdecode.core.sampling import SamplingConfig, logits_to_probs, warp_logits
from specdecode.verify import (
    block_verify,
    greedy_verify,
    rrs_select,
    spectr_select,
    tokenwise_verify,
    verify_sequences,
    verify_tree,
)


def _ok(B=2, k=3, V=5):
    p = torch.full((B, k + 1, V), 1.0 / V)
    q = torch.full((B, k, V), 1.0 / V)
    x = torch.zeros(B, k, dtype=torch.long)
    return p, q, x


@pytest.mark.parametrize("fn", [tokenwise_verify, block_verify])
@pytest.mark.parametrize(
    "mutate,word",
    [
        (lambda p, q, x: (p, q, x[:, :0]), "k"),
        (lambda p, q, x: (p * -1, q, x), "p"),
        (lambda p, q, x: (p.clone().fill_(float("nan")), q, x), "p"),
        (lambda p, q, x: (p * 2, q, x), "p"),
        (lambda p, q, x: (p, q * 0.5, x), "q"),
        (lambda p, q, x: (p[:, :-1], q, x), "p"),
        (lambda p, q, x: (p, q[:, :-1], x), "q"),
        (lambda p, q, x: (p, q, x + 7), "draft_tokens"),
        (lambda p, q, x: (p, q, x[0]), "draft_tokens"),
    ],
)
def test_bad_chain_input(fn, mutate, word, gen):
    with pytest.raises(ValueError, match=word):
        fn(*mutate(*_ok()), gen)


def test_zero_q_for_draft_token_is_refused(gen):
    p, q, x = _ok()
    q = torch.zeros_like(q)
    q[..., 1] = 1
    with pytest.raises(ValueError, match="q"):
        tokenwise_verify(p, q, x, gen)


def test_bad_multidraft_input(gen):
    p = torch.full((1, 4), 0.25)
    with pytest.raises(ValueError, match="K"):
        spectr_select(p, p, torch.zeros(1, 0, dtype=torch.long), gen)
    with pytest.raises(ValueError, match="candidates"):
        rrs_select(p, p, torch.tensor([[9]]), gen)
    with pytest.raises(ValueError, match="K"):
        verify_sequences(
            torch.full((1, 0, 2, 4), 0.25), torch.full((1, 0, 1, 4), 0.25), torch.zeros(1, 0, 1, dtype=torch.long), gen
        )
    with pytest.raises(ValueError, match="parents"):
        verify_tree(torch.full((2, 4), 0.25), torch.full((2, 4), 0.25), torch.tensor([0, 0]), torch.tensor([0, 1]), gen)
    with pytest.raises(ValueError, match="method"):
        verify_tree(
            torch.full((2, 4), 0.25),
            torch.full((2, 4), 0.25),
            torch.tensor([-1, 0]),
            torch.tensor([0, 1]),
            gen,
            method="x",
        )


def test_generator_required(gen):
    p, q, x = _ok()
    with pytest.raises(TypeError, match="Generator"):
        tokenwise_verify(p, q, x, 123)


@pytest.mark.parametrize(
    "kw,word",
    [
        (dict(temperature=-0.1), "temperature"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.5), "top_p"),
        (dict(top_k=0), "top_k"),
        (dict(min_p=2.0), "min_p"),
    ],
)
def test_bad_sampling_config(kw, word):
    with pytest.raises(ValueError, match=word):
        SamplingConfig(**kw)


def test_warps():
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0, 0.0]])
    assert torch.equal(logits_to_probs(logits, SamplingConfig(0.0)), torch.tensor([[1.0, 0, 0, 0, 0]]))
    p = logits_to_probs(logits, SamplingConfig(1.0, top_k=2))
    assert (p[0, 2:] == 0).all() and p.sum() == pytest.approx(1)
    full = logits.softmax(-1)[0]
    p = logits_to_probs(logits, SamplingConfig(1.0, top_p=0.7))
    kept = (p[0] > 0).sum().item()
    srt = full.sort(descending=True).values
    assert srt[: kept - 1].sum() < 0.7 <= srt[:kept].sum() + 1e-7
    p = logits_to_probs(logits, SamplingConfig(1.0, min_p=0.3))
    assert ((p[0] > 0) == (full >= 0.3 * full.max())).all()
    t = logits_to_probs(logits, SamplingConfig(0.5))
    assert torch.allclose(t, (logits / 0.5).softmax(-1))
    assert torch.isinf(warp_logits(logits, SamplingConfig(1.0, top_k=1))).sum() == 4


def test_greedy_ties_lowest_index(gen):
    p = torch.tensor([[[0.4, 0.4, 0.2], [0.5, 0.5, 0.0]]])
    res = greedy_verify(p, None, torch.tensor([[1]]), gen)
    assert res.emitted(0) == [0]
