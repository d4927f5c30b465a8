"""``specdecode bench-trees``: draft trees vs a single draft chain on the real model, interleaved.

Same drafter (early exit of the target with its own KV cache, or a trained draft / EAGLE head from
``specdecode distill`` with ``--draft``; or prompt lookup), same prompts, greedy and sampled; chains of
k tokens vs trees whose verify pass holds a comparable number of tokens. Reports tokens per target call,
tokens/s and the speedup vs plain decoding from the same run.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import torch

from ..distill.data import encode
from ..engine import CausalLM, GenerationConfig, NoDrafter, PromptLookupDrafter, SpeculativeGenerator
from ..engine.tree import PromptLookupTreeDrafter, TreeGenerator, TreeShape
from ..models.registry import early_exit_model, load_model, load_tokenizer
from ..runtime import drafter_for, load_model_draft, tree_drafter_for
from ..sampling import SamplingConfig
from .tasks import TASKS

CONFIGS = [("plain", None, 0), ("chain k=4", None, 4), ("chain k=8", None, 8), ("tree static:2,2,1 (10 nodes)", "static:2,2,1", 0),
           ("tree static:4,1,1,1 (16 nodes)", "static:4,1,1,1", 0), ("tree dynamic:8", "dynamic:8", 0),
           ("tree dynamic:16", "dynamic:16", 0),
           ("prompt lookup chain k=8", "pld", 8), ("prompt lookup tree lookup:2 x 8 (<=16 nodes)", "lookup:2", 8),
           ("prompt lookup tree lookup:4 x 4 (<=16 nodes)", "lookup:4", 4)]


def add_args(ap) -> None:
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--early-exit", type=int, default=26, help="draft = the target's first N layers (default 26)")
    ap.add_argument("--draft", metavar="DIR", help="draft = this trained draft (`specdecode distill`: a draft model or an "
                                                  "EAGLE head) instead of early exit")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--tasks", default="summarisation,code-edit,story")
    ap.add_argument("--temperatures", default="0,0.8")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--only", help="comma-separated words: run only configurations whose name contains one of them "
                                   "(plain always runs), e.g. --only 'prompt lookup'")


def cmd(args) -> int:
    tasks = [t for t in args.tasks.split(",") if t]
    bad = [t for t in tasks if t not in TASKS]
    if bad:
        raise ValueError(f"unknown task(s) {', '.join(bad)}; choose from {', '.join(TASKS)}")
    temps = [float(x) for x in args.temperatures.split(",")]
    words = [w.strip() for w in (args.only or "").split(",") if w.strip()]
    configs = [c for c in CONFIGS if c[0] == "plain" or not words or any(w in c[0] for w in words)]
    target = CausalLM(load_model(args.model, args.dtype), name=args.model)
    tok = load_tokenizer(args.model, target.model)
    if args.draft:
        draft, draft_name = load_model_draft(args.draft, target, tok, args.dtype, args.model), f"model:{args.draft}"
    else:
        draft_name = f"early-exit:{args.early_exit}"
        draft = CausalLM(early_exit_model(target.model, args.early_exit), name=draft_name)
    eos = (int(tok.eos_token_id),) if getattr(tok, "eos_token_id", None) is not None else ()
    rows = []
    load0 = os.getloadavg()[0]
    for rep in range(args.repeats):
        for task in tasks:
            ids = encode(tok, TASKS[task][rep % len(TASKS[task])])
            for T in temps:
                cfg = SamplingConfig(T)
                gc_base = dict(max_new_tokens=args.max_new_tokens, sampling=cfg, eos_token_ids=eos)
                for name, tree, k in configs:
                    g = torch.Generator().manual_seed(rep)
                    t0 = time.perf_counter()
                    if tree == "pld":
                        out = SpeculativeGenerator(target, PromptLookupDrafter(), tok).generate([ids], GenerationConfig(k=k, **gc_base), g)
                    elif tree and tree.startswith("lookup:"):
                        drafter = PromptLookupTreeDrafter(int(tree.split(":")[1]), k)
                        out = TreeGenerator(target, drafter, "rrs").generate(ids, GenerationConfig(**gc_base), g)
                    elif tree:
                        method = "spectr"
                        mode = "topm" if cfg.is_greedy else "iid"
                        out = TreeGenerator(target, tree_drafter_for(draft, target, cfg, TreeShape.parse(tree), mode), method).generate(
                            ids, GenerationConfig(**gc_base), g)
                    else:
                        d = NoDrafter() if k == 0 else drafter_for(draft, target, cfg, draft_name)
                        out = SpeculativeGenerator(target, d, tok).generate([ids], GenerationConfig(k=k, **gc_base), g)
                    dt = time.perf_counter() - t0
                    rows.append(dict(task=task, T=T, config=name, rep=rep, tok_s=out.stats.new_tokens / dt,
                                     tpc=out.stats.tokens_per_target_call))
                    print(f"  {task} T={T:g} {name}: {rows[-1]['tok_s']:.1f} tok/s, {rows[-1]['tpc']:.2f} tokens/call", file=sys.stderr)
    print(f"{'task':<14} {'T':>4} {'configuration':<46} {'tokens/call':>11} {'tok/s':>7} {'vs plain':>8}")
    for task in tasks:
        for T in temps:
            plain = [r for r in rows if r["task"] == task and r["T"] == T and r["config"] == "plain"]
            for name, _, _ in configs:
                rs = [r for r in rows if r["task"] == task and r["T"] == T and r["config"] == name]
                ratio = statistics.median(r["tok_s"] / p["tok_s"] for r, p in zip(rs, plain))
                print(f"{task:<14} {T:>4g} {name:<46} {statistics.median(r['tpc'] for r in rs):>11.2f} "
                      f"{statistics.median(r['tok_s'] for r in rs):>7.1f} {ratio:>7.2f}x")
    model_rows = any((tree is None and k > 0) or (tree or "").startswith(("static:", "dynamic:")) for _, tree, k in configs)
    print(f"\nload average (1 min) before {load0:.2f}, after {os.getloadavg()[0]:.2f} (2 cores)"
          + (f"; draft = {draft_name} ({args.dtype})" if model_rows else ""))
    return 0
