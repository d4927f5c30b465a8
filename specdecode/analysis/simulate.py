"""Simulations from the project's seed documents, with their mistakes corrected.

* ``speculative_decode_sim`` -- the deep-ml exercise (seed 002): same signature, same
  return keys, same order of ``random.random()`` calls, hence identical results under the
  same ``random.seed``. Its statistics are kept for compatibility; ``corrected=True`` adds
  the right ones (see README "Corrections to the seeds").
* ``step_distribution`` -- the notebook experiment (seed 000): exact vs empirical output
  distribution of one speculative step, side by side with p.
* ``run_demo`` -- the tutorial demo (seed 004), corrected: real per-token rejection sampling
  on synthetic distributions with overlap exactly alpha, a bonus token when all k drafts
  are accepted, k draft forwards per step, recovered tokens drawn from the residual.

No model runs here.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

from ..core.enumerate import enumerate_outcomes
from ..core.rng import RecordingRNG, TorchRNG
from ..core.validation import check_int, check_probs
from ..verify.chain import tokenwise_verify
from .theory import expected_target_calls, expected_tokens_per_step, speedup

# ------------------------------------------------------------------ seed 002


def speculative_decode_sim(
    draft_probs: list[list[float]],
    target_probs: list[list[float]],
    draft_tokens: list[int],
    vocab_size: int,
    *,
    corrected: bool = False,
) -> dict:
    """Simulate one draft-verify step (seed 002 API). Uses the global ``random`` module like the seed.

    draft_probs[i] / target_probs[i]: distributions at position i (target_probs may hold a
    (K+1)-th row for the bonus token); draft_tokens[i]: token drafted at position i.

    Compatible keys: num_draft_tokens, num_accepted (tokens *emitted*, the recovered/bonus
    token included), acceptance_rate (= emitted / (K+1), not the draft acceptance rate),
    tokens, speedup_over_sequential (= emitted / 2). With ``corrected=True`` the step uses
    p (not uniform) as the fallback residual, adds the bonus token only when all K drafts were accepted (the
    seed adds one after a rejection at the last position too), and also returns: num_draft_accepted,
    draft_acceptance_rate (accepted drafts / K), num_recovered, num_bonus, target_calls (1)
    and draft_calls (K).
    """
    K = len(draft_tokens)
    accepted: list[int] = []
    n_draft_accepted = 0
    recovered = bonus = 0
    for i in range(K):
        token = draft_tokens[i]
        p = target_probs[i][token]
        q = draft_probs[i][token]
        if q == 0:
            break  # the seed stops without emitting; a draft cannot sample a q = 0 token
        if random.random() < min(1.0, p / q):
            accepted.append(token)
            n_draft_accepted += 1
            continue
        accepted.append(
            _inverse_cdf(_seed_residual(target_probs[i], draft_probs[i], vocab_size, corrected), vocab_size)
        )
        recovered = 1
        break
    # the seed's len(accepted) == K also holds after a rejection at the last draft (then a token from a wrong context)
    all_accepted = n_draft_accepted == K if corrected else len(accepted) == K
    if all_accepted and len(target_probs) > K:
        accepted.append(_inverse_cdf(target_probs[K], vocab_size))
        bonus = 1
    out = {
        "num_draft_tokens": K,
        "num_accepted": len(accepted),
        "acceptance_rate": round(len(accepted) / (K + 1), 4) if K > 0 else 0,
        "tokens": accepted,
        "speedup_over_sequential": round(len(accepted) / 2, 2),
    }
    if corrected:
        out.update(
            num_draft_accepted=n_draft_accepted,
            draft_acceptance_rate=round(n_draft_accepted / K, 4) if K > 0 else 0.0,
            num_recovered=recovered,
            num_bonus=bonus,
            target_calls=1,
            draft_calls=K,
        )
    return out


def _seed_residual(p: list[float], q: list[float], vocab_size: int, corrected: bool) -> list[float]:
    """norm((p - q)_+); when it is all zero the seed falls back to uniform, the corrected step to p."""
    adjusted = [max(0.0, p[v] - q[v]) for v in range(vocab_size)]
    z = sum(adjusted)
    if z > 0:
        return [a / z for a in adjusted]
    return list(p) if corrected else [1.0 / vocab_size] * vocab_size


def _inverse_cdf(probs, vocab_size):
    """The seed's sampler: first v with u <= cumulative sum; 0 if rounding leaves u above the sum."""
    r = random.random()
    cum = 0.0
    for v in range(vocab_size):
        cum += probs[v]
        if r <= cum:
            return v
    return 0


# ------------------------------------------------------------------ seed 000


