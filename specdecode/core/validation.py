"""Argument checks shared by the verification functions, theory and sampling.

Each check raises ``ValueError`` whose message names the argument and the allowed range.
Nothing here converts or repairs input: it only accepts or refuses it.
"""

from __future__ import annotations

import math

import torch

_SUM_TOL = {torch.float64: 1e-6, torch.float32: 1e-3, torch.bfloat16: 2e-2, torch.float16: 1e-2}


def check_int(name: str, value, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        rng = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {rng}, got {value}")
    return value


def check_prob_scalar(name: str, value, *, low_open: bool = False, high_open: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a number in {'(' if low_open else '['}0, 1{')' if high_open else ']'}, got {value!r}"
        ) from None
    lo_bad = v <= 0 if low_open else v < 0
    hi_bad = v >= 1 if high_open else v > 1
    if math.isnan(v) or lo_bad or hi_bad:
        raise ValueError(f"{name} must be in {'(' if low_open else '['}0, 1{')' if high_open else ']'}, got {value}")
    return v


def check_probs(name: str, probs: torch.Tensor) -> None:
    """probs: [..., V] must be finite, non-negative and sum to 1 along the last dim."""
    if not torch.is_tensor(probs) or not probs.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor of probabilities")
    if probs.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(probs.shape)}")
    if not torch.isfinite(probs).all():
        raise ValueError(f"{name} contains NaN or infinite values; probabilities must be finite in [0, 1]")
    if (probs < 0).any():
        raise ValueError(f"{name} contains negative values; probabilities must be in [0, 1]")
    tol = _SUM_TOL.get(probs.dtype, 1e-3)
    sums = probs.sum(-1, dtype=torch.float64)
    worst = (sums - 1).abs().max().item()
    if worst > tol:
        raise ValueError(
            f"{name} rows must sum to 1 (tolerance {tol:g}); worst row sums to "
            f"{1 + worst if (sums > 1).any() else 1 - worst:.6g}"
        )


def check_logits(name: str, logits: torch.Tensor) -> None:
    """logits: [..., V] may hold -inf (ruled-out tokens) but no NaN or +inf, and not be all -inf (one reduction)."""
    if not torch.is_tensor(logits) or not logits.is_floating_point() or logits.numel() == 0:
        raise ValueError(f"{name} must be a non-empty floating-point tensor")
    top = float(logits.max())
    if not top < math.inf:  # NaN anywhere makes the max NaN; +inf makes it inf
        raise ValueError(f"{name} contain NaN or +inf; logits must be finite or -inf")
    if top == -math.inf:
        raise ValueError(f"{name} are all -inf: no token can be sampled")


def check_tokens(name: str, tokens: torch.Tensor, vocab_size: int) -> None:
    if not torch.is_tensor(tokens) or tokens.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{name} must be an integer (long) tensor")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab_size):
        raise ValueError(
            f"{name} must be token ids in [0, {vocab_size - 1}] (vocab size {vocab_size}); "
            f"got values in [{int(tokens.min())}, {int(tokens.max())}]"
        )


def check_chain_inputs(
    p: torch.Tensor, q: torch.Tensor | None, draft_tokens: torch.Tensor, *, probs: bool = True
) -> None:
    """p: [B, k+1, V]; q: [B, k, V] or None; draft_tokens: [B, k]."""
    if not torch.is_tensor(draft_tokens) or draft_tokens.dim() != 2:
        raise ValueError(f"draft_tokens must have shape [B, k], got {tuple(getattr(draft_tokens, 'shape', ()))}")
    B, k = draft_tokens.shape
    if k < 1:
        raise ValueError(f"k (number of draft tokens, draft_tokens.shape[1]) must be >= 1, got {k}")
    if not torch.is_tensor(p) or p.dim() != 3:
        raise ValueError(f"p must have shape [B, k+1, V], got {tuple(getattr(p, 'shape', ()))}")
    if p.shape[0] != B or p.shape[1] != k + 1:
        raise ValueError(
            f"p must have shape [B, k+1, V] = [{B}, {k + 1}, V] to match draft_tokens [{B}, {k}], got {tuple(p.shape)}"
        )
    V = p.shape[2]
    if q is not None:
        if not torch.is_tensor(q) or q.dim() != 3 or tuple(q.shape) != (B, k, V):
            raise ValueError(
                f"q must have shape [B, k, V] = [{B}, {k}, {V}] (or be None for one-hot drafts), got "
                f"{tuple(getattr(q, 'shape', ()))}"
            )
    check_tokens("draft_tokens", draft_tokens, V)
    if not probs:
        check_logits("p", p)
    if probs:
        check_probs("p", p)
        if q is not None:
            check_probs("q", q)
            qx = q.gather(-1, draft_tokens.unsqueeze(-1))
            if (qx <= 0).any():
                raise ValueError(
                    "q must give every draft token positive probability (a draft cannot sample a token its q gives 0)"
                )
