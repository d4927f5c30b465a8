"""Known bugs, injected on purpose, to show the harness catches each one.

Every mutant is a step function with one documented mistake (verification-math.md,
"Bugs the tests must catch"); the harness must report a clear distance from the target
for it. The RNG-reseeding bug cannot show in an enumeration (it has no seed): it is
caught by the Monte-Carlo check in ``montecarlo.reseeding_bug_check``. None of this is
used by the library itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..verify import reference as ref
from .harness import (
    Case,
    compare,
    draft_chain,
    n_token_distribution,
    sample_candidates,
    sample_det_tree,
    target_distribution,
)
from .models import model_pairs


@dataclass(frozen=True)
class Mutant:
    name: str
    doc_tv: float  # the TV the math doc reports for its own example (nan: the doc has none)
    step: Callable
    cases: Callable


def _tokenwise_mutant(*, raw_p_ratio=False, raw_q_ratio=False, resample_p=False, inverted=False, keep_going=False):
    def step(case, ctx, rng):
        xs, qs, ps = draft_chain(case, ctx, rng, case.k)
        out = []
        for i, x in enumerate(xs):
            c = ctx + tuple(xs[:i])
            p, q = ps[i], qs[i]
            pr = case.target.raw(c) if raw_p_ratio else p
            qr = case.draft.raw(c) if raw_q_ratio else q
            if inverted:
                a = 1 if pr[x] == 0 else min(1, qr[x] / pr[x])
            else:
                a = min(1, pr[x] / qr[x])
            if rng.bernoulli(a):
                out.append(x)
                continue
            out.append(rng.categorical(p if resample_p else ref.residual_ref(p, q)))
            if not keep_going:
                return tuple(out)
        return tuple(out + [rng.categorical(ps[-1])])

    return step


def _block_mutant(*, tokenwise_residual=False, stop_at_first_fail=False):
    def step(case, ctx, rng):
        xs, qs, ps = draft_chain(case, ctx, rng, case.k)
        k = len(xs)
        w = ref.block_weights_ref(ps, qs, xs)
        tau = 0
        for i in range(1, k + 1):
            if rng.bernoulli(ref.block_h_ref(ps, qs, w, i, k)):
                tau = i
            elif stop_at_first_fail:
                break
        if tau == k:
            return tuple(xs) + (rng.categorical(ps[k]),)
        wt = 1 if tokenwise_residual else w[tau]
        r = [ref._pos(wt * pv - qv) for pv, qv in zip(ps[tau], qs[tau])]
        return tuple(xs[:tau]) + (rng.categorical(r if sum(r) > 0 else ps[tau]),)

    return step


def _select_mutant(method, *, rho=None, dedupe=False, sort_by_q=False):
    def step(case, ctx, rng):
        p, q = case.target.probs(ctx), case.draft.probs(ctx)
        xs = sample_candidates(q, case.K, rng)
        if dedupe:
            xs = list(dict.fromkeys(xs))
        if sort_by_q:
            xs = sorted(xs, key=lambda x: -q[x])
        if method == "spectr":
            return (ref.spectr_select_ref(p, q, xs, rng, rho=rho)[0],)
        return (ref.rrs_select_ref(p, q, xs, rng, True)[0],)

    return step


def _deterministic_tree_mutant():
    """Deterministic siblings verified by accepting x with p(x) each time but never removing a
    rejected sibling from the distribution (plain p throughout, then a final draw from p)."""

    def step(case, ctx, rng):
        parents, tokens, paths = sample_det_tree(case, ctx)
        kids = [[c for c in range(len(parents)) if parents[c] == n] for n in range(len(parents))]
        node, out = 0, []
        while True:
            p = case.target.probs(ctx + paths[node])
            nxt = next((c for c in kids[node] if rng.bernoulli(p[tokens[c]])), None)
            if nxt is None:
                out.append(rng.categorical(p))
                return tuple(out)
            out.append(tokens[nxt])
            node = nxt

    return step


def _det_tree_cases():
    return [
        Case(n, t, d, V, len(b), 2, K=b[0], branching=b)
        for V in (3,)
        for b in ((2,), (3,), (2, 1))
        for n, t, d in model_pairs(V)
    ]


def _chain_cases(pairs=None, sizes=((2, 2, 3), (3, 2, 2), (4, 2, 2))):
    return [Case(n, t, d, V, k, N) for V, k, N in sizes for n, t, d in model_pairs(V) if pairs is None or n in pairs]


def _select_cases(K):
    return [Case(n, t, d, V, 1, 2, K=K) for V in (3, 4) for n, t, d in model_pairs(V)]


def mutants() -> list[Mutant]:
    topk = ["warped T=0.7 top-k=2"]
    return [
        Mutant(
            "ratio with raw p when the target is top-k",
            0.49,
            _tokenwise_mutant(raw_p_ratio=True),
            lambda: _chain_cases(topk),
        ),
        Mutant(
            "draft sampled from top-k q, raw q in the ratio",
            0.17,
            _tokenwise_mutant(raw_q_ratio=True),
            lambda: _chain_cases(topk),
        ),
        Mutant("resample from p instead of the residual", 0.23, _tokenwise_mutant(resample_p=True), _chain_cases),
        Mutant("q/p instead of p/q", 0.61, _tokenwise_mutant(inverted=True), _chain_cases),
        Mutant("keep verifying after a rejection", 0.35, _tokenwise_mutant(keep_going=True), _chain_cases),
        Mutant(
            "block verification with the token-wise residual",
            6.7e-3,
            _block_mutant(tokenwise_residual=True),
            _chain_cases,
        ),
        Mutant(
            "block verification stopping at the first failed h",
            0.12,
            _block_mutant(stop_at_first_fail=True),
            _chain_cases,
        ),
        Mutant("SpecTr with rho = 1, K = 3", 0.13, _select_mutant("spectr", rho=1), lambda: _select_cases(3)),
        Mutant(
            "de-duplicating i.i.d. drafts (RRS)", 0.043, _select_mutant("rrs", dedupe=True), lambda: _select_cases(3)
        ),
        Mutant(
            "processing drafts sorted by q (SpecTr)",
            0.107,
            _select_mutant("spectr", sort_by_q=True),
            lambda: _select_cases(3),
        ),
        Mutant(
            "deterministic tree: rejected sibling kept in p",
            float("nan"),
            _deterministic_tree_mutant(),
            _det_tree_cases,
        ),
    ]


@dataclass
class MutantRow:
    name: str
    doc_tv: float
    cases: int
    max_err: float
    max_tv: float
    worst_case: str

    @property
    def caught(self) -> bool:
        return self.max_err >= 1e-9

    def as_dict(self) -> dict:
        return {
            "bug": self.name,
            "doc_tv": self.doc_tv if self.doc_tv == self.doc_tv else None,
            "cases": self.cases,
            "max_abs_error": self.max_err,
            "max_tv": self.max_tv,
            "worst_case": self.worst_case,
            "caught": self.caught,
        }


def run_mutant(m: Mutant) -> MutantRow:
    worst, max_err, max_tv, n = "", 0.0, 0.0, 0
    for case in m.cases():
        err, tv = compare(n_token_distribution(m.step, case), target_distribution(case))
        n += 1
        if tv > max_tv:
            max_tv, worst = tv, case.label
        max_err = max(max_err, err)
    return MutantRow(m.name, m.doc_tv, n, max_err, max_tv, worst)