@dataclass
class StepDistribution:
    p: list[float]
    q: list[float]
    exact: list[float]
    empirical: list[float]
    samples: int
    acceptance: float  # sum min(p, q)

    @property
    def max_exact_error(self) -> float:
        return max(abs(a - b) for a, b in zip(self.exact, self.p))

    @property
    def empirical_tv(self) -> float:
        return 0.5 * sum(abs(a - b) for a, b in zip(self.empirical, self.p))

    def table(self) -> str:
        lines = [f"{'x':>3} {'p(x)':>8} {'q(x)':>8} {'exact P(x)':>12} {'empirical':>10} {'|exact-p|':>10}"]
        for x, (pv, qv, e, m) in enumerate(zip(self.p, self.q, self.exact, self.empirical)):
            lines.append(f"{x:>3} {pv:>8.4f} {qv:>8.4f} {e:>12.10f} {m:>10.5f} {abs(e - pv):>10.2e}")
        lines.append(
            f"acceptance sum min(p,q) = {self.acceptance:.4f}; max |exact - p| = {self.max_exact_error:.2e}; "
            f"empirical TV = {self.empirical_tv:.4f} over {self.samples} samples"
        )
        return "\n".join(lines)


def step_distribution(p, q, samples: int = 100_000, seed: int = 0) -> StepDistribution:
    """One speculative step with k = 1 draft x ~ q, keeping the first emitted token: its exact
    distribution (by enumeration) and an empirical one (one batched call), next to p."""

    check_int("samples", samples, 1)
    pt = torch.tensor([float(v) for v in p], dtype=torch.float64)
    qt = torch.tensor([float(v) for v in q], dtype=torch.float64)
    if pt.shape != qt.shape:
        raise ValueError(f"p and q must have the same length, got {len(p)} and {len(q)}")
    check_probs("p", pt)
    check_probs("q", qt)
    V = pt.shape[0]

    def one_step(rng):
        x = rng.categorical(qt[None])
        res = tokenwise_verify(pt.expand(1, 2, V), qt.expand(1, 1, V), x[:, None], rng, validate=False)
        return int(res.tokens[0, 0])

    exact_d = enumerate_outcomes(one_step)
    exact = [float(exact_d.get(x, 0.0)) for x in range(V)]
    g = torch.Generator().manual_seed(seed)
    rng = TorchRNG(g)
    x = rng.categorical(qt.expand(samples, V))
    res = tokenwise_verify(pt.expand(samples, 2, V), qt.expand(samples, 1, V), x[:, None], rng, validate=False)
    counts = torch.bincount(res.tokens[:, 0], minlength=V).double() / samples
    return StepDistribution(
        pt.tolist(), qt.tolist(), exact, counts.tolist(), samples, float(torch.minimum(pt, qt).sum())
    )


