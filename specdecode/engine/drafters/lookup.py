"""Prompt lookup: draft the tokens that followed an earlier occurrence of the last n-gram (prompt + output).

With ``matches`` = 1 the draft is the chain after the most recent occurrence of the longest matching
n-gram; with ``matches`` > 1 the continuations of up to that many occurrences (of the longest n that
matches at all, most recent first) are merged into a prefix tree. Deterministic: q = None (one-hot), so
any tree method verifies the tree by recursive rejection with a one-hot q per child.

Not here: verification.
"""

from __future__ import annotations

import time

from ..drafts import DraftTree, prefix_tree


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

    def __init__(self, max_ngram: int = 3, min_ngram: int = 1, matches: int = 1):
        if not 1 <= min_ngram <= max_ngram:
            raise ValueError(f"need 1 <= min_ngram <= max_ngram, got {min_ngram}, {max_ngram}")
        if matches < 1:
            raise ValueError(f"prompt-lookup trees need matches >= 1, got {matches}")
        self.max_ngram, self.min_ngram, self.matches = max_ngram, min_ngram, matches
        self.branching = matches > 1
        self.name = "prompt-lookup" if matches == 1 else f"prompt-lookup tree lookup:{matches}"
        self.time_spent, self.calls = 0.0, 0

    def begin(self, prompts):
        pass

    def add_rows(self, prompts):
        pass

    def remove_rows(self, keep):
        pass

    def lookup(self, seq: list[int], k: int) -> list[int]:
        return next((cont for _, cont in ngram_continuations(seq, k, self.max_ngram, self.min_ngram)), [])

    def continuations(self, seq: list[int], k: int) -> list[list[int]]:
        """Distinct continuations (k tokens at most) of the longest n-gram that matches at all, most recent first."""
        out: list[list[int]] = []
        longest = None  # the n-gram length of the first match; shorter matches are not used
        for n, cont in ngram_continuations(seq, k, self.max_ngram, self.min_ngram):
            if longest is not None and n != longest:
                break
            longest = n
            if cont not in out:
                out.append(cont)
                if len(out) == self.matches:
                    break
        return out

    def propose(self, seqs, ks, sampler=None):
        t0 = time.perf_counter()
        out = []
        for s, k in zip(seqs, ks):
            if k <= 0:
                out.append(DraftTree.chain(s[-1], []))
            elif self.matches == 1:
                out.append(DraftTree.chain(s[-1], self.lookup(s, k)))
            else:
                out.append(DraftTree(*prefix_tree(s[-1], self.continuations(s, k))))
        self.time_spent += time.perf_counter() - t0
        self.calls += 1
        return out

    def observe(self, paths):
        pass

    def nodes_at_depth(self, k: int) -> int:
        return self.matches * k

    def draft_cost(self, book) -> float:
        return 0.0  # an n-gram scan: microseconds next to any model pass
