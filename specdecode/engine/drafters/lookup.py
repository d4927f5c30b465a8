"""Prompt lookup: draft the tokens that followed an earlier occurrence of the last n-gram (prompt + output).

With ``matches`` = 1 the draft is the chain after the most recent occurrence of the longest matching
n-gram; with ``matches`` > 1 the continuations of up to that many occurrences (of the longest n that
matches at all, most recent first) are merged into a prefix tree. Deterministic: q = None (one-hot), so
any tree method verifies the tree by recursive rejection with a one-hot q per child.

Occurrences come from each row's bigram / unigram index (``suffix.TokenIndex``: the 32 most recent occurrences,
in microseconds where a scan of a 2000-token prompt took ~1 ms a step); every draft records the length of its
match (``DraftTree.match``, up to 64 tokens), which the adaptive policy prices before the pass.

Not here: verification, the choice of depth (``adaptive``).
"""

from __future__ import annotations

import time

from ..drafts import DraftTree, prefix_tree
from .suffix import RECENT, TokenIndex


def ngram_continuations(seq: list[int], k: int, max_ngram: int, min_ngram: int = 1):
    """Yield (n, the k tokens after an earlier occurrence of the last n tokens): longest n first, most
    recent occurrence first. Each continuation has at least one token."""
    L = len(seq)
    for n in range(min(max_ngram, L - 1), min_ngram - 1, -1):
        tail = seq[L - n :]
        for start in range(L - n - 1, -1, -1):
            if seq[start : start + n] == tail:
                yield n, seq[start + n : start + n + k]


class PromptLookupDrafter:
    lm = None
    deterministic = True
    needs_target_features = False
    max_depth = None  # -k tokens per match
    cheap = True  # proposing costs microseconds: the engine drafts to the cap and prices each row's draft

    def __init__(self, max_ngram: int = 3, min_ngram: int = 1, matches: int = 1):
        if not 1 <= min_ngram <= max_ngram:
            raise ValueError(f"need 1 <= min_ngram <= max_ngram, got {min_ngram}, {max_ngram}")
        if matches < 1:
            raise ValueError(f"prompt-lookup trees need matches >= 1, got {matches}")
        self.max_ngram, self.min_ngram, self.matches = max_ngram, min_ngram, matches
        self.branching = matches > 1
        self.name = "prompt-lookup" if matches == 1 else f"prompt-lookup tree lookup:{matches}"
        self.time_spent, self.calls = 0.0, 0
        self.rows: list[TokenIndex] = []

    def begin(self, prompts):
        self.rows = [TokenIndex(p) for p in prompts]

    def add_rows(self, prompts):
        self.rows += [TokenIndex(p) for p in prompts]

    def remove_rows(self, keep):
        self.rows = [self.rows[b] for b in keep]

    def occurrences(self, index: TokenIndex, k: int) -> tuple[list[list[int]], int]:
        """(distinct continuations of at most k tokens after the most recent occurrences of the longest n-gram
        (n <= max_ngram) that matches at all, most recent first, at most ``matches`` of them; the longest match)."""
        cands = index.candidates(index.tokens, RECENT)
        longest = min(self.max_ngram, max((m for m, _ in cands), default=0))
        if longest < self.min_ngram:
            return [], 0
        seq, out, match = index.tokens, [], 0
        for m, end in cands:
            cont = seq[end + 1 : end + 1 + k]
            if m >= longest and cont not in out:
                out.append(cont)
                match = max(match, m)
                if len(out) == self.matches:
                    break
        return out, match

    def lookup(self, seq: list[int], k: int) -> list[int]:
        conts, _ = self.occurrences(TokenIndex(seq), k)
        return conts[0] if conts else []

    def continuations(self, seq: list[int], k: int) -> list[list[int]]:
        """Distinct continuations (k tokens at most) of the longest n-gram that matches at all, most recent first."""
        return self.occurrences(TokenIndex(seq), k)[0]

    def propose(self, seqs, ks, sampler=None):
        t0 = time.perf_counter()
        while len(self.rows) < len(seqs):  # rows never announced (a bare propose): indexed now
            self.rows.append(TokenIndex())
        out = []
        for index, s, k in zip(self.rows, seqs, ks):
            if len(s) > len(index.tokens):  # a row's sequence only grows: the index follows it
                index.extend(s[len(index.tokens) :])
            tree = DraftTree.chain(s[-1], [])
            if k > 0:
                conts, match = self.occurrences(index, k)
                if conts:
                    tree = DraftTree(*prefix_tree(s[-1], conts), match=match)
            out.append(tree)
        self.time_spent += time.perf_counter() - t0
        self.calls += 1
        return out

    def observe(self, paths):
        pass

    def nodes_at_depth(self, k: int) -> int:
        return self.matches * k

    def draft_cost(self, book) -> float:
        return 0.0  # an index lookup: microseconds next to any model pass