def plot_step_distribution(d: StepDistribution, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = list(range(len(d.p)))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar([x - 0.27 for x in xs], d.p, 0.27, label="p(x) target", color="tab:blue")
    ax.bar(xs, d.exact, 0.27, label="exact (enumerated)", color="tab:green")
    ax.bar([x + 0.27 for x in xs], d.empirical, 0.27, label=f"empirical (n={d.samples})", color="tab:orange")
    ax.set_xlabel("Outcome")
    ax.set_ylabel("Probability")
    ax.set_title("Output of one speculative step vs p(x)")
    ax.set_xticks(xs)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------ seed 004

DEMO_VOCAB = [
    "the",
    "a",
    "is",
    "are",
    "was",
    "were",
    "has",
    "have",
    "had",
    "will",
    "would",
    "could",
    "should",
    "may",
    "might",
    "must",
    "and",
    "or",
    "but",
    "if",
    "then",
    "else",
    "when",
    "where",
    "who",
    "what",
    "which",
    "that",
    "this",
    "these",
    "those",
    "I",
    "you",
    "he",
    "she",
    "it",
    "we",
    "they",
    "me",
    "him",
    "her",
    "good",
    "bad",
    "big",
    "small",
    "new",
    "old",
    "first",
    "last",
    "time",
    "way",
    "year",
    "day",
    "thing",
    "man",
    "world",
    "life",
]


@dataclass
class DemoStats:
    steps: list = field(default_factory=list)  # (draft words, flags, emitted words, kind of last token)
    target_calls: int = 0
    draft_calls: int = 0
    proposed: int = 0
    accepted: int = 0
    recovered: int = 0
    bonus: int = 0
    tokens: int = 0
    probs: list = field(default_factory=list)  # per step: [(q(x), p(x), min(1, p/q), u)] per checked draft token


def demo_distributions(ctx_token: int, alpha: float, V: int, gen: torch.Generator):
    """p(.|ctx) Zipf-like on half the vocab; q = alpha p + (1 - alpha) u, u on the other half,
    so sum min(p, q) = alpha exactly in every context (the per-token acceptance probability)."""
    perm = torch.randperm(V, generator=gen)
    half = V // 2
    p = torch.zeros(V, dtype=torch.float64)
    p[perm[:half]] = 1.0 / torch.arange(1, half + 1, dtype=torch.float64)
    p /= p.sum()
    u = torch.zeros(V, dtype=torch.float64)
    u[perm[half:]] = torch.rand(V - half, generator=gen, dtype=torch.float64) + 0.1
    u /= u.sum()
    return p, alpha * p + (1 - alpha) * u


def run_demo(draft_length: int, target_length: int, alpha: float, seed: int) -> DemoStats:
    """Simulate draft/verify steps until target_length tokens exist (the last step may overshoot;
    the text is cut, the counts are not)."""
    V = len(DEMO_VOCAB)
    g = torch.Generator().manual_seed(seed)
    rng = RecordingRNG(g)
    dist_cache: dict = {}

    def dists(prev):
        if prev not in dist_cache:
            dist_cache[prev] = demo_distributions(prev, alpha, V, torch.Generator().manual_seed(seed * 100003 + prev))
        return dist_cache[prev]

    st = DemoStats()
    prev = 0
    emitted: list[int] = []
    while len(emitted) < target_length:
        k = draft_length
        xs, ps, qs = [], [], []
        ctx = prev
        for _ in range(k):  # k draft forwards per step
            p, q = dists(ctx)
            x = int(rng.categorical(q[None])[0])
            xs.append(x)
            ps.append(p)
            qs.append(q)
            ctx = x
        ps.append(dists(ctx)[0])
        st.draft_calls += k
        st.target_calls += 1
        res = tokenwise_verify(torch.stack(ps)[None], torch.stack(qs)[None], torch.tensor([xs]), rng, validate=False)
        n = int(res.num_accepted[0])
        out = res.emitted(0)
        st.probs.append(
            [
                (float(qs[i][x]), float(ps[i][x]), min(1.0, float(ps[i][x] / qs[i][x])), float(rng.last_u[0, i]))
                for i, x in enumerate(xs)
            ]
        )
        st.proposed += k
        st.accepted += n
        kind = "bonus" if n == k else "recovered"
        st.bonus += n == k
        st.recovered += n < k
        st.steps.append(([DEMO_VOCAB[x] for x in xs], res.accepted[0].tolist(), [DEMO_VOCAB[t] for t in out], kind))
        emitted.extend(out)
        prev = out[-1]
    st.tokens = len(emitted)
    st.text = " ".join(DEMO_VOCAB[t] for t in emitted[:target_length])
    return st


def format_demo(
    st: DemoStats, draft_length: int, target_length: int, alpha: float, draft_cost: float, show: int = 3
) -> str:
    k = draft_length
    lines = [
        "=== Speculative Decoding Demo (corrected) ===",
        "Settings:",
        f"  Draft length (k): {k}",
        f"  Target length: {target_length}",
        f"  Acceptance rate (alpha, per draft token): {alpha:.2f}",
        f"  Draft cost ratio (c): {draft_cost}",
        "",
    ]
    for i, (words, flags, out, kind) in enumerate(st.steps[:show], 1):
        marks = []
        rejected = False
        for f in flags:
            marks.append("[- skip]" if rejected else ("[✓ accept]" if f else "[✗ reject]"))
            rejected = rejected or not f
        lines += [
            f"Step {i}:",
            f"  Draft tokens: {words}",
            f"  Target verify: {' '.join(marks)}",
            f"  Emitted: {out} (last is a {kind} token; 1 target forward pass, {k} draft passes)",
        ]
    if len(st.steps) > show:
        lines.append("...")
    measured = st.tokens / st.target_calls
    formula = expected_tokens_per_step(alpha, k)
    counts = [len(out) for _, _, out, _ in st.steps]
    sd = (sum((c - measured) ** 2 for c in counts) / max(len(counts) - 1, 1)) ** 0.5
    se = sd / len(counts) ** 0.5
    cost = st.target_calls + st.draft_calls * draft_cost
    lines += [
        "",
        "Summary:",
        f"  Text: {st.text[:100]}...",
        f"  Tokens generated: {st.tokens} (first {target_length} kept)",
        f"  Target forward passes: {st.target_calls}",
        f"  Draft forward passes: {st.draft_calls} (k = {k} per step)",
        f"  Draft tokens proposed / accepted: {st.proposed} / {st.accepted} "
        f"(accepted/proposed {st.accepted / max(st.proposed, 1):.2%}: drafts after a rejection are never checked)",
        f"  Per-token acceptance, accepted / checked: {st.accepted}/{st.accepted + st.recovered} = "
        f"{st.accepted / max(st.accepted + st.recovered, 1):.2%} (alpha = {alpha:.2%})",
        f"  Recovered tokens: {st.recovered}   Bonus tokens: {st.bonus}",
        f"  Tokens per target call: measured {measured:.3f} (± {se:.3f} s.e. over {len(counts)} steps)"
        f"  vs  formula (1 - a^(k+1))/(1 - a) = {formula:.3f}",
        f"  Expected target calls for {target_length} tokens (exact recursion): "
        f"{expected_target_calls(target_length, alpha, k):.2f}   measured: {st.target_calls}",
        "",
        "Cost model (target pass = 1, draft pass = c):",
        f"  Speculative cost: {st.target_calls} + {st.draft_calls} x {draft_cost} = {cost:.2f}",
        f"  Plain decoding cost: {st.tokens} (one target pass per token)",
        f"  Speedup: measured {st.tokens / cost:.3f}x  vs  formula S = E[G] / (k c + 1) = "
        f"{speedup(alpha, k, draft_cost):.3f}x",
    ]
    return "\n".join(lines)
