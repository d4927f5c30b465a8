"""Constrained output (engine.constraint): greedy speculative == constrained plain for every drafter, forced-token
drafts change nothing but speed, Monte Carlo of the first tokens against the exact constrained distribution
(mask, then warp) for chains and trees, the matcher never keeps a rejected draft token, end of sequence inside and
at the end of a constrained span, bad constraints refused."""

import json
import re

import numpy as np
import pytest
import torch

from specdecode.core.sampling import SamplingConfig, logits_to_probs
from specdecode.engine import (
    CausalLM,
    GenerationConfig,
    ModelDrafter,
    PromptLookupDrafter,
    Refusal,
    SpeculativeGenerator,
    SuffixDrafter,
    TreeShape,
)
from specdecode.engine.constraint import Constraint
from specdecode.exactness.montecarlo import compare_counts
from specdecode.models import tiny_llama
from specdecode.models.tokenizers import ByteTokenizer

GREEDY = SamplingConfig(0.0)
PATTERN = r"AB(C|D)+E[0-9]{3}(XY)*"
PROMPTS = [[65, 66, 67, 65, 66, 67, 68], [1, 2, 3], [69, 49, 50, 51, 88, 89, 88, 89, 65, 66]]
EOS = 95  # a ByteTokenizer(96) has no end of sequence: the grammar's is the last id


@pytest.fixture(scope="module")
def target():
    return CausalLM(tiny_llama(1), name="t")


def text(tokens):
    return bytes(t for t in tokens if t != EOS).decode()


def run(target, drafter, prompts, constraint, sampling=GREEDY, k=4, n=30, seed=0, adaptive=False):
    gen = SpeculativeGenerator(target, drafter, ByteTokenizer(96))
    cfg = GenerationConfig(max_new_tokens=n, k=k, sampling=sampling, constraint=constraint, adaptive=adaptive)
    return gen.generate(prompts, cfg, torch.Generator().manual_seed(seed))


DRAFTERS = {
    "prompt-lookup": lambda: PromptLookupDrafter(),
    "prompt-lookup tree": lambda: PromptLookupDrafter(matches=3),
    "suffix": lambda: SuffixDrafter(),
    "suffix tree": lambda: SuffixDrafter(branches=3),
    "model": lambda: ModelDrafter(CausalLM(tiny_llama(2), name="d")),
    "same model": lambda: ModelDrafter(CausalLM(tiny_llama(1), name="d1")),
    "model tree": lambda: ModelDrafter(CausalLM(tiny_llama(1), name="d1"), TreeShape.parse("static:2,2")),
}


@pytest.mark.parametrize("name", list(DRAFTERS))
@pytest.mark.parametrize("adaptive", [False, True])
def test_greedy_constrained_speculation_equals_constrained_plain(target, name, adaptive):
    c = Constraint.regex(PATTERN)
    want = run(target, None, PROMPTS, c, k=0)
    got = run(target, DRAFTERS[name](), PROMPTS, c, adaptive=adaptive)
    assert got.tokens == want.tokens
    for toks, reason in zip(got.tokens, got.finish_reasons):
        if reason == "eos":
            assert re.fullmatch(PATTERN, text(toks)), text(toks)
        else:
            assert re.match(PATTERN[:2], text(toks))


@pytest.fixture(scope="module")
def wide():
    return CausalLM(tiny_llama(1, vocab_size=257), name="wide")  # every byte, and 256: the end of sequence


def test_forced_tokens_are_drafted_and_change_nothing(wide):
    schema = {
        "type": "object",
        "properties": {"id": {"type": "integer"}, "ok": {"type": "boolean"}},
        "required": ["id", "ok"],
        "additionalProperties": False,
    }

    def json_run(drafter, forced, k=4):
        c = Constraint.json_schema(schema, forced=forced)
        gen = SpeculativeGenerator(wide, drafter, ByteTokenizer(257))
        cfg = GenerationConfig(max_new_tokens=40, k=k, sampling=GREEDY, constraint=c)
        return gen.generate(PROMPTS, cfg, torch.Generator())

    plain = json_run(None, False, k=0)
    off = json_run(PromptLookupDrafter(), False)
    on = json_run(PromptLookupDrafter(), True)
    assert on.tokens == off.tokens == plain.tokens
    assert off.stats.forced_drafted == 0 and on.stats.forced_accepted >= 3 * len('{"id":')
    assert on.stats.target_calls < off.stats.target_calls
    assert "forced" in on.kinds[0]
    for toks, reason in zip(on.tokens, on.finish_reasons):
        if reason == "eos":
            doc = json.loads(bytes(t for t in toks if t < 256).decode())
            assert set(doc) == {"id", "ok"} and isinstance(doc["ok"], bool)


