"""Tree speculation in the engine (batch 1): a draft tree verified by ONE target pass.

The drafter grows a tree from a draft model or an EAGLE head, one draft forward per depth over
the whole frontier (tree attention on the draft's cache): a *static* shape (children per depth) or a
*dynamic* one that gives children to the most probable frontier nodes within a node
budget (EAGLE-2 style; the number of children is fixed before they are drawn, which keeps
verification exact). Children are drawn i.i.d. from q (SpecTr K-SEQ, RRS), without
replacement (RRS-wor), or, at temperature 0, as the distinct top-m tokens (greedy trees:
i.i.d. drafts at T = 0 would all be the same token). Prompt-lookup trees merge the
continuations of several n-gram matches into a prefix tree (deterministic, q = None). The target scores every node in one
forward pass with a tree attention mask and per-node position ids; only the accepted
path's cache entries are kept.

Not here: the selection rules themselves (``specdecode.verify.multidraft``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..rng import TorchRNG
from ..sampling import SamplingConfig, logits_to_probs
from ..verify.multidraft import children_lists, verify_tree
from .drafters import EagleCache, ngram_continuations
from .generate import GenerationConfig, GenerationOutput
from .lm import CausalLM, TreeSegment, extend_tree, keep_path
from .stats import GenerationStats

TREE_METHODS = ("spectr", "rrs", "rrs-wor", "greedy")


@dataclass(frozen=True)
class TreeShape:
    branching: tuple = ()  # static: children per node at each depth
    budget: int = 0  # dynamic: total draft nodes
    max_depth: int = 8

    @staticmethod
    def parse(spec: str) -> "TreeShape":
        kind, _, arg = spec.partition(":")
        if kind == "static":
            try:
                br = tuple(int(x) for x in arg.split(",") if x.strip())
            except ValueError:
                br = ()
            if not br or any(b < 1 for b in br):
                raise ValueError(f"--tree static:B1,B2,... needs branching factors >= 1 per depth, got {spec!r}")
            shape = TreeShape(branching=br)
        elif kind == "dynamic":
            try:
                budget = int(arg)
            except ValueError:
                budget = 0
            if budget < 1:
                raise ValueError(f"--tree dynamic:N needs a node budget N >= 1, got {spec!r}")
            shape = TreeShape(budget=budget)
        else:
            raise ValueError(f"--tree must be static:B1,B2,... or dynamic:N, got {spec!r}")
        if shape.num_nodes > 1024:
            raise ValueError(f"the tree {spec!r} has {shape.num_nodes} nodes; keep it under 1024")
        return shape

    @property
    def num_nodes(self) -> int:
        if self.budget:
            return self.budget
        total, width = 0, 1
        for b in self.branching:
            width *= b
            total += width
        return total

    @property
    def depth(self) -> int:
        return len(self.branching) if self.branching else min(self.max_depth, self.budget)


@dataclass
class DraftTree:
    tokens: list  # [N] node tokens, node 0 = the root (the last verified token)
    parents: list  # [N] parents, parents[0] = -1
    q: torch.Tensor | None  # [N, V] distribution each node's children were drawn from (zeros for leaves); None: deterministic

    @property
    def depth(self) -> int:
        d = [0] * len(self.parents)
        for n in range(1, len(self.parents)):
            d[n] = d[self.parents[n]] + 1
        return max(d)


def prefix_tree(root: int, chains: list[list[int]]) -> tuple[list[int], list[int]]:
    """Token chains hanging from ``root`` -> (tokens, parents) of their prefix tree (shared prefixes
    merged, so siblings carry distinct tokens; children in the order the chains are given)."""
    tokens, parents = [root], [-1]
    child: dict[tuple[int, int], int] = {}
    for chain in chains:
        node = 0
        for t in chain:
            if (node, t) not in child:
                tokens.append(int(t))
                parents.append(node)
                child[(node, t)] = len(tokens) - 1
            node = child[(node, t)]
    return tokens, parents


class PromptLookupTreeDrafter:
    """A deterministic draft tree from prompt lookup: the continuations of up to ``matches`` earlier
    occurrences of the last n-gram (longest n first, most recent first), ``length`` tokens each,
    merged into a prefix tree. q = None: verified by recursive rejection with one-hot q per child."""

    deterministic = True
    needs_target_features = False

    def __init__(self, matches: int, length: int, max_ngram: int = 3):
        if matches < 1 or length < 1:
            raise ValueError(f"prompt-lookup trees need matches >= 1 and length >= 1, got {matches}, {length}")
        self.matches, self.length, self.max_ngram = matches, length, max_ngram
        self.shape = TreeShape(budget=matches * length, max_depth=length)
        self.time_spent, self.calls = 0.0, 0

    def begin(self, prompt: list[int]) -> None:
        pass

    def continuations(self, seq: list[int]) -> list[list[int]]:
        """Distinct continuations of the longest n-gram that matches at all, most recent first."""
        out: list[list[int]] = []
        longest = None  # the n-gram length of the first match; shorter matches are not used
        for n, cont in ngram_continuations(seq, self.length, self.max_ngram):
            if longest is not None and n != longest:
                break
            longest = n
            if cont not in out:
                out.append(cont)
                if len(out) == self.matches:
                    break
        return out

    def propose(self, seq: list[int], rng) -> DraftTree:
        t0 = time.perf_counter()
        tokens, parents = prefix_tree(seq[-1], self.continuations(seq))
        self.calls += 1
        self.time_spent += time.perf_counter() - t0
        return DraftTree(tokens, parents, None)


class TreeDrafter:
    """Grows draft trees from a draft model with its own KV cache.

    The growth loop (children per node, dynamic allocation) is shared with ``EagleTreeDrafter``;
    subclasses change only how the root's q and the frontier's q are computed (``_start``,
    ``_expand``, ``_end``)."""

    needs_target_features = False

    def __init__(self, lm: CausalLM | None, cfg: SamplingConfig, shape: TreeShape, mode: str):
        if mode not in ("iid", "wor", "topm"):
            raise ValueError(f"mode must be iid, wor or topm, got {mode!r}")
        self.lm, self.cfg, self.shape, self.mode = lm, cfg, shape, mode
        # Greedy trees: at T = 0 the warped q is one-hot (it would leave one child per node) and the greedy walk
        # ignores q, so the top-m children, and the node scores of dynamic trees, come from the plain softmax.
        self.q_cfg = SamplingConfig(1.0) if cfg.is_greedy and mode == "topm" else cfg
        self.time_spent, self.calls = 0.0, 0

    def begin(self, prompt: list[int]) -> None:
        self.lm.reset(1)
        self.lm.extend([prompt[:-1]])

    def _children(self, q: torch.Tensor, count: int, rng: TorchRNG) -> list[int]:
        if self.mode == "topm":
            return q.topk(min(count, int((q > 0).sum()))).indices.tolist()
        if self.mode == "iid":
            return rng.categorical(q.expand(count, -1)).tolist()
        s, out = q.clone(), []
        for _ in range(min(count, int((q > 0).sum()))):
            x = int(rng.categorical(s[None])[0])
            out.append(x)
            s[x] = 0
        return out

    # --- how q is computed: the draft model's own cache, one tree-attention pass per depth
    def _start(self, seq: list[int]) -> tuple[torch.Tensor, TreeSegment]:
        """Catch up on the verified tokens -> (q for the root's children [V], the draft's tree segment)."""
        logits = self.lm.extend([seq[self.lm.lengths[0]:]])
        self.calls += 1
        return logits_to_probs(logits[0, -1], self.q_cfg), TreeSegment(self.lm.lengths[0])

    def _expand(self, seg: TreeSegment, tokens: list[int], parents: list[int]) -> list[torch.Tensor]:
        """New frontier nodes (parents index ``seg``, -1 = the root) -> q for each node's children."""
        lg = extend_tree(self.lm, seg, tokens, parents)
        self.calls += 1
        return list(logits_to_probs(lg, self.q_cfg))

    def _end(self, seg: TreeSegment) -> None:
        self.lm.rollback([seg.base])

    @torch.inference_mode()
    def propose(self, seq: list[int], rng: TorchRNG) -> DraftTree:
        t0 = time.perf_counter()
        q_root, seg = self._start(seq)
        tokens, parents, qs, score = [seq[-1]], [-1], [q_root], [1.0]
        frontier = [0]
        used = 0
        for depth in range(self.shape.depth):
            counts = self._allocate(frontier, score, depth, used)
            new = []
            for node, c in zip(frontier, counts):
                for x in self._children(qs[node], c, rng) if c else []:
                    tokens.append(int(x))
                    parents.append(node)
                    score.append(score[node] * float(qs[node][x]))
                    qs.append(None)
                    new.append(len(tokens) - 1)
            used += len(new)
            if not new:
                break
            frontier = new
            if depth == self.shape.depth - 1 or (self.shape.budget and used >= self.shape.budget):
                break
            # node n of the tree is node n - 1 of the draft's segment (the root is already in its cache)
            for n, qn in zip(new, self._expand(seg, [tokens[n] for n in new], [parents[n] - 1 for n in new])):
                qs[n] = qn
        self._end(seg)
        V = q_root.shape[-1]
        q = torch.stack([x if x is not None else torch.zeros(V, dtype=q_root.dtype) for x in qs])
        self.time_spent += time.perf_counter() - t0
        return DraftTree(tokens, parents, q)

    def _allocate(self, frontier, score, depth, used) -> list[int]:
        if self.shape.branching:
            return [self.shape.branching[depth]] * len(frontier)
        left = self.shape.budget - used
        order = sorted(range(len(frontier)), key=lambda i: -score[frontier[i]])
        counts = [0] * len(frontier)
        for rank, i in enumerate(order[:4]):  # the 4 most probable frontier nodes grow
            c = min(2 if rank == 0 else 1, left)
            counts[i], left = c, left - c
        return counts


