"""``specdecode rho``: SpecTr's rho* and the acceptance of K drafts (SpecTr, recursive rejection sampling)."""

from __future__ import annotations

import torch

from ..analysis.theory import acceptance_rate, rho_star, rrs_acceptance, spectr_acceptance
from ..core.validation import check_int, check_probs
from .common import floats, ints

NAME = "rho"
HELP = "seed 003: rho* and the acceptance probability of K drafts for given p and q"
DESCRIPTION = (
    "For a target distribution p and a draft distribution q, prints per K: SpecTr's rho* (1 - (1 - beta)^K = "
    "rho beta, beta(rho) = sum min(q, p / rho)), the probability that one of K i.i.d. drafts is accepted "
    "(SpecTr), and recursive rejection sampling's with and without replacement; K = 1 is sum min(p, q)."
)


def add_args(ap) -> None:
    ap.add_argument(
        "--p", type=floats, default=[0.4, 0.3, 0.2, 0.1], help="target distribution (default 0.4,0.3,0.2,0.1)"
    )
    ap.add_argument(
        "--q", type=floats, default=[0.1, 0.2, 0.3, 0.4], help="draft distribution (default 0.1,0.2,0.3,0.4)"
    )
    ap.add_argument("-K", type=ints, default=[1, 2, 4, 8], help="numbers of drafts, comma-separated (default 1,2,4,8)")


def run(args) -> int:
    if len(args.p) != len(args.q):
        raise ValueError(f"--p and --q must have the same length, got {len(args.p)} and {len(args.q)}")
    check_probs("--p", torch.tensor(args.p, dtype=torch.float64))
    check_probs("--q", torch.tensor(args.q, dtype=torch.float64))
    for K in args.K:
        check_int("-K", K, 1, 1024)
    print(f"p = {args.p}\nq = {args.q}\nsum min(p, q) = {float(acceptance_rate(args.p, args.q)):.6f}\n")
    print(f"{'K':>4} {'rho*':>9} {'SpecTr':>9} {'RRS with repl.':>15} {'RRS w/o repl.':>14}")
    support = sum(x > 0 for x in args.q)
    for K in args.K:
        small = support**K <= 50_000  # RRS is computed by enumerating every draw: only for small V^K
        rrs = f"{rrs_acceptance(args.p, args.q, K, replacement=True):>15.5f}" if small else f"{'(too large)':>15}"
        wor = (
            f"{rrs_acceptance(args.p, args.q, K, replacement=False):>14.5f}"
            if small and K <= support
            else f"{'n/a':>14}"
        )
        print(f"{K:>4} {rho_star(args.p, args.q, K):>9.5f} {spectr_acceptance(args.p, args.q, K):>9.5f} {rrs} {wor}")
    return 0