class SpyMatcher:
    """A matcher that counts its net position: consumed tokens minus rolled back ones."""

    def __init__(self, inner):
        self.inner, self.position = inner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def consume_token(self, t):
        ok = self.inner.consume_token(t)
        self.position += ok
        return ok

    def try_consume_tokens(self, tokens):
        n = self.inner.try_consume_tokens(tokens)
        self.position += n
        return n

    def rollback(self, n):
        self.position -= n
        return self.inner.rollback(n)


def spied_run(target, monkeypatch):
    """A constrained run whose matchers count their net position -> (spies, output)."""
    from specdecode.engine import constraint as C

    spies = []
    real = C.RowGrammar.__init__

    def spy_init(self, matcher, *args):
        spies.append(SpyMatcher(matcher))
        real(self, spies[-1], *args)

    monkeypatch.setattr(C.RowGrammar, "__init__", spy_init)
    out = run(target, ModelDrafter(CausalLM(tiny_llama(2), name="d")), PROMPTS, Constraint.regex(PATTERN))
    return spies, out


def test_the_matcher_never_keeps_a_rejected_draft_token(target, monkeypatch):
    spies, out = spied_run(target, monkeypatch)
    assert out.stats.recovered > 0  # drafts were rejected
    for spy, toks in zip(spies, out.tokens):
        assert spy.position == len(toks)  # exactly the emitted tokens, after every step's draft masks


def test_a_matcher_advanced_on_drafts_is_caught(target, monkeypatch):
    """The bug class: a matcher that consumes draft tokens and never rolls them back. Either the engine refuses
    an emitted token (the grammar's state moved on) or the net position above gives it away."""
    from specdecode.engine import constraint as C

    monkeypatch.setattr(C.RowGrammar, "blocked", _leaky_blocked)
    try:
        spies, out = spied_run(target, monkeypatch)
    except RuntimeError as exc:
        assert "grammar refused" in str(exc)
        return
    assert any(spy.position != len(toks) for spy, toks in zip(spies, out.tokens))


def _leaky_blocked(self, path):
    self.matcher.try_consume_tokens(list(path))  # never rolled back
    bits = np.unpackbits(np.frombuffer(self.matcher.compute_bitmask(), dtype=np.uint8), bitorder="little")
    return torch.from_numpy(bits[: self.vocab_size] == 0)


def test_eos_inside_and_at_the_end_of_a_constrained_span(target):
    # "A+" may stop after any A (end of sequence allowed inside the span); "AB" must stop right after B (forced)
    inside = run(
        target, PromptLookupDrafter(), [[65, 65, 65, 65]], Constraint.regex("A+"), sampling=SamplingConfig(3.0)
    )
    plain = run(target, None, [[65, 65, 65, 65]], Constraint.regex("A+"), sampling=SamplingConfig(3.0), k=0)
    assert inside.tokens == plain.tokens or inside.finish_reasons == ["eos"]
    for seed in range(4):
        out = run(target, PromptLookupDrafter(), [[65]], Constraint.regex("A+"), SamplingConfig(3.0), seed=seed)
        assert set(out.tokens[0][:-1]) <= {65} and (out.tokens[0][-1] == EOS or out.finish_reasons == ["length"])
    end = run(target, PromptLookupDrafter(), [[1, 2]], Constraint.regex("AB"))
    assert end.tokens == [[65, 66, EOS]] and end.finish_reasons == ["eos"]
    assert end.stats.forced_accepted == 2 and end.stats.target_calls == 1  # A and B forced, the end its bonus


@pytest.mark.parametrize(
    "make,word",
    [
        (lambda: Constraint.regex("a(b"), "regex"),
        (lambda: Constraint.json_schema("{not json"), "json schema"),
        (lambda: Constraint.json_schema({"type": "objectx"}), "objectx"),
        (lambda: Constraint.json_schema([1]), "json schema"),
        (lambda: Constraint("yaml", "x"), "kind"),
        (lambda: Constraint.lark("start: )"), "lark"),
    ],
)
def test_bad_constraints_are_refused(make, word):
    with pytest.raises(ValueError, match=word):
        make()


def test_a_grammar_outside_the_vocabulary_is_refused(target):
    with pytest.raises(Refusal, match="allows no first token") as err:
        run(target, None, PROMPTS, Constraint.json_object())  # "{" is byte 123: not among 96 tokens
    assert err.value.field == "constraint"


