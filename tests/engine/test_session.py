"""Continuous batching: requests join and leave a running batch at step boundaries, each with its own settings
and randomness; a request's output does not depend on the others (greedy: its solo output; gumbel with a seed:
the same tokens)."""

import pytest
import torch

from specdecode.core.sampling import SamplingConfig
from specdecode.engine import (CausalLM, GenerationConfig, ModelDrafter, PromptLookupDrafter, SpeculativeGenerator,
                               TreeShape)
from specdecode.models import tiny_llama

PROMPTS = [[1, 2, 3, 4, 5, 1, 2, 3], [7, 8, 9], [10, 11, 12, 13, 14, 15, 16, 10, 11, 12, 13], [4, 4, 5, 4, 4, 5, 4],
           [20, 21, 22, 20, 21], [30, 31]]


def _backends():
    out = {"hf": lambda: CausalLM(tiny_llama(1))}
    try:
        import llama_cpp  # noqa: F401

        from specdecode.engine.llama_cpp import LlamaCppLM
        from specdecode.models.gguf import gguf_path

        out["llama.cpp"] = lambda: LlamaCppLM(str(gguf_path("tiny-llama:1")))
    except ImportError:
        pass
    return out


def _drafters(target):
    return {"none": None, "prompt-lookup": PromptLookupDrafter(), "model": ModelDrafter(CausalLM(tiny_llama(2))),
            "model tree": ModelDrafter(CausalLM(tiny_llama(2)), TreeShape.parse("static:2,2"))}


def _solo(gen, prompt, cfg, seed):
    return gen.generate([prompt], cfg, torch.Generator().manual_seed(seed)).tokens[0]


def _staggered(gen, configs, seeds, join_at):
    """Requests join at the given steps (request i at step join_at[i]); -> each request's tokens."""
    session = gen.session()
    reqs = [gen.requests([p], c, torch.Generator().manual_seed(s), own_stream=True)[0]
            for p, c, s in zip(PROMPTS, configs, seeds)]
    step, waiting = 0, list(range(len(reqs)))
    while waiting or session.requests:
        joining = [reqs[i] for i in waiting if join_at[i] <= step]
        waiting = [i for i in waiting if join_at[i] > step]
        session.join(joining)
        gen.step(session)
        step += 1
    return [r.new for r in reqs]


@pytest.mark.parametrize("backend", list(_backends()))
@pytest.mark.parametrize("drafter", ["none", "prompt-lookup", "model", "model tree"])
def test_greedy_requests_joining_a_running_batch_equal_their_solo_output(backend, drafter):
    target = _backends()[backend]()
    gen = SpeculativeGenerator(target, _drafters(target)[drafter])
    cfgs = [GenerationConfig(max_new_tokens=n, k=k, adaptive=a, sampling=SamplingConfig(0.0))
            for n, k, a in [(16, 4, False), (8, 2, False), (20, 6, True), (12, 3, False), (5, 4, False), (14, 1, True)]]
    want = [_solo(gen, p, c, 0) for p, c in zip(PROMPTS, cfgs)]
    assert _staggered(gen, cfgs, [0] * 6, [0, 0, 2, 3, 3, 7]) == want


def test_seeded_gumbel_requests_repeat_in_any_batch():
    target = CausalLM(tiny_llama(1))
    gen = SpeculativeGenerator(target, PromptLookupDrafter())
    cfgs = [GenerationConfig(max_new_tokens=12, k=3, method="gumbel", sampling=SamplingConfig(t, top_p=tp))
            for t, tp in [(1.0, None), (0.7, 0.9), (1.2, None), (0.9, None), (1.0, 0.8), (0.5, None)]]
    seeds = [11, 12, 13, 14, 15, 16]
    solo = []
    for p, c, s in zip(PROMPTS, cfgs, seeds):
        session = gen.session()
        req = gen.requests([p], c, torch.Generator().manual_seed(s), own_stream=True)[0]
        session.join([req])
        while session.requests:
            gen.step(session)
        solo.append(req.new)
    assert _staggered(gen, cfgs, seeds, [0, 1, 1, 4, 0, 2]) == solo


def test_a_cancelled_request_frees_its_row_and_the_others_go_on():
    target = CausalLM(tiny_llama(1))
    gen = SpeculativeGenerator(target, PromptLookupDrafter())
    cfg = GenerationConfig(max_new_tokens=20, k=3, sampling=SamplingConfig(0.0))
    want = [_solo(gen, p, cfg, 0) for p in PROMPTS[:3]]
    session = gen.session()
    reqs = [gen.requests([p], cfg, torch.Generator(), own_stream=True)[0] for p in PROMPTS[:3]]
    session.join(reqs)
    gen.step(session)
    reqs[1].cancel()
    gen.step(session)
    assert reqs[1].done and reqs[1].reason == "cancelled" and target.batch_size == 2
    while session.requests:
        gen.step(session)
    assert reqs[0].new == want[0] and reqs[2].new == want[2]
    assert reqs[0].stats.new_tokens == 20 and reqs[0].stats.tokens_per_target_call >= 1


@pytest.mark.parametrize("backend", list(_backends()))
def test_a_failed_join_leaves_the_running_batch_as_it_was(backend, monkeypatch):
    target = _backends()[backend]()
    drafter = ModelDrafter(CausalLM(tiny_llama(2)))
    gen = SpeculativeGenerator(target, drafter)
    cfg = GenerationConfig(max_new_tokens=12, k=3, sampling=SamplingConfig(0.0))
    want = _solo(gen, PROMPTS[0], cfg, 0)
    session = gen.session()
    first = gen.requests([PROMPTS[0]], cfg, torch.Generator(), own_stream=True)[0]
    session.join([first])
    gen.step(session)

    def full(prompts):
        raise RuntimeError("no room")

    monkeypatch.setattr(drafter, "add_rows", full)
    late = gen.requests([PROMPTS[1]], cfg, torch.Generator(), own_stream=True)[0]
    with pytest.raises(RuntimeError, match="no room"):
        session.join([late])
    assert session.requests == [first] and target.batch_size == 1
    while session.requests:
        gen.step(session)
    assert first.new == want
