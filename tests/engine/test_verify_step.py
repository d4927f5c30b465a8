"""The engine's greedy fast path (argmax ids fetched once, drafts walked in Python) against the registry's torch
greedy methods, its reference; and which logits fail a row (``step._node_tops``)."""

import pytest
import torch

from specdecode.core.rng import TorchRNG
from specdecode.core.sampling import SamplingConfig, greedy_ids
from specdecode.engine.drafts import DraftTree
from specdecode.engine.policy import RowPolicy
from specdecode.engine.step import _greedy_checked, _node_tops
from specdecode.engine.verify_step import verify_rows
from specdecode.verify import greedy_tree_verify, greedy_verify
from specdecode.verify.registry import METHODS

V = 6


def _policy() -> RowPolicy:
    return RowPolicy.for_method(METHODS["greedy"], SamplingConfig(0.0), TorchRNG(torch.Generator()))


def _tree(gen: torch.Generator) -> DraftTree:
    """A random tree of 1-7 nodes (a chain about half the time) with small tokens, so drafts often match."""
    n = int(torch.randint(1, 8, (1,), generator=gen))
    if torch.rand(1, generator=gen) < 0.5:
        return DraftTree.chain(0, torch.randint(0, 3, (n - 1,), generator=gen).tolist())
    parents = [-1] + [int(torch.randint(0, i, (1,), generator=gen)) for i in range(1, n)]
    return DraftTree([0] + torch.randint(0, 3, (n - 1,), generator=gen).tolist(), parents)


@pytest.mark.parametrize("seed", range(40))
def test_greedy_fast_path_equals_the_registry_methods(seed):
    gen = torch.Generator().manual_seed(seed)
    trees = [_tree(gen) for _ in range(3)]
    n_max = max(len(t.tokens) for t in trees)
    logits = torch.randint(0, 3, (3, n_max, V), generator=gen).float()  # many ties: the lowest index wins
    got = verify_rows(logits, trees, [_policy()] * 3, [[1, 2]] * 3)
    assert got == verify_rows(logits, trees, [_policy()] * 3, [[1, 2]] * 3, greedy_ids(logits))  # ids passed in
    for b, (tree, res) in enumerate(zip(trees, got)):
        n = len(tree.tokens)
        if tree.size == 0:  # plain decoding: the argmax (torch's, lowest index on ties)
            want_tokens, want_path = [int(logits[b, 0].argmax())], []
        elif tree.is_chain:
            ref = greedy_verify(logits[b : b + 1, :n], None, torch.tensor([tree.tokens[1:]]))
            want_tokens, want_path = ref.emitted(0), list(range(1, int(ref.num_accepted[0]) + 1))
        else:
            ref = greedy_tree_verify(logits[b, :n], None, torch.tensor(tree.parents), torch.tensor(tree.tokens))
            want_tokens, want_path = ref.tokens, ref.path
        assert (res.tokens, res.accepted) == (want_tokens, want_path)


def test_greedy_ids_take_the_lowest_index_on_ties_on_every_dtype():
    x = torch.tensor([[0.5, 2.0, 2.0, 1.0], [3.0, 3.0, 0.0, 0.0]])
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        assert greedy_ids(x.to(dtype)) == [1, 0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])  # numpy, torch
def test_bad_rows_are_nan_positive_inf_or_all_minus_inf(dtype):
    logits = torch.zeros(5, 2, V, dtype=dtype)
    logits[0, 0, 1] = float("-inf")  # some -inf: probability 0, fine
    logits[1, 1, 2] = float("nan")
    logits[2, 0, 3] = float("inf")
    logits[3, 1] = float("-inf")  # nothing left to choose
    logits[4, 1, 0] = float("nan")  # past the row's fed positions: not read
    assert _node_tops(logits, [2, 2, 2, 2, 1])[1] == [1, 2, 3]
    assert _greedy_checked(logits, [2, 2, 2, 2, 1]) == (greedy_ids(logits), [1, 2, 3])  # the greedy step's check


def test_a_row_with_an_unclear_cut_takes_hf_steps_alone_and_draws_what_the_dense_path_draws(monkeypatch):
    """Sampled rows verified together: one row whose top-k cut is a tie gets HF's steps for itself only (one row of
    logits through the vocabulary-wide warpers, not the batch), and every row's token equals the dense path's under
    the same seed (plain rows and one-hot chains)."""
    import specdecode.core.sampling as sampling

    cfg = SamplingConfig(0.9, top_k=3, top_p=0.95)
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 3, 400, generator=gen) * 3
    logits[2, 0] = -5.0
    logits[2, 0, :8] = torch.tensor([9.0, 7.0, 5.0, 5.0, 5.0, 1.0, 1.0, 0.0])  # the 3rd largest ties two others
    trees = [DraftTree.chain(0, []), DraftTree.chain(0, [5, 9]), DraftTree.chain(0, []), DraftTree.chain(0, [1])]
    dense_calls = []
    real = sampling.dense_probs

    def spy(x, c, by_value=False, checked=False):
        dense_calls.append(tuple(x.shape))
        return real(x, c, by_value, checked)

    monkeypatch.setattr(sampling, "dense_probs", spy)
    for seed in range(60):
        pol = RowPolicy.for_method(METHODS["tokenwise"], cfg, TorchRNG(torch.Generator().manual_seed(seed)))
        got = verify_rows(logits, trees, [pol] * 4, [[1, 2]] * 4)
        assert dense_calls == [(1, 400)] * (seed + 1)  # row 2's one node alone
        for b, (tree, res) in enumerate(zip(trees, got)):  # the dense path, row by row in the same order
            if b == 0:
                rng = TorchRNG(torch.Generator().manual_seed(seed))
            p = real(logits[b, : tree.size + 1], cfg)
            if tree.size == 0:
                want = [int(rng.categorical(p[:1])[0])]
            else:
                want = METHODS["tokenwise"].chain(p[None], None, torch.tensor([tree.tokens[1:]]), rng).emitted(0)
            assert res.tokens == want, (seed, b)