class EagleTreeDrafter(TreeDrafter):
    """Draft trees from an EAGLE head (EAGLE-2 style): the head catches up on the verified pairs
    (f_j, x_{j+1}) with the target's true hidden states, then grows the tree one head pass per depth
    over the frontier, with tree attention on the head's own cache; a node's input feature is its
    parent's predicted one. The target records its hidden states in the tree pass (``keep_path``
    keeps the accepted path's)."""

    needs_target_features = True

    def __init__(self, target: CausalLM, head: torch.nn.Module, cfg: SamplingConfig, shape: TreeShape, mode: str):
        if not target.is_hf:
            raise ValueError("EAGLE drafting needs a Hugging Face target model")
        super().__init__(None, cfg, shape, mode)
        self.target, self.head = target, head.eval()
        self.state = EagleCache(self.head)
        self._feats: dict[int, torch.Tensor] = {}  # segment node -> predicted feature [H] (-1: the root)

    def begin(self, prompt: list[int]) -> None:
        self.state.reset()

    def _start(self, seq):
        h = self.state.catch_up(self.target, seq)  # [H] = f^_{n-1}: the root's children
        self.calls += 1
        self._feats = {-1: h}
        return self._probs(h[None])[0], TreeSegment(len(seq) - 1)

    def _expand(self, seg, tokens, parents):
        f_in = torch.stack([self._feats[p] for p in parents])[None]
        ids = seg.add(parents)
        mask, pos = seg.attention(ids, self.head.fc.weight.dtype)
        h = self.head(f_in, torch.tensor([tokens]), pos, cache=self.state.cache, attention_mask=mask)
        self.calls += 1
        for r, i in enumerate(ids):
            self._feats[i] = h[0, r]
        return list(self._probs(h[0]))

    def _end(self, seg):
        self.state.crop()

    def _probs(self, h: torch.Tensor) -> torch.Tensor:
        """h [n, H] predicted features -> q [n, V]."""
        return logits_to_probs(self.head.head(h).float(), self.q_cfg)


