"""Seed 004's per-token view and ANALYSIS block, corrected: for each draft token of a simulated step, q(x) (draft),
p(x) (target), the acceptance probability min(1, p/q) and the uniform draw u that decided it; then the analysis
text with the run's measured numbers.

Not here: the simulation itself (``simulate.run_demo``) or any model.
"""

from __future__ import annotations

from .theory import expected_tokens_per_step, speedup


def format_token_view(st, steps: int) -> str:
    """The first ``steps`` steps of a ``run_demo`` result, one line per draft token."""
    lines = ["=== Per-token view: accept draft token x when u < min(1, p(x) / q(x)), u ~ U[0, 1) ==="]
    for i, ((words, _flags, out, kind), probs) in enumerate(zip(st.steps[:steps], st.probs[:steps]), 1):
        lines += [
            f"Step {i}:",
            f"  {'pos':>3}  {'draft token':<12} {'p_draft':>8} {'p_target':>9} {'accept prob':>11} "
            f"{'uniform u':>10}  verdict",
        ]
        rejected = False
        for j, (word, (q, p, a, u)) in enumerate(zip(words, probs)):
            if rejected:
                verdict = "- not checked (after a rejection)"
            elif u < a:
                verdict = "✓ accept" + (" (p >= q: always)" if a >= 1.0 else "")
            else:
                verdict = f"✗ reject: '{out[-1]}' drawn from the residual (p - q)+"
                rejected = True
            lines.append(f"  {j:>3}  {word:<12} {q:>8.4f} {p:>9.4f} {a:>11.4f} {u:>10.4f}  {verdict}")
        if kind == "bonus":
            lines.append(f"  all {len(words)} accepted: bonus token '{out[-1]}' drawn from p at the next position")
        lines.append(f"  emitted {len(out)} token(s) for 1 target pass: {out}")
    return "\n".join(lines)


def format_analysis(st, k: int, alpha: float, draft_cost: float) -> str:
    """Seed 004's ANALYSIS block with this run's numbers (and without its claims that do not hold)."""
    checked = st.accepted + st.recovered
    measured = st.accepted / max(checked, 1)
    return "\n".join(
        [
            "=" * 70,
            " ANALYSIS",
            "=" * 70,
            "How speculative decoding works:",
            f"1. DRAFT: the draft proposes k = {k} tokens, one draft pass each (cost c = {draft_cost} of a target "
            f"pass).",
            "2. VERIFY: the target scores every draft position (and one more) in ONE forward pass.",
            "3. ACCEPT/REJECT: draft token x is accepted with probability min(1, p(x)/q(x)) (always when p >= q);",
            "   at the first rejection a token is drawn from the residual (p - q)+ normalised, and the step ends;",
            "   if all k are accepted, a bonus token is drawn from p at position k+1 (the seed forgot this one).",
            "4. GUARANTEE: every emitted token follows p exactly (`specdecode distribution` shows one step by "
            "enumeration).",
            "",
            "This run:",
            f"- per-token acceptance {measured:.0%} measured ({st.accepted}/{checked} checked drafts) vs alpha = "
            f"{alpha:.0%}",
            f"- tokens per target pass {st.tokens / st.target_calls:.2f} measured vs (1 - a^(k+1))/(1 - a) = "
            f"{expected_tokens_per_step(alpha, k):.2f}",
            f"- speedup in the cost model S = E[tokens] / (k c + 1) = {speedup(alpha, k, draft_cost):.2f}x: the "
            f"draft's "
            f"cost is {k * draft_cost:.2f} target passes per step, not negligible",
            "",
            "When it helps most: high alpha (draft close to target), cheap drafts (small c), memory-bound decoding "
            "where",
            "a pass over k+1 tokens costs about one over 1 token. When it helps less: low alpha, expensive drafts, and",
            "compute-bound passes (a CPU or a large batch), where verifying k+1 tokens costs up to k+1 passes.",
        ]
    )
