"""How drafts are drawn in one generation. The engine builds the sampler from the verification method, so a
drafter can only draw children the way that method needs (a wrong combination cannot be built).

``DraftSampler`` holds the warping shared with the target (p and q use the same ``SamplingConfig``), the
children rule of the method (``verify.registry``: sample, iid, wor, topm) and the randomness: the
generation's generator, or, for Gumbel-coupled verification, noise at absolute positions so that a seeded
speculative run equals the seeded plain run.

Not here: drafting (``drafters/``) or verification.
"""

from __future__ import annotations

import torch

from ..core.rng import TorchRNG
from ..core.sampling import SamplingConfig, greedy, logits_to_probs
from ..verify import CounterGumbel, gumbel_sample

_PLAIN = SamplingConfig(1.0)


class DraftSampler:
    def __init__(self, sampling: SamplingConfig, children: str, rng: TorchRNG, noise: CounterGumbel | None = None,
                 seqs: list[list[int]] | None = None):
        if noise is not None and children != "sample":
            raise ValueError("Gumbel-coupled drafting draws one child per node (chains only)")
        self.sampling, self.mode, self.rng, self.noise, self.seqs = sampling, children, rng, noise, seqs

    @property
    def deterministic(self) -> bool:
        """T = 0: drafts are argmax picks; their q is not needed by verification."""
        return self.sampling.is_greedy

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """Draft logits [..., V] -> q [..., V]. Greedy trees rank children by the plain softmax (the warped q
        at T = 0 is one-hot and would leave one child per node); everything else uses the target's warping."""
        cfg = _PLAIN if self.mode == "topm" else self.sampling
        return logits_to_probs(logits, cfg)

    def draw(self, q: torch.Tensor, rows: list[int], offsets: list[int]) -> list[int]:
        """One child for each of R nodes: q [R, V]; rows / offsets: each node's row and draft index (depth)
        -> R tokens."""
        if self.noise is not None:
            pos = torch.tensor([[len(self.seqs[r]) + o] for r, o in zip(rows, offsets)], device="cpu")
            g = torch.cat([self.noise.noise([r], pos[j : j + 1], q.shape[-1])[:, 0] for j, r in enumerate(rows)])
            return gumbel_sample(q, g.to(q.device)).tolist()
        if self.sampling.is_greedy:
            return greedy(q).tolist()
        return self.rng.categorical(q).tolist()

    def children(self, q: torch.Tensor, count: int, row: int, offset: int) -> list[int]:
        """``count`` children of one node drawn from q [V] by the method's rule (fewer when q has fewer tokens
        and the rule needs distinct ones)."""
        if count == 1:
            return self.draw(q[None], [row], [offset])
        if self.mode == "sample":
            raise ValueError("this verification method takes one draft chain per row, not several children")
        if self.mode == "iid":
            return self.rng.categorical(q.expand(count, -1)).tolist()
        count = min(count, int((q > 0).sum()))
        if self.mode == "topm":
            return q.topk(count).indices.tolist()
        s, out = q.clone(), []  # without replacement
        for _ in range(count):
            x = int(self.rng.categorical(s[None])[0])
            out.append(x)
            s[x] = 0
        return out
