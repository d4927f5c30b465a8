"""How drafts are drawn. The engine builds the sampler from each row's ``RowPolicy`` (made once, when the request
is admitted, from its verification method), so a drafter can only draw children the way that method needs (a
wrong combination cannot be built).

``DraftSampler`` holds, per row, the warping shared with the target (p and q use the same ``SamplingConfig``),
the children rule of the method (``verify.registry``: sample, iid, wor, topm) and the randomness: the row's
generator, or, for Gumbel-coupled verification, noise at absolute positions of the row's own stream so that a
seeded speculative run equals the seeded plain run. Rows of one batch may differ in all of these (a server
batches requests with their own settings).

Not here: drafting (``drafters/``) or verification.
"""

from __future__ import annotations

import torch

from ..core.rng import TorchRNG
from ..core.sampling import SamplingConfig, greedy, logits_to_probs
from ..verify import CounterGumbel, gumbel_sample
from .constrained import mask_logits
from .policy import RowPolicy


class DraftSampler:
    """``DraftSampler(sampling, children, rng, noise, seqs)``: every row drawn alike (row b's noise stream is b);
    ``DraftSampler.per_row(policies, seqs)``: each row by its own ``RowPolicy``."""

    def __init__(
        self,
        sampling: SamplingConfig,
        children: str,
        rng: TorchRNG,
        noise: CounterGumbel | None = None,
        seqs: list[list[int]] | None = None,
    ):
        self._shared = RowPolicy(sampling, None, children, rng, noise)
        self._rows: list[RowPolicy] | None = None
        self.seqs = seqs
        self.grammars: list | None = None

    @classmethod
    def per_row(cls, policies: list[RowPolicy], seqs: list[list[int]], grammars: list | None = None) -> DraftSampler:
        """policies[b] / seqs[b] / grammars[b]: row b's policy, its sequence (the root is its last token) and its
        grammar (``constraint.RowGrammar``; None: unconstrained; grammars None: no row is)."""
        s = cls.__new__(cls)
        s._shared, s._rows, s.seqs, s.grammars = None, list(policies), seqs, grammars
        return s

    def row(self, b: int) -> RowPolicy:
        if self._rows is not None:
            return self._rows[b]
        shared = self._shared
        return RowPolicy(shared.sampling, None, shared.children, shared.rng, shared.noise, b)

    @property
    def mode(self) -> str:
        """The children rule when every row shares one (else "mixed")."""
        if self._rows is None:
            return self._shared.children
        modes = {d.children for d in self._rows}
        return modes.pop() if len(modes) == 1 else "mixed"

    def deterministic(self, b: int) -> bool:
        """Row b drafts by argmax (T = 0): its q is not needed by verification."""
        return self.row(b).sampling.is_greedy

    def probs(self, logits: torch.Tensor, rows: list[int], paths: list[tuple] | None = None) -> torch.Tensor:
        """Draft logits [R, V] of nodes of ``rows`` (one row id per node) -> q [R, V], each with its row's warping;
        paths[i]: node i's draft tokens after its row's root, for a constrained row's mask (applied before the
        warping, as for the target)."""
        if self.grammars is not None and paths is not None:
            logits = mask_logits(logits, [self.grammars[b] for b in rows], paths)
        cfgs = [self.row(b).q_config for b in rows]
        if all(c == cfgs[0] for c in cfgs):
            return logits_to_probs(logits, cfgs[0])
        out = torch.empty_like(logits)
        for cfg in dict.fromkeys(cfgs):
            idx = [i for i, c in enumerate(cfgs) if c == cfg]
            out[idx] = logits_to_probs(logits[idx], cfg)
        return out

    def draw(self, q: torch.Tensor, rows: list[int], offsets: list[int]) -> list[int]:
        """One child for each of R nodes: q [R, V]; rows / offsets: each node's row and draft index (depth) -> R
        tokens.
        """
        draws = [self.row(b) for b in rows]
        groups: dict = {}
        for i, d in enumerate(draws):
            key = "noise" if d.noise is not None else "greedy" if d.sampling.is_greedy else d.rng
            groups.setdefault(key, []).append(i)
        out = [0] * len(rows)
        for key, idx in groups.items():
            if key == "greedy":
                picks = greedy(q[idx]).tolist()
            elif key == "noise":
                picks = [self._gumbel(q[i], draws[i], len(self.seqs[rows[i]]) + offsets[i]) for i in idx]
            else:
                picks = draws[idx[0]].rng.categorical(q[idx]).tolist()
            for i, x in zip(idx, picks):
                out[i] = int(x)
        return out

    @staticmethod
    def _gumbel(q: torch.Tensor, d: RowPolicy, position: int) -> int:
        pos = torch.tensor([[position]], device="cpu")
        g = d.noise.noise([d.stream], pos, q.shape[-1])[0, 0]
        return int(gumbel_sample(q, g.to(q.device)))

    def children(self, q: torch.Tensor, count: int, row: int, offset: int) -> list[int]:
        """``count`` children of one node drawn from q [V] by the row's rule (fewer when q has fewer tokens and the
        rule needs distinct ones)."""
        if count == 1:
            return self.draw(q[None], [row], [offset])
        d = self.row(row)
        if d.children == "sample":
            raise ValueError("this verification method takes one draft chain per row, not several children")
        if d.children == "iid":
            return d.rng.categorical(q.expand(count, -1)).tolist()
        count = min(count, int((q > 0).sum()))
        if d.children == "topm":
            return q.topk(count).indices.tolist()
        s, out = q.clone(), []  # without replacement
        for _ in range(count):
            x = int(d.rng.categorical(s[None])[0])
            out.append(x)
            s[x] = 0
        return out
