"""``specdecode bench-trees``: draft trees vs a draft chain on the real model (same drafter), interleaved."""

from __future__ import annotations

import os

from ..bench import trees
from ..models.build import Builder, check_specs
from ..prompts import TASKS

NAME = "bench-trees"
HELP = "draft trees vs a draft chain on the real model (same early-exit drafter)"
DESCRIPTION = (
    "Interleaved: plain decoding, chains k=4/8 and trees (static, dynamic) with an early-exit draft of the target "
    "(or --draft); prompt-lookup chains and trees; tokens per target call, tokens/s, speedup vs plain."
)


def add_args(ap) -> None:
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--early-exit", type=int, default=26, help="draft = the target's first N layers (default 26)")
    ap.add_argument(
        "--draft",
        metavar="DIR",
        help="draft = this trained draft (`specdecode distill`: a draft model or an EAGLE head) instead of early exit",
    )
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--tasks", default="summarisation,code-edit,story")
    ap.add_argument("--temperatures", default="0,0.8")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument(
        "--only",
        help="comma-separated words: run only configurations whose name contains one of them "
        "(plain always runs), e.g. --only 'prompt lookup'",
    )


def task_list(text: str) -> list[str]:
    tasks = [t for t in text.split(",") if t]
    bad = [t for t in tasks if t not in TASKS]
    if bad or not tasks:
        raise ValueError(f"unknown task(s) {', '.join(bad) or text!r}; choose from {', '.join(TASKS)}")
    return tasks


def float_list(text: str, name: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{name} must be comma-separated numbers, got {text!r}") from None


def run(args) -> int:
    tasks, temps = task_list(args.tasks), float_list(args.temperatures, "--temperatures")
    configs = trees.select(args.only)
    draft = f"model:{args.draft}" if args.draft else f"early-exit:{args.early_exit}"
    check_specs(draft)
    builder = Builder(args.model, args.dtype)
    load0 = os.getloadavg()[0]
    rows = trees.run(builder, draft, tasks, temps, configs, args.max_new_tokens, args.repeats)
    print(trees.format_table(rows, tasks, temps, configs))
    model_rows = any(
        (tree is None and k > 0) or (tree or "").startswith(("static:", "dynamic:")) for _, tree, k in configs
    )
    print(
        f"\nload average (1 min) before {load0:.2f}, after {os.getloadavg()[0]:.2f} (2 cores)"
        + (f"; draft = {draft} ({args.dtype})" if model_rows else "")
    )
    return 0
