"""``specdecode step-sim``: seed 002's ``speculative_decode_sim`` on probabilities you give, once or many times."""

from __future__ import annotations

import collections
import json
import random

import torch

from ..analysis.simulate import speculative_decode_sim
from ..core.validation import check_int, check_probs
from .common import float_rows, ints

NAME = "step-sim"
HELP = "seed 002: one draft-verify step on given draft/target probabilities (speculative_decode_sim)"
DESCRIPTION = (
    "Runs seed 002's speculative_decode_sim on the distributions you give: --q has one row per draft token, "
    "--p one row per draft token plus an optional last row for the bonus token (rows separated by ';'). "
    "Prints the step's result as JSON (with the corrected counts; --seed-compatible gives the seed's own "
    "output), or with --runs N the distribution of emitted tokens over N steps."
)


def add_args(ap) -> None:
    ap.add_argument(
        "--q",
        type=float_rows,
        required=True,
        help="draft distributions, one row per draft token: '0.5,0.5,0;0.2,0.3,0.5'",
    )
    ap.add_argument(
        "--p", type=float_rows, required=True, help="target distributions: k rows, or k + 1 with the bonus row"
    )
    ap.add_argument(
        "--tokens",
        type=ints,
        help="the drafted tokens, one per --q row: '0,2' (default: drawn from --q at every step, as a draft would)",
    )
    ap.add_argument("--runs", type=int, default=1, help="steps to simulate (default 1: print that step)")
    ap.add_argument("--seed", type=int, default=0, help="seed of Python's random module (default 0)")
    ap.add_argument(
        "--seed-compatible",
        action="store_true",
        help="the seed's own output: uniform fallback residual, no corrected counts",
    )


def _check(args) -> int:
    k, V = len(args.q), len(args.q[0])
    check_int("--runs", args.runs, 1, 10_000_000)
    if args.tokens is not None and len(args.tokens) != k:
        raise ValueError(f"--tokens needs one token per --q row ({k}), got {len(args.tokens)}")
    if len(args.p) not in (k, k + 1):
        raise ValueError(f"--p needs {k} rows (or {k + 1} with the bonus row), got {len(args.p)}")
    for name, rows in (("--q", args.q), ("--p", args.p)):
        for i, row in enumerate(rows):
            if len(row) != V:
                raise ValueError(f"{name} row {i} has {len(row)} entries, the vocabulary has {V}")
            check_probs(f"{name} row {i}", torch.tensor(row, dtype=torch.float64))
    for i, t in enumerate(args.tokens or []):
        if not 0 <= t < V:
            raise ValueError(f"--tokens[{i}] must be in [0, {V - 1}], got {t}")
        if args.q[i][t] == 0:
            raise ValueError(f"--tokens[{i}] = {t} has q = 0 at position {i}: a draft never samples it")
    return V


def _draft(args, V: int) -> list[int]:
    if args.tokens is not None:
        return args.tokens
    return [random.choices(range(V), weights=row)[0] for row in args.q]


def run(args) -> int:
    V = _check(args)
    random.seed(args.seed)
    corrected = not args.seed_compatible
    if args.runs == 1:
        tokens = _draft(args, V)
        print(
            json.dumps(
                {"draft_tokens": tokens, **speculative_decode_sim(args.q, args.p, tokens, V, corrected=corrected)},
                indent=2,
            )
        )
        return 0
    counts, first = collections.Counter(), collections.Counter()
    for _ in range(args.runs):
        out = speculative_decode_sim(args.q, args.p, _draft(args, V), V, corrected=corrected)
        counts[out["num_accepted"]] += 1
        first[out["tokens"][0]] += 1
    print(
        f"{args.runs} steps: tokens emitted per step "
        + ", ".join(f"{n}: {c / args.runs:.4f}" for n, c in sorted(counts.items()))
        + f"; mean {sum(n * c for n, c in counts.items()) / args.runs:.4f}"
    )
    if args.tokens is None:
        print("first emitted token (drafts drawn from q): frequency vs p's first row, which it must follow")
    else:
        print("first emitted token (the drafts were fixed by --tokens, so it does not follow p's first row)")
    for v in range(V):
        print(f"  {v}: {first[v] / args.runs:.4f}  p = {args.p[0][v]:.4f}")
    return 0