def greedy_tree_walk(p: torch.Tensor, tree: DraftTree) -> tuple[list[int], list[int]]:
    """Longest path whose tokens match the target's argmax. p: [N, V]."""
    kids = children_lists(tree.parents)
    node, out, path = 0, [], []
    while True:
        y = int(p[node].argmax())
        out.append(y)
        nxt = next((c for c in kids[node] if tree.tokens[c] == y), None)
        if nxt is None:
            return out, path
        path.append(nxt)
        node = nxt


class TreeGenerator:
    """Tree speculative generation (batch 1) with a TreeDrafter; same outputs/stats types as the chain engine."""

    def __init__(self, target: CausalLM, drafter: "TreeDrafter | EagleTreeDrafter | PromptLookupTreeDrafter", method: str):
        if method not in TREE_METHODS:
            raise ValueError(f"tree method must be one of {', '.join(TREE_METHODS)}, got {method!r}")
        lm = getattr(drafter, "lm", None)
        if lm is not None and lm.vocab_size != target.vocab_size:
            raise ValueError("the draft model's vocabulary differs from the target's")
        self.target, self.drafter, self.method = target, drafter, method

    @torch.inference_mode()
    def generate(self, prompt: list[int], config: GenerationConfig, generator: torch.Generator) -> GenerationOutput:
        if not prompt:
            raise ValueError("the prompt is empty")
        if len(prompt) + config.max_new_tokens + self.drafter.shape.num_nodes + 1 > self.target.max_length:
            raise ValueError(f"prompt ({len(prompt)} tokens) + max_new_tokens + tree nodes exceeds the context of "
                             f"{self.target.max_length} tokens")
        cfg = config.sampling
        method = "greedy" if cfg.is_greedy else self.method
        rng = TorchRNG(generator)
        stats = GenerationStats()
        t_start = time.perf_counter()
        seq, new, kinds = list(prompt), [], []
        self.target.reset(1)
        self.target.record_features = self.drafter.needs_target_features
        t0 = time.perf_counter()
        self.target.extend([prompt[:-1]])
        self.drafter.begin(prompt)
        stats.prefill_time = time.perf_counter() - t0
        d0 = self.drafter.time_spent
        reason = "length"
        while True:
            tree = self.drafter.propose(seq, rng)
            seg = TreeSegment(self.target.lengths[0])
            tt = time.perf_counter()
            logits = extend_tree(self.target, seg, tree.tokens, [par for par in tree.parents])
            stats.target_time += time.perf_counter() - tt
            stats.target_calls += 1
            if not torch.isfinite(logits).all():
                raise ValueError(f"the target model produced NaN/inf logits at step {stats.steps + 1}")
            if method == "greedy":
                out, path = greedy_tree_walk(logits, tree)
            else:
                p = logits_to_probs(logits, cfg)
                q = None if tree.q is None else tree.q.to(p.dtype)
                res = verify_tree(p, q, torch.tensor(tree.parents), torch.tensor(tree.tokens), rng, method=method, validate=False)
                out, path = res.tokens, res.path
            keep_path(self.target, seg, [0] + path)
            stats.steps += 1
            depth = tree.depth
            stats.record_step(depth, len(path))  # per-position rates along the tree's depth
            stats.proposed += len(tree.tokens) - 1 - depth  # every draft node counts as proposed
            leaf = not children_lists(tree.parents)[([0] + path)[-1]]
            kk = ["accepted"] * len(path) + ["bonus" if leaf else "recovered"]
            room = config.max_new_tokens - len(new)
            for i, t in enumerate(out):
                if t in config.eos_token_ids:
                    out, kk, reason = out[: i + 1], kk[: i + 1], "eos"
                    break
            out, kk = out[:room], kk[:room]
            seq += out
            new += out
            kinds += kk
            stats.new_tokens += len(out)
            if reason == "eos" or len(new) >= config.max_new_tokens:
                break
        stats.draft_time = self.drafter.time_spent - d0
        stats.draft_calls = self.drafter.calls
        stats.total_time = time.perf_counter() - t_start
        return GenerationOutput([new], [kinds], stats, [reason])


