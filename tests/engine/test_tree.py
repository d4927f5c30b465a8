"""Tree speculation in the engine: tree attention, greedy equality, Monte Carlo exactness, bad input."""

import pytest
import torch

from specdecode.core.rng import TorchRNG
from specdecode.core.sampling import SamplingConfig, logits_to_probs
from specdecode.engine import (
    CausalLM,
    DraftSampler,
    EagleDrafter,
    GenerationConfig,
    ModelDrafter,
    PromptLookupDrafter,
    SpeculativeGenerator,
    TreeShape,
)
from specdecode.models import tiny_llama as _tiny_llama

GREEDY = SamplingConfig(0.0)
PROMPT = [1, 2, 3, 4, 5, 1, 2, 3]


@pytest.fixture(scope="module")
def target():
    return CausalLM(_tiny_llama(1), name="t")


def test_tree_attention_matches_sequential_forward(target):
    target.reset(1)
    target.extend([PROMPT[:-1]])
    # root = last prompt token; two branches: [7, 8] and [9]
    logits = target.extend_tree([[PROMPT[-1], 7, 9, 8]], [[-1, 0, 0, 1]])[0]
    ref = CausalLM(_tiny_llama(1), name="ref")
    for path, node in [([7], 1), ([9], 2), ([7, 8], 3)]:
        ref.reset(1)
        want = ref.extend([PROMPT + path])[0, -1]
        assert torch.allclose(logits[node], want, atol=1e-4)
    target.keep_paths([[0, 1, 3]])  # keep root, 7, 8
    assert target.lengths == [len(PROMPT) + 2]
    nxt = target.extend([[5]])[0, -1]
    ref.reset(1)
    assert torch.allclose(nxt, ref.extend([PROMPT + [7, 8, 5]])[0, -1], atol=1e-4)


def run_tree(gen, prompt, n, cfg, g, method=None, k=4):
    return gen.generate([prompt], GenerationConfig(max_new_tokens=n, k=k, method=method, sampling=cfg), g)


def _plain(target, n=24):
    return (
        SpeculativeGenerator(target)
        .generate([PROMPT], GenerationConfig(max_new_tokens=n, k=0, sampling=GREEDY), torch.Generator())
        .tokens[0]
    )


@pytest.mark.parametrize("spec", ["static:2,2,1", "static:3", "static:1,1,1,1", "dynamic:12"])
@pytest.mark.parametrize("draft_seed", [1, 2])
def test_greedy_tree_equals_plain(target, spec, draft_seed):
    d = CausalLM(_tiny_llama(draft_seed), name="d")
    gen = SpeculativeGenerator(target, ModelDrafter(d, TreeShape.parse(spec)))
    out = run_tree(gen, PROMPT, 24, GREEDY, torch.Generator().manual_seed(0), "spectr")
    assert out.tokens[0] == _plain(target)
    if draft_seed == 1:  # the draft is the target: every path node is accepted
        assert out.stats.tokens_per_target_call > 1.5


V = 6


@pytest.mark.parametrize("method,spec", [("spectr", "static:3,1"), ("rrs", "static:2,2"), ("rrs-wor", "dynamic:5")])
def test_tree_sampling_first_tokens_follow_target(method, spec):
    cfg = SamplingConfig(1.0)
    target = CausalLM(_tiny_llama(3, vocab_size=V), name="t")
    d = CausalLM(_tiny_llama(4, vocab_size=V), name="d")
    gen = SpeculativeGenerator(target, ModelDrafter(d, TreeShape.parse(spec)))  # children mode: from the method
    _assert_first_two_tokens_follow_target(gen, target, [1, 2, 3, 1, 2], cfg, method)


