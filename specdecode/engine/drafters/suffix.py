"""Suffix drafting (SuffixDecoding, arXiv 2411.04975): drafts from the longest earlier occurrence of the row's
latest tokens, in the row's own prompt and output and in a bounded corpus of earlier outputs shared across the
requests of one generator (the server's requests; the calls of ``generate``; the rows of a batch file).

Occurrences are found through an index of token bigrams (and unigrams, when no bigram matches), most recent
first; each candidate's match length is measured backwards (up to ``MAX_MATCH`` tokens). The continuations of
the candidates whose match is the longest are merged into a prefix tree weighted by how often each branch
occurs; a chain follows the most frequent child, a tree (``branches`` > 1) keeps children whose share of their
parent's count is at least ``min_share``. The draft is at most ``ceil(factor x match)`` deep: short matches
draft little. Every draft records its match length (``DraftTree.match``), which the adaptive policy prices.

The corpus holds finished rows' outputs, capped in tokens (the oldest outputs are evicted first); ``shared=False``
keeps requests isolated. Whatever the corpus holds, it only shapes drafts: verification keeps the output
distribution the target's (a deterministic drafter: one-hot q).

arctic-inference (Snowflake's library that vLLM and SGLang call) was evaluated first: see docs/drafters.md.
Not here: verification, the choice of depth (``adaptive``).
"""

from __future__ import annotations

import math
import time
from collections import deque

from ..drafts import DraftTree

MAX_MATCH = 64  # backwards comparison stops here (a longer match says nothing more)
RECENT = 32  # occurrences examined per key, most recent first
END = -1  # separates outputs in the corpus: no match or continuation crosses it


class TokenIndex:
    """Positions of every token bigram and unigram of a growing token list (appended to, never edited)."""

    def __init__(self, tokens: list[int] = ()):
        self.tokens: list[int] = []
        self.bigrams: dict[tuple[int, int], list[int]] = {}
        self.unigrams: dict[int, list[int]] = {}
        self.extend(tokens)

    def extend(self, tokens: list[int]) -> None:
        """Append ``tokens``; position i is indexed under the n-gram ending at i (i.e. its continuation starts i+1)."""
        seq = self.tokens
        for t in tokens:
            i = len(seq)
            seq.append(t)
            if t == END:
                continue
            self.unigrams.setdefault(t, []).append(i)
            if i and seq[i - 1] != END:
                self.bigrams.setdefault((seq[i - 1], t), []).append(i)

    def candidates(self, context: list[int], limit: int) -> list[tuple[int, int]]:
        """(match length, end position) of the most recent occurrences of the context's last tokens that have a
        continuation, the position of the context's own last token excluded when the context is this list."""
        if not context:
            return []
        out = self._scan(self.bigrams.get(tuple(context[-2:])) if len(context) > 1 else None, context, limit)
        return out or self._scan(self.unigrams.get(context[-1]), context, limit)

    def _scan(self, hits: list[int] | None, context: list[int], limit: int) -> list[tuple[int, int]]:
        seq, out = self.tokens, []
        own = len(seq) - 1 if seq is context else None
        for end in reversed((hits or [])[-limit - 1 :]):
            if end == own or end + 1 >= len(seq) or seq[end + 1] == END:
                continue
            out.append((_match_length(seq, end, context), end))
            if len(out) == limit:
                break
        return out


def _match_length(seq: list[int], end: int, context: list[int]) -> int:
    """How many tokens before and at ``end`` in ``seq`` equal the context's last tokens (at most MAX_MATCH)."""
    n, top = 0, min(MAX_MATCH, end + 1, len(context))
    while n < top and seq[end - n] == context[-1 - n] and seq[end - n] != END:
        n += 1
    return n