def test_a_constraint_without_a_tokenizer_is_refused(target):
    gen = SpeculativeGenerator(target, PromptLookupDrafter())
    cfg = GenerationConfig(max_new_tokens=4, constraint=Constraint.regex("A+"))
    with pytest.raises(Refusal, match="tokenizer") as err:
        gen.generate([[1, 2]], cfg, torch.Generator())
    assert err.value.field == "constraint"


# ------------------------------------------------------------------ Monte Carlo: mask, then warp

V = 6  # tokens 1..4 are the bytes the grammar speaks; 5 is its end of sequence
SMALL_PATTERN = r"[\x01-\x03][\x02-\x04]+"
FIRST, SECOND = [1, 2, 3], [2, 3, 4]


def exact_constrained(model, prompt, cfg) -> torch.Tensor:
    """[V * V]: the exact constrained distribution of the first two tokens (masked logits, then warped)."""

    def probs(ctx, allowed):
        with torch.no_grad():
            logits = model(torch.tensor([ctx])).logits[0, -1].double()
        masked = torch.full_like(logits, float("-inf"))
        masked[allowed] = logits[allowed]
        return logits_to_probs(masked, cfg)

    p1, out = probs(prompt, FIRST), torch.zeros(V * V, dtype=torch.float64)
    for x in FIRST:
        out[x * V : x * V + V] = p1[x] * probs(prompt + [x], SECOND)
    return out


def sample_counts(target, drafter, prompt, cfg, method, rows=1500, k=3):
    gen = SpeculativeGenerator(target, drafter, ByteTokenizer(V))
    out = gen.generate(
        [prompt] * rows,
        GenerationConfig(
            max_new_tokens=2, k=k, method=method, sampling=cfg, constraint=Constraint.regex(SMALL_PATTERN)
        ),
        torch.Generator().manual_seed(3),
    )
    counts = torch.zeros(V * V)
    for toks in out.tokens:
        counts[toks[0] * V + toks[1]] += 1
    return counts


@pytest.fixture(scope="module")
def small():
    return CausalLM(tiny_llama(3, vocab_size=V), name="small-t"), tiny_llama(4, vocab_size=V)


@pytest.mark.parametrize("cfg", [SamplingConfig(1.0), SamplingConfig(0.8, top_p=0.9)], ids=lambda c: c.describe())
@pytest.mark.parametrize(
    "drafter,method",
    [
        ("model", "tokenwise"),
        ("model", "block"),
        ("prompt-lookup", "tokenwise"),
        ("model tree", "rrs-wor"),
        ("model tree", "spectr"),
        ("suffix tree", "rrs"),
    ],
)
def test_constrained_sampling_follows_the_constrained_target(small, cfg, drafter, method):
    target, draft_model = small
    d = {
        "model": lambda: ModelDrafter(CausalLM(draft_model, name="small-d")),
        "prompt-lookup": PromptLookupDrafter,
        "model tree": lambda: ModelDrafter(CausalLM(draft_model, name="small-d"), TreeShape.parse("static:2,1")),
        "suffix tree": lambda: SuffixDrafter(branches=2),
    }[drafter]()
    prompt = [1, 2, 3, 1, 2]
    res = compare_counts(sample_counts(target, d, prompt, cfg, method), exact_constrained(target.model, prompt, cfg))
    assert res.passed, res


def test_constrained_min_p_rows_warp_the_masked_logits(small):
    """min-p's threshold follows the largest *allowed* token: the sparse warping of a constrained row starts from the
    masked logits, not from the maxima the finiteness check read before the masks."""
    target, _ = small
    cfg = SamplingConfig(1.0, min_p=0.3)
    prompt = [4, 4, 5, 4]
    res = compare_counts(
        sample_counts(target, PromptLookupDrafter(), prompt, cfg, "tokenwise"),
        exact_constrained(target.model, prompt, cfg),
    )
    assert res.passed, res


def test_an_unmasked_target_fails_loudly(small, monkeypatch):
    """Verification against the unconstrained p (the masks forgotten) emits a token the grammar refuses: the
    request fails naming the grammar instead of returning output outside it."""
    from specdecode.engine import step

    monkeypatch.setattr(step, "mask_tree_logits", lambda *a: None)
    target, draft_model = small
    with pytest.raises(RuntimeError, match="grammar refused"):
        sample_counts(
            target,
            ModelDrafter(CausalLM(draft_model, name="small-d")),
            [1, 2, 3, 1, 2],
            SamplingConfig(1.0),
            "tokenwise",
        )
