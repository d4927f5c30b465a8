"""``specdecode generate`` and ``specdecode demo``: speculative generation on real models."""

from __future__ import annotations

import json
import sys

import torch

from .engine import GenerationConfig, format_stats
from .runtime import DEFAULT_MODEL, build, encode_prompt, eos_ids, tree_drafter_for
from .sampling import SamplingConfig

COLORS = {"accepted": "\033[32m", "recovered": "\033[33m", "bonus": "\033[36m", "plain": ""}
RESET = "\033[0m"


def add_generation_args(ap) -> None:
    ap.add_argument("prompt", nargs="?", help="prompt text (or use --batch-file)")
    ap.add_argument("--model", default=DEFAULT_MODEL, help=f"target model: a registry name or a local folder (default {DEFAULT_MODEL})")
    ap.add_argument("--drafter", default="prompt-lookup", help="model:NAME | prompt-lookup | early-exit:N | none (default prompt-lookup)")
    ap.add_argument("-k", type=int, default=4, help="draft tokens per step, 0-64 (the upper bound with --adaptive; default 4)")
    ap.add_argument("--adaptive", action="store_true", help="choose k each step from the running alpha and measured costs")
    ap.add_argument("--method", default=None, choices=["tokenwise", "block", "greedy", "gumbel", "typical", "spectr", "rrs", "rrs-wor"],
                    help="verification method: chains tokenwise (default) | block | greedy | gumbel | typical (LOSSY); "
                         "trees spectr (default) | rrs | rrs-wor. Temperature 0 always verifies greedily")
    ap.add_argument("--tree", help="tree speculation, one target pass verifies the whole tree. With a model drafter (a draft model, "
                                   "an EAGLE head from `specdecode distill`, early-exit:N): "
                                   "static:B1,B2,... (children per depth) or dynamic:N (node budget); with "
                                   "--drafter prompt-lookup: lookup:M (up to M n-gram matches, -k tokens each, merged)")
    ap.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default 0)")
    ap.add_argument("--top-k", type=int, default=None)
    ap.add_argument("--top-p", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0, help="seed of the explicit torch.Generator (default 0)")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--batch-file", help="file with one prompt per line, generated as one batch")
    ap.add_argument("--no-chat", action="store_true", help="do not wrap prompts in the model's chat template")
    ap.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    ap.add_argument("--json", action="store_true", help="print one machine-readable JSON record")
    ap.add_argument("--show-drafts", action="store_true", help="color tokens: green accepted draft, yellow recovered, cyan bonus")


def _sampling(args) -> SamplingConfig:
    return SamplingConfig(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)


def _prompts(args) -> list[str]:
    if args.batch_file:
        try:
            with open(args.batch_file, encoding="utf-8") as fh:
                lines = [ln.rstrip("\n") for ln in fh if ln.strip()]
        except OSError as exc:
            raise ValueError(f"cannot read --batch-file {args.batch_file}: {exc.strerror}")
        if not lines:
            raise ValueError(f"--batch-file {args.batch_file} has no prompts")
        return lines
    if args.prompt is None:
        raise ValueError("give a prompt, or --batch-file")
    return [args.prompt]


