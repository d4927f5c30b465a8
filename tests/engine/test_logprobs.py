"""Logprobs read from the verification pass equal plain decoding's (GenerationConfig.logprobs): greedy and seeded
Gumbel sampling (the same tokens), chains and prompt lookup, both backends; constrained rows report the masked
distribution."""

import pytest
import torch

from specdecode.core.sampling import SamplingConfig
from specdecode.engine import (
    CausalLM,
    Constraint,
    GenerationConfig,
    ModelDrafter,
    PromptLookupDrafter,
    SpeculativeGenerator,
)
from specdecode.models import tiny_llama
from specdecode.models.tokenizers import ByteTokenizer

PROMPTS = [[1, 2, 3, 4, 5, 1, 2, 3], [7, 8, 9]]


def _run(target, drafter, cfg, method, k, constraint=None):
    gen = SpeculativeGenerator(target, drafter, ByteTokenizer(96))
    config = GenerationConfig(max_new_tokens=12, k=k, method=method, sampling=cfg, logprobs=3, constraint=constraint)
    return gen.generate(PROMPTS, config, torch.Generator().manual_seed(5))


def _targets():
    yield "hf", CausalLM(tiny_llama(1), name="t"), lambda: ModelDrafter(CausalLM(tiny_llama(2), name="d"))
    try:
        from specdecode.engine.llama_cpp import LlamaCppLM
        from specdecode.models.gguf import gguf_path

        path = str(gguf_path("tiny-llama:1"))
        yield "llama.cpp", LlamaCppLM(path), lambda: ModelDrafter(LlamaCppLM(str(gguf_path("tiny-llama:2"))))
    except ValueError:  # the llama extra is not installed
        pass


@pytest.mark.parametrize("cfg,method", [(SamplingConfig(0.0), None), (SamplingConfig(0.8, top_p=0.9), "gumbel")])
def test_logprobs_equal_plain_decoding(cfg, method):
    for name, target, model_drafter in _targets():
        plain = _run(target, None, cfg, method, 0)
        for drafter in (model_drafter(), PromptLookupDrafter()):
            out = _run(target, drafter, cfg, method, 4)
            assert out.tokens == plain.tokens, name
            for got, want in zip(out.logprobs, plain.logprobs):
                assert len(got) == len(want) == 12
                # the tiny GGUFs are F16: a pass over k + 1 tokens is not bitwise a one-token pass (docs/backends.md;
                # Q8_0 and Q4_1 are), so their logprobs agree to ~1e-3
                tol = 1e-4 if name == "hf" else 5e-3
                assert max(abs(g.logprob - w.logprob) for g, w in zip(got, want)) < tol, name
                assert [[t for t, _ in g.top] for g in got] == [[t for t, _ in w.top] for w in want], name


def test_constrained_logprobs_are_of_the_masked_distribution():
    target = CausalLM(tiny_llama(1), name="t")
    out = _run(target, PromptLookupDrafter(), SamplingConfig(1.0), None, 4, Constraint.regex("[AB]+"))
    for row in out.logprobs:
        for r in row:
            allowed = {65, 66, 95}  # A, B and the grammar's end of sequence
            assert {t for t, lp in r.top if lp > float("-inf")} <= allowed
            total = sum(torch.tensor([lp for _, lp in r.top]).exp().tolist())
            assert total <= 1 + 1e-6
