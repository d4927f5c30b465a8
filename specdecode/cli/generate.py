"""``specdecode generate``: speculative generation on a real model, streamed, with statistics.

Chains and trees run through the same engine: streaming, stop strings, batches and --json alike.
"""

from __future__ import annotations

import json
import sys

import torch

from ..core.sampling import SamplingConfig
from ..engine import K_MAX, Constraint, GenerationConfig, GenerationOutput, format_stats
from ..models.build import DRAFTER_HELP, Builder, check_specs
from ..verify import METHODS
from .common import add_corpus_args, add_model_args, builder_from, corpus_tokens, prompt_lines

NAME = "generate"
HELP = "speculative generation on a real model (streams text, prints stats)"
DESCRIPTION = (
    "Generate with exact speculative decoding. Output distribution = the target's; at temperature 0 the output "
    "equals plain greedy decoding token for token."
)
COLORS = {"accepted": "\033[32m", "forced": "\033[35m", "recovered": "\033[33m", "bonus": "\033[36m", "plain": ""}
RESET = "\033[0m"
SEED_MAX = (1 << 63) - 1


def add_args(ap) -> None:
    ap.add_argument("prompt", nargs="?", help="prompt text (or use --batch-file)")
    add_model_args(ap)
    ap.add_argument("--drafter", default="prompt-lookup", help=f"{DRAFTER_HELP} (default prompt-lookup)")
    add_corpus_args(ap)
    ap.add_argument(
        "-k",
        type=int,
        default=4,
        help=f"draft tokens per step, 0-{K_MAX} (the upper bound with --adaptive; with "
        "--tree lookup:M the tokens per match; default 4)",
    )
    ap.add_argument(
        "--adaptive",
        action="store_true",
        help="choose k (trees: the depth) each step from the running acceptance and the measured costs",
    )
    ap.add_argument(
        "--costs",
        metavar="FILE",
        help="with --adaptive: the pass-cost table (T(n) per tokens fed, seconds per draft token) to read; "
        "a missing FILE is measured now and written there, so seeded adaptive runs repeat on any "
        "machine given it (default: the table kept per model in the cache, measured once)",
    )
    ap.add_argument(
        "--method",
        default=None,
        choices=list(METHODS),
        help="verification method: chains tokenwise (default) | block | greedy | gumbel | typical (LOSSY); "
        "trees spectr (default) | rrs | rrs-wor. Temperature 0 always verifies greedily",
    )
    ap.add_argument(
        "--tree",
        help="tree speculation, one target pass verifies the whole tree. With a model drafter (a draft model, "
        "an EAGLE head from `specdecode distill`, early-exit:N): static:B1,B2,... (children per "
        "depth; the shape sets the depth) or dynamic:N (node budget); with --drafter prompt-lookup: "
        "lookup:M (up to M n-gram matches, -k tokens each, merged); with --drafter suffix: lookup:M (up to M "
        "children a node, by frequency)",
    )
    ap.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default 0)")
    ap.add_argument("--top-k", type=int, default=None, help="keep the K most likely tokens (sampled only)")
    ap.add_argument("--top-p", type=float, default=None, help="keep the nucleus of mass P, in (0, 1] (sampled only)")
    ap.add_argument(
        "--min-p",
        type=float,
        default=None,
        help="keep tokens at least MIN_P times as likely as the most likely one, in [0, 1] (sampled only; "
        "applied after top-k and top-p, as Hugging Face's warpers)",
    )
    ap.add_argument(
        "--seed", type=int, default=0, help=f"seed of the explicit torch.Generator, 0-{SEED_MAX} (default 0)"
    )
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--batch-file", help="file with one prompt per line, generated as one batch")
    ap.add_argument("--no-chat", action="store_true", help="do not wrap prompts in the model's chat template")
    ap.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    ap.add_argument("--json", action="store_true", help="print one machine-readable JSON record")
    ap.add_argument(
        "--logprobs",
        type=int,
        metavar="N",
        help="with --json: each token's log-probability (the distribution it was drawn from; greedy: the model's "
        "softmax) and its N most probable alternatives, 0-20",
    )
    add_constraint_args(ap)
    ap.add_argument(
        "--show-drafts",
        action="store_true",
        help="color tokens: green accepted draft, magenta forced by the grammar, yellow recovered, cyan bonus",
    )


def add_constraint_args(ap) -> None:
    """--json-schema FILE | --json-object | --regex PATTERN, and --no-forced-tokens."""
    shape = ap.add_mutually_exclusive_group()
    shape.add_argument("--json-schema", metavar="FILE", help="the output is JSON valid against the schema in FILE")
    shape.add_argument("--json-object", action="store_true", help="the output is a JSON object")
    shape.add_argument("--regex", metavar="PATTERN", help="the output matches the regular expression PATTERN")
    ap.add_argument(
        "--no-forced-tokens",
        action="store_true",
        help="with a constraint: do not draft the tokens the grammar forces (they are drafted with q = 1 by default; "
        "the output is the same either way)",
    )


def prompts_from(args) -> list[str]:
    if args.batch_file:
        if args.prompt is not None:
            raise ValueError("give either a prompt or --batch-file, not both")
        return prompt_lines(args.batch_file, "--batch-file")
    if args.prompt is None:
        raise ValueError("give a prompt, or --batch-file")
    return [args.prompt]


