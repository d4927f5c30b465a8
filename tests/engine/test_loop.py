"""The one step loop: trees at batch > 1 with ragged rows, stops and streaming for trees, the method registry
deciding the children mode (and refusing mismatches), Gumbel noise keyed on the generator's state."""

import pytest
import torch

from specdecode.core.sampling import SamplingConfig, logits_to_probs
from specdecode.engine import (
    CausalLM,
    EagleDrafter,
    GenerationConfig,
    ModelDrafter,
    PromptLookupDrafter,
    SpeculativeGenerator,
    TreeShape,
)
from specdecode.exactness.montecarlo import compare_counts
from specdecode.models import ByteTokenizer, tiny_llama
from specdecode.verify import METHODS

GREEDY = SamplingConfig(0.0)
RAGGED = [[1, 2, 3, 4, 5, 1, 2, 3], [7, 8, 9], [10, 11, 12, 13, 14, 15, 16, 10, 11, 12, 13]]


@pytest.fixture(scope="module")
def target():
    return CausalLM(tiny_llama(1), name="t")


def _plain(target, prompts, n, cfg=GREEDY, seed=0):
    return (
        SpeculativeGenerator(target)
        .generate(prompts, GenerationConfig(max_new_tokens=n, k=0, sampling=cfg), torch.Generator().manual_seed(seed))
        .tokens
    )


def _tree_drafters():
    return {
        "model static:2,2,1": lambda: ModelDrafter(CausalLM(tiny_llama(2), name="d"), TreeShape.parse("static:2,2,1")),
        "model dynamic:7": lambda: ModelDrafter(CausalLM(tiny_llama(2), name="d"), TreeShape.parse("dynamic:7")),
        "self static:3,1,1": lambda: ModelDrafter(
            CausalLM(tiny_llama(1), name="self"), TreeShape.parse("static:3,1,1")
        ),
        "lookup:3": lambda: PromptLookupDrafter(matches=3),
    }


@pytest.mark.parametrize("name", list(_tree_drafters()))
@pytest.mark.parametrize("adaptive", [False, True])
def test_greedy_trees_at_batch_3_equal_plain(target, name, adaptive):
    """Ragged rows (prompts of 8, 3 and 11 tokens) grow and verify their trees in one pass per step."""
    want = _plain(target, RAGGED, 24)
    gen = SpeculativeGenerator(target, _tree_drafters()[name]())
    out = gen.generate(
        RAGGED,
        GenerationConfig(max_new_tokens=24, k=4, adaptive=adaptive, sampling=GREEDY),
        torch.Generator().manual_seed(0),
    )
    assert out.tokens == want and out.method == "greedy"
    if name.startswith("self") and not adaptive:  # the draft is the target: its main path is always accepted
        assert out.stats.tokens_per_target_call > 2.5
    assert out.stats.new_tokens == sum(len(t) for t in out.tokens)


V = 6
MC_PROMPTS = [[1, 2, 3, 1, 2], [4, 0], [5, 3, 1, 2, 4, 0, 1]]


def _exact_first_two(model, prompt, cfg):
    """The target's exact distribution of the first two tokens -> {(x, y): p}."""
    with torch.no_grad():
        p1 = logits_to_probs(model(torch.tensor([prompt])).logits[0, -1].double(), cfg)
        out = {}
        for x in range(V):
            p2 = logits_to_probs(model(torch.tensor([prompt + [x]])).logits[0, -1].double(), cfg)
            for y in range(V):
                out[(x, y)] = float(p1[x] * p2[y])
    return out


