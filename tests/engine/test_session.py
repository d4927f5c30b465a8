"""Continuous batching: requests join and leave a running batch at step boundaries, each with its own settings
and randomness; a request's output does not depend on the others (greedy: its solo output; gumbel with a seed:
the same tokens)."""

import pytest
import torch

from specdecode.core.sampling import SamplingConfig
from specdecode.engine import (
    CausalLM,
    GenerationConfig,
    ModelDrafter,
    PromptLookupDrafter,
    SpeculativeGenerator,
    TreeShape,
)
from specdecode.models import tiny_llama

PROMPTS = [
    [1, 2, 3, 4, 5, 1, 2, 3],
    [7, 8, 9],
    [10, 11, 12, 13, 14, 15, 16, 10, 11, 12, 13],
    [4, 4, 5, 4, 4, 5, 4],
    [20, 21, 22, 20, 21],
    [30, 31],
]


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
    return {
        "none": None,
        "prompt-lookup": PromptLookupDrafter(),
        "model": ModelDrafter(CausalLM(tiny_llama(2))),
        "model tree": ModelDrafter(CausalLM(tiny_llama(2)), TreeShape.parse("static:2,2")),
    }


def _solo(gen, prompt, cfg, seed):
    return gen.generate([prompt], cfg, torch.Generator().manual_seed(seed)).tokens[0]


def _staggered(gen, configs, seeds, join_at):
    """Requests are admitted at the given steps (request i at step join_at[i]); -> each request's tokens."""
    session = gen.open(max_batch=8)
    reqs: dict = {}
    step = 0
    while len(reqs) < len(PROMPTS) or session.busy:
        for i, (p, c, s) in enumerate(zip(PROMPTS, configs, seeds)):
            if join_at[i] == step:
                reqs[i] = session.admit(p, c, torch.Generator().manual_seed(s))
        session.step()
        step += 1
    return [reqs[i].new for i in range(len(PROMPTS))]


@pytest.mark.parametrize("backend", list(_backends()))
@pytest.mark.parametrize("drafter", ["none", "prompt-lookup", "model", "model tree"])
def test_greedy_requests_joining_a_running_batch_equal_their_solo_output(backend, drafter):
    target = _backends()[backend]()
    gen = SpeculativeGenerator(target, _drafters(target)[drafter])
    cfgs = [
        GenerationConfig(max_new_tokens=n, k=k, adaptive=a, sampling=SamplingConfig(0.0))
        for n, k, a in [(16, 4, False), (8, 2, False), (20, 6, True), (12, 3, False), (5, 4, False), (14, 1, True)]
    ]
    want = [_solo(gen, p, c, 0) for p, c in zip(PROMPTS, cfgs)]
    assert _staggered(gen, cfgs, [0] * 6, [0, 0, 2, 3, 3, 7]) == want


def test_seeded_gumbel_requests_repeat_in_any_batch():
    target = CausalLM(tiny_llama(1))
    gen = SpeculativeGenerator(target, PromptLookupDrafter())
    cfgs = [
        GenerationConfig(max_new_tokens=12, k=3, method="gumbel", sampling=SamplingConfig(t, top_p=tp))
        for t, tp in [(1.0, None), (0.7, 0.9), (1.2, None), (0.9, None), (1.0, 0.8), (0.5, None)]
    ]
    seeds = [11, 12, 13, 14, 15, 16]
    solo = []
    for p, c, s in zip(PROMPTS, cfgs, seeds):
        session = gen.open()
        req = session.admit(p, c, torch.Generator().manual_seed(s))
        while session.busy:
            session.step()
        solo.append(req.new)
    assert _staggered(gen, cfgs, seeds, [0, 1, 1, 4, 0, 2]) == solo


def test_a_cancelled_request_frees_its_row_and_the_others_go_on():
    target = CausalLM(tiny_llama(1))
    gen = SpeculativeGenerator(target, PromptLookupDrafter())
    cfg = GenerationConfig(max_new_tokens=20, k=3, sampling=SamplingConfig(0.0))
    want = [_solo(gen, p, cfg, 0) for p in PROMPTS[:3]]
    session = gen.open()
    reqs = [session.admit(p, cfg, torch.Generator()) for p in PROMPTS[:3]]
    session.step()
    session.cancel(reqs[1])
    session.step()
    assert reqs[1].done and reqs[1].reason == "cancelled" and target.batch_size == 2
    while session.busy:
        session.step()
    assert reqs[0].new == want[0] and reqs[2].new == want[2]
    assert reqs[0].stats.new_tokens == 20 and reqs[0].stats.tokens_per_target_call >= 1


