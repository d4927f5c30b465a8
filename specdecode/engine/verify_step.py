"""One step's verification in the engine: the target's logits for every row's draft -> the accepted path and the
emitted tokens of each row, with each row's method from the registry, its sampling settings and its randomness.

Rows sharing all of these are verified together: chain methods check rows with the same draft length in one
batched call; tree methods, and greedy trees, walk each row's tree. Rows that drafted nothing are plain
decoding through the same rules. Also here: the exact overlap sum_x min(p, q) at the checked draft positions
(``GenerationConfig.measure_overlap``).

Not here: the algorithms (``verify``), caches, or what happens to the tokens afterwards (``loop``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.sampling import greedy, logits_to_probs
from ..verify import gumbel_sample
from .drafts import DraftTree
from .policy import RowPolicy


@dataclass
class RowResult:
    accepted: list[int]  # accepted draft nodes, root-first path order (the root excluded)
    tokens: list[int]  # emitted: the accepted drafts, then one recovered or bonus token


@dataclass(frozen=True)
class Row:
    """A row at verification: its policy and its sequence before this step (absolute positions of the noise)."""

    policy: RowPolicy
    seq: list

    @property
    def method(self):
        return self.policy.method


def verify_rows(
    logits: torch.Tensor, trees: list[DraftTree], policies: list[RowPolicy], seqs: list[list[int]]
) -> list[RowResult]:
    """logits: [B, n_max, V] of every row's tree (node order); policies[b] / seqs[b]: how row b is verified and
    its sequence before this step. -> a result per row."""
    rows = [Row(pol, seq) for pol, seq in zip(policies, seqs)]
    groups: dict = {}
    for b, pol in enumerate(policies):
        groups.setdefault(pol.verify_key(), []).append(b)
    out: list[RowResult] = [None] * len(trees)  # type: ignore[list-item]
    for idx in groups.values():
        r = rows[idx[0]]
        lg = logits if len(idx) == logits.shape[0] else logits[idx]  # [G, n_max, V]
        p = lg if r.method.greedy else logits_to_probs(lg, r.policy.sampling)
        for j, res in enumerate(_verify_group(r, p, [trees[b] for b in idx], [rows[b] for b in idx])):
            out[idx[j]] = res
    return out


def _verify_group(r: Row, p: torch.Tensor, trees: list[DraftTree], rows: list[Row]) -> list[RowResult]:
    """Rows sharing method, sampling and randomness: p [G, n_max, V] (logits for greedy) -> their results."""
    out: list[RowResult | None] = [None] * len(trees)
    plain = [j for j, t in enumerate(trees) if t.size == 0]
    if plain:
        p0 = p[:, 0] if len(plain) == p.shape[0] else p[plain, 0]  # [R, V] (a view when every row is plain)
        for j, y in zip(plain, _plain_tokens(r, p0, [rows[j] for j in plain])):
            out[j] = RowResult([], [y])
    rest = [j for j, t in enumerate(trees) if t.size > 0]
    if r.method.chain is not None and all(trees[j].is_chain for j in rest):
        _verify_chains(r, p, trees, rows, rest, out)
    else:
        for j in rest:
            t = trees[j]
            pj = p[j, : len(t.tokens)]
            res = r.method.tree(
                pj,
                t.q_matrix(pj.dtype),
                torch.tensor(t.parents, device="cpu"),
                torch.tensor(t.tokens, device="cpu"),
                r.policy.rng,
                validate=False,
            )
            out[j] = RowResult(res.path, res.tokens)
    return out


def _plain_tokens(r: Row, p0: torch.Tensor, rows: list[Row]) -> list[int]:
    """p0: [R, V] the next-token distributions (logits for greedy) of rows that drafted nothing -> R tokens."""
    if r.method.greedy:
        return greedy(p0).tolist()
    if r.method.noise:
        return gumbel_sample(p0, _noise(rows, 1, p0.shape[-1], p0.device)[:, 0]).tolist()
    return r.policy.rng.categorical(p0).tolist()


def _verify_chains(r: Row, p: torch.Tensor, trees: list[DraftTree], rows: list[Row], rest: list[int], out) -> None:
    by_k: dict[int, list[int]] = {}
    for j in rest:
        by_k.setdefault(trees[j].size, []).append(j)
    for k, group in by_k.items():
        pr = p[group, : k + 1]  # [G, k+1, V]
        drafts = torch.tensor([trees[j].tokens[1:] for j in group], dtype=torch.long, device=p.device)  # [G, k]
        q = None
        if trees[group[0]].q is not None:
            q = torch.stack([trees[j].q[:k] for j in group]).to(pr.dtype)  # [G, k, V]
        randomness = _noise([rows[j] for j in group], k + 1, p.shape[-1], p.device) if r.method.noise else r.policy.rng
        res = r.method.chain(pr, q, drafts, randomness, validate=False)
        for i, j in enumerate(group):
            n = int(res.num_accepted[i])
            out[j] = RowResult(list(range(1, n + 1)), res.emitted(i))


def _noise(rows: list[Row], n: int, V: int, device) -> torch.Tensor:
    """Gumbel noise of each row's stream at the n absolute positions after its sequence -> [R, n, V]."""
    return torch.cat(
        [
            r.policy.noise.noise([r.policy.stream], torch.tensor([[len(r.seq) + i for i in range(n)]], device="cpu"), V)
            for r in rows
        ]
    ).to(device)


def overlap(logits: torch.Tensor, tree: DraftTree, result: RowResult, policy: RowPolicy) -> tuple[float, int] | None:
    """One chain row: logits [n_max, V] of its nodes -> (sum over its checked draft positions of sum_x min(p, q),
    the number of checked positions); the checked positions are the accepted ones and the first rejected."""
    k = tree.size
    if k == 0 or not tree.is_chain:
        return None
    checked = min(len(result.accepted) + 1, k)
    p = logits_to_probs(logits[:checked], policy.sampling)  # [checked, V]
    if tree.q is None:
        x = torch.tensor(tree.tokens[1 : checked + 1], device=p.device)
        ov = p.gather(1, x[:, None]).squeeze(1)
    else:
        ov = torch.minimum(p, tree.q[:checked].to(p.dtype)).sum(-1)
    return float(ov.sum()), checked
