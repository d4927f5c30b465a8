"""`specdecode distill` on a tiny target: alpha rises, resume, saved draft usable by the engine, errors."""

import json
from types import SimpleNamespace

import pytest
import torch

from specdecode import cli
from specdecode.core.sampling import SamplingConfig
from specdecode.distill import DistillConfig, ReducedHead, distill, load_draft
from specdecode.distill import objective as distill_train
from specdecode.engine import CausalLM, GenerationConfig, ModelDrafter, NoDrafter, SpeculativeGenerator
from specdecode.models import Builder, ByteTokenizer, load_model
from specdecode.prompts import held_out_prompts, training_prompts


def tiny_cfg(out, **kw):
    base = dict(
        model="tiny-llama",
        out=str(out),
        arch="shallow",
        layers=1,
        head_tokens=64,
        prompts=32,
        max_new_tokens=24,
        gen_batch=16,
        gen_dtype="fp32",
        steps=30,
        batch_size=8,
        lr=3e-3,
        max_minutes=5,
        eval_every=10,
        held_out=8,
    )
    base.update(kw)
    return DistillConfig(**base)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("distill") / "draft"
    return distill(tiny_cfg(out), progress=False)


def test_alpha_rises_above_the_untrained_draft(trained):
    first, last = trained.history[0], trained.history[-1]
    assert first["step"] == 0 and last["step"] == 30
    assert last["alpha_t1"] > first["alpha_t1"] + 0.02
    assert last["loss"] < first["loss"]
    meta = json.loads((trained.out / "specdecode_draft.json").read_text())
    assert meta["target"] == "tiny-llama" and meta["steps"] == 30 and meta["head_tokens"] == 64


def build(model, drafter, sampling):
    """The target, its tokenizer and a generator with ``drafter`` (sampling is set per generation)."""
    b = Builder(model)
    return SimpleNamespace(target=b.target, tokenizer=b.tokenizer, generator=b.generator(drafter))


def test_saved_draft_has_reduced_head_and_q_is_zero_outside_it(trained):
    draft = load_model(str(trained.out))
    assert isinstance(draft.lm_head, ReducedHead) and draft.lm_head.kept.numel() == 64
    logits = draft(torch.tensor([[1, 2, 3]])).logits[0, -1]
    q = torch.softmax(logits, -1)
    outside = torch.ones(96, dtype=torch.bool)
    outside[draft.lm_head.kept] = False
    assert torch.all(q[outside] == 0) and abs(q.sum().item() - 1) < 1e-6


def _alpha_exact(target, draft, T):
    sampling = SamplingConfig(T)
    tok = ByteTokenizer(96)
    gen = SpeculativeGenerator(CausalLM(target), ModelDrafter(CausalLM(draft)), tok)
    prompts = [tok.encode(" ".join(m["content"] for m in p)) for p in held_out_prompts()[:4]]
    cfg = GenerationConfig(max_new_tokens=24, k=3, sampling=sampling, measure_overlap=True)
    return gen.generate(prompts, cfg, torch.Generator().manual_seed(0)).stats.alpha_exact


def test_engine_alpha_of_trained_draft_beats_untrained(trained):
    from specdecode.models.drafts import DraftShape, build_draft

    target = load_model("tiny-llama")
    trained_draft = load_model(str(trained.out))
    untrained = build_draft(target, DraftShape(1, 64), trained_draft.lm_head.kept).eval()
    assert _alpha_exact(target, trained_draft, 1.0) > _alpha_exact(target, untrained, 1.0)


def test_greedy_with_trained_draft_equals_plain(trained):
    setup = build("tiny-llama", f"model:{trained.out}", SamplingConfig(0.0))
    plain = SpeculativeGenerator(setup.target, NoDrafter(), setup.tokenizer)
    prompts = [[5, 6, 7, 8], [9, 10, 11]]
    for k in (1, 3, 5):
        cfg = GenerationConfig(max_new_tokens=20, k=k, sampling=SamplingConfig(0.0))
        a = setup.generator.generate(prompts, cfg, torch.Generator().manual_seed(0)).tokens
        b = plain.generate(
            prompts, GenerationConfig(max_new_tokens=20, sampling=SamplingConfig(0.0)), torch.Generator()
        ).tokens
        assert a == b


