"""Fast verification over several drafts: SpecTr K-SEQ and recursive rejection sampling.

Single-token selection (one output token from K candidates) is batched over rows.
Trees and K draft sequences are verified with one generic walker: at each step the
*frontier* is the set of accepted nodes sharing one context; its children (in sampling
order, duplicates kept) are the candidates; a selection rule picks one output token;
the new frontier is every candidate carrying that token. No candidate left -> stop
(recovered token); candidates left but no children -> one bonus token from p.

Shapes: p, q [B, V] at one context; candidates [B, K]. Trees: parents [N] (root = node 0,
parents[0] = -1, parents[i] < i), tokens [N], p [N, V] and q [N, V] per node (q[n] is the
distribution node n's children were drawn from). Nothing here builds trees or runs models.
"""

from __future__ import annotations

import math

import torch

from ..core.rng import as_rng
from ..core.sampling import greedy
from ..core.validation import check_int, check_probs, check_tokens
from .types import PAD, TreeVerifyResult, VerifyResult, positive_or, safe_div

# ---------------------------------------------------------------- SpecTr K-SEQ


def spectr_beta(p: torch.Tensor, q: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """p, q: [B, V]; rho: [B] -> beta(rho) = sum_x min(q(x), p(x)/rho)  [B]."""
    return torch.minimum(q, p / rho[:, None]).sum(-1)


def rho_star(p: torch.Tensor, q: torch.Tensor, K: int, *, tol: float = 1e-13, grid: int = 16) -> torch.Tensor:
    """p, q: [B, V] -> rho* [B] in [1, K] solving 1 - (1 - beta)^K = rho * beta.

    f(rho) = 1 - (1 - beta(rho))^K - rho beta(rho) is decreasing, f(1) >= 0 >= f(K). The
    bracket is refined on a grid of ``grid`` points per round (a vectorised bisection) until it
    is narrower than ``tol``; the upper end is returned: any rho >= rho* is valid.
    """
    check_int("K", K, 1)
    B = p.shape[0]
    lo = torch.ones(B, dtype=torch.float64, device=p.device)
    if K == 1:
        return lo
    p64, q64 = p.to(torch.float64)[:, None], q.to(torch.float64)[:, None]  # [B, 1, V]
    hi = torch.full_like(lo, float(K))
    frac = torch.linspace(0, 1, grid + 1, dtype=torch.float64, device=p.device)[1:]  # [G]
    rounds = int(math.ceil(math.log((K - 1) / tol) / math.log(grid)))
    for _ in range(rounds):
        pts = lo[:, None] + (hi - lo)[:, None] * frac  # [B, G]
        b = torch.minimum(q64, p64 / pts[..., None]).sum(-1)  # [B, G]
        neg = 1 - (1 - b) ** K - pts * b <= 0  # [B, G]; the last point (old hi) is always <= 0
        first = neg.to(torch.int8).argmax(-1)  # first grid point with f <= 0
        hi = pts.gather(1, first[:, None]).squeeze(1)
        lo = torch.where(first > 0, pts.gather(1, (first - 1).clamp(min=0)[:, None]).squeeze(1), lo)
    return hi


def spectr_residual(p: torch.Tensor, q: torch.Tensor, rho: torch.Tensor, K: int) -> torch.Tensor:
    """Unnormalised p_res [B, V] = p - min(q, p/rho) (1 - (1-beta)^K) / beta (general form; p if beta = 0)."""
    p64, q64 = p.to(torch.float64), q.to(torch.float64)
    beta = spectr_beta(p64, q64, rho)  # [B]
    c = safe_div(1 - (1 - beta) ** K, beta, 0.0)
    return positive_or(p64 - torch.minimum(q64, p64 / rho[:, None]) * c[:, None], p64)


def spectr_select(p, q, candidates, rng, *, rho: torch.Tensor | None = None, validate: bool = True):
    """SpecTr K-SEQ (Sun et al. 2023) for K i.i.d. drafts X_1..X_K ~ q, in sampling order.

    p, q: [B, V]; candidates: [B, K]; rng: torch.Generator. Returns (token [B], index [B]),
    index = accepted candidate or -1 when the token came from the residual.
    """
    if validate:
        _check_select(p, q, candidates)
    rng = as_rng(rng)
    B, K = candidates.shape
    rho = rho_star(p, q, K) if rho is None else rho
    p_c = p.gather(-1, candidates).to(torch.float64)  # [B, K]
    q_c = q.gather(-1, candidates).to(torch.float64)
    a = safe_div(p_c, rho[:, None] * q_c, 0.0).clamp(max=1)
    flags = rng.bernoulli(a)  # [B, K]
    index = _first_true(flags)
    token = candidates.gather(1, index.clamp(min=0)[:, None]).squeeze(1)
    need = index < 0
    if need.any():
        token = token.clone()
        token[need] = rng.categorical(spectr_residual(p[need], q[need], rho[need], K))
    return token, index


# ---------------------------------------------------- recursive rejection sampling


def rrs_select(p, q, candidates, rng, *, replacement: bool = True, validate: bool = True):
    """Recursive rejection sampling (SpecInfer; RSD without replacement).

    p: [B, V]; q: [B, V] (every candidate from q) or [B, K, V] (candidate j from q_j, with
    replacement only); candidates: [B, K] in sampling order. replacement=False: candidates were
    drawn from q without replacement (Gumbel-top-K). Returns (token [B], index [B] or -1).
    """
    if validate:
        _check_select(p, q, candidates)
        if not replacement and q.dim() == 3:
            raise ValueError("q must be [B, V] for recursive rejection sampling without replacement")
    rng = as_rng(rng)
    B, K = candidates.shape
    r = p.to(torch.float64).clone()
    s = q.to(torch.float64).clone()
    rows = torch.arange(B, device=p.device)
    index = torch.full((B,), -1, dtype=torch.long, device=p.device)
    for j in range(K):
        active = index < 0
        if not active.any():
            break
        x = candidates[:, j]
        s_j = s[:, j] if s.dim() == 3 else s  # [B, V]
        rx, sx = r[rows, x], s_j[rows, x]
        a = safe_div(rx, sx, 0.0).clamp(max=1)
        hit = torch.zeros(B, dtype=torch.bool, device=p.device)
        hit[active] = rng.bernoulli(a[active])
        index = torch.where(hit, torch.full_like(index, j), index)
        rejected = active & ~hit
        new_r = positive_or(r - s_j, r)
        new_r = new_r / new_r.sum(-1, keepdim=True)
        r = torch.where(rejected[:, None], new_r, r)
        if not replacement:
            new_s = s.clone()
            new_s[rows, x] = 0
            tot = new_s.sum(-1, keepdim=True)
            new_s = torch.where(tot > 0, safe_div(new_s, tot.expand_as(new_s), 0.0), new_s)
            s = torch.where(rejected[:, None], new_s, s)
    token = candidates.gather(1, index.clamp(min=0)[:, None]).squeeze(1)
    need = index < 0
    if need.any():
        token = token.clone()
        token[need] = rng.categorical(r[need])
    return token, index


# ------------------------------------------------------------------ tree walker

SELECTORS = ("spectr", "rrs", "rrs-wor")


def _select(method: str, p_row, q_row, cands, rng):
    """p_row, q_row: [V] (q_row None: deterministic children); cands: [m] -> (token, index) for one frontier."""
    if q_row is None:  # distinct deterministic candidates: RRS with a one-hot q per candidate
        onehot = torch.nn.functional.one_hot(cands, p_row.shape[-1]).to(p_row.dtype)  # [m, V]
        t, i = rrs_select(p_row[None], onehot[None], cands[None], rng, replacement=True, validate=False)
    elif method == "spectr":
        t, i = spectr_select(p_row[None], q_row[None], cands[None], rng, validate=False)
    elif method == "rrs":
        t, i = rrs_select(p_row[None], q_row[None], cands[None], rng, replacement=True, validate=False)
    elif method == "rrs-wor":
        t, i = rrs_select(p_row[None], q_row[None], cands[None], rng, replacement=False, validate=False)
    else:
        raise ValueError(f"method must be one of {', '.join(SELECTORS)}, got {method!r}")
    return int(t[0]), int(i[0])


def children_lists(parents: list[int]) -> list[list[int]]:
    kids: list[list[int]] = [[] for _ in parents]
    for n, par in enumerate(parents):
        if n > 0:
            kids[par].append(n)
    return kids


def check_tree(
    parents: torch.Tensor, tokens: torch.Tensor, p: torch.Tensor, q: torch.Tensor, *, probs: bool = True
) -> None:
    N = parents.shape[0]
    if N < 1 or int(parents[0]) != -1:
        raise ValueError("parents must start with the root: parents[0] == -1")
    if N > 1 and ((parents[1:] < 0).any() or (parents[1:] >= torch.arange(1, N, device=parents.device)).any()):
        raise ValueError("parents must list each node after its parent: 0 <= parents[i] < i for i >= 1")
    if tuple(p.shape[:1]) != (N,) or p.shape != q.shape or tokens.shape != (N,):
        raise ValueError(
            f"p and q must be [N, V] and tokens [N] with N = {N} nodes; got p {tuple(p.shape)}, q {tuple(q.shape)}, "
            f"tokens {tuple(tokens.shape)}"
        )
    check_tokens("tokens", tokens[1:], p.shape[-1])
    if probs:
        check_probs("p", p)


def verify_tree(p, q, parents, tokens, rng, *, method: str = "spectr", validate: bool = True) -> TreeVerifyResult:
    """Verify one draft tree with SpecTr ("spectr") or recursive rejection sampling ("rrs", "rrs-wor").

    p: [N, V] target probs after each node; q: [N, V] draft probs each node's children were
    drawn from, or None for a deterministic tree (e.g. prompt-lookup matches merged into a prefix
    tree: siblings carry distinct tokens); then every method is recursive rejection with a one-hot
    q per candidate: accept child x with the residual's r(x), else remove x from r and go on.
    parents: [N]; tokens: [N] (tokens[0] unused); rng: torch.Generator.
    """
    if validate:
        check_tree(parents, tokens, p, p if q is None else q)
        if q is None:
            kids = children_lists([int(x) for x in parents])
            if any(len({int(tokens[c]) for c in ks}) < len(ks) for ks in kids):
                raise ValueError(
                    "a deterministic tree (q = None) needs distinct tokens among siblings (merge it into a prefix tree)"
                )
    if method not in SELECTORS:
        raise ValueError(f"method must be one of {', '.join(SELECTORS)}, got {method!r}")
    rng = as_rng(rng)
    kids = children_lists([int(x) for x in parents])
    tok = [int(t) for t in tokens]
    frontier = [0]
    out: list[int] = []
    path: list[int] = []
    while True:
        node = frontier[0]
        cands = [c for n in frontier for c in kids[n]]
        if not cands:
            out.append(int(rng.categorical(p[node][None])[0]))  # bonus token
            break
        cand_tokens = torch.tensor([tok[c] for c in cands], dtype=torch.long, device=p.device)
        y, _ = _select(method, p[node], None if q is None else q[node], cand_tokens, rng)
        out.append(y)
        frontier = [c for c in cands if tok[c] == y]
        if not frontier:
            break  # recovered token
        path.append(frontier[0])
    return TreeVerifyResult(tokens=out, path=path)


def greedy_tree_verify(p, q, parents, tokens, rng=None, *, validate: bool = True) -> TreeVerifyResult:
    """Greedy tree verification (T = 0): the longest path whose tokens are the target's argmax, then the
    argmax after it. p: [N, V] target probabilities or logits; q, rng unused; parents, tokens: [N].
    Deterministic: with distinct sibling tokens (top-m children) the output is plain greedy decoding."""
    if validate:
        check_tree(parents, tokens, p, p, probs=False)
    return greedy_path([int(x) for x in parents], [int(t) for t in tokens], greedy(p).tolist())


def greedy_path(parents: list[int], tokens: list[int], best: list[int]) -> TreeVerifyResult:
    """Greedy tree verification on the target's argmax at each node (``best[n]``, node order; lowest index on
    ties): from the root, follow the child whose token is the argmax, then emit the argmax after the path. A chain
    is the tree with parents [-1, 0, 1, ...]. The engine's greedy steps call it on argmax ids computed once."""
    kids = children_lists(parents)
    node, out, path = 0, [], []
    while True:
        y = best[node]
        out.append(y)
        node = next((c for c in kids[node] if tokens[c] == y), None)
        if node is None:
            return TreeVerifyResult(tokens=out, path=path)
        path.append(node)


def chains_to_tree(drafts: list[list[int]]) -> tuple[list[int], list[int], list[tuple[int, int]]]:
    """K draft sequences of length L -> (parents, tokens, where) with one chain per draft.

    where[n] = (draft j, depth d) of node n; node 0 is the root (j = -1, d = 0). Nodes are
    depth-major so the root's children are in sampling order.
    """
    K, L = len(drafts), len(drafts[0])
    parents, tokens, where = [-1], [PAD], [(-1, 0)]
    for d in range(1, L + 1):
        for j in range(K):
            parents.append(0 if d == 1 else 1 + (d - 2) * K + j)
            tokens.append(int(drafts[j][d - 1]))
            where.append((j, d))
    return parents, tokens, where


def verify_sequences(p, q, drafts, rng, *, method: str = "spectr", validate: bool = True) -> VerifyResult:
    """K draft sequences per row, verified as a prefix tree (SpecTr sequence form, RRS).

    p: [B, K, L+1, V] target probs along each draft; q: [B, K, L, V] draft probs along each
    draft; drafts: [B, K, L]. Returns a VerifyResult whose tokens are [B, L+1].
    """
    if validate:
        if drafts.dim() != 3 or p.dim() != 4 or q.dim() != 4:
            raise ValueError("drafts must be [B, K, L], p [B, K, L+1, V] and q [B, K, L, V]")
        B, K, L = drafts.shape
        if K < 1:
            raise ValueError(f"K (number of drafts) must be >= 1, got {K}")
        if L < 1:
            raise ValueError(f"L (draft length) must be >= 1, got {L}")
        if tuple(p.shape[:3]) != (B, K, L + 1) or tuple(q.shape[:3]) != (B, K, L):
            raise ValueError(
                f"p must be [B, K, L+1, V] = [{B}, {K}, {L + 1}, V] and q [{B}, {K}, {L}, V]; got {tuple(p.shape)} and "
                f"{tuple(q.shape)}"
            )
        check_tokens("drafts", drafts, p.shape[-1])
        check_probs("p", p)
        check_probs("q", q)
    rng = as_rng(rng)
    B, K, L = drafts.shape
    V = p.shape[-1]
    n_acc, out_tokens = [], []
    for b in range(B):
        parents, tokens, where = chains_to_tree(drafts[b].tolist())
        pt = torch.stack([p[b, max(j, 0), d] for j, d in where])
        qt = torch.stack([q[b, max(j, 0), d] if d < L else torch.zeros(V, dtype=q.dtype) for j, d in where])
        res = verify_tree(pt, qt, torch.tensor(parents), torch.tensor(tokens), rng, method=method, validate=False)
        n_acc.append(res.num_accepted)
        out_tokens.append(res.tokens + [PAD] * (L + 1 - len(res.tokens)))
    n = torch.tensor(n_acc, dtype=torch.long)
    accepted = torch.arange(L).expand(B, L) < n[:, None]
    return VerifyResult(num_accepted=n, tokens=torch.tensor(out_tokens, dtype=torch.long), accepted=accepted)


# ----------------------------------------------------------------- helpers


def _first_true(flags: torch.Tensor) -> torch.Tensor:
    """flags: [B, K] bool -> index of the first True per row, -1 if none  [B]."""
    K = flags.shape[1]
    idx = torch.arange(K, device=flags.device).expand_as(flags)
    first = torch.where(flags, idx, torch.full_like(idx, K)).min(-1).values
    return torch.where(first < K, first, torch.full_like(first, -1))


def _check_select(p, q, candidates):
    if candidates.dim() != 2:
        raise ValueError(f"candidates must be [B, K], got {tuple(candidates.shape)}")
    B, K = candidates.shape
    if K < 1:
        raise ValueError(f"K (number of drafts) must be >= 1, got {K}")
    if p.dim() != 2 or p.shape[0] != B:
        raise ValueError(f"p must be [B, V] with B = {B}, got {tuple(p.shape)}")
    if not (q.shape == p.shape or (q.dim() == 3 and q.shape == (B, K, p.shape[1]))):
        raise ValueError(f"q must be [B, V] = {tuple(p.shape)} or [B, K, V], got {tuple(q.shape)}")
    check_tokens("candidates", candidates, p.shape[1])
    check_probs("p", p)
    check_probs("q", q)