class SuffixDrafter:
    """Drafts from the row's own context and a shared corpus of earlier outputs (module docstring), kept by a
    store: arctic-inference's suffix trees when that library is installed (``store="auto"`` / ``"arctic"``),
    else ``PySuffixStore`` (``"python"``)."""

    lm = None
    deterministic = True
    needs_target_features = False
    max_depth = None
    cheap = True  # proposing costs microseconds: the engine drafts to the cap and prices each row's draft

    def __init__(
        self,
        corpus_tokens: int = 65536,
        shared: bool = True,
        branches: int = 1,
        factor: float = 1.0,
        min_share: float = 0.1,
        store: str = "auto",
    ):
        if corpus_tokens < 0:
            raise ValueError(f"the suffix corpus cap must be >= 0 tokens, got {corpus_tokens}")
        if branches < 1:
            raise ValueError(f"suffix trees need branches >= 1, got {branches}")
        if factor <= 0:
            raise ValueError(f"the suffix draft factor must be > 0, got {factor}")
        shared = shared and corpus_tokens > 0
        self.store = make_store(store, corpus_tokens if shared else 0, branches, factor, min_share)
        self.branching = branches > 1
        self.name = "suffix" if branches == 1 else f"suffix tree lookup:{branches}"
        self.time_spent, self.calls = 0.0, 0
        self.rows: list[int] = []  # the store's id of each row
        self.seen: dict[int, int] = {}  # row id -> tokens of its sequence the store holds
        self.live: dict[int, list[int]] = {}  # row id -> its sequence as last proposed for (the engine extends it)
        self._next = 0

    # ------------------------------------------------------------------ rows
    def begin(self, prompts):
        self.remove_rows([])
        self.add_rows(prompts)

    def add_rows(self, prompts):
        for p in prompts:
            rid, self._next = self._next, self._next + 1
            self.store.start(rid, list(p))
            self.rows.append(rid)
            self.seen[rid] = len(p)

    def remove_rows(self, keep):
        kept = {self.rows[b] for b in keep}
        for rid in self.rows:
            if rid not in kept:
                self._follow(rid, self.live.pop(rid, []))  # the tokens of its last step
                self.store.stop(rid)
                del self.seen[rid]
        self.rows = [self.rows[b] for b in keep]

    @property
    def corpus_size(self) -> int:
        """Tokens of earlier outputs held in the shared corpus."""
        return self.store.corpus_size

    def forget(self) -> None:
        """Empty the shared corpus (between runs of a benchmark; refused while rows run)."""
        if self.rows:
            raise ValueError("the suffix corpus is emptied between generations, not while rows run")
        self.store.forget()

    # ------------------------------------------------------------------ drafting
    def propose(self, seqs, ks, sampler=None):
        t0 = time.perf_counter()
        out = []
        for rid, seq, k in zip(self.rows, seqs, ks):
            self._follow(rid, seq)
            self.live[rid] = seq
            tree = DraftTree.chain(seq[-1], [])
            if k > 0:
                tokens, parents, match = self.store.speculate(rid, seq, k)
                tree = DraftTree([seq[-1]] + tokens, [-1] + [p + 1 for p in parents], match=match).cut(k)
            out.append(tree)
        self.time_spent += time.perf_counter() - t0
        self.calls += 1
        return out

    def _follow(self, rid: int, seq: list[int]) -> None:
        """The row's sequence only grows: the store gets the tokens it has not seen."""
        if len(seq) > self.seen[rid]:
            self.store.append(rid, seq[self.seen[rid] :])
            self.seen[rid] = len(seq)

    def observe(self, paths):
        pass

    def nodes_at_depth(self, k: int) -> int:
        return self.store.branches * k

    def draft_cost(self, book) -> float:
        return 0.0  # index lookups: microseconds next to any model pass


def make_store(kind: str, corpus_tokens: int, branches: int, factor: float, min_share: float):
    """``auto``: arctic-inference's suffix trees when installed, else ours; ``arctic`` / ``python`` by name."""
    if kind not in ("auto", "arctic", "python"):
        raise ValueError(f"the suffix store is auto, arctic or python, got {kind!r}")
    if kind != "python":
        try:
            from .suffix_arctic import ArcticSuffixStore
        except ImportError:
            if kind == "arctic":
                raise ValueError(
                    "the arctic suffix store needs arctic-inference: see docs/drafters.md to build it"
                ) from None
        else:
            return ArcticSuffixStore(corpus_tokens, branches, factor, min_share)
    return PySuffixStore(corpus_tokens, branches, factor, min_share)