@pytest.mark.parametrize("backend", list(_backends()))
def test_a_failed_join_leaves_the_running_batch_as_it_was(backend, monkeypatch):
    target = _backends()[backend]()
    drafter = ModelDrafter(CausalLM(tiny_llama(2)))
    gen = SpeculativeGenerator(target, drafter)
    cfg = GenerationConfig(max_new_tokens=12, k=3, sampling=SamplingConfig(0.0))
    want = _solo(gen, PROMPTS[0], cfg, 0)
    session = gen.open()
    first = session.admit(PROMPTS[0], cfg, torch.Generator())
    session.step()

    def full(prompts):
        raise RuntimeError("no room")

    monkeypatch.setattr(drafter, "add_rows", full)
    late = session.admit(PROMPTS[1], cfg, torch.Generator())
    assert session.step() == [late] and late.reason == "error"
    with pytest.raises(RuntimeError, match="no room"):
        raise late.error
    assert session.requests == [first] and target.batch_size == 1
    while session.busy:
        session.step()
    assert first.new == want


# ------------------------------------------------------------------ the session surface (issue K)


def _greedy(n=16, k=3, adaptive=False, **kw):
    return GenerationConfig(max_new_tokens=n, k=k, adaptive=adaptive, sampling=SamplingConfig(0.0), **kw)


def test_opening_a_session_with_no_cost_file_measures_before_any_row_exists(tmp_path, monkeypatch):
    from specdecode.engine import costs as costs_mod

    target = CausalLM(tiny_llama(1))
    seen = []
    real = costs_mod.measure_pass_costs

    def spy(lm, *a, **kw):
        seen.append(list(lm.lengths))
        return real(lm, *a, **kw)

    monkeypatch.setattr(costs_mod, "measure_pass_costs", spy)
    gen = SpeculativeGenerator(target, PromptLookupDrafter(), cost_dir=tmp_path)
    session = gen.open()
    assert len(seen) == 1 and not any(seen[0])  # measured in open(), while no row holds a token
    assert session.costs.source == f"measured now, saved to {next(tmp_path.glob('*.json'))}"
    req = session.admit(PROMPTS[0], _greedy(adaptive=True), torch.Generator())
    while session.busy:
        session.step()
    assert len(seen) == 1 and req.stats.costs == session.costs.source  # nothing measured during the batch
    target.reset(2)
    target.extend([[1, 2], [3]], need_logits=False)
    with pytest.raises(RuntimeError, match="before any row exists"):
        real(target)  # measuring would reset rows that hold tokens: refused


@pytest.mark.parametrize("costs", ["auto", None])
def test_an_adaptive_request_admitted_into_a_running_greedy_batch_leaves_the_running_rows_as_alone(tmp_path, costs):
    """On main before issue K, admitting an adaptive request with no cost table yet measured the costs there and
    then, resetting the backend under the running rows (the join then failed: 'rows must have one list per batch
    row (2), got 3')."""
    gen = SpeculativeGenerator(CausalLM(tiny_llama(1)), PromptLookupDrafter(), cost_dir=tmp_path / "fresh")
    cfg, late_cfg = _greedy(), _greedy(adaptive=True)
    want = [_solo(gen, p, cfg, 0) for p in PROMPTS[:2]] + [_solo(gen, PROMPTS[2], _greedy(), 0)]
    session = gen.open(costs=costs)
    reqs = [session.admit(p, cfg, torch.Generator()) for p in PROMPTS[:2]]
    session.step()
    session.step()
    reqs.append(session.admit(PROMPTS[2], late_cfg, torch.Generator()))
    while session.busy:
        session.step()
    assert [r.new for r in reqs] == want  # greedy adaptive == greedy plain too
    assert all(r.reason == "length" for r in reqs)


def test_seeded_adaptive_runs_repeat_on_another_generator_given_the_same_cost_file(tmp_path):
    table = tmp_path / "costs.json"
    cfg = GenerationConfig(max_new_tokens=30, k=8, adaptive=True, sampling=SamplingConfig(1.0), costs=str(table))
    runs = []
    for _ in range(2):  # two generators on two backend objects: the first measures and writes, the second reads
        gen = SpeculativeGenerator(CausalLM(tiny_llama(1)), PromptLookupDrafter())
        runs.append(gen.generate(PROMPTS[:2], cfg, torch.Generator().manual_seed(4)))
    assert runs[0].tokens == runs[1].tokens and runs[0].stats.k_history == runs[1].stats.k_history
    assert runs[0].stats.costs == f"measured now, saved to {table}" and runs[1].stats.costs == f"file {table}"


