"""One step's verification in the engine: the target's logits for every row's draft -> the accepted path and the
emitted tokens of each row, with each row's method from the registry, its sampling settings and its randomness.

Rows sharing all of these are verified together: chain methods check rows with the same draft length in one
batched call; tree methods walk each row's tree; greedy rows (chains and trees) fetch the argmax of every node
once and walk their drafts in Python (the registry's greedy methods are the reference it is tested against).
Rows that drafted nothing are plain decoding through the same rules. Also here: the exact overlap sum_x min(p, q)
at the checked draft positions (``GenerationConfig.measure_overlap``).

Not here: the algorithms (``verify``), caches, or what happens to the tokens afterwards (``loop``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.sampling import (
    dense_probs,
    dense_rows,
    filters_remove,
    greedy_ids,
    logits_to_probs,
    sample_sparse,
    sparse_possible,
    sparse_warp_checked,
)
from ..verify import gumbel_sample
from ..verify.multidraft import greedy_path
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
    logits: torch.Tensor,
    trees: list[DraftTree],
    policies: list[RowPolicy],
    seqs: list[list[int]],
    best: list | None = None,
    tops: list | None = None,
) -> list[RowResult]:
    """logits: [B, n_max, V] of every row's tree (node order; None when every row is greedy and ``best`` is
    given); policies[b] / seqs[b]: how row b is verified and its sequence before this step; best: [B][n_max] the
    argmax ids of those logits when the caller has them (for greedy rows); tops: [B] each row's largest logit at
    its nodes [len(tree.tokens)] when the caller has read them (for sampled rows). -> a result per row."""
    if best is not None and all(pol.method.greedy for pol in policies):  # the common greedy step: no groups
        return _verify_greedy(best, trees)
    groups: dict = {}
    for b, pol in enumerate(policies):
        groups.setdefault(pol.verify_key(), []).append(b)
    out: list[RowResult] = [None] * len(trees)  # type: ignore[list-item]
    for idx in groups.values():
        pol = policies[idx[0]]
        group = [trees[b] for b in idx]
        if pol.method.greedy and best is not None:
            results = _verify_greedy([best[b] for b in idx], group)
        else:
            lg = logits if len(idx) == len(trees) else logits[idx]  # [G, n_max, V]
            if pol.method.greedy:
                results = _verify_greedy(greedy_ids(lg), group)
            else:
                group_tops = None if tops is None else [tops[b] for b in idx]
                sparse = _sparse_applies(pol, group)
                results = _verify_sparse(pol, lg, group, group_tops) if sparse else None
                if results is None:  # tried sparse: no sparse form (HF's steps, not asked again); else logits_to_probs
                    rows = [Row(policies[b], seqs[b]) for b in idx]
                    warp = dense_probs if sparse else logits_to_probs
                    probs = warp(lg, pol.sampling, checked=tops is not None)  # [G, n_max, V]
                    results = _verify_group(rows[0], probs, group, rows)
        for j, res in enumerate(results):
            out[idx[j]] = res
    return out


def _verify_greedy(best: list[list[int]], trees: list[DraftTree]) -> list[RowResult]:
    """Greedy rows (chains, trees or none drafted): best [G][n_max] the argmax id of every node, fetched once
    (``greedy_ids``) -> their results, walked in Python (``verify.greedy_path``): the fast path beside the
    registry's torch ``greedy_verify`` / ``greedy_tree_verify``, tested against them."""
    out = []
    for t, b in zip(trees, best):
        if t.size == 0:  # nothing drafted: the argmax
            out.append(RowResult([], [b[0]]))
        else:
            walk = greedy_path(t.parents, t.tokens, b)
            out.append(RowResult(walk.path, walk.tokens))
    return out


def _sparse_applies(pol: RowPolicy, trees: list[DraftTree]) -> bool:
    """Rows sharing ``pol`` (not greedy) can be verified on sparse distributions: each drafted nothing or a chain
    of one-hot drafts its method verifies that way (``Method.sparse_chain``), and no Gumbel noise is drawn."""
    method = pol.method
    sparse_chains = method.sparse_chain is not None
    return not method.noise and all(t.size == 0 or (sparse_chains and t.is_chain and t.q is None) for t in trees)


def _verify_sparse(pol: RowPolicy, logits: torch.Tensor, trees: list[DraftTree], tops: list | None) -> list | None:
    """Rows for which ``_sparse_applies``: logits [G, n_max, V], tops [G] each row's largest logits at its nodes or
    None -> their results, drawn row after row on the few tokens the sampling leaves at each node (``sparse_warp``;
    HF's steps for a row alone where a cut is unclear); None when the logits or settings have no sparse form
    (``sparse_possible``: then the dense path). No [G, n_max, V] of p is written: ~80 us a vocabulary-wide pass
    right after a llama.cpp pass, which is also why the group is read as numpy once and the maxima come along."""
    read = tops is not None  # the check read these logits as CPU float32 (``step._node_tops``)
    if not (filters_remove(pol.sampling, logits.shape[-1]) if read else sparse_possible(logits, pol.sampling)):
        return None
    arr = logits.numpy()  # [G, n_max, V]
    method = pol.method
    out = []
    for j, t in enumerate(trees):
        d = _node_dists(arr[j, : t.size + 1], pol, None if tops is None else tops[j])
        if t.size == 0:
            out.append(RowResult([], [sample_sparse(d[0], pol.rng)]))
        else:
            n, tokens = method.sparse_chain(d, t.tokens[1:], pol.rng)
            out.append(RowResult(list(range(1, n + 1)), tokens))
    return out


def _node_dists(arr, pol: RowPolicy, tops) -> list:
    """One row's nodes: logits [n, V] (numpy), tops [n] their maxima or None -> their warped distributions as sparse
    rows. Where a cut is unclear (a tie at the top-k cut, a nucleus of thousands of tokens: 4-17% of positions with
    top-p alone on raw text) HF's steps run for this row only, so one such row no longer sends a whole batch of rows
    to the vocabulary-wide sort."""
    dists = sparse_warp_checked(arr, pol.sampling, tops)
    return dists if dists is not None else dense_rows(torch.from_numpy(arr), pol.sampling)


def _verify_group(r: Row, p: torch.Tensor, trees: list[DraftTree], rows: list[Row]) -> list[RowResult]:
    """Rows sharing method, sampling and randomness (not greedy): p [G, n_max, V] -> their results."""
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
    """p0: [R, V] the next-token distributions of rows that drafted nothing -> R tokens."""
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
