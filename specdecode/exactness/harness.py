"""The exactness harness: exact N-token output distributions of every verification method.

Pass criterion (verification-math.md): from a context, repeat speculative steps until at
least N tokens exist and keep the first N; their joint distribution must equal the
product of the target's conditionals. A *step* (draft + verify) is enumerated exactly by
``enumerate_outcomes``; steps are chained by dynamic programming over contexts, so
tokens are never conditioned on how many were accepted.

Each method appears twice where it has both: the batched torch implementation (run on
float64 tensors with batch 1) and the scalar reference (run on the raw model values,
Fractions included). Gumbel-coupled sampling is enumerated on its reference only (its
torch noise is continuous); its torch path is tested by seeded equality and Monte Carlo.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy
import torch

from ..core.sampling import sparse_row
from ..verify import chain, multidraft, sparse
from ..verify import reference as ref
from .cases import (  # noqa: F401 - the harness's public names (mutants, montecarlo and the CLI import them here)
    CHAIN_SIZES,
    CHAIN_SIZES_FAST,
    Case,
    chain_cases,
    compare,
    n_token_distribution,
    select_cases,
    seq_cases,
    target_distribution,
    tree_cases,
)
from .models import DeterministicDrafter

Step = Callable[[Case, tuple, object], tuple]


def _t(rows) -> torch.Tensor:
    return torch.tensor([[float(v) for v in r] for r in rows], dtype=torch.float64)


@dataclass(frozen=True)
class Entry:
    """One implementation of one method in the suite (not the engine's ``verify.Method``)."""

    name: str
    impl: str  # "torch", "reference" or "sparse" (the engine's path for one-hot drafts on a few tokens)
    step: Step
    cases: Callable[[], list]
    lossy: bool = False
    greedy_target: bool = False
    note: str = ""


# ------------------------------------------------------------------ helpers


def draft_chain(case: Case, ctx: tuple, rng, k: int):
    """Sample k draft tokens autoregressively from the draft model; returns (xs, qs, ps)."""
    xs, qs = [], []
    det = isinstance(case.draft, DeterministicDrafter)
    for _ in range(k):
        q = case.draft.probs(ctx + tuple(xs))
        qs.append(q)
        xs.append(ref.argmax_ref(q) if det else rng.categorical(q))
    ps = [case.target.probs(ctx + tuple(xs[:i])) for i in range(k + 1)]
    return xs, (None if det else qs), ps


def _fast_chain(fn):
    def step(case, ctx, rng):
        xs, qs, ps = draft_chain(case, ctx, rng, case.k)
        p = _t(ps)[None]
        q = None if qs is None else _t(qs)[None]
        res = fn(p, q, torch.tensor([xs]), rng, validate=False)
        return tuple(res.emitted(0))

    return step


def sparse_dists(ps) -> list:
    """Dense target rows (lists) -> the engine's sparse form (``sampling.sparse_row``) of each."""
    return [sparse_row(numpy.array([float(v) for v in p], dtype=numpy.float64)) for p in ps]


def _sparse_tokenwise(case, ctx, rng):
    """Every chain case with its draft model made deterministic (the argmax of q drafts, as prompt lookup's do)."""
    xs = []
    for _ in range(case.k):
        xs.append(ref.argmax_ref(case.draft.probs(ctx + tuple(xs))))
    ps = [case.target.probs(ctx + tuple(xs[:i])) for i in range(case.k + 1)]
    return tuple(sparse.tokenwise_sparse(sparse_dists(ps), xs, rng)[1])


def _ref_tokenwise(case, ctx, rng):
    xs, qs, ps = draft_chain(case, ctx, rng, case.k)
    return tuple(ref.tokenwise_ref(ps, qs, xs, rng))


def _ref_block(case, ctx, rng):
    xs, qs, ps = draft_chain(case, ctx, rng, case.k)
    return tuple(ref.block_ref(ps, qs, xs, rng))


def _ref_greedy(case, ctx, rng):
    xs, _, ps = draft_chain(case, ctx, rng, case.k)
    return tuple(ref.greedy_ref(ps, xs))


def _ref_typical(case, ctx, rng):
    xs, _, ps = draft_chain(case, ctx, rng, case.k)
    return tuple(ref.typical_ref(ps, xs, rng))


def _ref_gumbel(case, ctx, rng):
    return tuple(
        ref.gumbel_ref(
            lambda pre: case.target.probs(ctx + tuple(pre)), lambda pre: case.draft.probs(ctx + tuple(pre)), case.k, rng
        )
    )


def sample_candidates(q, K, rng, replacement=True):
    xs, s = [], list(q)
    for _ in range(K):
        if sum(s) == 0:
            break
        x = rng.categorical(s)
        xs.append(x)
        if not replacement:
            s[x] = 0 * s[x]
    return xs


def _ref_select(method, replacement=True):
    def step(case, ctx, rng):
        p, q = case.target.probs(ctx), case.draft.probs(ctx)
        xs = sample_candidates(q, case.K, rng, replacement)
        if method == "spectr":
            return (ref.spectr_select_ref(p, q, xs, rng)[0],)
        return (ref.rrs_select_ref(p, q, xs, rng, replacement)[0],)

    return step


def _fast_select(method, replacement=True):
    def step(case, ctx, rng):
        p, q = case.target.probs(ctx), case.draft.probs(ctx)
        xs = sample_candidates(q, case.K, rng, replacement)
        pt, qt, c = _t([p]), _t([q]), torch.tensor([xs])
        if method == "spectr":
            tok, _ = multidraft.spectr_select(pt, qt, c, rng, validate=False)
        else:
            tok, _ = multidraft.rrs_select(pt, qt, c, rng, replacement=replacement, validate=False)
        return (int(tok[0]),)

    return step


def grow_tree(case: Case, ctx: tuple, children):
    """Every node at depth d gets ``children(q, branching[d])`` as children, q = the draft at that node.
    -> (parents, tokens, paths)."""
    parents, tokens, paths = [-1], [-1], [()]
    frontier = [0]
    for b in case.branching:
        nxt = []
        for n in frontier:
            for x in children(case.draft.probs(ctx + paths[n]), b):
                parents.append(n)
                tokens.append(x)
                paths.append(paths[n] + (x,))
                nxt.append(len(tokens) - 1)
        frontier = nxt
    return parents, tokens, paths


def sample_tree(case: Case, ctx: tuple, rng, replacement: bool):
    """Draft a tree: every node at depth d gets branching[d] children drawn from q(node)."""
    return grow_tree(case, ctx, lambda q, b: sample_candidates(q, b, rng, replacement))


def _tree_step(method, impl):
    replacement = method != "rrs-wor"

    def step(case, ctx, rng):
        parents, tokens, paths = sample_tree(case, ctx, rng, replacement)
        if impl == "reference":
            kids = multidraft.children_lists(parents)
            out, _ = ref.tree_ref(
                lambda n: case.target.probs(ctx + paths[n]),
                lambda n: case.draft.probs(ctx + paths[n]),
                kids,
                tokens,
                rng,
                method,
            )
            return tuple(out)
        p = _t([case.target.probs(ctx + pa) for pa in paths])
        q = _t([case.draft.probs(ctx + pa) for pa in paths])
        res = multidraft.verify_tree(
            p, q, torch.tensor(parents), torch.tensor(tokens), rng, method=method, validate=False
        )
        return tuple(res.tokens)

    return step


def sample_det_tree(case: Case, ctx: tuple):
    """A deterministic tree (no randomness): every node at depth d gets the branching[d] most probable
    tokens of the draft model as children (distinct siblings, like merged prompt-lookup matches)."""
    return grow_tree(case, ctx, lambda q, b: sorted(range(case.V), key=lambda i: (-q[i], i))[:b])


def _det_tree_step(impl):
    def step(case, ctx, rng):
        parents, tokens, paths = sample_det_tree(case, ctx)
        if impl == "reference":
            out, _ = ref.tree_ref(
                lambda n: case.target.probs(ctx + paths[n]), None, multidraft.children_lists(parents), tokens, rng
            )
            return tuple(out)
        p = _t([case.target.probs(ctx + pa) for pa in paths])
        res = multidraft.verify_tree(
            p, None, torch.tensor(parents), torch.tensor(tokens), rng, method="rrs", validate=False
        )
        return tuple(res.tokens)

    return step


def _seq_step(method, impl):
    """K i.i.d. draft sequences of length k (SpecTr's sequence form) through verify_sequences."""

    def step(case, ctx, rng):
        drafts = []
        for _ in range(case.K):
            xs, _, _ = draft_chain(case, ctx, rng, case.k)
            drafts.append(xs)
        if impl == "reference":
            parents, tokens, where = multidraft.chains_to_tree(drafts)
            path = lambda n: ctx + tuple(drafts[where[n][0]][: where[n][1]]) if n else ctx  # noqa: E731
            out, _ = ref.tree_ref(
                lambda n: case.target.probs(path(n)),
                lambda n: case.draft.probs(path(n)),
                multidraft.children_lists(parents),
                tokens,
                rng,
                method,
            )
            return tuple(out)
        p = torch.stack([_t([case.target.probs(ctx + tuple(d[:i])) for i in range(case.k + 1)]) for d in drafts])[None]
        q = torch.stack([_t([case.draft.probs(ctx + tuple(d[:i])) for i in range(case.k)]) for d in drafts])[None]
        res = multidraft.verify_sequences(p, q, torch.tensor([drafts]), rng, method=method, validate=False)
        return tuple(res.emitted(0))

    return step


# -------------------------------------------------------------------- suites


def methods() -> list[Entry]:
    fast_chain = lambda: chain_cases(CHAIN_SIZES_FAST)  # noqa: E731
    return [
        Entry("tokenwise", "torch", _fast_chain(chain.tokenwise_verify), fast_chain),
        Entry("tokenwise", "reference", _ref_tokenwise, chain_cases),
        Entry("tokenwise (one-hot)", "sparse", _sparse_tokenwise, chain_cases),
        Entry("greedy", "torch", _fast_chain(chain.greedy_verify), fast_chain, greedy_target=True),
        Entry("greedy", "reference", _ref_greedy, chain_cases, greedy_target=True),
        Entry("block", "torch", _fast_chain(chain.block_verify), fast_chain),
        Entry("block", "reference", _ref_block, chain_cases),
        Entry("spectr (token)", "torch", _fast_select("spectr"), lambda: select_cases(Ks=(2, 3), Vs=(2, 3))),
        Entry("spectr (token)", "reference", _ref_select("spectr"), select_cases),
        Entry("spectr (sequences)", "torch", _seq_step("spectr", "torch"), lambda: seq_cases(Vs=(2,))),
        Entry("spectr (sequences)", "reference", _seq_step("spectr", "reference"), seq_cases),
        Entry("spectr (tree)", "reference", _tree_step("spectr", "reference"), lambda: tree_cases(Vs=(2,))),
        Entry("rrs (token)", "torch", _fast_select("rrs"), select_cases),
        Entry("rrs (token)", "reference", _ref_select("rrs"), select_cases),
        Entry("rrs-wor (token)", "torch", _fast_select("rrs", False), select_cases),
        Entry("rrs-wor (token)", "reference", _ref_select("rrs", False), select_cases),
        Entry("rrs (tree)", "torch", _tree_step("rrs", "torch"), lambda: tree_cases(shapes=((2, 1), (3,)))),
        Entry("rrs (tree)", "reference", _tree_step("rrs", "reference"), tree_cases),
        Entry("rrs-wor (tree)", "torch", _tree_step("rrs-wor", "torch"), tree_cases),
        Entry("rrs-wor (tree)", "reference", _tree_step("rrs-wor", "reference"), tree_cases),
        Entry(
            "deterministic tree", "torch", _det_tree_step("torch"), lambda: tree_cases(shapes=((2, 1), (3,), (2, 2)))
        ),
        Entry("deterministic tree", "reference", _det_tree_step("reference"), tree_cases),
        Entry(
            "gumbel-coupled",
            "reference",
            _ref_gumbel,
            chain_cases,
            note="torch path: seeded spec == seeded plain (tests)",
        ),
        Entry("typical (Medusa)", "torch", _fast_chain(chain.typical_verify), fast_chain, lossy=True),
        Entry("typical (Medusa)", "reference", _ref_typical, chain_cases, lossy=True),
    ]


# --------------------------------------------------------------- distributions


@dataclass
class Row:
    method: str
    impl: str
    lossy: bool
    cases: int = 0
    max_err: float = 0.0
    max_tv: float = 0.0
    worst_case: str = ""
    seconds: float = 0.0
    note: str = ""
    errors: list = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.lossy or (self.max_err < 1e-12 and not self.errors)

    def as_dict(self) -> dict:
        return {
            "method": self.method,
            "impl": self.impl,
            "lossy": self.lossy,
            "cases": self.cases,
            "max_abs_error": self.max_err,
            "max_tv": self.max_tv,
            "worst_case": self.worst_case,
            "seconds": round(self.seconds, 2),
            "passed": self.passed,
            "note": self.note,
        }


def run_method(m: Entry, cases: list | None = None, progress=None) -> Row:
    row = Row(m.name, m.impl, m.lossy, note=m.note)
    t0 = time.perf_counter()
    for case in m.cases() if cases is None else cases:
        out = n_token_distribution(m.step, case)  # torch impls get float64 copies of Fraction models
        err, tv = compare(out, target_distribution(case, greedy=m.greedy_target))
        row.cases += 1
        if err >= row.max_err:
            row.max_err, row.worst_case = err, case.label
        row.max_tv = max(row.max_tv, tv)
        if progress:
            progress()
    row.seconds = time.perf_counter() - t0
    return row


def run_all(selected: list[str] | None = None, progress_factory=None) -> list[Row]:
    ms = [m for m in methods() if not selected or m.name.split(" ")[0] in selected or m.name in selected]
    rows = []
    for m in ms:
        cases = m.cases()
        bar = progress_factory(len(cases), f"{m.name} [{m.impl}]") if progress_factory else None
        rows.append(run_method(m, cases, progress=(bar.update if bar else None)))
        if bar:
            bar.close()
    return rows
