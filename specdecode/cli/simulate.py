"""``specdecode simulate``: the seed 004 demo, corrected (bonus token, k draft passes per step, residual)."""

from __future__ import annotations

from ..analysis.simulate import format_demo, run_demo
from ..analysis.theory import expected_tokens_per_step
from ..analysis.token_view import format_analysis, format_token_view
from ..core.validation import check_int, check_prob_scalar

NAME = "simulate"
HELP = "seed 004 demo, corrected: draft/verify steps with per-token acceptance"
DESCRIPTION = (
    "Simulate speculative decoding steps on synthetic distributions whose overlap sum min(p,q) is exactly the "
    "acceptance rate; counts the bonus token, k draft passes per step, recovered tokens from the residual, and "
    "prints measured tokens per target call next to the formula."
)


def add_args(s) -> None:
    s.add_argument("--draft-length", "-k", type=int, default=5, help="draft tokens per step (default 5)")
    s.add_argument("--target-length", "-n", type=int, default=50, help="tokens to generate (default 50)")
    s.add_argument(
        "--acceptance-rate", "-a", type=float, default=0.75, help="alpha = sum min(p,q) per position (default 0.75)"
    )
    s.add_argument(
        "--draft-cost", type=float, default=0.1, help="draft forward cost as a fraction of the target's (default 0.1)"
    )
    s.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    s.add_argument(
        "--show-probs",
        type=int,
        default=0,
        metavar="STEPS",
        help="for the first STEPS steps, show each draft token's p_draft, p_target, acceptance probability "
        "and uniform draw, then the ANALYSIS block (seed 004's view; default 0 = off)",
    )
    s.add_argument(
        "--check-steps",
        type=int,
        default=5000,
        help="extra simulated steps for a tight tokens-per-call check (0 = off)",
    )


def run(args) -> int:
    check_int("--draft-length", args.draft_length, 1, 64)
    check_int("--target-length", args.target_length, 1)
    check_prob_scalar("--acceptance-rate", args.acceptance_rate)
    check_int("--show-probs", args.show_probs, 0, 10_000)
    if args.draft_cost < 0:
        raise ValueError(f"--draft-cost must be >= 0, got {args.draft_cost}")
    st = run_demo(args.draft_length, args.target_length, args.acceptance_rate, args.seed)
    print(format_demo(st, args.draft_length, args.target_length, args.acceptance_rate, args.draft_cost))
    if args.show_probs:
        print("\n" + format_token_view(st, args.show_probs))
        print("\n" + format_analysis(st, args.draft_length, args.acceptance_rate, args.draft_cost))
    if args.check_steps:
        k, a = args.draft_length, args.acceptance_rate
        long = run_demo(k, int(args.check_steps * expected_tokens_per_step(a, k)), a, args.seed + 1)
        counts = [len(out) for _, _, out, _ in long.steps]
        mean = sum(counts) / len(counts)
        se = (sum((c - mean) ** 2 for c in counts) / (len(counts) - 1)) ** 0.5 / len(counts) ** 0.5
        print(
            f"\nLong-run check ({len(counts)} more steps): {mean:.3f} ± {se:.3f} tokens per target call "
            f"vs formula {expected_tokens_per_step(a, k):.3f}"
        )
    return 0
