"""``specdecode distribution``: the seed 000 experiment, one speculative step's exact and empirical output vs p."""

from __future__ import annotations

from ..analysis.simulate import plot_step_distribution, step_distribution
from .common import floats

NAME = "distribution"
HELP = "seed 000 experiment: exact and empirical output of one speculative step vs p"
DESCRIPTION = (
    "One speculative step with one draft token x ~ q: the exact distribution of the emitted token (by "
    "enumeration) and an empirical one from n samples, next to p, with an optional bar chart."
)


def add_args(d) -> None:
    d.add_argument(
        "--p",
        type=floats,
        default=[0.4, 0.3, 0.2, 0.1],
        help="target distribution, comma-separated (default 0.4,0.3,0.2,0.1)",
    )
    d.add_argument(
        "--q", type=floats, default=[0.3, 0.4, 0.2, 0.1], help="draft distribution (default 0.3,0.4,0.2,0.1)"
    )
    d.add_argument(
        "--samples", "-n", type=int, default=100_000, help="samples for the empirical distribution (default 100000)"
    )
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--plot", metavar="PNG", help="write a bar chart (p, exact, empirical) to this file")


def run(args) -> int:
    d = step_distribution(args.p, args.q, samples=args.samples, seed=args.seed)
    print(d.table())
    if args.plot:
        plot_step_distribution(d, args.plot)
        print(f"bar chart written to {args.plot}")
    return 0