def _assert_first_two_tokens_follow_target(gen, target, prompt, cfg, method=None, n=1500, k=4):
    """TV between the engine's first two tokens (n runs) and the exact target distribution, within a bound."""
    g = torch.Generator().manual_seed(5)
    counts: dict = {}
    for _ in range(n):
        toks = tuple(run_tree(gen, prompt, 2, cfg, g, method, k).tokens[0][:2])
        counts[toks] = counts.get(toks, 0) + 1
    with torch.no_grad():
        p1 = logits_to_probs(target.model(torch.tensor([prompt])).logits[0, -1].double(), cfg)
        exact = {}
        for x in range(V):
            p2 = logits_to_probs(target.model(torch.tensor([prompt + [x]])).logits[0, -1].double(), cfg)
            for y in range(V):
                exact[(x, y)] = float(p1[x] * p2[y])
    tv = 0.5 * sum(abs(counts.get(s, 0) / n - w) for s, w in exact.items())
    bound = 0.5 * ((len(exact) - 1) / n) ** 0.5 + (13.8 / (2 * n)) ** 0.5
    assert tv <= bound, (tv, bound)


LOOKUP_PROMPT = [1, 2, 3, 1, 2, 4, 1, 2, 5, 0, 1, 2]  # "1 2" was followed by 3, 4 and 5: three distinct branches


def test_prefix_tree_merges_shared_prefixes():
    from specdecode.engine import prefix_tree

    assert prefix_tree(9, [[1, 2], [1, 3], [4]]) == ([9, 1, 2, 3, 4], [-1, 0, 1, 1, 0])
    d = PromptLookupDrafter(matches=3)
    assert d.continuations(LOOKUP_PROMPT, 2) == [[5, 0], [4, 1], [3, 1]]
    tree = d.propose([LOOKUP_PROMPT], [2])[0]
    assert tree.q is None and tree.depth == 2 and tree.tokens[1:4] == [5, 0, 4]
    assert PromptLookupDrafter(matches=2).continuations([7, 8, 9], 3) == []


def test_deterministic_tree_needs_distinct_siblings():
    from specdecode.verify import verify_tree

    p = torch.full((3, 4), 0.25, dtype=torch.float64)
    with pytest.raises(ValueError, match="distinct"):
        verify_tree(p, None, torch.tensor([-1, 0, 0]), torch.tensor([0, 2, 2]), torch.Generator())


@pytest.mark.parametrize("matches,length", [(1, 4), (3, 2), (4, 6)])
def test_greedy_lookup_tree_equals_plain(target, matches, length):
    gen = SpeculativeGenerator(target, PromptLookupDrafter(matches=matches))
    out = run_tree(gen, PROMPT, 24, GREEDY, torch.Generator().manual_seed(0), "rrs", k=length)
    assert out.tokens[0] == _plain(target)


def test_lookup_tree_sampling_first_tokens_follow_target():
    cfg = SamplingConfig(1.0)
    target = CausalLM(_tiny_llama(3, vocab_size=V), name="t")
    gen = SpeculativeGenerator(target, PromptLookupDrafter(matches=3))
    _assert_first_two_tokens_follow_target(gen, target, LOOKUP_PROMPT, cfg, "rrs", k=2)


@pytest.mark.parametrize(
    "spec,word",
    [
        ("static:2,0", "branching"),
        ("static:", "branching"),
        ("dynamic:0", "budget"),
        ("dynamic:x", "budget"),
        ("cone:3", "static"),
        ("static:64,64", "1024"),
    ],
)
def test_bad_tree_specs(spec, word):
    with pytest.raises(ValueError, match=word):
        TreeShape.parse(spec)


def test_tree_larger_than_context():
    small = CausalLM(_tiny_llama(1), name="t")  # context 512
    d = CausalLM(_tiny_llama(2), name="d")
    gen = SpeculativeGenerator(small, ModelDrafter(d, TreeShape.parse("static:32,16")))  # 544 nodes
    with pytest.raises(ValueError, match="context"):
        run_tree(gen, PROMPT, 8, GREEDY, torch.Generator())


