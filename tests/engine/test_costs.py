"""Pass costs measured once per backend (and kept in a file), and adaptive runs that repeat under a seed."""

import torch

from specdecode.core.sampling import SamplingConfig
from specdecode.engine import CausalLM, GenerationConfig, ModelDrafter, PromptLookupDrafter, SpeculativeGenerator
from specdecode.engine import costs as costs_mod
from specdecode.engine.adaptive import AdaptiveK
from specdecode.models import Builder, tiny_llama

PROMPTS = [[1, 2, 3, 4, 5, 1, 2, 3], [7, 8, 9]]


def _table(builder):
    session = builder.generator("prompt-lookup").open()
    return session.costs


def test_costs_are_measured_once_and_kept_in_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECDECODE_CACHE", str(tmp_path))
    b = Builder("tiny-llama")
    first = _table(b)
    files = list((tmp_path / "costs").glob("*.json"))
    assert len(first.seconds) == costs_mod.N_MAX and all(c > 0 for c in first.seconds) and len(files) == 1
    assert first.source == f"measured now, saved to {files[0]}" and first.draft_token == 0.0

    def boom(*a, **k):
        raise AssertionError("measured again")

    monkeypatch.setattr(costs_mod, "measure_pass_costs", boom)
    again = _table(Builder("tiny-llama"))  # a new process reads the file
    assert again.seconds == first.seconds and again.source == f"file {files[0]}"
    files[0].write_text("{broken")
    monkeypatch.undo()
    monkeypatch.setenv("SPECDECODE_CACHE", str(tmp_path))
    assert len(_table(Builder("tiny-llama")).seconds) == costs_mod.N_MAX  # an unreadable file is measured again


def test_seeded_adaptive_runs_repeat():
    """With fixed costs the choice of k depends on acceptance counts only: the same seed gives the same tokens."""
    target = CausalLM(tiny_llama(1))
    for drafter in (PromptLookupDrafter(), ModelDrafter(CausalLM(tiny_llama(2)))):
        gen = SpeculativeGenerator(target, drafter)
        cfg = GenerationConfig(max_new_tokens=40, k=8, adaptive=True, sampling=SamplingConfig(1.0))
        runs = [gen.generate(PROMPTS, cfg, torch.Generator().manual_seed(3)) for _ in range(3)]
        assert runs[0].tokens == runs[1].tokens == runs[2].tokens
        assert runs[0].stats.k_history == runs[2].stats.k_history


def test_failed_probes_back_off():
    ctrl = AdaptiveK(4, costs=[1.0, 3.0, 4.0, 5.0, 6.0], draft_cost=0.0)
    ctrl.acc, ctrl.chk = 0.1, 10.0
    probes = []
    for step in range(200):
        k = ctrl.choose()
        if k:
            probes.append(step)
            ctrl.observe(k, 0)
    gaps = [b - a for a, b in zip(probes, probes[1:])]
    assert gaps == sorted(gaps) and gaps[-1] >= 4 * gaps[0]  # 16, 32, 64: twice the wait after each failed probe