class PySuffixStore:
    """Our own store: each row's context and the corpus of finished outputs in ``TokenIndex``es."""

    kind = "python"

    def __init__(self, corpus_tokens: int, branches: int, factor: float, min_share: float):
        self.corpus_tokens, self.branches, self.factor, self.min_share = corpus_tokens, branches, factor, min_share
        self.rows: dict[int, tuple[int, TokenIndex]] = {}  # row id -> (prompt length, its context)
        self.forget()

    def forget(self) -> None:
        self.outputs: deque[list[int]] = deque()  # the corpus, oldest first
        self.corpus = TokenIndex()
        self.corpus_size = 0  # tokens in ``outputs``

    def start(self, rid: int, prompt: list[int]) -> None:
        self.rows[rid] = (len(prompt), TokenIndex(prompt))

    def append(self, rid: int, tokens: list[int]) -> None:
        self.rows[rid][1].extend(tokens)

    def stop(self, rid: int) -> None:
        prompt_len, index = self.rows.pop(rid)
        self.remember(index.tokens[prompt_len:])

    def remember(self, output: list[int]) -> None:
        """Add a finished output to the corpus, evicting the oldest outputs past the cap (to 3/4 of it)."""
        if not self.corpus_tokens or not output:
            return
        output = output[-self.corpus_tokens :]
        self.outputs.append(output)
        self.corpus_size += len(output)
        self.corpus.extend(output + [END])
        if self.corpus_size > self.corpus_tokens:
            while self.corpus_size > 0.75 * self.corpus_tokens:
                self.corpus_size -= len(self.outputs.popleft())
            self.corpus = TokenIndex([t for o in self.outputs for t in o + [END]])

    def speculate(self, rid: int, seq: list[int], k: int) -> tuple[list[int], list[int], int]:
        """-> (draft tokens, their parents (-1: the root), the match length) of at most depth k."""
        own = self.rows[rid][1]
        cands = [(m, end, own) for m, end in own.candidates(own.tokens, RECENT)]
        if self.corpus_tokens:
            cands += [(m, end, self.corpus) for m, end in self.corpus.candidates(seq, RECENT)]
        if not cands:
            return [], [], 0
        best = max(m for m, _, _ in cands)
        depth = min(k, math.ceil(self.factor * best))
        conts = [_continuation(src.tokens, end, depth) for m, end, src in cands if m == best]
        tokens, parents = _weighted_tree(conts, self.branches, self.min_share)
        return tokens, parents, best


def _continuation(seq: list[int], end: int, depth: int) -> list[int]:
    out = []
    for t in seq[end + 1 : end + 1 + depth]:
        if t == END:
            break
        out.append(t)
    return out


def _weighted_tree(conts: list[list[int]], branches: int, min_share: float) -> tuple[list, list]:
    """Continuations -> (tokens, parents; -1 = the root) of their prefix tree, children most frequent first: one
    child per node (a chain) when ``branches`` is 1, else up to ``branches`` children holding >= min_share of
    their parent's count."""
    tokens: list[int] = []
    parents: list[int] = []
    stack = [(-1, conts)]
    while stack:
        node, group = stack.pop()
        counts: dict[int, list[list[int]]] = {}
        for c in group:
            if c:
                counts.setdefault(c[0], []).append(c[1:])
        ranked = sorted(counts.items(), key=lambda kv: -len(kv[1]))[:branches]
        total = sum(len(v) for v in counts.values())
        for i, (tok, rest) in enumerate(ranked):
            if i and len(rest) < min_share * total:
                break
            tokens.append(tok)
            parents.append(node)
            stack.append((len(tokens) - 1, rest))
    return tokens, parents
