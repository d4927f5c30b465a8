"""``specdecode bench-generate``: interleaved benchmark of our engine vs Hugging Face generate."""

from __future__ import annotations

import json
import os
import sys

from ..bench.generate import TASKS, format_table
from ..bench.generate import run as run_bench
from ..models.build import Builder

NAME = "bench-generate"
HELP = "interleaved benchmark vs Hugging Face generate (plain and prompt lookup)"
DESCRIPTION = (
    "Runs, interleaved in one process on the same prompts: HF generate, HF generate with prompt_lookup_num_tokens=10, "
    "our plain decoding, ours with prompt lookup (fixed and adaptive k). Reports medians, ratios and the load average."
)


def add_args(ap) -> None:
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats per configuration (default 3)")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("-k", type=int, default=10, help="fixed draft length for our prompt lookup (default 10, as HF)")
    ap.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated subset of {', '.join(TASKS)}")
    ap.add_argument("--json", metavar="FILE", help="also write every record as JSON lines to FILE")


def run(args) -> int:
    tasks = [t for t in args.tasks.split(",") if t]
    bad = [t for t in tasks if t not in TASKS]
    if bad or not tasks:
        raise ValueError(f"unknown task(s) {', '.join(bad) or args.tasks!r}; choose from {', '.join(TASKS)}")
    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    builder = Builder(args.model, args.dtype)
    load_before = os.getloadavg()
    print(
        f"model {args.model} ({args.dtype}), greedy, max_new_tokens={args.max_new_tokens}, repeats={args.repeats}, "
        f"load average before: {load_before[0]:.2f} {load_before[1]:.2f}",
        file=sys.stderr,
    )
    records, names = run_bench(builder, tasks, args.repeats, args.max_new_tokens, args.k)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            for r in records:
                fh.write(json.dumps(r) + "\n")
    print(format_table(records, tasks, names))
    print(
        f"\nload average (1 min) before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}; "
        f"max seen during the run {max(r['load1'] for r in records):.2f} (2 cores)"
    )
    return 0
