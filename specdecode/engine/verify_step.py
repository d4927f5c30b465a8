"""One step's verification in the engine: the target's logits for every row's draft -> the accepted path and
the emitted tokens of each row, with the method from the registry.

Chain methods verify rows with the same draft length together (one batched call); tree methods, and
greedy trees, walk each row's tree. Rows that drafted nothing are plain decoding through the same rules.
Also here: the exact overlap sum_x min(p, q) at the checked draft positions (``GenerationConfig.measure_overlap``).

Not here: the algorithms (``verify``), caches, or what happens to the tokens afterwards (``loop``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.sampling import SamplingConfig, greedy, logits_to_probs
from ..verify import CounterGumbel, Method, gumbel_sample
from .drafts import DraftTree
from .stats import GenerationStats


@dataclass
class RowResult:
    accepted: list[int]  # accepted draft nodes, root-first path order (the root excluded)
    tokens: list[int]  # emitted: the accepted drafts, then one recovered or bonus token


def verify_rows(method: Method, logits: torch.Tensor, trees: list[DraftTree], live: list[bool], sampling: SamplingConfig,
                rng, noise: CounterGumbel | None, seqs: list[list[int]]) -> list[RowResult | None]:
    """logits: [B, n_max, V] of every row's tree (node order); live[b]: row b is still generating;
    seqs[b]: row b's sequence (absolute positions for Gumbel noise). -> a result per live row (None otherwise)."""
    p = logits if method.greedy else logits_to_probs(logits, sampling)  # [B, n_max, V]
    out: list[RowResult | None] = [None] * len(trees)
    plain = [b for b in range(len(trees)) if live[b] and trees[b].size == 0]
    if plain:
        p0 = p[:, 0] if len(plain) == p.shape[0] else p[plain, 0]  # [R, V] (a view when every row is plain)
        for b, y in zip(plain, _plain_tokens(method, p0, plain, seqs, rng, noise)):
            out[b] = RowResult([], [y])
    rest = [b for b in range(len(trees)) if live[b] and trees[b].size > 0]
    if method.chain is not None and all(trees[b].is_chain for b in rest):
        _verify_chains(method, p, trees, rest, seqs, rng, noise, out)
    else:
        for b in rest:
            t = trees[b]
            pb = p[b, : len(t.tokens)]
            res = method.tree(pb, t.q_matrix(pb.dtype), torch.tensor(t.parents, device="cpu"), torch.tensor(t.tokens, device="cpu"),
                              rng, validate=False)
            out[b] = RowResult(res.path, res.tokens)
    return out


def _plain_tokens(method: Method, p0: torch.Tensor, rows: list[int], seqs, rng, noise) -> list[int]:
    """p0: [R, V] the next-token distributions (logits for greedy) of rows that drafted nothing -> R tokens."""
    if method.greedy:
        return greedy(p0).tolist()
    if method.noise:
        return gumbel_sample(p0, _noise(noise, rows, seqs, 1, p0.shape[-1], p0.device)[:, 0]).tolist()
    return rng.categorical(p0).tolist()


def _verify_chains(method: Method, p: torch.Tensor, trees: list[DraftTree], rows: list[int], seqs, rng, noise, out) -> None:
    groups: dict[int, list[int]] = {}
    for b in rows:
        groups.setdefault(trees[b].size, []).append(b)
    for k, group in groups.items():
        pr = p[group, : k + 1]  # [G, k+1, V]
        drafts = torch.tensor([trees[b].tokens[1:] for b in group], dtype=torch.long, device=p.device)  # [G, k]
        q = None
        if trees[group[0]].q is not None:
            q = torch.stack([trees[b].q[:k] for b in group]).to(pr.dtype)  # [G, k, V]
        randomness = _noise(noise, group, seqs, k + 1, p.shape[-1], p.device) if method.noise else rng
        res = method.chain(pr, q, drafts, randomness, validate=False)
        for j, b in enumerate(group):
            n = int(res.num_accepted[j])
            out[b] = RowResult(list(range(1, n + 1)), res.emitted(j))


def _noise(noise: CounterGumbel, rows: list[int], seqs, n: int, V: int, device) -> torch.Tensor:
    """Gumbel noise at the n absolute positions after each row's sequence -> [R, n, V]."""
    pos = torch.tensor([[len(seqs[b]) + i for i in range(n)] for b in rows], device="cpu")
    return torch.cat([noise.noise([b], pos[j : j + 1], V) for j, b in enumerate(rows)]).to(device)


def record_overlap(stats: GenerationStats, logits: torch.Tensor, sampling: SamplingConfig, trees: list[DraftTree],
                   results: list[RowResult | None]) -> None:
    """sum_x min(p, q) at each checked draft position of chain rows (the accepted ones and the first rejected)."""
    for b, (tree, res) in enumerate(zip(trees, results)):
        k = tree.size
        if res is None or k == 0 or not tree.is_chain:
            continue
        checked = min(len(res.accepted) + 1, k)
        p = logits_to_probs(logits[b, :checked], sampling)  # [checked, V]
        if tree.q is None:
            x = torch.tensor(tree.tokens[1 : checked + 1], device=p.device)
            ov = p.gather(1, x[:, None]).squeeze(1)
        else:
            ov = torch.minimum(p, tree.q[:checked].to(p.dtype)).sum(-1)
        stats.overlap_sum += float(ov.sum())
        stats.overlap_count += checked
