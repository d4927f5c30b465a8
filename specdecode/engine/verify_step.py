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

from ..core.rng import TorchRNG
from ..core.sampling import SamplingConfig, greedy, logits_to_probs
from ..verify import CounterGumbel, Method, gumbel_sample
from .drafts import DraftTree


@dataclass
class RowResult:
    accepted: list[int]  # accepted draft nodes, root-first path order (the root excluded)
    tokens: list[int]  # emitted: the accepted drafts, then one recovered or bonus token


@dataclass(frozen=True)
class RowVerify:
    """How one row is verified."""

    method: Method
    sampling: SamplingConfig
    rng: TorchRNG
    noise: CounterGumbel | None
    stream: int  # the row's Gumbel noise stream
    seq: list  # the row's sequence before this step (absolute positions of the noise)


def verify_rows(logits: torch.Tensor, trees: list[DraftTree], rows: list[RowVerify | None]) -> list[RowResult | None]:
    """logits: [B, n_max, V] of every row's tree (node order); rows[b]: how row b is verified (None: the row is not
    generating). -> a result per generating row."""
    groups: dict = {}
    for b, r in enumerate(rows):
        if r is not None:
            groups.setdefault((r.method.name, r.sampling, id(r.rng), id(r.noise)), []).append(b)
    out: list[RowResult | None] = [None] * len(trees)
    for idx in groups.values():
        r = rows[idx[0]]
        lg = logits if len(idx) == logits.shape[0] else logits[idx]  # [G, n_max, V]
        p = lg if r.method.greedy else logits_to_probs(lg, r.sampling)
        for j, res in enumerate(_verify_group(r, p, [trees[b] for b in idx], [rows[b] for b in idx])):
            out[idx[j]] = res
    return out


def _verify_group(r: RowVerify, p: torch.Tensor, trees: list[DraftTree], rows: list[RowVerify]) -> list[RowResult]:
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
            res = r.method.tree(pj, t.q_matrix(pj.dtype), torch.tensor(t.parents, device="cpu"),
                                torch.tensor(t.tokens, device="cpu"), r.rng, validate=False)
            out[j] = RowResult(res.path, res.tokens)
    return out


def _plain_tokens(r: RowVerify, p0: torch.Tensor, rows: list[RowVerify]) -> list[int]:
    """p0: [R, V] the next-token distributions (logits for greedy) of rows that drafted nothing -> R tokens."""
    if r.method.greedy:
        return greedy(p0).tolist()
    if r.method.noise:
        return gumbel_sample(p0, _noise(rows, 1, p0.shape[-1], p0.device)[:, 0]).tolist()
    return r.rng.categorical(p0).tolist()


def _verify_chains(r: RowVerify, p: torch.Tensor, trees: list[DraftTree], rows: list[RowVerify], rest: list[int], out) -> None:
    by_k: dict[int, list[int]] = {}
    for j in rest:
        by_k.setdefault(trees[j].size, []).append(j)
    for k, group in by_k.items():
        pr = p[group, : k + 1]  # [G, k+1, V]
        drafts = torch.tensor([trees[j].tokens[1:] for j in group], dtype=torch.long, device=p.device)  # [G, k]
        q = None
        if trees[group[0]].q is not None:
            q = torch.stack([trees[j].q[:k] for j in group]).to(pr.dtype)  # [G, k, V]
        randomness = _noise([rows[j] for j in group], k + 1, p.shape[-1], p.device) if r.method.noise else r.rng
        res = r.method.chain(pr, q, drafts, randomness, validate=False)
        for i, j in enumerate(group):
            n = int(res.num_accepted[i])
            out[j] = RowResult(list(range(1, n + 1)), res.emitted(i))


def _noise(rows: list[RowVerify], n: int, V: int, device) -> torch.Tensor:
    """Gumbel noise of each row's stream at the n absolute positions after its sequence -> [R, n, V]."""
    return torch.cat([r.noise.noise([r.stream], torch.tensor([[len(r.seq) + i for i in range(n)]], device="cpu"), V)
                      for r in rows]).to(device)


def overlaps(logits: torch.Tensor, trees: list[DraftTree], results: list[RowResult | None],
             rows: list[RowVerify | None]) -> list[tuple[float, int] | None]:
    """Per chain row: (sum over its checked draft positions of sum_x min(p, q), the number of checked positions);
    the checked positions are the accepted ones and the first rejected."""
    out: list[tuple[float, int] | None] = [None] * len(trees)
    for b, (tree, res, r) in enumerate(zip(trees, results, rows)):
        k = tree.size
        if res is None or k == 0 or not tree.is_chain:
            continue
        checked = min(len(res.accepted) + 1, k)
        p = logits_to_probs(logits[b, :checked], r.sampling)  # [checked, V]
        if tree.q is None:
            x = torch.tensor(tree.tokens[1 : checked + 1], device=p.device)
            ov = p.gather(1, x[:, None]).squeeze(1)
        else:
            ov = torch.minimum(p, tree.q[:checked].to(p.dtype)).sum(-1)
        out[b] = (float(ov.sum()), checked)
    return out
