"""Result types and small tensor helpers shared by the verification methods (no algorithms live here)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

PAD = -1  # filler in emitted-token tensors after the last emitted token


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of verifying one chain of k draft tokens per row.

    num_accepted: [B] long, accepted draft tokens (0..k).
    tokens: [B, k+1] long, emitted tokens: the accepted drafts, then one recovered
        (after a rejection) or bonus (all k accepted) token; PAD after that.
    accepted: [B, k] bool, per-position accept flags (a prefix of True).
    """

    num_accepted: torch.Tensor
    tokens: torch.Tensor
    accepted: torch.Tensor

    @property
    def num_emitted(self) -> torch.Tensor:
        return self.num_accepted + 1

    @property
    def bonus(self) -> torch.Tensor:
        """[B] bool: the last emitted token is a bonus token (every draft was accepted)."""
        return self.num_accepted == self.accepted.shape[1]

    def emitted(self, row: int) -> list[int]:
        n = int(self.num_accepted[row]) + 1
        return [int(t) for t in self.tokens[row, :n]]


@dataclass(frozen=True)
class TreeVerifyResult:
    """Outcome of verifying one draft tree.

    tokens: emitted tokens (accepted, then one recovered or bonus token).
    path: node ids of the accepted nodes, root excluded (len(path) == number accepted).
    """

    tokens: list[int]
    path: list[int]

    @property
    def num_accepted(self) -> int:
        return len(self.path)


def assemble(draft_tokens: torch.Tensor, accepted: torch.Tensor, last: torch.Tensor) -> VerifyResult:
    """draft_tokens: [B, k]; accepted: [B, k] bool prefix flags; last: [B] the recovered/bonus token."""
    B, k = draft_tokens.shape
    n = accepted.sum(-1)
    pos = torch.arange(k + 1, device=draft_tokens.device).expand(B, k + 1)
    padded = torch.cat([draft_tokens, draft_tokens.new_full((B, 1), PAD)], dim=1)
    tokens = torch.where(pos < n[:, None], padded, torch.full_like(padded, PAD))
    tokens = tokens.scatter(1, n[:, None], last[:, None].to(tokens.dtype))
    return VerifyResult(num_accepted=n, tokens=tokens, accepted=accepted)


def prefix(flags: torch.Tensor) -> torch.Tensor:
    """flags: [B, k] bool -> [B, k] bool, True up to (not including) the first False."""
    return flags.to(torch.int8).cumprod(-1).bool()


def safe_div(num: torch.Tensor, den: torch.Tensor, fill: float) -> torch.Tensor:
    """num / den where den > 0, ``fill`` elsewhere (no inf/NaN is ever formed). Same shapes (broadcastable)."""
    ok = den > 0
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.full_like(num, fill))


def positive_or(diff: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """diff, fallback: [..., V] -> the unnormalised residual (diff)_+ [..., V], or ``fallback`` in rows where
    it is all zero (every method falls back to the target's own distribution there, never to uniform)."""
    r = diff.clamp_min(0)
    return torch.where(r.sum(-1, keepdim=True) > 0, r, fallback)