def test_get_k_candidates_iid_sequences():
    from specdecode.analysis.candidates import get_k_candidates

    d = CausalLM(_tiny_llama(2), name="d")
    ids, probs = get_k_candidates(
        d, PROMPT, k=3, K=4, cfg=SamplingConfig(1.0), generator=torch.Generator().manual_seed(0)
    )
    assert len(ids) == 4 and all(len(c) == 3 for c in ids) and probs[0].shape == (3, d.vocab_size)
    ref = CausalLM(_tiny_llama(2), name="ref")
    for chain, q in zip(ids, probs):  # each q is the draft's warped distribution along that chain
        ref.reset(1)
        logits = ref.extend([PROMPT + chain[:-1]])[0, -3:]
        assert torch.allclose(q, logits_to_probs(logits, SamplingConfig(1.0)), atol=1e-5)
        assert all(q[i, t] > 0 for i, t in enumerate(chain))
    with pytest.raises(ValueError, match="K"):
        get_k_candidates(d, PROMPT, k=3, K=0, cfg=SamplingConfig(1.0), generator=torch.Generator())
    # seed 003's observation: at T = 0 the K i.i.d. drafts are all the same greedy chain
    ids, _ = get_k_candidates(d, PROMPT, k=3, K=3, cfg=GREEDY, generator=torch.Generator().manual_seed(0))
    assert ids[0] == ids[1] == ids[2]


def test_early_exit_model_shares_weights_and_matches_shared_cache_drafter():
    from specdecode.engine import EarlyExitDrafter
    from specdecode.models.early_exit import early_exit_model

    m = _tiny_llama(1, layers=3)
    ee = early_exit_model(m, 2)
    assert ee.model.layers[0] is m.model.layers[0] and ee.lm_head is m.lm_head
    t = CausalLM(m, name="t")
    cfg = GenerationConfig(max_new_tokens=16, k=3, sampling=GREEDY)
    a = SpeculativeGenerator(t, EarlyExitDrafter(t, 2)).generate([PROMPT], cfg, torch.Generator())
    b = SpeculativeGenerator(t, ModelDrafter(CausalLM(ee, name="ee"))).generate([PROMPT], cfg, torch.Generator())
    assert a.tokens == b.tokens and a.stats.accepted == b.stats.accepted
    with pytest.raises(ValueError, match="early-exit"):
        early_exit_model(m, 3)


def test_tree_cli_with_early_exit(capsys):
    import json

    from specdecode.cli import main

    assert (
        main(
            [
                "generate",
                "--model",
                "tiny-llama",
                "--drafter",
                "early-exit:1",
                "--tree",
                "static:2,1",
                "--max-new-tokens",
                "6",
                "--no-chat",
                "--json",
                "hello",
            ]
        )
        == 0
    )
    rec = json.loads(capsys.readouterr().out)
    assert len(rec["outputs"][0]["tokens"]) == 6


# ------------------------------------------------------------------ EAGLE-head trees


def _eagle(target):
    from specdecode.models.eagle import EagleHead

    torch.manual_seed(0)
    head = EagleHead(target.model, torch.arange(target.vocab_size))
    with torch.no_grad():  # a random (untrained) head that is not degenerate
        for p in head.fc.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return head


def test_tree_pass_keeps_the_accepted_paths_hidden_states(target):
    target.record_features = True
    try:
        target.reset(1)
        target.extend([PROMPT[:-1]])
        target.extend_tree([[PROMPT[-1], 7, 9, 8]], [[-1, 0, 0, 1]])
        target.keep_paths([[0, 1, 3]])  # root, 7, 8
        with torch.no_grad():
            want = target.model(torch.tensor([PROMPT + [7, 8]]), output_hidden_states=True).hidden_states[-1][0]
        assert target.features[0].shape[0] == target.lengths[0] == len(PROMPT) + 2
        assert torch.allclose(target.features[0], want, atol=1e-4)
    finally:
        target.record_features = False


