"""The llama.cpp backend (llama-cpp-python, the `llama` extra) on tiny Llamas exported to GGUF: the same logits
as the Hugging Face backend for chains, ragged rows and trees (sequence ids), greedy speculative == greedy plain
on the same backend for every drafter, Monte Carlo against the backend's own distribution, bad input."""

import pytest
import torch

pytest.importorskip("llama_cpp")

from specdecode.cli import main  # noqa: E402
from specdecode.core.sampling import SamplingConfig, logits_to_probs  # noqa: E402
from specdecode.engine import (  # noqa: E402
    CausalLM,
    GenerationConfig,
    ModelDrafter,
    SpeculativeGenerator,
    SuffixDrafter,
    TreeShape,
)
from specdecode.engine.llama_cpp import LlamaCppLM  # noqa: E402
from specdecode.exactness.montecarlo import compare_counts  # noqa: E402
from specdecode.models import Builder, tiny_llama  # noqa: E402
from specdecode.models.gguf import export_gguf, gguf_path  # noqa: E402

GREEDY = SamplingConfig(0.0)
RAGGED = [[1, 2, 3, 4, 5, 1, 2, 3], [7, 8, 9], [10, 11, 12, 13, 14, 15, 16, 10, 11, 12, 13]]


@pytest.fixture(scope="module")
def pair():
    return LlamaCppLM(str(gguf_path("tiny-llama:1"))), CausalLM(tiny_llama(1))


def _close(a, b, tol=1e-2):
    return (a - b).abs().max().item() < tol


def test_chains_ragged_rows_and_rollback_match_the_hf_backend(pair):
    lc, hf = pair
    for m in pair:
        m.reset(2)
        assert m.extend([[1, 2, 3, 4], [5, 6]], need_logits=False) is None
    a, b = lc.extend([[7, 8], [9]]), hf.extend([[7, 8], [9]])
    assert _close(a[0], b[0]) and _close(a[1, :1], b[1, :1]) and lc.lengths == hf.lengths == [6, 3]
    for m in pair:
        m.rollback([4, 2])
    assert _close(lc.extend([[11], [12]]), hf.extend([[11], [12]]))


def test_the_argmax_readout_equals_the_logits_argmax_on_both_backends(pair):
    """``extend_argmax`` (greedy chain steps): each new token's argmax and its logit, as the logits tensor of the
    same pass gives them; llama.cpp reads them in its own output buffer, in place, and a NaN there is reported."""
    from specdecode.engine import llama_lib

    rows = [[7, 8, 9], [10], [11, 12]]
    for m in pair:
        m.reset(3)
        m.extend([[1, 2, 3, 4], [5, 6], [3]], need_logits=False)
        want = m.extend(rows)  # [3, 3, V]
        m.rollback([4, 2, 1])
        ids, top = m.extend_argmax(rows)
        assert m.lengths == [7, 3, 3]
        for b, r in enumerate(rows):
            assert ids[b] == want[b, : len(r)].argmax(-1).tolist()
            assert torch.allclose(torch.tensor(top[b]), want[b, : len(r)].amax(-1))
    lc = pair[0]
    lc.reset(1)
    lc.extend([[1, 2, 3]], need_logits=False)
    (ids,), (top,) = lc.extend_argmax([[4]])
    buffer = llama_lib._VIEWS[(llama_lib._LOGITS_AT(lc.ctx), lc.vocab_size)]  # llama.cpp's memory
    buffer[ids[0] + 1] = float("nan")
    assert llama_lib.argmax_logits(lc.ctx, 1, lc.vocab_size)[0][0] == ids[0] + 1
    assert torch.isnan(torch.tensor(llama_lib.argmax_logits(lc.ctx, 1, lc.vocab_size)[0][1]))


