"""``specdecode bench-structured``: constrained plain vs constrained speculative decoding on the records-to-JSON
workload, with and without forced-token drafts, and the grammar mask cost.

Not here: running the configurations (``bench.structured``).
"""

from __future__ import annotations

import json
import os

from ..bench import structured
from ..bench.backends import pass_costs
from ..models.build import BACKENDS, Builder
from .common import add_prefix_args, prefix_cache

NAME = "bench-structured"
HELP = "constrained (JSON schema) plain vs speculative decoding, forced-token drafts, mask cost"
DESCRIPTION = (
    "Runs the repetitive records-to-JSON requests (prompts/repetitive.py) constrained to their schema: constrained "
    "plain decoding, forced-token drafts only, suffix and prompt-lookup adaptive drafting with and without forced "
    "tokens, and free plain decoding; interleaved repeats, greedy, medians. Reports the ratio to constrained plain "
    "decoding, tokens per target call, forced tokens accepted, the grammar mask time and its share of a one-token "
    "pass T(1), whether every output is valid against the schema and equal to constrained plain decoding's."
)


def add_args(ap) -> None:
    ap.add_argument("--model", default="smollm2-135m", help="a registry name (default smollm2-135m)")
    ap.add_argument("--backend", default="llama.cpp", choices=list(BACKENDS), help="default llama.cpp")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats, >= 1 (default 3)")
    ap.add_argument("--max-new-tokens", type=int, default=96, help="per request, >= 1 (default 96)")
    ap.add_argument(
        "--configs",
        default=",".join(structured.CONFIGS),
        help=f"comma-separated configurations among: {'; '.join(structured.CONFIGS)}",
    )
    add_prefix_args(ap, 8)
    ap.add_argument("--json", metavar="FILE", help="also write the table as JSON lines to FILE")


def run(args) -> int:
    if args.repeats < 1 or args.max_new_tokens < 1:
        raise ValueError(f"--repeats and --max-new-tokens must be >= 1, got {args.repeats} and {args.max_new_tokens}")
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    bad = [n for n in names if n not in structured.CONFIGS]
    if bad or not names:
        raise ValueError(f"--configs: unknown {bad or args.configs!r}; choose from {', '.join(structured.CONFIGS)}")
    builder = Builder(args.model, "fp32", backend=args.backend, prefix_cache=prefix_cache(args))
    load0 = os.getloadavg()[0]
    t1 = pass_costs(builder.target, n_max=1)[1]
    print(
        f"model {args.model} on {args.backend}; prefix cache {args.prefix_cache}; T(1) = {t1:.2f} ms; "
        f"load average {load0:.2f}"
    )
    results = structured.run_bench(builder, args.repeats, args.max_new_tokens, names)
    rows = structured.table(builder, results, t1)
    print(structured.format_rows(rows))
    print(f"load average: {load0:.2f} at start, {os.getloadavg()[0]:.2f} at the end")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)
    return 0