def get_k_candidates(lm: CausalLM, seq: list[int], k: int, K: int, cfg: SamplingConfig,
                     generator: torch.Generator) -> tuple[list[list[int]], list[torch.Tensor]]:
    """Seed 003's ``get_k_candidates``: K i.i.d. draft sequences of length k from a draft model.

    Returns (candidate_ids_list: K lists of k tokens, candidate_probs_list: K tensors [k, V], the
    warped q each token was drawn from). Drawn as a static tree K,1,...,1 in one draft forward per
    depth (duplicates kept: they are separate i.i.d. drafts). At temperature 0 the K drafts would all
    be identical; use a top-m tree (``TreeDrafter(mode="topm")``) instead.
    """
    if K < 1 or k < 1:
        raise ValueError(f"K (number of drafts) and k (draft length) must be >= 1, got K={K}, k={k}")
    lm.reset(1)
    lm.extend([seq[:-1]])
    tree = TreeDrafter(lm, cfg, TreeShape(branching=(K,) + (1,) * (k - 1)), "iid").propose(seq, TorchRNG(generator))
    kids = children_lists(tree.parents)
    ids, probs = [], []
    for first in kids[0]:
        chain, qs, node, parent = [], [], first, 0
        while True:
            chain.append(tree.tokens[node])
            qs.append(tree.q[parent])
            if not kids[node]:
                break
            parent, node = node, kids[node][0]
        ids.append(chain)
        probs.append(torch.stack(qs))
    return ids, probs