def generation_config(args, builder: Builder, sampling: SamplingConfig) -> GenerationConfig:
    return GenerationConfig(
        max_new_tokens=args.max_new_tokens,
        k=args.k,
        adaptive=args.adaptive,
        method=args.method,
        sampling=sampling,
        eos_token_ids=builder.eos,
        stop_strings=tuple(args.stop),
        costs=args.costs,
        constraint=constraint_from(args),
        logprobs=args.logprobs,
    )


def constraint_from(args) -> Constraint | None:
    """--json-schema FILE | --json-object | --regex PATTERN -> the output's constraint (None: free text)."""
    forced = not args.no_forced_tokens
    if args.regex is not None:
        try:
            return Constraint.regex(args.regex, forced)
        except ValueError as exc:
            raise ValueError(f"--regex: {exc}") from None
    if args.json_object:
        return Constraint.json_object(forced)
    if args.json_schema is None:
        return None
    try:
        with open(args.json_schema, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ValueError(f"cannot read --json-schema {args.json_schema}: {exc.strerror}") from None
    try:
        return Constraint.json_schema(text, forced=forced)
    except ValueError as exc:
        raise ValueError(f"--json-schema {args.json_schema}: {exc}") from None


def run(args) -> int:
    if not 0 <= args.k <= K_MAX:
        raise ValueError(f"-k must be in [0, {K_MAX}], got {args.k}")
    if not 0 <= args.seed <= SEED_MAX:
        raise ValueError(f"--seed must be in [0, {SEED_MAX}], got {args.seed}")
    if args.logprobs is not None and not (args.json and 0 <= args.logprobs <= 20):
        raise ValueError(f"--logprobs takes 0-20 alternatives and needs --json, got {args.logprobs}")
    sampling = SamplingConfig(args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p)
    texts = prompts_from(args)
    check_specs(args.drafter, args.tree)
    if args.costs is not None and not args.adaptive:
        raise ValueError("--costs is the cost table of --adaptive: give --adaptive too")
    if args.tree and args.tree.startswith("lookup:") and args.k < 1:
        raise ValueError(f"-k (tokens per match) must be in [1, {K_MAX}] for a lookup tree, got {args.k}")
    builder = builder_from(args)
    gen = builder.generator(args.drafter, args.tree, corpus_tokens(args))
    config = generation_config(args, builder, sampling)
    method = gen.method_for(config)  # a method that does not fit the drafter fails before generating
    prompts = [builder.encode(t, not args.no_chat) for t in texts]
    stream = not args.json and len(prompts) == 1
    on_tokens = _streamer(builder.tokenizer, args.show_drafts) if stream else None
    out = gen.generate(prompts, config, torch.Generator().manual_seed(args.seed), on_tokens)
    _report(args, builder.tokenizer, texts, out, sampling, method.name, stream)
    return 0


def _streamer(tok, show_drafts: bool):
    """on_tokens for one row: print the text as it grows (decoded whole, so multi-token characters come out right)."""
    state = {"ids": [], "text": ""}

    def on_tokens(row, toks, kinds):
        for t, kind in zip(toks, kinds):
            state["ids"].append(t)
            text = tok.decode(state["ids"], skip_special_tokens=True)
            piece, state["text"] = text[len(state["text"]) :], text
            if show_drafts and COLORS.get(kind):
                piece = f"{COLORS[kind]}{piece}{RESET}"
            sys.stdout.write(piece)
            sys.stdout.flush()

    return on_tokens


def _logprob(x) -> dict:
    return {"token": x.token, "logprob": x.logprob, "top": [[t, lp] for t, lp in x.top]}


def _report(
    args, tok, texts: list[str], out: GenerationOutput, sampling: SamplingConfig, method: str, stream: bool
) -> None:
    def decode(ids):
        return tok.decode(ids, skip_special_tokens=True)

    if args.json:
        print(
            json.dumps(
                {
                    "model": args.model,
                    "backend": args.backend,
                    "drafter": args.drafter,
                    "tree": args.tree,
                    "k": args.k,
                    "adaptive": args.adaptive,
                    "method": method,
                    "sampling": sampling.describe(),
                    "seed": args.seed,
                    "outputs": [
                        {"prompt": t, "text": decode(ids), "tokens": ids, "kinds": kk, "finish_reason": r}
                        | ({"logprobs": [_logprob(x) for x in lps]} if args.logprobs is not None else {})
                        for t, ids, kk, r, lps in zip(
                            texts, out.tokens, out.kinds, out.finish_reasons, out.logprobs or [[]] * len(texts)
                        )
                    ],
                    "stats": out.stats.as_dict(),
                }
            )
        )
        return
    if stream:
        print()
    else:
        for i, (t, ids) in enumerate(zip(texts, out.tokens)):
            print(f"--- prompt {i}: {t}\n{decode(ids)}\n")
    if args.show_drafts:
        print(
            f"legend: {COLORS['accepted']}accepted draft{RESET} {COLORS['forced']}forced{RESET} "
            f"{COLORS['recovered']}recovered{RESET} "
            f"{COLORS['bonus']}bonus{RESET} plain"
        )
    what = f"tree {args.tree}" if args.tree else f"k={args.k}{' adaptive' if args.adaptive else ''}"
    print(f"\n[{args.drafter}, {what}, {method}, {sampling.describe()}]")
    print(format_stats(out.stats))
