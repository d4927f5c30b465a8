"""Every tensor the engine, its drafters and the verification methods create lives on the model's device: with the
default device set to "meta", anything created without an explicit device has no data and the generation fails."""

import pytest
import torch

from specdecode.core.sampling import SamplingConfig
from specdecode.engine import (
    CausalLM,
    EagleDrafter,
    EarlyExitDrafter,
    GenerationConfig,
    ModelDrafter,
    PromptLookupDrafter,
    SpeculativeGenerator,
    TreeShape,
)
from specdecode.models import tiny_llama
from specdecode.models.eagle import EagleHead

TARGET = CausalLM(tiny_llama(1))
DRAFTERS = {
    "plain": lambda: None,
    "prompt-lookup": PromptLookupDrafter,
    "lookup tree": lambda: PromptLookupDrafter(matches=3),
    "model": lambda: ModelDrafter(CausalLM(tiny_llama(2))),
    "model tree": lambda: ModelDrafter(CausalLM(tiny_llama(2)), TreeShape.parse("static:2,2")),
    "early-exit": lambda: EarlyExitDrafter(TARGET, 1),
    "eagle tree": lambda: EagleDrafter(TARGET, EagleHead(TARGET.model, torch.arange(96)), TreeShape.parse("dynamic:5")),
}
SETTINGS = [(None, 0.0), (None, 0.8), ("block", 0.8), ("gumbel", 0.8), ("rrs-wor", 0.8), ("typical", 0.8)]


@pytest.mark.parametrize("name", list(DRAFTERS))
def test_generation_creates_no_tensor_off_the_models_device(name):
    gen = SpeculativeGenerator(TARGET, DRAFTERS[name]())
    prompts = [[1, 2, 3, 1, 2]] if name.startswith("eagle") else [[1, 2, 3, 1, 2], [4, 5]]
    ran = 0
    for method, T in SETTINGS:
        cfg = GenerationConfig(
            max_new_tokens=8,
            k=3,
            method=method,
            sampling=SamplingConfig(T, top_p=0.9 if T else None),
            adaptive=True,
            measure_overlap=True,
        )
        try:
            gen.method_for(cfg)
        except ValueError:
            continue  # a chain-only method with a tree drafter
        torch.set_default_device("meta")
        try:
            out = gen.generate(prompts, cfg, torch.Generator().manual_seed(0))
        finally:
            torch.set_default_device(None)
        assert all(len(t) == 8 for t in out.tokens)
        ran += 1
    assert ran >= 2
    TARGET.record_features = False