def cmd_generate(args) -> int:
    if not 0 <= args.k <= 64:
        raise ValueError(f"-k must be in [0, 64], got {args.k}")
    sampling = _sampling(args)
    texts = _prompts(args)
    if args.tree:
        return _generate_tree(args, sampling, texts)
    args.method = args.method or "tokenwise"
    if args.method in ("spectr", "rrs", "rrs-wor"):
        raise ValueError(f"--method {args.method} verifies trees: add --tree static:... or dynamic:N")
    setup = build(args.model, args.drafter, sampling, args.dtype)
    tok = setup.tokenizer
    prompts = [encode_prompt(tok, t, not args.no_chat) for t in texts]
    config = GenerationConfig(max_new_tokens=args.max_new_tokens, k=args.k, adaptive=args.adaptive, method=args.method,
                              sampling=sampling, eos_token_ids=eos_ids(tok), stop_strings=tuple(args.stop))
    stream = not args.json and len(prompts) == 1
    shown = {"text": ""}
    done_ids: list[int] = []

    def on_tokens(row, toks, kinds):
        if not stream:
            return
        for t, kind in zip(toks, kinds):
            done_ids.append(t)
            text = tok.decode(done_ids, skip_special_tokens=True) if hasattr(tok, "convert_ids_to_tokens") else tok.decode(done_ids)
            piece = text[len(shown["text"]):]
            shown["text"] = text
            if args.show_drafts and COLORS.get(kind):
                piece = f"{COLORS[kind]}{piece}{RESET}"
            sys.stdout.write(piece)
            sys.stdout.flush()

    out = setup.generator.generate(prompts, config, torch.Generator().manual_seed(args.seed), on_tokens)
    decode = (lambda ids: tok.decode(ids, skip_special_tokens=True)) if hasattr(tok, "convert_ids_to_tokens") else tok.decode
    if args.json:
        print(json.dumps({"model": args.model, "drafter": args.drafter, "k": args.k, "adaptive": args.adaptive,
                          "method": config.effective_method, "sampling": sampling.describe(), "seed": args.seed,
                          "outputs": [{"prompt": t, "text": decode(ids), "tokens": ids, "kinds": kk, "finish_reason": r}
                                      for t, ids, kk, r in zip(texts, out.tokens, out.kinds, out.finish_reasons)],
                          "stats": out.stats.as_dict()}))
        return 0
    if stream:
        print()
    else:
        for i, (t, ids) in enumerate(zip(texts, out.tokens)):
            print(f"--- prompt {i}: {t}\n{decode(ids)}\n")
    if args.show_drafts:
        print(f"legend: {COLORS['accepted']}accepted draft{RESET} {COLORS['recovered']}recovered{RESET} "
              f"{COLORS['bonus']}bonus{RESET} plain")
    print(f"\n[{args.drafter}, k={args.k}{' adaptive' if args.adaptive else ''}, {config.effective_method}, {sampling.describe()}]")
    print(format_stats(out.stats))
    return 0


def lookup_tree_matches(spec: str) -> int:
    """'lookup:M' -> M (>= 1)."""
    try:
        m = int(spec.split(":", 1)[1])
    except (IndexError, ValueError):
        m = 0
    if m < 1:
        raise ValueError(f"--tree lookup:M needs a number of matches M >= 1, got {spec!r}")
    return m


def _generate_tree(args, sampling, texts) -> int:
    from .engine.tree import PromptLookupTreeDrafter, TreeGenerator, TreeShape
    from .models.registry import parse_drafter

    method = args.method or "spectr"
    if method not in ("spectr", "rrs", "rrs-wor"):
        raise ValueError(f"--tree verifies with --method spectr, rrs or rrs-wor, got {method}")
    kind, name = parse_drafter(args.drafter)
    if args.tree.startswith("lookup:") or kind == "prompt-lookup":
        if kind != "prompt-lookup" or not args.tree.startswith("lookup:"):
            raise ValueError("prompt-lookup trees are --drafter prompt-lookup --tree lookup:M; model drafters take "
                             "--tree static:... or dynamic:N")
        if not 1 <= args.k <= 64:
            raise ValueError(f"-k (tokens per match) must be in [1, 64] for a lookup tree, got {args.k}")
        drafter = PromptLookupTreeDrafter(lookup_tree_matches(args.tree), args.k)
        method = "rrs"  # deterministic children: recursive rejection with a one-hot q per child
        setup = build(args.model, "none", sampling, args.dtype)
        return _run_tree(args, setup, TreeGenerator(setup.target, drafter, method), sampling, method, texts)
    shape = TreeShape.parse(args.tree)
    if kind not in ("model", "early-exit"):
        raise ValueError("--tree needs a draft model (--drafter model:NAME or early-exit:N) or --drafter prompt-lookup "
                         "with --tree lookup:M")
    setup = build(args.model, args.drafter, sampling, args.dtype)
    mode = "topm" if sampling.is_greedy else ("wor" if method == "rrs-wor" else "iid")
    if kind == "early-exit":
        from .engine import CausalLM
        from .models.registry import early_exit_model

        draft = CausalLM(early_exit_model(setup.target.model, int(name)), name=args.drafter)
    else:  # a standalone draft model or an EAGLE head
        d = setup.generator.drafter
        draft = getattr(d, "lm", None) or d.head
    drafter = tree_drafter_for(draft, setup.target, sampling, shape, mode)
    return _run_tree(args, setup, TreeGenerator(setup.target, drafter, method), sampling, method, texts)


