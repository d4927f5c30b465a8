"""The suffix drafter: greedy output equal to plain decoding, sampled output following the target's distribution
whatever the shared corpus holds (it changes between calls here), the corpus cap and its eviction, the isolation
switch, both stores (ours and arctic-inference's) and the index against the slow n-gram scan it replaced."""

import importlib.util
import random

import pytest
import torch
from test_tree import V, _assert_first_two_tokens_follow_target, _tiny_llama

from specdecode.core.sampling import SamplingConfig
from specdecode.engine import CausalLM, GenerationConfig, PromptLookupDrafter, SpeculativeGenerator, SuffixDrafter
from specdecode.engine.drafters import ngram_continuations
from specdecode.engine.drafters.suffix import TokenIndex
from specdecode.models import tiny_llama

GREEDY = SamplingConfig(0.0)
STORES = ["python"] + (["arctic"] if importlib.util.find_spec("arctic_inference") else [])
PROMPTS = [[1, 2, 3, 4, 5, 1, 2, 3], [7, 8, 9, 7, 8], [10, 11, 12, 13, 10, 11]]


@pytest.fixture(scope="module")
def target():
    return CausalLM(tiny_llama(1))


def _plain(target, prompts, n=24):
    gen = SpeculativeGenerator(target, PromptLookupDrafter())
    return gen.generate(prompts, GenerationConfig(max_new_tokens=n, k=0, sampling=GREEDY), torch.Generator()).tokens


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("branches", [1, 3])
@pytest.mark.parametrize("adaptive", [False, True])
def test_greedy_suffix_equals_plain_across_calls(target, store, branches, adaptive):
    gen = SpeculativeGenerator(target, SuffixDrafter(branches=branches, store=store))
    cfg = GenerationConfig(max_new_tokens=24, k=6, adaptive=adaptive, sampling=GREEDY)
    want = _plain(target, PROMPTS)
    for _ in range(3):  # the corpus grows with every call: drafts change, outputs must not
        assert gen.generate(PROMPTS, cfg, torch.Generator()).tokens == want
    assert gen.drafter.corpus_size > 0


@pytest.mark.parametrize("store", STORES)
def test_a_repeated_request_drafts_from_the_corpus(target, store):
    """The second run of a prompt copies its earlier output from the corpus: long accepted drafts; with the corpus
    off (isolation) it cannot."""
    prompt = [[40, 41, 42]]
    cfg = GenerationConfig(max_new_tokens=30, k=8, sampling=GREEDY)
    rates = {}
    for corpus in (65536, 0):
        gen = SpeculativeGenerator(target, SuffixDrafter(corpus_tokens=corpus, store=store))
        first = gen.generate(prompt, cfg, torch.Generator())
        again = gen.generate(prompt, cfg, torch.Generator())
        assert again.tokens == first.tokens
        rates[corpus] = again.stats.tokens_per_target_call
        assert gen.drafter.corpus_size == (0 if corpus == 0 else 60)
    assert rates[65536] > 3 * rates[0], rates


@pytest.mark.parametrize("store", STORES)
def test_corpus_cap_evicts_the_oldest_outputs(store):
    d = SuffixDrafter(corpus_tokens=100, store=store)
    for i in range(10):
        d.add_rows([[1, 2]])
        out = [1000 * (i + 1) + j for j in range(30)]
        d.propose([[1, 2] + out], [4])
        d.remove_rows([])
        assert d.corpus_size <= 100
    d.add_rows([[5]])
    newest = d.propose([[5, 10000, 10001, 10002]], [4])[0]
    oldest = d.propose([[5, 1000, 1001, 1002]], [4])[0]
    assert newest.tokens[1:] == [10003, 10004, 10005]  # the latest output is still there ...
    assert oldest.size == 0  # ... the first one was evicted


