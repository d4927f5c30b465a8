"""Fast batched verification of one draft chain per row: token-wise, greedy, block, typical.

All functions are pure: probabilities in, tokens out, randomness only through the
explicit ``rng`` (a ``torch.Generator`` or any object with ``bernoulli``/``categorical``,
see :mod:`specdecode.rng`). p is the target's *warped* distribution, q the distribution
the drafter actually sampled from (None = a deterministic drafter, i.e. one-hot q).

Shapes: p [B, k+1, V] (position k is the bonus position), q [B, k, V] or None,
draft_tokens [B, k]. Nothing here runs a model or touches a KV cache.
"""

from __future__ import annotations

import torch

from ..core.rng import as_rng
from ..core.sampling import greedy
from ..core.validation import check_chain_inputs
from .types import VerifyResult, assemble, positive_or, prefix, safe_div


def _gather(x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """x: [B, k, V], tokens: [B, k] -> [B, k] (x at each token)."""
    return x.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def _pick(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """x: [B, n, V], pos: [B] -> [B, V] (row b at position pos[b])."""
    return x[torch.arange(x.shape[0], device=x.device), pos]


def _q_at(q: torch.Tensor | None, draft_tokens: torch.Tensor, pos: torch.Tensor, V: int, dtype) -> torch.Tensor:
    """Draft distribution at position pos [B] -> [B, V]; zeros at the bonus position k; one-hot if q is None."""
    B, k = draft_tokens.shape
    in_range = pos < k
    safe = pos.clamp(max=k - 1)
    if q is None:
        tok = draft_tokens.gather(1, safe[:, None]).squeeze(1)
        out = torch.zeros(B, V, dtype=dtype, device=draft_tokens.device)
        out[torch.arange(B, device=out.device), tok] = 1.0
    else:
        out = _pick(q, safe).to(dtype)
    return out * in_range[:, None].to(dtype)


def residual(p_sel: torch.Tensor, q_sel: torch.Tensor) -> torch.Tensor:
    """p_sel, q_sel: [B, V] -> unnormalised (p - q)_+ [B, V]; falls back to p (never uniform) if it is all zero."""
    return positive_or(p_sel - q_sel, p_sel)


def accept_probability(p_x: torch.Tensor, q_x: torch.Tensor | None) -> torch.Tensor:
    """p_x, q_x: [B, k] target/draft probability of each draft token -> min(1, p/q) [B, k]."""
    if q_x is None:
        return p_x.clamp(max=1)
    return safe_div(p_x, q_x, 0.0).clamp(max=1)


def tokenwise_verify(p, q, draft_tokens, rng, *, validate: bool = True) -> VerifyResult:
    """Token-wise rejection sampling with a bonus token (Leviathan et al. 2023; Chen et al. 2023).

    p: [B, k+1, V] target probs; q: [B, k, V] draft probs or None (one-hot drafts);
    draft_tokens: [B, k]; rng: torch.Generator. Exact: emitted tokens follow p.
    """
    if validate:
        check_chain_inputs(p, q, draft_tokens)
    rng = as_rng(rng)
    B, k = draft_tokens.shape
    V = p.shape[-1]
    p_x = _gather(p[:, :k], draft_tokens)  # [B, k]
    q_x = None if q is None else _gather(q, draft_tokens)  # [B, k]
    accepted = prefix(rng.bernoulli(accept_probability(p_x, q_x)))  # [B, k]
    n = accepted.sum(-1)  # [B]
    final = residual(_pick(p, n), _q_at(q, draft_tokens, n, V, p.dtype))  # [B, V]
    return assemble(draft_tokens, accepted, rng.categorical(final))


def greedy_verify(p, q, draft_tokens, rng=None, *, validate: bool = True) -> VerifyResult:
    """Greedy exact match (T = 0): accept x_i iff x_i == argmax p_i (lowest index on ties).

    p: [B, k+1, V]; q ignored (may be None); draft_tokens: [B, k]; rng unused (deterministic).
    """
    if validate:
        check_chain_inputs(p, None, draft_tokens, probs=False)
    k = draft_tokens.shape[1]
    target = greedy(p)  # [B, k+1]
    accepted = prefix(draft_tokens == target[:, :k])
    n = accepted.sum(-1)
    return assemble(draft_tokens, accepted, target.gather(1, n[:, None]).squeeze(1))


def block_weights(p, q, draft_tokens):
    """Block verification's w_0..w_k and h_1..h_k (Sun et al. 2024). Returns (w [B, k+1], h [B, k], q_full [B, k,
    V]).
    """
    B, k = draft_tokens.shape
    V = p.shape[-1]
    if q is None:
        q = torch.zeros(B, k, V, dtype=p.dtype, device=p.device).scatter_(-1, draft_tokens.unsqueeze(-1), 1.0)
    p_x, q_x = _gather(p[:, :k], draft_tokens), _gather(q, draft_tokens)  # [B, k]
    ratio = safe_div(p_x, q_x, 0.0)
    w = [torch.ones(B, dtype=p.dtype, device=p.device)]
    for i in range(k):
        w.append((w[-1] * ratio[:, i]).clamp(max=1))
    w = torch.stack(w, dim=1)  # [B, k+1]
    h = w[:, 1:].clone()  # h_k = w_k; h_i for i < k below
    if k > 1:
        wi = w[:, 1:k]  # [B, k-1]
        Z = (wi[..., None] * p[:, 1:k] - q[:, 1:k]).clamp_min(0).sum(-1)  # [B, k-1]
        den = Z + 1 - wi
        h[:, : k - 1] = safe_div(Z, den, 1.0)  # 0/0 -> 1
    return w, h, q


def block_verify(p, q, draft_tokens, rng, *, validate: bool = True) -> VerifyResult:
    """Block verification (Sun et al. 2024, arXiv 2403.10444): never worse than token-wise.

    p: [B, k+1, V]; q: [B, k, V] or None; draft_tokens: [B, k]; rng: torch.Generator.
    tau = the LARGEST i whose eta_i < h_i; emits x_1..x_tau and one more token.
    """
    if validate:
        check_chain_inputs(p, q, draft_tokens)
    rng = as_rng(rng)
    B, k = draft_tokens.shape
    w, h, q_full = block_weights(p, q, draft_tokens)
    passed = rng.bernoulli(h)  # [B, k]
    idx = torch.arange(1, k + 1, device=p.device).expand(B, k)
    tau = torch.where(passed, idx, torch.zeros_like(idx)).max(-1).values  # [B], 0 if none passed
    w_tau = w.gather(1, tau[:, None])  # [B, 1]
    q_next = _q_at(q_full, draft_tokens, tau, p.shape[-1], p.dtype)  # zeros at tau == k
    p_next = _pick(p, tau)
    final = positive_or(w_tau * p_next - q_next, p_next)
    accepted = idx <= tau[:, None]
    return assemble(draft_tokens, accepted, rng.categorical(final))


def typical_verify(
    p, q, draft_tokens, rng, *, eps: float = 0.09, delta: float = 0.3, validate: bool = True
) -> VerifyResult:
    """Medusa typical acceptance -- LOSSY: the output does NOT follow p. Opt-in only.

    Accept x_t iff p_t(x_t) > min(eps, delta * exp(-H(p_t))); at the first failure (or after
    all k) emit a sample from p at that position. p: [B, k+1, V]; q unused; draft_tokens: [B, k].
    """
    if validate:
        check_chain_inputs(p, None, draft_tokens)
    rng = as_rng(rng)
    k = draft_tokens.shape[1]
    pk = p[:, :k]
    ent = -(pk * torch.where(pk > 0, pk.log(), torch.zeros_like(pk))).sum(-1)  # [B, k]
    thresh = torch.minimum(torch.full_like(ent, eps), delta * torch.exp(-ent))
    accepted = prefix(_gather(pk, draft_tokens) > thresh)
    n = accepted.sum(-1)
    return assemble(draft_tokens, accepted, rng.categorical(_pick(p, n)))