def test_refusals_are_typed_and_name_their_field(tmp_path):
    from specdecode.engine import Refusal

    gen = SpeculativeGenerator(CausalLM(tiny_llama(1)), PromptLookupDrafter())
    session = gen.open(costs=None)
    running = session.admit(PROMPTS[0], _greedy(), torch.Generator())
    session.step()
    cases = [
        ([1] * 600, _greedy(), "prompt"),
        ([], _greedy(), "prompt"),
        ([10**6], _greedy(), "prompt"),
        (PROMPTS[1], GenerationConfig(k=3, method="greedy", sampling=SamplingConfig(1.0)), "method"),
        (PROMPTS[1], _greedy(adaptive=True, costs=str(tmp_path / "missing.json")), "costs"),
    ]
    for prompt, cfg, field in cases:
        with pytest.raises(Refusal) as err:
            session.admit(prompt, cfg, torch.Generator())
        assert err.value.field == field, (prompt[:3], err.value)
    assert session.waiting == 0 and session.requests == [running]  # refused requests leave nothing behind
    while session.busy:
        session.step()
    assert running.new == _solo(gen, PROMPTS[0], _greedy(), 0)
    (tmp_path / "bad.json").write_text('{"seconds": [1]}')
    with pytest.raises(Refusal, match="not a cost table") as err:
        gen.generate([PROMPTS[1]], _greedy(adaptive=True, costs=str(tmp_path / "bad.json")), torch.Generator())
    assert err.value.field == "costs"


def test_a_failing_step_fails_its_requests_and_the_session_goes_on(monkeypatch):
    target = CausalLM(tiny_llama(1))
    gen = SpeculativeGenerator(target, PromptLookupDrafter())
    cfg = _greedy()
    want = _solo(gen, PROMPTS[1], cfg, 0)
    session = gen.open()
    first = session.admit(PROMPTS[0], cfg, torch.Generator())
    session.step()
    real = target.extend
    monkeypatch.setattr(target, "extend", lambda *a, **kw: (_ for _ in ()).throw(RuntimeError("device lost")))
    assert session.step() == [first] and first.reason == "error" and "device lost" in str(first.error)
    monkeypatch.setattr(target, "extend", real)
    late = session.admit(PROMPTS[1], cfg, torch.Generator())
    while session.busy:
        session.step()
    assert late.new == want
    stats = session.stats
    assert (
        stats.new_tokens == len(first.new) + len(late.new)
        and stats.row_steps == first.stats.row_steps + late.stats.row_steps
    )


@pytest.mark.parametrize("backend", list(_backends()))
@pytest.mark.parametrize("drafter", ["prompt-lookup", "model tree"])
def test_nan_logits_in_one_row_fail_that_row_only(backend, drafter, monkeypatch):
    target = _backends()[backend]()
    gen = SpeculativeGenerator(target, _drafters(target)[drafter])
    cfg = _greedy(n=14)
    want = [_solo(gen, p, cfg, 0) for p in PROMPTS[:3]]
    session = gen.open()
    reqs = [session.admit(p, cfg, torch.Generator()) for p in PROMPTS[:3]]
    passes = {"n": 0}
    for name in ("extend", "extend_tree"):
        real = getattr(target, name)

        def poisoned(*a, real=real, **kw):
            logits = real(*a, **kw)
            if logits is None or not logits.shape[1]:  # a prefill
                return logits
            passes["n"] += 1
            if passes["n"] == 3:
                logits = logits.clone()
                logits[1, 0, 5] = float("nan")
            return logits

        monkeypatch.setattr(target, name, poisoned)
    real_ids = target.extend_argmax

    def poisoned_ids(rows):  # greedy chain steps read the argmax only (the llama.cpp backend: not through extend)
        ids, top = real_ids(rows)
        passes["n"] += 1
        if passes["n"] == 3:
            top[1][0] = float("nan")
        return ids, top

    monkeypatch.setattr(target, "extend_argmax", poisoned_ids)
    while session.busy:
        session.step()
    assert reqs[1].reason == "error" and "NaN" in str(reqs[1].error)
    assert reqs[0].new == want[0] and reqs[2].new == want[2]


def test_nan_in_a_prefilled_root_fails_that_row_only(monkeypatch):
    """llama.cpp prefills a joining prompt's last token with its logits (the row's first step reads them): bad
    values there fail that row alone, and the other rows' first steps feed their roots again."""
    if "llama.cpp" not in _backends():
        pytest.skip("llama-cpp-python is not installed")
    target = _backends()["llama.cpp"]()
    gen = SpeculativeGenerator(target, PromptLookupDrafter())
    cfg = _greedy(n=10)
    want = [_solo(gen, p, cfg, 0) for p in PROMPTS[:3]]
    real = target.prefill

    def poisoned(rows):
        logits = real(rows).clone()
        logits[1, 3] = float("nan")
        return logits

    monkeypatch.setattr(target, "prefill", poisoned)
    session = gen.open()
    reqs = [session.admit(p, cfg, torch.Generator()) for p in PROMPTS[:3]]
    while session.busy:
        session.step()
    assert reqs[1].reason == "error" and "NaN" in str(reqs[1].error)
    assert reqs[0].new == want[0] and reqs[2].new == want[2]
