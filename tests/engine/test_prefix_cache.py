"""The llama.cpp backend's prompt-prefix cache (engine.prefix_cache): greedy output equal to a backend without it,
prompts reused across requests and batches, entries dropped when cells or sequence ids run short (small contexts,
wide trees), a failed backend forgets them."""

import pytest
import torch

pytest.importorskip("llama_cpp")

from specdecode.core.sampling import SamplingConfig  # noqa: E402
from specdecode.engine import GenerationConfig, ModelDrafter, SpeculativeGenerator, TreeShape  # noqa: E402
from specdecode.engine.llama_cpp import LlamaCppLM  # noqa: E402
from specdecode.engine.prefix_cache import MIN_REUSE, PrefixCache  # noqa: E402
from specdecode.models.gguf import gguf_path  # noqa: E402

SHARED = list(range(10, 60))  # a 50-token prefix every prompt starts with
PROMPTS = [SHARED + [1, 2, 3], SHARED + [4, 5], SHARED + [6, 7, 8, 9], [3, 2, 1] + SHARED]


def lm(prefix_slots=8, **kw):
    return LlamaCppLM(str(gguf_path("tiny-llama:1")), prefix_slots=prefix_slots, **kw)


def run(target, prompts, drafter=None, tree=None, n=12, batch=False):
    gen = SpeculativeGenerator(target, ModelDrafter(lm(), TreeShape.parse(tree)) if tree else drafter)
    cfg = GenerationConfig(max_new_tokens=n, k=3, sampling=SamplingConfig(0.0))
    if batch:
        return gen.generate(prompts, cfg, torch.Generator()).tokens
    return [gen.generate([p], cfg, torch.Generator()).tokens[0] for p in prompts]


def test_greedy_output_is_the_same_with_and_without_the_cache():
    cached, bare = lm(), lm(prefix_slots=0)
    want = run(bare, PROMPTS)
    assert run(cached, PROMPTS) == want
    assert cached.prefix.reused >= 2 * len(SHARED) and bare.prefix.reused == 0
    assert run(cached, PROMPTS[:3], batch=True) == run(bare, PROMPTS[:3], batch=True)  # rows of one batch


def test_entries_leave_when_the_cache_runs_short_of_cells():
    small = lm(n_ctx=256)
    prompts = [[7 + i] + SHARED * 2 for i in range(6)]  # 101-token prompts: two fit next to one running row
    assert run(small, prompts, n=20) == run(lm(prefix_slots=0, n_ctx=256), prompts, n=20)
    assert len(small.prefix.entries) <= 2 and small.prefix.cells <= small.n_ctx  # 6 prompts of 101 tokens left


def test_entries_leave_when_tree_paths_need_their_sequence_ids():
    """Evictions leave holes that later tokens fill, below a reused prefix: llama.cpp then sums the row's cells in
    another order and its logits move (~1e-3; a tiny random model's near-ties may break differently). Checked
    here: the trees run, kept prompts give way to their paths, and the first pass equals a bare backend's."""
    few = lm(max_seqs=8)  # 7 rows or tree paths at once
    want = run(lm(prefix_slots=0, max_seqs=8), PROMPTS, tree="static:3,2")
    assert run(few, PROMPTS, tree="static:3,2") == want
    again = run(few, PROMPTS, tree="static:3,2")  # with prompts kept from the first pass, evicted as paths need ids
    assert [len(t) for t in again] == [len(t) for t in want] and few.prefix.reused > 3 * len(SHARED)


def test_cell_order_moves_llama_cpp_logits():
    """Why the cache is off by default outside the server: the same tokens at the same positions, their cells in
    another order, give other logits."""
    t, p = lm(prefix_slots=0), PROMPTS[2]
    t.reset(1)
    t.extend([p[:30]], need_logits=False)
    fresh = t.extend([p[30:]])[0, -1].clone()
    t.reset(2)
    t.extend([[5] * 40, p[:30]], need_logits=False)  # a 40-cell hole below the prefix, then the rest into it
    t.remove_rows([1])
    moved = t.extend([p[30:]])[0, -1]
    assert 0 < (fresh - moved).abs().max() < 0.05


def test_a_backend_error_forgets_the_kept_prompts():
    target = lm()
    run(target, PROMPTS[:2])
    assert target.prefix.entries
    target.forget_prefixes()
    assert not target.prefix.entries
    target.reset(1)
    assert run(target, PROMPTS[:1]) == run(lm(prefix_slots=0), PROMPTS[:1])


def test_prefix_cache_bookkeeping():
    cache = PrefixCache(2)
    assert cache.add(5, list(range(20))) == []
    assert cache.add(6, [1] * 20) == []
    assert cache.add(7, list(range(30))) == [5]  # least recently used first
    entry, n = cache.best(list(range(25)) + [99])
    assert entry.seq == 7 and n == 25 and cache.entries[-1] is entry
    assert cache.best([2] * 30) == (None, 0)
    assert cache.best([1] * (MIN_REUSE - 1)) == (None, 0)  # too short to be worth a copy
    assert cache.evict() == [6] and cache.cells == 30
