"""The suffix store on arctic-inference (Snowflake's SuffixDecoding library, the one vLLM and SGLang call): a
suffix tree per running row (its prompt and output) and one global tree of outputs shared across rows, in C++.

Importing this module fails (ImportError) when arctic-inference is not installed; ``suffix.make_store`` then
uses our own store. Its global tree holds outputs as they grow (other running rows see them at once); we cap
it in tokens by evicting the oldest outputs, which the library counts only in requests.

Not here: the drafter protocol (``suffix.SuffixDrafter``), depth choice, verification.
"""

from __future__ import annotations

from collections import OrderedDict

from arctic_inference.suffix_decoding import SuffixDecodingCache

TREE_DEPTH = 64  # arctic's suffix-tree depth: the longest match it measures


class ArcticSuffixStore:
    kind = "arctic"

    def __init__(self, corpus_tokens: int, branches: int, factor: float, min_share: float):
        self.corpus_tokens, self.branches, self.factor, self.min_share = corpus_tokens, branches, factor, min_share
        self.forget()

    def forget(self) -> None:
        # max_cached_requests 0: no global tree (isolated rows); -1: no count limit (we cap tokens instead)
        self.cache = SuffixDecodingCache(max_tree_depth=TREE_DEPTH, max_cached_requests=-1 if self.corpus_tokens else 0)
        self.sizes: OrderedDict[int, int] = OrderedDict()  # row id -> output tokens in the global tree, oldest first
        self.corpus_size = 0  # their sum

    def start(self, rid: int, prompt: list[int]) -> None:
        self.cache.start_request(rid, prompt)
        if self.corpus_tokens:
            self.sizes[rid] = 0

    def append(self, rid: int, tokens: list[int]) -> None:
        self.cache.add_active_response(rid, tokens)
        if rid in self.sizes:
            self.sizes[rid] += len(tokens)
            self.corpus_size += len(tokens)
            self._evict(keep=rid)

    def stop(self, rid: int) -> None:
        self.cache.stop_request(rid)

    def _evict(self, keep: int) -> None:
        while self.corpus_size > self.corpus_tokens and len(self.sizes) > 1:
            oldest = next(r for r in self.sizes if r != keep)
            self.corpus_size -= self.sizes.pop(oldest)
            self.cache.evict_cached_response(oldest)

    def speculate(self, rid: int, seq: list[int], k: int) -> tuple[list[int], list[int], int]:
        """-> (draft tokens, their parents (-1: the root), the match length): at most k tokens, or k x branches
        for trees (then deeper than k possibly)."""
        draft = self.cache.speculate(
            rid,
            seq[-TREE_DEPTH:],
            max_spec_tokens=k if self.branches == 1 else k * self.branches,
            max_spec_factor=self.factor,
            min_token_prob=self.min_share,
            use_tree_spec=self.branches > 1,
        )
        return list(draft.token_ids), list(draft.parents), int(draft.match_len)  # the drafter cuts it at depth k