def _run_tree(args, setup, gen, sampling, method, texts) -> int:
    tok = setup.tokenizer
    config = GenerationConfig(max_new_tokens=args.max_new_tokens, sampling=sampling, eos_token_ids=eos_ids(tok))
    g = torch.Generator().manual_seed(args.seed)
    decode = (lambda ids: tok.decode(ids, skip_special_tokens=True)) if hasattr(tok, "convert_ids_to_tokens") else tok.decode
    records = []
    for text in texts:
        out = gen.generate(encode_prompt(tok, text, not args.no_chat), config, g)
        records.append({"prompt": text, "text": decode(out.tokens[0]), "tokens": out.tokens[0], "stats": out.stats.as_dict()})
        if not args.json:
            print(decode(out.tokens[0]))
            print(f"\n[tree {args.tree}, {method if not sampling.is_greedy else 'greedy'}, {sampling.describe()}]")
            print(format_stats(out.stats))
    if args.json:
        print(json.dumps({"model": args.model, "drafter": args.drafter, "tree": args.tree, "method": method, "outputs": records}))
    return 0


DEMO_PROMPT = ("Copy this text exactly, word for word:\n\n"
               "Speculative decoding makes a language model generate faster without changing what it generates. "
               "A cheap drafter guesses the next few tokens, the model checks all of them in one forward pass, "
               "and a rejection sampling rule keeps exactly the tokens the model itself would have produced.")


def cmd_demo(args) -> int:
    """Plain greedy vs speculative (prompt lookup) on the real model, same process, same output."""
    sampling = SamplingConfig(0.0)
    setup = build(args.model, "prompt-lookup", sampling, args.dtype)
    tok = setup.tokenizer
    ids = encode_prompt(tok, DEMO_PROMPT, True)
    print(f"model: {args.model} ({args.dtype}), prompt of {len(ids)} tokens, greedy, up to {args.max_new_tokens} new tokens\n")
    print(f"prompt: {DEMO_PROMPT}\n")
    results = {}
    for label, k, adaptive in [("plain", 0, False), ("speculative (prompt lookup, k=8)", 8, False),
                               ("speculative (prompt lookup, adaptive k<=16)", 16, True)]:
        cfg = GenerationConfig(max_new_tokens=args.max_new_tokens, k=k, adaptive=adaptive, sampling=sampling,
                               eos_token_ids=eos_ids(tok))
        out = setup.generator.generate([ids], cfg, torch.Generator().manual_seed(0))
        results[label] = out
        text = tok.decode(out.tokens[0], skip_special_tokens=True)
        pieces = []
        for t, kind in zip(out.tokens[0], out.kinds[0]):
            piece = tok.decode([t], skip_special_tokens=True)
            pieces.append(f"{COLORS[kind]}{piece}{RESET}" if COLORS.get(kind) and sys.stdout.isatty() else piece)
        print(f"=== {label}: {out.stats.new_tokens} tokens, {out.stats.tokens_per_second:.1f} tok/s")
        print("".join(pieces) if sys.stdout.isatty() else text)
        print(format_stats(out.stats) + "\n")
    base = results["plain"]
    for label, out in results.items():
        if label == "plain":
            continue
        same = out.tokens == base.tokens
        ratio = out.stats.tokens_per_second / base.stats.tokens_per_second
        print(f"{label}: {ratio:.2f}x the tokens/s of plain decoding; output identical to plain greedy: {same}")
        if not same:
            print("ERROR: speculative output differs from plain greedy", file=sys.stderr)
            return 1
    return 0
