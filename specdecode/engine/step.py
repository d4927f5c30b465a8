"""ONE step of the speculative decoding engine, for chains and trees, for every request of a running batch.

Each step: the drafter proposes a tree per row (a chain is a tree with one path; the depth per row is fixed
or chosen by the row's adaptive controller from its acceptance and the pass costs), the target scores every
row's nodes in ONE forward pass (chains: a plain ragged pass; trees: a tree attention mask), each row's method
from the registry accepts a path and emits one recovered or bonus token, target and drafter keep the accepted
path (rollback), and the tokens are cut where plain decoding would stop (end of sequence, budget, stop strings)
and streamed. Rows are ragged: each keeps its own length and policy. k = 0 is plain decoding through the very
same code (the baseline). A row whose prefill already computed its root's logits (``Request.pending``) feeds only
its drafts in its first step, and nothing at all when it drafts none.

Words as in vLLM: *accepted* draft tokens, a *recovered* token (drawn from the residual after a rejection),
a *bonus* token (drawn from p after a leaf), *plain* tokens (steps that drafted nothing).

Not here: the verification math (``verify``), drafting (``drafters``), who runs in the batch (``session``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from itertools import accumulate

import torch

from ..core.sampling import greedy_top
from .adaptive import DepthAsk, batch_depths
from .config import RowFault
from .constrained import constrain_drafts, mask_tree_logits, one_token_nodes
from .drafts import Drafter, DraftTree
from .logprobs import token_logprobs
from .sampler import DraftSampler
from .stats import GenerationStats
from .verify_step import RowResult, overlap, verify_rows


def run_step(target, drafter: Drafter, requests: list, passes: GenerationStats) -> None:
    """One step for every request (``session.Request``, in cache-row order); the batch's pass counts and times go
    to ``passes``, each row's own counts to its request's stats. Runs in inference mode (``generate`` and the
    server's engine thread hold it already: checking costs ~7 us a step, entering it again ~22)."""
    if not torch.is_inference_mode_enabled():
        with torch.inference_mode():
            return run_step(target, drafter, requests, passes)
    policies = [r.policy for r in requests]
    seqs = [r.seq for r in requests]
    rooms = [max(0, r.config.max_new_tokens - len(r.new) - 1) if pol.limit else 0 for pol, r in zip(policies, requests)]
    caps = [min(pol.limit, room) for pol, room in zip(policies, rooms)]
    grammars = [r.grammar for r in requests]
    constrained = any(g is not None for g in grammars)
    t0 = time.perf_counter()
    trees = _draft(target, drafter, policies, seqs, caps, grammars if constrained else None)
    if constrained:
        trees = constrain_drafts(trees, grammars, rooms)
    draft_dt = time.perf_counter() - t0
    passes.draft_time += draft_dt
    chain_pass = all(t.is_chain for t in trees)
    pending = _take_pending(target, requests, chain_pass)
    greedy = not constrained and all(pol.method.greedy for pol in policies)
    ids_only = greedy and chain_pass and _reads_ids_only(requests, pending)
    grammars_or_none = grammars if constrained else None
    scores, computed, pass_dt = _score(target, trees, chain_pass, passes, grammars_or_none, pending, ids_only)
    read = _check_finite(target, drafter, requests, trees, scores, chain_pass, passes.steps + 1, greedy)
    logits = None if ids_only else scores
    if constrained:
        mask_tree_logits(logits, trees, grammars)
    drafted = sum(t.size for t in trees)
    for pol in policies:
        if pol.adaptive and computed:
            pol.adaptive.observe_pass(computed, pass_dt)
            if drafted:
                pol.adaptive.observe_draft(draft_dt / drafted)
    tops = None if constrained else read.tops  # the masks changed the logits the maxima were read from
    results = verify_rows(logits, trees, policies, seqs, read.best, tops)
    for b, (r, tree, res) in enumerate(zip(requests, trees, results)):
        if r.config.measure_overlap:
            ov = overlap(logits[b], tree, res, r.policy)
            if ov:
                r.stats.overlap_sum, r.stats.overlap_count = r.stats.overlap_sum + ov[0], r.stats.overlap_count + ov[1]
    _commit(target, drafter, requests, results, chain_pass)
    passes.steps += 1
    for b, (r, tree, res) in enumerate(zip(requests, trees, results)):
        lp = None
        if r.config.logprobs is not None:  # emitted token i was drawn at node path[i] of the accepted path
            at = torch.tensor([0] + res.accepted[: len(res.tokens) - 1])
            lp = token_logprobs(logits[b, at], res.tokens, r.policy.sampling, r.config.logprobs)
        _emit(r, tree, res, lp)


def _draft(target, drafter: Drafter, policies: list, seqs: list, caps: list[int], grammars) -> list[DraftTree]:
    """Every row's draft. A cheap drafter (lookup) drafts to each row's cap first and the adaptive rows are cut to
    the depth their draft is worth (its match length priced, ``adaptive.DepthAsk``); others are asked for the
    depths the rows' controllers choose. ``grammars``: each row's (None: no row is constrained), for the sampler."""
    if max(caps) == 0:  # plain decoding: nothing to draft
        return [DraftTree.chain(s[-1], []) for s in seqs]
    sampler = DraftSampler.per_row(policies, seqs, grammars)
    if drafter.cheap and any(pol.adaptive for pol in policies):
        full = drafter.propose(seqs, caps, sampler)
        asks = [_ask(pol.adaptive, tree, cap) for pol, tree, cap in zip(policies, full, caps)]
        ks = batch_depths(asks, target.batch_tokens)
        return [tree.cut(k) for tree, k in zip(full, ks)]
    ks = batch_depths([(pol.adaptive, cap) for pol, cap in zip(policies, caps)], target.batch_tokens)
    if max(ks) > 0:
        return drafter.propose(seqs, ks, sampler)
    return [DraftTree.chain(s[-1], []) for s in seqs]


def _ask(ctrl, tree: DraftTree, cap: int) -> DepthAsk:
    """A row's lookup draft as a question to ``batch_depths``: its depth, match length and nodes per depth."""
    depths = tree.depths()
    depth = max(depths)
    if ctrl is None:
        return DepthAsk(None, depth)
    counts = [0] * (depth + 1)
    for d in depths[1:]:
        counts[d] += 1
    return DepthAsk(ctrl, min(depth, cap), tree.match, list(accumulate(counts)))


@dataclass
class _Argmax:
    """A greedy chain pass read without its logits (``Backend.extend_argmax``): ids[b][i] the argmax id at row b's
    i-th fed node, top[b][i] the logit there."""

    ids: list
    top: list


def _reads_ids_only(requests: list, pending: list) -> bool:
    """A greedy chain step needs each node's argmax only: no row asks for log-probabilities or the overlap
    measure, and no row holds prefilled root logits (its first step)."""
    if any(p is not None for p in pending):
        return False
    return not any(r.config.logprobs is not None or r.config.measure_overlap for r in requests)


def _take_pending(target, requests: list, chain_pass: bool) -> list:
    """Each row's prefilled root logits [V] (None: the row feeds its root this step), taken from the requests. A
    tree pass feeds every row's root (the tree attention starts after the verified prefix): a row holding its
    root's cell gives it back first, and computes its logits again."""
    pending = [r.pending for r in requests]
    if all(p is None for p in pending):
        return pending
    for r in requests:
        r.pending = None
    if chain_pass:
        return pending
    target.rollback([len(r.seq) - 1 for r in requests])
    return [None] * len(requests)


def _score(
    target, trees: list[DraftTree], chain_pass: bool, passes: GenerationStats, grammars, pending: list, ids_only: bool
):
    """ONE target pass over every row's nodes -> (logits [B, n_max, V], tokens the pass computed, seconds).
    grammars: each row's (None: no row is constrained): the logits a grammar makes one-hot are not asked for.
    pending: each row's prefilled root logits (None: the root is fed); such a row feeds its drafts only.
    ids_only (a greedy chain pass, nothing pending): an ``_Argmax`` instead of the logits."""
    feed = [t.tokens[1:] if p is not None else t.tokens for t, p in zip(trees, pending)]
    fed = any(feed)
    skip = one_token_nodes(trees, grammars) if grammars is not None and chain_pass else None
    if skip is not None:
        skip = [{i - 1 for i in s if i} if p is not None else s for s, p in zip(skip, pending)]
    t0 = time.perf_counter()
    if ids_only:  # every row feeds its root: a pass
        logits = _Argmax(*target.extend_argmax(feed))
    elif not fed:  # every row's root was prefilled and none drafts: no pass
        logits = torch.zeros(len(trees), 0, target.vocab_size, device=target.device)
    elif skip is not None and any(skip):
        logits = target.extend_skipping(feed, skip)
    elif chain_pass:  # the fast path: no tree mask, the cache compacted right away
        logits = target.extend(feed)
    else:
        logits = target.extend_tree(feed, [t.parents for t in trees])
    dt = time.perf_counter() - t0
    if fed:
        passes.target_time += dt
        passes.target_calls += 1
    if any(p is not None for p in pending):
        logits = _with_pending(logits, pending, [len(t.tokens) for t in trees])
    return logits, target.batch_tokens([len(f) for f in feed]), dt


def _with_pending(logits: torch.Tensor, pending: list, sizes: list[int]) -> torch.Tensor:
    """logits [B, m, V] of the fed tokens, pending[b] [V] or None, sizes[b] row b's nodes -> logits [B, n_max, V]
    of every row's nodes (a row with pending logits fed its nodes after the root: they come first)."""
    if len(sizes) == 1 and sizes[0] == 1:
        return pending[0].view(1, 1, -1)
    out = torch.zeros(len(sizes), max(sizes), logits.shape[-1], dtype=logits.dtype, device=logits.device)
    for b, (root, n) in enumerate(zip(pending, sizes)):
        if root is None:
            out[b, :n] = logits[b, :n]
        else:
            out[b, 0] = root
            out[b, 1:n] = logits[b, : n - 1]
    return out


@dataclass
class _Read:
    """What the finiteness check read of a pass, for verification: best [B][n_max] every node's argmax id (every row
    greedy), or tops [B] each row's largest logit at each fed node (float32 on the CPU; the sampled rows' warping
    starts from it); None where not read."""

    best: list | None = None
    tops: list | None = None


def _check_finite(
    target, drafter: Drafter, requests: list, trees, logits, chain_pass: bool, step: int, greedy: bool
) -> _Read:
    """Rows whose logits hold NaN or inf fail alone: the pass is undone for every row (target and drafter back to
    where the step began: the other rows run the step again) and ``RowFault`` names the bad rows. -> what the check
    read (``_Read``): every node's argmax id when ``greedy`` (every row greedy and unconstrained: the largest logit,
    which the check reads, is the one at the argmax), else each node's largest logit. ``logits``: or an
    ``_Argmax``."""
    lengths = [len(t.tokens) for t in trees]
    read = _Read()
    if isinstance(logits, _Argmax):
        read.best, bad = logits.ids, _not_finite(logits.top, lengths)
    elif greedy:
        read.best, bad = _greedy_checked(logits, lengths)
    else:
        read.tops, bad = _node_tops(logits, lengths)
    if not bad:
        return read
    if chain_pass:
        target.rollback([len(r.seq) - 1 for r in requests])
    else:
        target.keep_paths([[] for _ in requests])
    drafter.observe([[] for _ in requests])
    raise RowFault(f"the target model produced NaN/inf logits at step {step}", bad)


def _greedy_checked(logits: torch.Tensor, lengths: list[int]) -> tuple[list, list[int]]:
    """logits [B, n_max, V], lengths[b] the positions row b fed -> (every node's argmax id [B][n_max], the rows whose
    largest logit at a fed position is not finite, as ``_node_tops``; ``greedy_top`` reads it at the argmax)."""
    best, top = greedy_top(logits, lengths)
    return best, _not_finite(top, lengths)


def _node_tops(logits: torch.Tensor, lengths: list[int]) -> tuple[list | None, list[int]]:
    """logits [B, n_max, V], lengths[b] the positions row b fed -> (tops [B]: each row's largest logit at its fed
    nodes, float32 [lengths[b]], on the CPU, else None; the rows with a position whose largest logit is not finite:
    a NaN or +inf anywhere, or every logit -inf, while some -inf logits are fine). On the CPU through numpy, one max
    a row (torch's parallel reduction cost ~150 us a step here); the sampled rows' warping starts from these maxima
    instead of reading the rows again."""
    if logits.is_cpu and logits.dtype == torch.float32:  # is_cpu: a third of device.type's cost, cold
        arr = logits.numpy()
        tops = [arr[b, :n].max(-1) for b, n in enumerate(lengths)]
        return tops, _not_finite([top.tolist() for top in tops], lengths)  # Python's isfinite: no numpy call
    return None, _not_finite(logits.amax(-1).tolist(), lengths)  # [B, n_max]: one reduction, one transfer


def _not_finite(top: list, lengths: list[int]) -> list[int]:
    """top[b][i]: the largest logit at node i of row b -> the rows with one that is not finite among their first
    lengths[b] nodes."""
    return [b for b, n in enumerate(lengths) if not all(map(math.isfinite, top[b][:n]))]


def _commit(target, drafter: Drafter, requests: list, results: list[RowResult], chain_pass: bool) -> None:
    """Target and drafter keep each row's accepted path (the root and the accepted nodes)."""
    paths = [[0] + res.accepted for res in results]
    if chain_pass:
        target.rollback([len(r.seq) - 1 + len(path) for r, path in zip(requests, paths)])
    else:
        target.keep_paths(paths)
    drafter.observe(paths)


def _emit(r, tree: DraftTree, res: RowResult, logprobs: list | None = None) -> None:
    """Statistics, the adaptive controller, stops and streaming for one row's emitted tokens. The drafter is
    credited with its own nodes only (a chain's forced tail is counted apart)."""
    n, depth = len(res.accepted), tree.depth - tree.forced
    last = res.accepted[-1] if res.accepted else 0
    leaf = not any(par == last for par in tree.parents)
    own = min(n, depth)
    r.stats.record_step(depth, own, nodes=tree.size - tree.forced, bonus=leaf if own == n else True)
    r.stats.forced_drafted += tree.forced
    r.stats.forced_accepted += n - own
    r.stats.target_calls += 1
    if r.policy.adaptive:
        if tree.match:
            r.policy.adaptive.observe_match(tree.match, depth, own)
        else:
            r.policy.adaptive.observe(depth, own)
    kinds = ["accepted"] * own + ["forced"] * (n - own)
    kinds.append("plain" if tree.size == 0 else ("bonus" if leaf else "recovered"))
    keep, reason = r.stops.cut(res.tokens, r.new)
    if r.grammar is not None:
        r.stats.masks, r.stats.mask_time = r.grammar.masks_computed, r.grammar.mask_seconds
        end = r.grammar.advance(res.tokens[:keep])
        if end is not None:  # the grammar's end of sequence (it consumed only the kept tokens)
            keep, reason = end, "eos"
    toks, kinds = res.tokens[:keep], kinds[:keep]
    if logprobs is not None:
        r.logprobs.extend(logprobs[:keep])
    r.seq.extend(toks)
    r.new.extend(toks)
    r.kinds.extend(kinds)
    r.stats.new_tokens += len(toks)
    if r.on_tokens and toks:
        r.on_tokens(toks, kinds)
    if reason:
        r.done, r.reason = True, reason