def test_resume_after_interruption(tmp_path, monkeypatch):
    out = tmp_path / "d"
    real = distill_train.distill_loss
    calls = {"n": 0}

    def flaky(*a):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real(*a)

    monkeypatch.setattr(distill_train, "distill_loss", flaky)
    with pytest.raises(KeyboardInterrupt):
        distill(tiny_cfg(out, steps=12), progress=False)
    ckpt = torch.load(tmp_path / "d.work" / "checkpoint.pt", weights_only=False)
    assert ckpt["step"] == 4 and not out.exists()  # call 1 is the step-0 evaluation
    monkeypatch.setattr(distill_train, "distill_loss", real)
    res = distill(tiny_cfg(out, steps=12), progress=False)
    assert res.steps == 12 and out.is_dir()
    with pytest.raises(ValueError, match="--restart"):
        distill(tiny_cfg(out, steps=12, layers=1, head_tokens=32), progress=False)
    res = distill(tiny_cfg(out, steps=3, head_tokens=32), restart=True, progress=False)
    assert res.steps == 3


def test_bad_inputs(tmp_path, trained):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="empty"):
        distill(tiny_cfg(tmp_path / "a", corpus=(str(tmp_path / "empty.txt"),)), progress=False)
    with pytest.raises(ValueError, match="no such file"):
        distill(tiny_cfg(tmp_path / "b", corpus=(str(tmp_path / "missing.txt"),)), progress=False)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="writable"):
        distill(tiny_cfg(tmp_path / "afile" / "draft"), progress=False)
    for bad in (dict(layers=0), dict(head_tokens=-1), dict(steps=0), dict(lr=0.0), dict(max_minutes=0)):
        with pytest.raises(ValueError):
            tiny_cfg(tmp_path / "c", **bad)
    with pytest.raises(ValueError, match="below the target"):
        distill(tiny_cfg(tmp_path / "d", layers=2), progress=False)
    with pytest.raises(ValueError, match="at most"):
        training_prompts(10_000)
    # a draft trained for another vocabulary is refused when used
    bad = tmp_path / "other"
    import shutil

    shutil.copytree(trained.out, bad)
    meta = json.loads((bad / "specdecode_draft.json").read_text())
    meta["vocab_fingerprint"] = "0" * 16
    (bad / "specdecode_draft.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="vocabulary differs"):
        build("tiny-llama", f"model:{bad}", SamplingConfig(0.0))


def test_corpus_adds_training_data(tmp_path):
    (tmp_path / "c.txt").write_text("the cat sat on the mat. " * 40)
    res = distill(tiny_cfg(tmp_path / "d", corpus=(str(tmp_path / "c.txt"),), steps=2, prompts=16), progress=False)
    assert res.train_tokens > 16 * 5 + 900  # generations + the corpus chunks


def test_cli_distill_and_bench_draft(tmp_path, trained, capsys):
    assert cli.main(["distill", "--layers", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--layers must be >= 1" in capsys.readouterr().err
    rc = cli.main(
        [
            "bench-draft",
            "--model",
            "tiny-llama",
            "--draft",
            str(trained.out),
            "--prompts",
            "1",
            "--tasks",
            "chat",
            "--temperatures",
            "0,0.8",
            "--max-new-tokens",
            "6",
            "-k",
            "2",
            "--tree",
            "static:2,1",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "model:draft k=2" in out and "hf-draft:draft" in out and "plain" in out
    assert "model:draft tree static:2,1" in out
    assert cli.main(["bench-draft", "--model", "tiny-llama", "--draft", str(tmp_path / "nope")]) == 2


def test_load_draft_rejects_bad_folder(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "specdecode_draft.json").write_text("{}")
    with pytest.raises(ValueError, match="could not load the trained draft"):
        load_draft(tmp_path, torch.float32)


# ------------------------------------------------------------------ EAGLE heads


@pytest.fixture(scope="module")
def trained_eagle(tmp_path_factory):
    out = tmp_path_factory.mktemp("eagle") / "head"
    return distill(tiny_cfg(out, arch="eagle", steps=20), progress=False)


def test_eagle_training_lowers_loss_and_saves(trained_eagle):
    first, last = trained_eagle.history[0], trained_eagle.history[-1]
    assert last["loss"] < first["loss"] and last["alpha_t1"] > first["alpha_t1"]
    meta = json.loads((trained_eagle.out / "specdecode_draft.json").read_text())
    assert meta["kind"] == "eagle"
    with pytest.raises(ValueError, match="EAGLE head"):
        load_model(str(trained_eagle.out))  # not a standalone model


def test_eagle_greedy_equals_plain(trained_eagle):
    setup = build("tiny-llama", f"model:{trained_eagle.out}", SamplingConfig(0.0))
    plain = SpeculativeGenerator(setup.target, NoDrafter(), setup.tokenizer)
    want = plain.generate(
        [[5, 6, 7, 8]], GenerationConfig(max_new_tokens=24, sampling=SamplingConfig(0.0)), torch.Generator()
    ).tokens
    for k, adaptive in ((1, False), (4, False), (8, True)):
        cfg = GenerationConfig(max_new_tokens=24, k=k, adaptive=adaptive, sampling=SamplingConfig(0.0))
        assert setup.generator.generate([[5, 6, 7, 8]], cfg, torch.Generator()).tokens == want
    with pytest.raises(ValueError, match="batch size 1"):
        setup.generator.generate(
            [[1, 2], [3, 4]], GenerationConfig(max_new_tokens=4, k=2, sampling=SamplingConfig(0.0)), torch.Generator()
        )


def test_eagle_head_on_llama_cpp_through_the_builder(trained_eagle):
    """The Builder keeps one target: the EAGLE drafter and the generator hold the same llama.cpp backend, which
    gives the head its hidden states; greedy output == plain on llama.cpp, chains and trees."""
    pytest.importorskip("llama_cpp")
    b = Builder("tiny-llama", backend="llama.cpp")
    target = b.target
    plain = b.generator("none")
    gen = b.generator(f"model:{trained_eagle.out}")
    tree = b.generator(f"model:{trained_eagle.out}", "static:2,2")
    assert b.target is target and gen.target is target and gen.drafter.target is target and tree.target is target
    greedy = SamplingConfig(0.0)
    want = plain.generate(
        [[5, 6, 7, 8]], GenerationConfig(max_new_tokens=20, sampling=greedy), torch.Generator()
    ).tokens
    for g, k in ((gen, 3), (tree, 4)):
        out = g.generate([[5, 6, 7, 8]], GenerationConfig(max_new_tokens=20, k=k, sampling=greedy), torch.Generator())
        assert out.tokens == want and out.stats.proposed > 0
    assert (
        plain.generate([[5, 6, 7, 8]], GenerationConfig(max_new_tokens=20, sampling=greedy), torch.Generator()).tokens
        == want
    )  # the target still serves plain decoding afterwards


def test_eagle_tree_from_the_cli(trained_eagle, capsys):
    """`generate --tree` and `bench-draft --tree` grow trees from an EAGLE head; greedy output == plain."""

    def run(*extra):
        assert (
            cli.main(
                ["generate", "--model", "tiny-llama", "--max-new-tokens", "10", "--no-chat", "--json", *extra, "hello"]
            )
            == 0
        )
        return json.loads(capsys.readouterr().out)["outputs"][0]["tokens"]

    d = f"model:{trained_eagle.out}"
    assert run("--drafter", d, "--tree", "static:2,2") == run("--drafter", "none")
    assert len(run("--drafter", d, "--tree", "dynamic:5", "--method", "rrs-wor", "--temperature", "0.8")) == 10
    assert (
        cli.main(
            [
                "bench-draft",
                "--model",
                "tiny-llama",
                "--draft",
                str(trained_eagle.out),
                "--prompts",
                "1",
                "--tasks",
                "chat",
                "--max-new-tokens",
                "6",
                "-k",
                "2",
                "--tree",
                "static:2,1",
                "--no-hf",
            ]
        )
        == 0
    )
    assert "tree static:2,1" in capsys.readouterr().out
    assert (
        cli.main(["bench-draft", "--model", "tiny-llama", "--draft", str(trained_eagle.out), "--tree", "static:0"]) == 2
    )


def test_eagle_sampling_first_tokens_follow_target():
    """Chi-square-style TV check of the engine's first two tokens with an EAGLE drafter (V = 6)."""
    from specdecode.core.sampling import logits_to_probs
    from specdecode.engine import EagleDrafter
    from specdecode.models import tiny_llama as _tiny_llama
    from specdecode.models.eagle import EagleHead

    V, n, cfg = 6, 1500, SamplingConfig(1.0)
    target = CausalLM(_tiny_llama(3, vocab_size=V))
    head = EagleHead(target.model, torch.tensor([0, 2, 3, 5]))  # reduced head: q = 0 on tokens 1 and 4
    gen = SpeculativeGenerator(target, EagleDrafter(target, head))
    prompt, g, counts = [1, 2, 3, 1, 2], torch.Generator().manual_seed(5), {}
    for _ in range(n):
        toks = tuple(gen.generate([prompt], GenerationConfig(max_new_tokens=2, k=3, sampling=cfg), g).tokens[0][:2])
        counts[toks] = counts.get(toks, 0) + 1
    with torch.no_grad():
        p1 = logits_to_probs(target.model(torch.tensor([prompt])).logits[0, -1].double(), cfg)
        exact = {
            (x, y): float(
                p1[x] * logits_to_probs(target.model(torch.tensor([prompt + [x]])).logits[0, -1].double(), cfg)[y]
            )
            for x in range(V)
            for y in range(V)
        }
    tv = 0.5 * sum(abs(counts.get(s, 0) / n - w) for s, w in exact.items())
    assert tv <= 0.5 * ((len(exact) - 1) / n) ** 0.5 + (13.8 / (2 * n)) ** 0.5, tv


def test_unrolled_training_steps_match_the_drafter():
    """``EagleHead.unrolled`` (training-time test) at column m + s - 1 == the drafter's step s started at column m:
    the cache holds true-feature pairs up to m, later steps feed back the predicted feature."""
    from transformers import DynamicCache

    from specdecode.models import tiny_llama as _tiny_llama
    from specdecode.models.eagle import EagleHead

    torch.manual_seed(0)
    target = _tiny_llama(2, vocab_size=32)
    head = EagleHead(target, torch.arange(0, 32, 2))
    with torch.no_grad():
        for prm in head.parameters():
            if prm.requires_grad:
                prm.add_(0.05 * torch.randn_like(prm))  # away from the identity-like start
    T, H = 9, target.config.hidden_size
    feats, tokens = torch.randn(2, T, H), torch.randint(0, 32, (2, T))
    mask = torch.ones(2, T, dtype=torch.long)
    mask[1, 6:] = 0  # right padding in the second row
    with torch.no_grad():
        outs = head.unrolled(feats, tokens, 3, attention_mask=mask)
        for b, length in ((0, T), (1, 6)):
            for m in range(length - 2):
                cache = DynamicCache()
                h = head(feats[b : b + 1, : m + 1], tokens[b : b + 1, : m + 1], torch.arange(m + 1)[None], cache=cache)[
                    0, -1
                ]
                torch.testing.assert_close(h, outs[0][b, m], atol=1e-5, rtol=1e-5)
                for s in (2, 3):
                    j = m + s - 1
                    h = head(h[None, None], tokens[b : b + 1, j : j + 1], torch.tensor([[j]]), cache=cache)[0, -1]
                    torch.testing.assert_close(h, outs[s - 1][b, j], atol=1e-5, rtol=1e-5)


def test_held_out_greedy_chain_matches_a_drafter_loop():
    """``evaluate``'s greedy_chain (accepted tokens of a greedy 3-token chain) == a slow loop that drafts from every
    labelled column with a KV cache, feeding back predicted features, and stops at the first miss."""
    from transformers import DynamicCache

    from specdecode.distill.data import Example
    from specdecode.distill.objective import evaluate
    from specdecode.models import tiny_llama as _tiny_llama
    from specdecode.models.eagle import EagleHead

    torch.manual_seed(1)
    V = 16
    target = _tiny_llama(2, vocab_size=V)
    kept = torch.tensor([0, 1, 2, 3, 5, 8, 13])
    head = EagleHead(target, kept).eval()
    H = target.config.hidden_size
    pos_in_head = torch.full((V,), -1, dtype=torch.long)
    pos_in_head[kept] = torch.arange(len(kept))

    def chain_preds(e, m):  # the drafter's 3 greedy tokens from column m on (teacher-forced tokens)
        f, x = e.feats.float()[None], torch.tensor(e.ids[1:])[None]
        cache, out = DynamicCache(), []
        h = head(f[:, : m + 1], x[:, : m + 1], torch.arange(m + 1)[None], cache=cache)[0, -1]
        for s in range(3):
            if s:
                h = head(h[None, None], x[:, m + s : m + s + 1], torch.tensor([[m + s]]), cache=cache)[0, -1]
            out.append(int(head.head(h).argmax()))
        return out

    examples = []
    with torch.no_grad():
        for n, start, every in ((12, 3, 3), (9, 2, 4), (15, 6, 5)):
            ids = torch.randint(0, V, (n,)).tolist()
            e = Example(
                ids,
                start,
                torch.stack([torch.randperm(V)[:4] for _ in range(n - start)]).to(torch.int32),
                torch.full((n - start, 4), 0.25, dtype=torch.float16),
                torch.randn(n, H).to(torch.float16),
            )
            for k, m in enumerate(range(start - 2, n - 4, every)):  # some chains are accepted in full, some in part
                for s, y in enumerate(chain_preds(e, m)[: 1 + k % 3]):
                    e.top_ids[m + 2 + s - start, 0] = y
            examples.append(e)
        got = evaluate(head, examples, pos_in_head)
        lengths = []
        for e in examples:
            for m in range(e.start - 2, len(e.ids) - 4):
                hits = [y == int(e.top_ids[m + 2 + s - e.start, 0]) for s, y in enumerate(chain_preds(e, m))]
                lengths.append(hits[0] + hits[0] * hits[1] + hits[0] * hits[1] * hits[2])
    assert max(lengths) == 3 and min(lengths) == 0 and 1 in lengths
    assert abs(got["greedy_chain"] - sum(lengths) / len(lengths)) < 1e-6, (
        got["greedy_chain"],
        lengths,
    )  # evaluate() averages in float32


def test_unrolled_training_runs_and_reports_later_steps(tmp_path):
    r = distill(tiny_cfg(tmp_path / "u", arch="eagle", steps=6, unroll=3, eval_every=3), progress=False)
    last = r.history[-1]
    assert {"alpha_t1_s2", "greedy_match_s2", "alpha_t1_s3", "greedy_match_s3"} <= set(last)
    assert 0 <= last["alpha_t1_s3"] <= 1


def test_snapshots_join_the_quality_study(tmp_path):
    from specdecode.bench import run as bench_run
    from specdecode.bench.report import write_report
    from specdecode.bench.run import Config
    from specdecode.distill.train import snapshot_dir

    out = tmp_path / "d"
    distill(tiny_cfg(out, steps=6, snapshots=(2, 4)), progress=False)
    snaps = [snapshot_dir(out, 2), snapshot_dir(out, 4)]
    assert all(json.loads((p / "specdecode_draft.json").read_text())["steps"] == s for p, s in zip(snaps, (2, 4)))
    cfgs, _ = bench_run.sweep(True, quality_drafts=tuple(str(p) for p in snaps))
    quality = [c for c in cfgs if c.study == "quality" and c.drafter.startswith("model:")]
    assert len(quality) == 2 and not [c for c in cfgs if c.study == "sweep" and "step-" in c.drafter]
    recs = bench_run.run_sweep(
        tmp_path / "b",
        True,
        "tiny-llama",
        "fp32",
        progress=False,
        configs=([Config("none")] + quality, {"prompts_per_task": 1, "max_new_tokens": 4}),
    )
    text = write_report(recs, tmp_path / "b").read_text()
    assert "model:step-2 (2 training steps)" in text and "model:step-4 (4 training steps)" in text
    with pytest.raises(ValueError, match="--snapshots"):
        tiny_cfg(out, snapshots=(0,))


def test_trained_drafts_grow_trees_in_the_bench(tmp_path, trained_eagle):
    from specdecode.bench import run as bench_run
    from specdecode.bench.report import write_report
    from specdecode.bench.run import Config

    cfgs, _ = bench_run.sweep(True, drafts=(str(trained_eagle.out),))
    trees = [c for c in cfgs if c.tree and c.drafter.startswith("model:")]
    chains = [
        c for c in cfgs if c.drafter.startswith("model:") and c.study == "sweep" and not c.tree and not c.adaptive
    ]
    assert {c.temperature for c in trees} == {0.0, 0.8} and {c.temperature for c in chains} == {0.0, 0.8}
    path = bench_run.run_sweep(
        tmp_path,
        True,
        "tiny-llama",
        "fp32",
        progress=False,
        configs=(
            [Config("none"), Config("none", temperature=0.8)] + trees + chains,
            {"prompts_per_task": 1, "max_new_tokens": 6},
        ),
    )
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    assert (
        all(r.get("tokens", 0) >= 1 for r in recs if r.get("tree")) and sum(1 for r in recs if r.get("tree")) == 2 * 7
    )
    text = write_report(path, tmp_path).read_text()
    assert "Trees vs chains" in text and "model:head tree static:3,1,1" in text and "model:head k=4 tokenwise" in text


def test_bench_trees_with_a_trained_eagle_head(trained_eagle, capsys):
    rc = cli.main(
        [
            "bench-trees",
            "--model",
            "tiny-llama",
            "--draft",
            str(trained_eagle.out),
            "--tasks",
            "chat",
            "--temperatures",
            "0,0.8",
            "--repeats",
            "1",
            "--max-new-tokens",
            "5",
            "--only",
            "chain k=4,static,dynamic:8",
        ]
    )
    out = capsys.readouterr().out
    assert (
        rc == 0
        and "tree static:2,2,1" in out
        and "chain k=4" in out
        and "tree dynamic:8" in out
        and "draft = model:" in out
    )


def test_resumed_bench_refuses_records_of_a_retrained_draft(tmp_path, trained):
    import shutil

    from specdecode.bench import run as bench_run
    from specdecode.bench.run import Config

    draft = tmp_path / "draft"
    shutil.copytree(trained.out, draft)
    cfgs = ([Config("none"), Config(f"model:{draft}", 2)], {"prompts_per_task": 1, "max_new_tokens": 3})
    path = bench_run.run_sweep(tmp_path / "b", True, "tiny-llama", "fp32", progress=False, configs=cfgs)
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    assert all(r["draft_version"].startswith("steps ") for r in recs if r["drafter"].startswith("model:"))
    bench_run.run_sweep(tmp_path / "b", True, "tiny-llama", "fp32", progress=False, configs=cfgs)  # same draft: resumes
    meta = json.loads((draft / "specdecode_draft.json").read_text())
    (draft / "specdecode_draft.json").write_text(json.dumps({**meta, "steps": meta["steps"] + 100}))
    with pytest.raises(ValueError, match="retrained"):
        bench_run.run_sweep(tmp_path / "b", True, "tiny-llama", "fp32", progress=False, configs=cfgs)


def test_generated_data_matches_teacher_forcing():
    """The decode loop's labels, features and greedy tokens == one teacher-forced pass over each result
    (prompts of different lengths: left padding and per-row positions must not show)."""
    from specdecode.distill.data import attach_features, generate_examples

    target = load_model("tiny-llama", "fp32")
    prompts = [[5, 9, 3], [7, 1, 4, 4, 8, 2, 6], [11]]
    ex = generate_examples(
        target,
        prompts,
        max_new_tokens=6,
        temperature=0.0,
        eos=(),
        generator=torch.Generator().manual_seed(0),
        features=True,
    )
    assert [e.ids[: e.start] for e in ex] == prompts and all(e.labelled == 6 for e in ex)
    tf = [type(e)(e.ids, e.start, e.top_ids, e.top_p) for e in ex]
    attach_features(target, tf, cache=None)
    for e, r in zip(ex, tf):
        with torch.no_grad():
            logits = target(torch.tensor([e.ids])).logits[0].float()
        assert e.ids[e.start :] == logits[e.start - 1 : -1].argmax(-1).tolist()  # greedy continuation
        p = torch.softmax(logits[e.start - 1 : -1], -1)
        assert torch.allclose(p.gather(1, e.top_ids.long()), e.top_p.float(), atol=2e-3)
        assert torch.allclose(e.feats[:-1].float(), r.feats[:-1].float(), atol=5e-3)  # the last one is filler
    sampled = generate_examples(
        target, prompts, max_new_tokens=6, temperature=0.8, eos=(), generator=torch.Generator().manual_seed(1)
    )
    again = generate_examples(
        target, prompts, max_new_tokens=6, temperature=0.8, eos=(), generator=torch.Generator().manual_seed(1)
    )
    assert [e.ids for e in sampled] == [e.ids for e in again] and sampled[0].feats is None