def _check_rows(target, tokens: list[list[int]], prompts: list[list[int]], cfg):
    """The first two tokens of each prompt's rows follow the target (support, chi-square p >= 1e-6, TV bound)."""
    for prompt in prompts:
        rows = [t[:2] for t, p in zip(tokens, prompts * (len(tokens) // len(prompts))) if p == prompt]
        exact = _exact_first_two(target.model, prompt, cfg)
        counts = torch.zeros(V * V)
        for x, y in rows:
            counts[x * V + y] += 1
        expected = torch.tensor([exact[(x, y)] for x in range(V) for y in range(V)])
        res = compare_counts(counts, expected)
        assert res.passed, (prompt, res)


@pytest.mark.parametrize("method,spec", [("spectr", "static:2,2"), ("rrs", "dynamic:5"), ("rrs-wor", "static:3,1")])
def test_sampled_trees_at_batch_3_follow_the_target(method, spec):
    """Monte Carlo over ragged rows: 3 prompts x 1500 rows in one batch; the children mode comes from the method."""
    cfg = SamplingConfig(1.0)
    target = CausalLM(tiny_llama(3, vocab_size=V), name="t")
    gen = SpeculativeGenerator(
        target, ModelDrafter(CausalLM(tiny_llama(4, vocab_size=V), name="d"), TreeShape.parse(spec))
    )
    prompts = MC_PROMPTS * 1500
    out = gen.generate(
        prompts, GenerationConfig(max_new_tokens=2, method=method, sampling=cfg), torch.Generator().manual_seed(7)
    )
    assert out.method == method and out.stats.proposed > out.stats.row_steps  # trees were drafted
    _check_rows(target, out.tokens, MC_PROMPTS, cfg)


def test_sampled_lookup_trees_at_batch_3_follow_the_target():
    cfg = SamplingConfig(1.0, top_p=0.9)
    target = CausalLM(tiny_llama(3, vocab_size=V), name="t")
    prompts = [[1, 2, 3, 1, 2, 4, 1, 2, 5, 0, 1, 2], [4, 0, 4, 1, 4], [5, 3, 5, 3, 5]] * 1500
    gen = SpeculativeGenerator(target, PromptLookupDrafter(matches=3))
    out = gen.generate(
        prompts, GenerationConfig(max_new_tokens=2, k=2, method="rrs", sampling=cfg), torch.Generator().manual_seed(3)
    )
    _check_rows(target, out.tokens, prompts[:3], cfg)


def test_batch_monte_carlo_catches_a_wrong_children_mode(monkeypatch):
    """The same check fails when rrs-wor children are drawn i.i.d. (the mismatch the registry makes impossible)."""
    from specdecode.engine.policy import RowPolicy

    real = RowPolicy.for_method

    def iid_always(method, *a, **kw):
        policy = real(method, *a, **kw)
        policy.children = "iid" if policy.children == "wor" else policy.children
        return policy

    monkeypatch.setattr(RowPolicy, "for_method", staticmethod(iid_always))
    with pytest.raises(AssertionError):
        test_sampled_trees_at_batch_3_follow_the_target("rrs-wor", "static:3,1")


def test_stop_strings_and_streaming_in_trees(target):
    tok = ByteTokenizer(96)
    want = _plain(target, RAGGED, 24)
    stop = tok.decode(want[0][3:5])
    streamed: dict = {}
    gen = SpeculativeGenerator(
        target, ModelDrafter(CausalLM(tiny_llama(1), name="self"), TreeShape.parse("static:2,2,2")), tok
    )
    out = gen.generate(
        RAGGED,
        GenerationConfig(max_new_tokens=24, sampling=GREEDY, stop_strings=(stop,)),
        torch.Generator().manual_seed(0),
        on_tokens=lambda row, toks, kinds: streamed.setdefault(row, []).extend(toks),
    )
    assert out.finish_reasons[0] == "stop"
    first = next(i for i in range(1, 25) if stop in tok.decode(want[0][:i]))
    assert out.tokens[0] == want[0][:first]  # cut exactly where plain decoding stops
    assert all(streamed[b] == out.tokens[b] for b in range(3))
    for b in (1, 2):  # the other rows go on to their own end
        assert out.tokens[b] == want[b][: len(out.tokens[b])]
    eos = want[2][6]
    out = gen.generate(
        RAGGED, GenerationConfig(max_new_tokens=24, sampling=GREEDY, eos_token_ids=(eos,)), torch.Generator()
    )
    assert out.tokens[2] == want[2][: want[2].index(eos) + 1] and out.finish_reasons[2] == "eos"


def test_stop_strings_cut_chains_where_plain_decoding_stops(target):
    """A step that accepts tokens past the stop string keeps none of them (issue I.1)."""
    tok = ByteTokenizer(96)
    want = _plain(target, [RAGGED[0]], 30)[0]
    self_draft = ModelDrafter(CausalLM(tiny_llama(1), name="self"))  # accepts everything: whole steps of 8
    for i in range(2, 20):
        stop = tok.decode(want[i - 1 : i])
        first = next(j for j in range(1, 31) if stop in tok.decode(want[:j]))
        out = SpeculativeGenerator(target, self_draft, tok).generate(
            [RAGGED[0]],
            GenerationConfig(max_new_tokens=30, k=8, sampling=GREEDY, stop_strings=(stop,)),
            torch.Generator(),
        )
        assert out.tokens[0] == want[:first], (i, stop)


def test_tree_depth_never_exceeds_the_tokens_left(target):
    """A deep tree shape drafts at most max_new_tokens - 1 levels (issue I.9)."""
    d = ModelDrafter(CausalLM(tiny_llama(2), name="d"), TreeShape.parse("static:" + ",".join(["1"] * 40)))
    out = SpeculativeGenerator(target, d).generate(
        [RAGGED[0]], GenerationConfig(max_new_tokens=8, sampling=GREEDY), torch.Generator()
    )
    assert len(out.stats.per_position_proposed) <= 7 and out.stats.proposed <= 7 * out.stats.row_steps


# ------------------------------------------------------------ the registry decides


def test_a_chain_method_with_a_tree_drafter_is_refused(target):
    gen = SpeculativeGenerator(target, ModelDrafter(CausalLM(tiny_llama(2), name="d"), TreeShape.parse("static:2,1")))
    for method in ("tokenwise", "block", "gumbel", "typical"):
        with pytest.raises(ValueError, match="trees"):
            gen.generate(
                [[1, 2, 3]],
                GenerationConfig(max_new_tokens=4, method=method, sampling=SamplingConfig(1.0)),
                torch.Generator(),
            )
    with pytest.raises(ValueError, match="temperature 0"):
        SpeculativeGenerator(target).generate(
            [[1, 2]], GenerationConfig(method="greedy", sampling=SamplingConfig(1.0)), torch.Generator()
        )


def test_children_mode_comes_from_the_method(target):
    """One drafter object, three methods: the engine's sampler draws the children each method needs."""
    d = ModelDrafter(CausalLM(tiny_llama(2), name="d"), TreeShape.parse("static:3"))
    seen = {}
    real = d.propose

    def spy(seqs, ks, sampler):
        seen[sampler.mode] = True
        return real(seqs, ks, sampler)

    d.propose = spy
    gen = SpeculativeGenerator(target, d)
    for method, mode in (("spectr", "iid"), ("rrs-wor", "wor"), (None, "iid")):
        gen.generate(
            [[1, 2, 3]],
            GenerationConfig(max_new_tokens=3, method=method, sampling=SamplingConfig(1.0)),
            torch.Generator(),
        )
        assert seen.pop(mode)
    gen.generate([[1, 2, 3]], GenerationConfig(max_new_tokens=3, method="rrs", sampling=GREEDY), torch.Generator())
    assert seen.pop("topm")


def test_every_registered_method_has_an_exactness_entry():
    """Adding a method to the registry without its exact-enumeration test fails here."""
    from specdecode.exactness import harness

    names = {m.name.split(" ")[0] for m in harness.methods()}
    for name, m in METHODS.items():
        assert name in names or (m.noise and "gumbel-coupled" in names), name
        assert m.chain is not None or m.tree is not None


# ------------------------------------------------------------------ Gumbel keys


def test_gumbel_noise_follows_the_generators_state(target):
    cfg = GenerationConfig(max_new_tokens=12, k=3, method="gumbel", sampling=SamplingConfig(1.0))
    gen = SpeculativeGenerator(target, PromptLookupDrafter())
    g = torch.Generator().manual_seed(5)
    first, second = gen.generate(RAGGED, cfg, g).tokens, gen.generate(RAGGED, cfg, g).tokens
    assert first != second  # one generator: fresh noise call after call
    again = gen.generate(RAGGED, cfg, torch.Generator().manual_seed(5)).tokens
    assert again == first  # a re-seeded generator repeats
    plain = (
        SpeculativeGenerator(target)
        .generate(
            RAGGED,
            GenerationConfig(max_new_tokens=12, k=0, method="gumbel", sampling=SamplingConfig(1.0)),
            torch.Generator().manual_seed(5),
        )
        .tokens
    )
    assert plain == first  # seeded speculative == seeded plain


def test_eagle_drafter_grows_chains_and_trees_with_one_loop(target):
    from specdecode.models.eagle import EagleHead

    head = EagleHead(target.model, torch.arange(target.vocab_size))
    want = _plain(target, [RAGGED[0]], 16)
    for shape in (None, TreeShape.parse("static:2,2"), TreeShape.parse("dynamic:6")):
        out = SpeculativeGenerator(target, EagleDrafter(target, head, shape)).generate(
            [RAGGED[0]], GenerationConfig(max_new_tokens=16, k=3, sampling=GREEDY), torch.Generator()
        )
        assert out.tokens == want
    target.record_features = False
