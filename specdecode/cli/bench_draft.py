"""``specdecode bench-draft``: a trained draft vs plain decoding and HF on held-out prompts, interleaved."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..bench import draft as bench_draft
from ..bench.run import Runner
from ..engine import TreeShape
from ..models.cache import default_draft_dir
from .bench_trees import float_list, task_list

NAME = "bench-draft"
HELP = "a trained draft vs plain decoding and HF on held-out open-ended prompts"
DESCRIPTION = (
    "Interleaved on held-out prompts (bench chat + story, never used by distill): our plain decoding, the "
    "trained draft at fixed and adaptive k, HF generate and HF assisted generation with the same draft; alpha, "
    "c, tokens per call, speedups, S(alpha, k, c)."
)


def add_args(ap) -> None:
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument(
        "--draft", help="trained draft folder (default: the default output of `specdecode distill --model MODEL`)"
    )
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument(
        "--tasks",
        default="chat,story",
        help="comma-separated task categories (default chat,story: held out from training)",
    )
    ap.add_argument("--temperatures", default="0,0.8")
    ap.add_argument(
        "-k", default="3,5", help="fixed draft lengths to run, comma-separated (adaptive k always runs; default 3,5)"
    )
    ap.add_argument("--prompts", type=int, default=4, help="prompts per task (default 4)")
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument(
        "--tree",
        action="append",
        default=[],
        metavar="SPEC",
        help="also run draft trees of this shape (static:B1,B2,... or dynamic:N; repeatable), grown by the "
        "draft (EAGLE heads: one head pass per depth) and verified with rrs-wor (greedy walk at T=0)",
    )
    ap.add_argument("--no-hf", action="store_true", help="skip the Hugging Face baselines")
    ap.add_argument("--json", metavar="FILE", help="also write every record as JSON lines to FILE")


def _ints(text: str, name: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{name} must be comma-separated integers, got {text!r}") from None
    if any(v < 1 for v in vals):
        raise ValueError(f"{name} values must be >= 1, got {text!r}")
    return vals


def run(args) -> int:
    path = args.draft or str(default_draft_dir(args.model))
    if not Path(path).expanduser().is_dir():
        raise ValueError(
            f"no trained draft in {path}: run `specdecode distill --model {args.model}` first or pass --draft"
        )
    tasks, temps, ks = task_list(args.tasks), float_list(args.temperatures, "--temperatures"), _ints(args.k, "-k")
    if not 1 <= args.prompts <= 10:
        raise ValueError(f"--prompts must be in [1, 10], got {args.prompts}")
    for spec in args.tree:
        TreeShape.parse(spec)  # a bad shape fails before any model loads
    runner = Runner(args.model, args.dtype)
    runner.draft_model(path)
    load0 = os.getloadavg()[0]
    records = bench_draft.run(
        runner, path, tasks, temps, ks, args.tree, args.prompts, args.max_new_tokens, not args.no_hf
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            for r in records:
                fh.write(json.dumps(r) + "\n")
    print(bench_draft.format_table(records, tasks, temps))
    print(
        f"\ndraft {path}; {args.prompts} prompts per task, up to {args.max_new_tokens} new tokens; load average (1 "
        f"min) "
        f"before {load0:.2f}, max during the run {max(r['load1'] for r in records):.2f} (2 cores)"
    )
    return 0