class ForcedSampler(DraftSampler):
    """Draws the given tokens (by draft position) instead of sampling: replays a tree path as a chain."""

    def __init__(self, cfg, tokens):
        super().__init__(cfg, "sample", TorchRNG(torch.Generator()))
        self.tokens = tokens

    def draw(self, q, rows, offsets):
        return [self.tokens[o] for o in offsets]


def test_eagle_tree_q_matches_the_chain_drafter(target):
    """Every node's q from the head's tree-attention passes == the chain EagleDrafter's q along that node's path."""
    head, cfg = _eagle(target), SamplingConfig(1.0)
    target.record_features = True
    try:
        target.reset(1)
        target.extend([PROMPT[:-1]])
        drafter = EagleDrafter(target, head, TreeShape.parse("static:2,2,1"))
        drafter.begin([PROMPT])
        tree = drafter.propose([PROMPT], [3], DraftSampler(cfg, "wor", TorchRNG(torch.Generator().manual_seed(1))))[0]
        kids = [[c for c, par in enumerate(tree.parents) if par == n] for n in range(len(tree.tokens))]
        for leaf in (n for n in range(len(tree.tokens)) if not kids[n]):
            path = []
            while leaf > 0:
                path.insert(0, leaf)
                leaf = tree.parents[leaf]
            chain = EagleDrafter(target, head)
            chain.begin([PROMPT])
            prop = chain.propose([PROMPT], [len(path)], ForcedSampler(cfg, [tree.tokens[n] for n in path]))[0]
            assert prop.tokens[1:] == [tree.tokens[n] for n in path]
            for i, n in enumerate([0] + path[:-1]):
                assert torch.allclose(tree.q[n].float(), prop.q[i].float(), atol=1e-5), (path, i)
    finally:
        target.record_features = False


@pytest.mark.parametrize("spec", ["static:2,2,1", "dynamic:6"])
def test_greedy_eagle_tree_equals_plain(target, spec):
    gen = SpeculativeGenerator(target, EagleDrafter(target, _eagle(target), TreeShape.parse(spec)))
    try:
        out = run_tree(gen, PROMPT, 24, GREEDY, torch.Generator().manual_seed(0), "spectr")
    finally:
        target.record_features = False
    assert out.tokens[0] == _plain(target)


@pytest.mark.parametrize("method,spec", [("spectr", "static:3,1"), ("rrs-wor", "dynamic:5")])
def test_eagle_tree_sampling_first_tokens_follow_target(method, spec):
    cfg = SamplingConfig(1.0)
    target = CausalLM(_tiny_llama(3, vocab_size=V), name="t")
    gen = SpeculativeGenerator(target, EagleDrafter(target, _eagle(target), TreeShape.parse(spec)))
    _assert_first_two_tokens_follow_target(gen, target, [1, 2, 3, 1, 2], cfg, method)


def test_greedy_trees_branch(target):
    """At T = 0 the children are the draft's distinct top-m tokens (the warped q is one-hot: ranking by it would
    leave one child per node), for draft models and EAGLE heads, static and dynamic shapes."""
    target.record_features = True
    try:
        for spec, nodes in (("static:3,2", 1 + 3 + 6), ("dynamic:6", 1 + 6)):
            shape = TreeShape.parse(spec)
            for drafter in (
                ModelDrafter(CausalLM(_tiny_llama(2), name="d"), shape),
                EagleDrafter(target, _eagle(target), shape),
            ):
                target.reset(1)
                target.extend([PROMPT[:-1]])
                drafter.begin([PROMPT])
                tree = drafter.propose(
                    [PROMPT], [shape.depth], DraftSampler(GREEDY, "topm", TorchRNG(torch.Generator()))
                )[0]
                assert len(tree.tokens) == nodes, (spec, type(drafter).__name__)
                kids = [[tree.tokens[c] for c, par in enumerate(tree.parents) if par == n] for n in range(nodes)]
                assert all(len(set(k)) == len(k) for k in kids) and len(kids[0]) >= 2
    finally:
        target.record_features = False