@pytest.mark.parametrize("store", STORES)
def test_isolated_rows_never_see_each_other(store):
    d = SuffixDrafter(shared=False, store=store)
    d.begin([[1, 2], [3, 4]])
    d.propose([[1, 2, 50, 51, 52, 53], [3, 4]], [0, 0])
    d.remove_rows([1])
    d.add_rows([[50]])
    tree = d.propose([[3, 4, 50, 51], [50, 51]], [4, 4])
    assert tree[0].size == 0 and tree[1].size == 0 and d.corpus_size == 0


def test_sampled_suffix_chains_and_trees_follow_the_target():
    """First two tokens at T = 1 against the exact target distribution, the corpus changing with every call."""
    cfg = SamplingConfig(1.0)
    target = CausalLM(_tiny_llama(3, vocab_size=V), name="t")
    for branches, method in ((1, "tokenwise"), (3, "rrs")):
        gen = SpeculativeGenerator(target, SuffixDrafter(branches=branches, store="python"))
        _assert_first_two_tokens_follow_target(gen, target, [1, 2, 3, 1, 2], cfg, method, n=1200, k=3)
        assert gen.drafter.corpus_size > 0


def test_index_candidates_agree_with_the_ngram_scan():
    """The bigram / unigram index finds the occurrences the slow scan (``ngram_continuations``) finds."""
    rng = random.Random(0)
    for _ in range(200):
        seq = [rng.randrange(4) for _ in range(rng.randrange(2, 40))]
        slow = next(((n, c) for n, c in ngram_continuations(seq, 5, 3)), None)
        fast = PromptLookupDrafter().occurrences(_index(seq), 5)
        if slow is None:
            assert fast == ([], 0)
        else:
            assert fast[0][0] == slow[1] and min(fast[1], 3) == slow[0], (seq, slow, fast)


def _index(seq):
    index = TokenIndex()
    index.extend(seq)
    return index


def test_bad_suffix_arguments():
    for kwargs, word in (({"corpus_tokens": -1}, "corpus"), ({"branches": 0}, "branches"), ({"store": "x"}, "store")):
        with pytest.raises(ValueError, match=word):
            SuffixDrafter(**kwargs)


def test_the_adaptive_lookup_policy_repeats_under_a_seed(target, tmp_path):
    """Sampled, adaptive, drafts priced by match length: two fresh generators given the same cost file and seed
    choose the same depths and emit the same tokens."""
    cfg = GenerationConfig(
        max_new_tokens=40, k=8, adaptive=True, sampling=SamplingConfig(0.8), costs=str(tmp_path / "costs.json")
    )
    runs = []
    for _ in range(2):
        gen = SpeculativeGenerator(target, SuffixDrafter(store="python"))
        outs = [gen.generate(PROMPTS, cfg, torch.Generator().manual_seed(7)) for _ in range(2)]
        runs.append([(o.tokens, o.stats.target_calls, o.stats.proposed, o.stats.k_history) for o in outs])
    assert runs[0] == runs[1]


def test_what_a_request_learned_about_match_lengths_prices_the_next_one(target):
    gen = SpeculativeGenerator(target, SuffixDrafter(store="python"))
    assert sum(gen.lookup.chk) == 0
    gen.generate(PROMPTS, GenerationConfig(max_new_tokens=30, k=8, adaptive=True, sampling=GREEDY), torch.Generator())
    assert sum(gen.lookup.chk) > 0  # handed back when the requests left
    session = gen.open()
    cfg = GenerationConfig(max_new_tokens=4, k=8, adaptive=True, sampling=GREEDY)
    greedy = session.admit(PROMPTS[0], cfg, torch.Generator())
    assert greedy.policy.adaptive.matches == gen.lookup and greedy.policy.adaptive.matches is not gen.lookup
    sampled = GenerationConfig(max_new_tokens=4, k=8, adaptive=True, sampling=SamplingConfig(0.8))
    assert sum(session.admit(PROMPTS[0], sampled, torch.Generator()).policy.adaptive.matches.chk) == 0  # the prior