def test_trees_through_sequence_ids_match_tree_attention(pair):
    lc, hf = pair
    for m in pair:
        m.reset(2)
        m.extend([[1, 2, 3, 4], [5, 6]], need_logits=False)
    args = ([[8, 10, 11, 12], [9, 3]], [[-1, 0, 0, 1], [-1, -1]])
    a, b = lc.extend_tree(*args), hf.extend_tree(*args)
    assert _close(a[0], b[0]) and _close(a[1, :2], b[1, :2])
    for m in pair:
        m.keep_paths([[0, 1, 3], [1]])
    assert lc.lengths == hf.lengths == [7, 3]
    assert _close(lc.extend([[5], [6]]), hf.extend([[5], [6]]))
    grown = []
    for m in pair:  # a draft model grows its tree depth by depth: parents in earlier passes, branching later
        m.reset(1)
        m.extend([[1, 2, 3, 4]], need_logits=False)
        grown.append(
            torch.cat(
                [
                    m.extend_tree([[5]], [[-1]])[0],
                    m.extend_tree([[6, 7]], [[0, 0]])[0],
                    m.extend_tree([[8, 9, 10]], [[1, 1, 2]])[0],
                ]
            )
        )
        m.keep_paths([[0, 2, 5]])
    assert _close(grown[0], grown[1]) and _close(lc.extend([[11]]), hf.extend([[11]]))


@pytest.fixture(scope="module")
def builder():
    return Builder("tiny-llama:1", backend="llama.cpp")


@pytest.mark.parametrize(
    "drafter,tree",
    [
        ("prompt-lookup", None),
        ("prompt-lookup", "lookup:3"),
        ("suffix", None),
        ("suffix", "lookup:3"),
        ("model:tiny-llama:2", None),
        ("model:tiny-llama:1", "static:2,2"),
        ("model:gguf", None),
        ("model:gguf", "dynamic:6"),
    ],
)
@pytest.mark.parametrize("adaptive", [False, True])
def test_greedy_speculative_equals_plain_on_llama_cpp(builder, drafter, tree, adaptive):
    if drafter == "model:gguf":
        drafter = (
            f"model:gguf:{gguf_path('tiny-llama:1')}"  # a second GGUF as the draft model (here: the target's twin)
        )
    want = (
        builder.generator("none")
        .generate(RAGGED, GenerationConfig(max_new_tokens=20, k=0, sampling=GREEDY), torch.Generator())
        .tokens
    )
    out = builder.generator(drafter, tree).generate(
        RAGGED, GenerationConfig(max_new_tokens=20, k=4, adaptive=adaptive, sampling=GREEDY), torch.Generator()
    )
    assert out.tokens == want
    if drafter.startswith("model:gguf") and not adaptive:
        assert out.stats.tokens_per_target_call > 2.5  # the twin draft is always accepted


def test_greedy_on_llama_cpp_equals_the_hf_backend(builder):
    hf = Builder("tiny-llama:1")
    cfg = GenerationConfig(max_new_tokens=20, k=0, sampling=GREEDY)
    assert (
        builder.generator("none").generate(RAGGED, cfg, torch.Generator()).tokens
        == hf.generator("none").generate(RAGGED, cfg, torch.Generator()).tokens
    )


V = 6


