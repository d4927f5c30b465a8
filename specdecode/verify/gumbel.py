"""Gumbel-coupled (drafter-invariant) sampling.

Noise g(stream, position, token) comes from a seeded counter-based generator, so the
noise at an absolute position does not depend on how many tokens earlier steps
emitted. Target token = argmax(log p + g); a drafter using the same noise drafts
argmax(log q + g). Accept while they agree; at the first difference emit the target's
token. The output is exactly the target's Gumbel-max sample under that noise, so a
seeded speculative run equals the seeded plain run token for token, whatever the drafter.

Not here: drafting itself (drafters call ``gumbel_sample`` with the same noise).
"""

from __future__ import annotations

import torch

from ..core.validation import check_chain_inputs
from .types import VerifyResult, assemble, prefix

_MASK = (1 << 63) - 1


def _mix(*xs: int) -> int:
    """splitmix64-style hash of integers -> a non-negative 63-bit seed."""
    h = 0x9E3779B97F4A7C15
    for x in xs:
        h = (h ^ (int(x) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h = (h ^ (h >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 29
    return h & _MASK


class CounterGumbel:
    """Gumbel noise g(seed, stream, position, token), reproducible per (stream, position)."""

    def __init__(self, seed: int):
        self.seed = int(seed)

    @staticmethod
    def from_generator(generator: torch.Generator) -> CounterGumbel:
        """Noise keyed on a 62-bit key drawn from ``generator``: the generator's state advances, so calls that
        share one generator get fresh noise, and the same seed gives the same key (seeded runs repeat)."""
        return CounterGumbel(int(torch.randint(0, 1 << 62, (1,), generator=generator, device=generator.device)))

    def noise(self, streams: list[int], positions: torch.Tensor, vocab_size: int) -> torch.Tensor:
        """streams: B stream ids; positions: [B, n] absolute positions -> noise [B, n, V] float32 (on the CPU,
        where the counter-based streams live; callers move it to their device)."""
        B, n = positions.shape
        out = torch.empty(B, n, vocab_size, dtype=torch.float32, device="cpu")
        gen = torch.Generator(device="cpu")
        for b in range(B):
            for i in range(n):
                gen.manual_seed(_mix(self.seed, streams[b], int(positions[b, i])))
                u = torch.rand(vocab_size, generator=gen, dtype=torch.float64, device="cpu").clamp_(min=1e-300)
                out[b, i] = -torch.log(-torch.log(u))
        return out


def gumbel_sample(probs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """probs: [..., V]; noise: [..., V] -> argmax(log probs + noise) [...]."""
    logp = torch.where(probs > 0, probs.log(), torch.full_like(probs, float("-inf")))
    return (logp + noise.to(logp.dtype)).argmax(-1)


def gumbel_verify(p, q, draft_tokens, noise, *, validate: bool = True) -> VerifyResult:
    """Gumbel-coupled verification. p: [B, k+1, V]; q unused; draft_tokens: [B, k];
    noise: [B, k+1, V] Gumbel noise at the k+1 absolute positions being decided."""
    if validate:
        check_chain_inputs(p, None, draft_tokens)
        if tuple(noise.shape) != tuple(p.shape):
            raise ValueError(f"noise must have the shape of p {tuple(p.shape)}, got {tuple(noise.shape)}")
    k = draft_tokens.shape[1]
    target = gumbel_sample(p, noise)  # [B, k+1]
    accepted = prefix(draft_tokens == target[:, :k])
    n = accepted.sum(-1)
    return assemble(draft_tokens, accepted, target.gather(1, n[:, None]).squeeze(1))
