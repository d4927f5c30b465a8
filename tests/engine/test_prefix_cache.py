"""The llama.cpp backend's prompt-prefix cache (engine.prefix_cache): greedy output equal to a backend without it,
prompts reused across requests and batches, kept prompts hold no cells of the KV cache (they live in host memory),
a full cache falls back to prefilling, a failed backend forgets them."""

import numpy as np
import pytest
import torch

llama_cpp = pytest.importorskip("llama_cpp")

from specdecode.core.sampling import SamplingConfig  # noqa: E402
from specdecode.engine import GenerationConfig, ModelDrafter, SpeculativeGenerator, TreeShape  # noqa: E402
from specdecode.engine.llama_cpp import LlamaCppLM  # noqa: E402
from specdecode.engine.prefix_cache import MIN_REUSE, PrefixCache  # noqa: E402
from specdecode.models.gguf import gguf_path  # noqa: E402

SHARED = list(range(10, 60))  # a 50-token prefix every prompt starts with
PROMPTS = [SHARED + [1, 2, 3], SHARED + [4, 5], SHARED + [6, 7, 8, 9], [3, 2, 1] + SHARED]


def lm(prefix_slots=8, **kw):
    return LlamaCppLM(str(gguf_path("tiny-llama:1")), prefix_slots=prefix_slots, **kw)


def held(target) -> dict[int, int]:
    """Sequence id -> its last position in the KV cache, for every sequence holding cells."""
    seqs = {s: llama_cpp.llama_memory_seq_pos_max(target.mem, s) for s in range(target.max_seqs)}
    return {s: p for s, p in seqs.items() if p >= 0}


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


def test_kept_prompts_hold_no_cells_and_a_small_cache_still_reuses_them():
    small = lm(n_ctx=256)
    prompts = [[7 + i] + SHARED * 2 for i in range(6)]  # 101-token prompts: two would not fit beside a running row
    assert run(small, prompts, n=20) == run(lm(prefix_slots=0, n_ctx=256), prompts, n=20)
    assert len(small.prefix.entries) == 2 and 200 <= small.prefix.tokens <= small.n_ctx  # at most n_ctx kept
    assert small.prefix.reused == 0  # each prompt starts with another token: nothing shared at position 0
    same = [SHARED * 2 + [7 + i] for i in range(3)]
    assert run(small, same, n=20) == run(lm(prefix_slots=0, n_ctx=256), same, n=20)
    assert small.prefix.reused == 2 * 100
    small.reset(1)
    assert held(small) == {}  # nothing kept in the KV cache


def test_a_cache_without_room_prefills_instead():
    target = lm(n_ctx=256)
    run(target, [SHARED * 4])  # a 200-token prompt kept
    target.reset(1)
    target.extend([[3] * 100], need_logits=False)  # 100 cells taken: the kept 200 do not fit beside them
    target.add_rows(1)
    assert target.reuse_prefix(1, SHARED * 4 + [1]) == 0 and target.lengths[1] == 0
    assert held(target) == {0: 99}


def test_tree_paths_take_sequence_ids_kept_prompts_do_not():
    few = lm(max_seqs=8)  # 7 rows or tree paths at once
    want = run(lm(prefix_slots=0, max_seqs=8), PROMPTS, tree="static:3,2")
    assert run(few, PROMPTS, tree="static:3,2") == want
    again = run(few, PROMPTS, tree="static:3,2")  # prompts kept from the first pass, restored into fresh cells
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
    cache = PrefixCache(2, max_tokens=60)
    state = np.zeros(4, dtype=np.uint8)
    cache.add(list(range(20)), state)
    cache.add([1] * 20, state)
    cache.add(list(range(30)), state)  # three entries, two slots: the least recently used leaves
    assert [len(e.tokens) for e in cache.entries] == [20, 30]
    entry, n = cache.best(list(range(25)) + [99])
    assert entry.tokens == tuple(range(30)) and n == 25 and cache.entries[-1] is entry
    assert cache.best([2] * 30) == (None, 0)
    assert cache.best([1] * (MIN_REUSE - 1)) == (None, 0)  # too short to be worth a copy
    cache.add([5] * 40, state)  # 30 + 40 tokens > 60: the older leaves
    assert cache.tokens == 40 and cache.nbytes == 4
    cache.clear()
    assert not cache.entries


def test_a_next_turn_reuses_the_prompt_and_the_output():
    cached, bare = lm(), lm(prefix_slots=0)
    first = run(cached, [PROMPTS[0]])[0]
    assert first == run(bare, [PROMPTS[0]])[0]
    turn = PROMPTS[0] + first + [5, 6, 7]
    before = cached.prefix.reused
    assert run(cached, [turn]) == run(bare, [turn])
    assert cached.prefix.reused - before >= len(PROMPTS[0]) + len(first) - 1  # all but the last output token


def test_dropped_entries_lend_their_buffers():
    cache = PrefixCache(1)
    big = cache.buffer(100)
    cache.add([1] * 20, big[:90])
    cache.add([2] * 20, cache.buffer(10))  # one slot: the first entry leaves, its whole buffer is kept
    assert cache.buffer(50) is big  # reused, not allocated again
    assert cache.buffer(50) is not big and cache.buffer(500).nbytes == 500