def test_sampled_speculation_through_llama_cpp_follows_its_own_distribution(tmp_path):
    """First two tokens at T = 0.8 with top-p, a tiny GGUF draft and trees, ragged rows in one batch."""
    target = LlamaCppLM(str(export_gguf(tiny_llama(3, vocab_size=V), tmp_path / "t.gguf")))
    draft = LlamaCppLM(str(export_gguf(tiny_llama(4, vocab_size=V), tmp_path / "d.gguf")))
    cfg = SamplingConfig(0.8, top_p=0.9)
    prompts = [[1, 2, 3, 1, 2], [4, 0]]
    exact = {}
    for p in prompts:  # the backend's own distribution, one token at a time
        target.reset(1)
        p1 = logits_to_probs(target.extend([p])[0, -1].double(), cfg)
        for x in range(V):
            target.rollback([len(p)])
            p2 = logits_to_probs(target.extend([[x]])[0, -1].double(), cfg)
            exact.update({(tuple(p), x, y): float(p1[x] * p2[y]) for y in range(V)})
    for drafter, method in (
        (ModelDrafter(draft), "tokenwise"),
        (ModelDrafter(draft, TreeShape.parse("static:2,1")), "rrs-wor"),
        (SuffixDrafter(branches=2), "rrs"),  # its corpus grows with every batch
        (SuffixDrafter(), "tokenwise"),  # one-hot chains verified on the few tokens top-p keeps (verify.sparse)
    ):
        counts = {p: torch.zeros(V * V) for p in map(tuple, prompts)}
        g = torch.Generator().manual_seed(1)
        for _ in range(50):  # 50 batches of 30 rows (rows and tree paths share 256 sequence ids)
            out = SpeculativeGenerator(target, drafter).generate(
                prompts * 15, GenerationConfig(max_new_tokens=2, k=3, method=method, sampling=cfg), g
            )
            for p, toks in zip(prompts * 15, out.tokens):
                counts[tuple(p)][toks[0] * V + toks[1]] += 1
        for p in counts:
            res = compare_counts(counts[p], torch.tensor([exact[(p, x, y)] for x in range(V) for y in range(V)]))
            assert res.passed, (method, p, res)


def test_constrained_sampling_through_llama_cpp_follows_the_masked_distribution(tmp_path):
    """A regex over bytes 1..4 (5: its end of sequence): the first two tokens against the backend's own logits masked
    to the allowed tokens, then warped (T = 0.8, top-p); chains and trees."""
    from specdecode.engine import Constraint, PromptLookupDrafter
    from specdecode.models.tokenizers import ByteTokenizer

    target = LlamaCppLM(str(export_gguf(tiny_llama(3, vocab_size=V), tmp_path / "t.gguf")))
    draft = LlamaCppLM(str(export_gguf(tiny_llama(4, vocab_size=V), tmp_path / "d.gguf")))
    cfg, prompt, first, second = SamplingConfig(0.8, top_p=0.9), [1, 2, 3, 1, 2], [1, 2, 3], [2, 3, 4]

    def masked(logits, allowed):
        out = torch.full_like(logits, float("-inf"))
        out[allowed] = logits[allowed]
        return logits_to_probs(out, cfg)

    target.reset(1)
    p1 = masked(target.extend([prompt])[0, -1].double(), first)
    exact = torch.zeros(V * V, dtype=torch.float64)
    for x in first:
        target.rollback([len(prompt)])
        exact[x * V : x * V + V] = p1[x] * masked(target.extend([[x]])[0, -1].double(), second)
    constraint = Constraint.regex(r"[\x01-\x03][\x02-\x04]+")
    for drafter, method in (
        (ModelDrafter(draft), "tokenwise"),
        (ModelDrafter(draft, TreeShape.parse("static:2,1")), "rrs-wor"),
        (PromptLookupDrafter(), "tokenwise"),
    ):
        counts, g = torch.zeros(V * V), torch.Generator().manual_seed(2)
        gen = SpeculativeGenerator(target, drafter, ByteTokenizer(V))
        for _ in range(50):
            out = gen.generate(
                [prompt] * 30,
                GenerationConfig(max_new_tokens=2, k=3, method=method, sampling=cfg, constraint=constraint),
                g,
            )
            for toks in out.tokens:
                counts[toks[0] * V + toks[1]] += 1
        res = compare_counts(counts, exact)
        assert res.passed, (method, res)


def test_eagle_features_from_llama_cpp_match_the_hf_hidden_states():
    lc = LlamaCppLM(str(gguf_path("tiny-llama:1")), embeddings=True)
    hf = CausalLM(tiny_llama(1))
    for m in (lc, hf):
        m.record_features = True
        m.reset(1)
        m.extend([[1, 2, 3, 4, 5]], need_logits=False)
        m.extend_tree([[6, 7, 8]], [[-1, 0, -1]])
        m.keep_paths([[0, 1]])
    assert lc.features[0].shape == hf.features[0].shape == (7, 64)
    assert _close(lc.features[0], hf.features[0], 2e-2)
    plain = LlamaCppLM(str(gguf_path("tiny-llama:1")))  # no embeddings: remade with them while no row holds tokens
    plain.record_features = True
    plain.reset(1)
    plain.extend([[1, 2, 3, 4, 5]], need_logits=False)
    assert _close(plain.features[0], hf.features[0][:5], 2e-2)
    busy = LlamaCppLM(str(gguf_path("tiny-llama:1")))
    busy.extend([[1, 2]], need_logits=False)
    with pytest.raises(ValueError, match="hidden states"):
        busy.record_features = True  # remaking the context would drop the row's cache: refused


@pytest.mark.parametrize(
    "argv,word",
    [
        (["--backend", "llama.cpp", "--model", "/tmp", "x"], "Hugging Face model folder"),
        (["--backend", "llama.cpp", "--model", "gguf:/nonexistent.gguf", "x"], "no GGUF file"),
        (["--model", "gguf:/nonexistent.gguf", "x"], "--backend llama.cpp"),
        (["--backend", "llama.cpp", "--model", "tiny-llama", "--drafter", "early-exit:1", "x"], "Hugging Face backend"),
        (["--backend", "llama.cpp", "--model", "tiny-llama", "--device", "cuda", "x"], "device"),
        (["--backend", "llama.cpp", "--model", "toy-target", "x"], "no GGUF form"),
        (["--model", "tiny-llama", "--device", "nope", "x"], "unknown device"),
        (["--backend", "llama.cpp", "--model", "tiny-llama", "--no-chat", "x" * 600], "context"),
    ],
)
def test_bad_input_one_line(argv, word, capsys):
    assert main(["generate", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and word in err[0], err


def test_a_file_that_is_not_gguf_is_refused(tmp_path, capsys):
    bad = tmp_path / "bad.gguf"
    bad.write_text("not a model")
    assert main(["generate", "--backend", "llama.cpp", "--model", f"gguf:{bad}", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "could not load" in err[0]


def test_missing_llama_cpp_names_the_extra(monkeypatch):
    import sys

    from specdecode.engine import llama_lib

    monkeypatch.setattr(llama_lib, "_MODULE", None)
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(ValueError, match=r"specdecode\[llama\]"):
        llama_lib.require_llama_cpp()


def test_monte_carlo_catches_tree_nodes_that_do_not_see_their_prefix(tmp_path, monkeypatch):
    """Injected bug: new tree paths are not copied from the row's prefix (nodes attend to themselves only)."""

    def no_copy(self, b, row, parent, first, reused):
        s = self._free.pop()
        row.borrowed.append(s)
        return s

    monkeypatch.setattr(LlamaCppLM, "_path_seq", no_copy)
    with pytest.raises(AssertionError):
        test_sampled_speculation_through_llama_cpp_follows_its_own_distribution(tmp_path)


def test_prefill_gives_each_rows_last_logits_in_its_own_pass(pair):
    lc, hf = pair
    lc.reset(3)
    hf.reset(3)
    calls = lc.forward_calls
    got = lc.prefill([[1, 2, 3, 4], [], [5, 6]])
    assert lc.forward_calls == calls + 1 and lc.lengths == [4, 0, 2] and lc.prefill_gives_logits
    hf.extend([[1, 2, 3], [], [5]], need_logits=False)
    want = hf.extend([[4], [], [6]])
    assert got.shape == (3, lc.vocab_size) and _close(got[0], want[0, 0]) and _close(got[2], want[2, 0])
    assert not got[1].any()
    assert _close(lc.extend([[7], [8], [9]]), hf.extend([[7], [8], [9]]))  # the rows go on from the prefill


def test_plain_decoding_runs_one_pass_per_token_after_the_prefill(builder):
    """The prompt's last token is prefilled with its logits: n new tokens cost the prefill and n - 1 passes."""
    gen = builder.generator("none")
    before = builder.target.forward_calls
    out = gen.generate([[1, 2, 3, 4, 5]], GenerationConfig(max_new_tokens=6, k=0, sampling=GREEDY), torch.Generator())
    assert len(out.tokens[0]) == 6 and builder.target.forward_calls - before == 1 + 5
    assert out.stats.target_calls == 5  # passes after the prefill: the first step read the prefill's logits


def test_a_context_with_embeddings_reads_the_right_rows_when_heads_are_skipped():
    """A context made for hidden states (after an EAGLE head ran) outputs every entry: skipped heads and the
    prefill's last-token logits must still come from the right rows."""
    rows, skip = [[7, 8, 9], [10, 11]], [{0, 1}, {1}]
    got = []
    for embeddings in (True, False):
        lm = LlamaCppLM(str(gguf_path("tiny-llama:1")), embeddings=embeddings)
        lm.reset(2)
        got.append((lm.prefill([[1, 2, 3, 4], [5, 6]]), lm.extend_skipping(rows, skip)))
    (pre_e, ext_e), (pre, ext) = got
    assert _close(pre_e, pre) and _close(ext_e[0, 2], ext[0, 2]) and _close(ext_e[1, 0], ext[1, 0])


def test_ubatch_plan_keeps_each_rows_attention_path():
    """``plan_ubatches``: steps in calls of fewer than 64 tokens (llama.cpp's per-query flash attention, as a row
    decoding alone); prompts in pieces of n_batch from each row's start, pieces of 64 tokens or more together (the
    tiled path, as alone), shorter ones in calls of fewer than 64; every entry once, in order."""
    from specdecode.engine.llama_lib import FA_TILE, plan_ubatches

    def check(rows, n_batch, prompt):
        calls = plan_ubatches(len(rows), n_batch, rows if prompt else None)
        assert [a for a, _ in calls][1:] == [b for _, b in calls][:-1] and calls[0][0] == 0
        assert calls[-1][1] == len(rows) and all(0 < b - a <= n_batch for a, b in calls)
        return [b - a for a, b in calls]

    assert check([0] * 150, 512, False) == [63, 63, 24]
    assert check([0] * 34 + [1] * 37 + [2] * 34, 512, True) == [63, 42]  # short prompts: per-query calls
    assert check([0] * 100 + [1] * 70 + [2] * 20, 512, True) == [170, 20]
    assert check([0] * 530, 512, True) == [512, 18]  # as llama-cpp-python prefills it alone
    assert check([0] * 300 + [1] * 300, 512, True) == [300, 300]
    assert check([0] * 600 + [1] * 10 + [2] * 80, 512, True) == [512, 88, 10, 80]
    assert FA_TILE == 64


def test_a_rows_logits_do_not_depend_on_the_other_rows_of_its_pass(pair):
    """Rows prefilled and decoded together get the logits each gets alone: a step's bit for bit, a prefill's within
    float32 rounding here (the real Q8_0 model: bit for bit). Before, a pass of 64 or more tokens took llama.cpp's
    tiled flash attention: ~5e-3 off on this model, up to ~0.9 on SmolLM2 (docs/backends.md)."""
    lc, _ = pair
    prompts = [[(7 * i + j) % 90 + 3 for j in range(40)] for i in range(3)]
    alone = []
    for p in prompts:
        lc.reset(1)
        first = lc.prefill([p])[0]
        alone.append((first, lc.extend([[5, 6, 7]])[0]))
    lc.reset(3)
    firsts = lc.prefill(prompts)
    steps = lc.extend([[5, 6, 7]] * 3)
    for b, (first, step) in enumerate(alone):
        assert (firsts[b] - first).abs().max() < 1e-5 and torch.equal(steps[b], step)
