"""Prompt prefixes kept after their requests leave, for the llama.cpp backend: a row that leaves may keep its
cells (``park``), copied out of the KV cache into host memory (``llama_state_seq_get_data``: positions
and K/V, ~23 KB a token for SmolLM2-135M); a joining row whose prompt starts the same way gets them copied back
into its own sequence (``llama_state_seq_set_data``, ~1 ms for 400 tokens), the cells past the common prefix
dropped, and prefills only the rest. What llama-server's slots and prompt cache (``--cache-ram``) do: the cells
of the prompt and of the tokens the row generated (a chat's next turn starts with both). Until stop 32 only prompt
cells were kept.

Why host memory and not cells left in the unified cache under a spare sequence id (stop 31 and before): llama.cpp
attends over every used cell of a unified cache, masked, so kept cells slowed every later pass of every row:
8 kept 400-token prompts made a one-row pass 9.1 -> 11.6 ms and a four-row pass 24.8 -> 30.8 ms (docs/backends.md).

Off by default (``LlamaCppLM(prefix_slots=0)``; ``serve`` and ``bench-backends`` keep 8): a restored prefix may sit
in cells out of position order (wherever llama.cpp finds room), which changes llama.cpp's attention sums in the last
bits (logits move by up to ~5e-3 here), so greedy near-ties may break differently than in a fresh run
(docs/backends.md). Entries are few (``slots``) and hold at most ``max_tokens`` tokens together; the least recently
used goes first.

Not here: the cache edits themselves (``llama_cpp.LlamaCppLM``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_REUSE = 8  # a shorter common prefix is prefilled again (a copy is not worth it)
SPARE = 2  # buffers of dropped entries kept for reuse


@dataclass
class Parked:
    tokens: tuple  # the row's prompt and output, positions 0..len-1
    state: np.ndarray  # uint8: its cells as llama_state_seq_get_data wrote them


class PrefixCache:
    def __init__(self, slots: int, max_tokens: int = 1 << 20):
        self.slots, self.max_tokens = slots, max_tokens
        self.entries: list[Parked] = []  # least recently used first
        self.reused = 0  # prompt tokens copied back instead of prefilled (statistics; the backend counts)
        self._spare: list[np.ndarray] = []  # buffers of dropped entries, for the next ones (see ``buffer``)

    @property
    def tokens(self) -> int:
        """Tokens the entries hold together."""
        return sum(len(e.tokens) for e in self.entries)

    @property
    def nbytes(self) -> int:
        """Host memory the entries' cells take."""
        return sum(e.state.nbytes for e in self.entries)

    def buffer(self, nbytes: int) -> np.ndarray:
        """A uint8 buffer of at least ``nbytes`` for an entry's cells: a dropped entry's when one is large enough
        (a fresh allocation of tens of MB costs its page faults again: ~50-130 ms for 48 MB here, the copy ~5 ms)."""
        fits = [b for b in self._spare if b.nbytes >= nbytes]
        if fits:
            best = min(fits, key=lambda b: b.nbytes)
            self._spare = [b for b in self._spare if b is not best]
            return best
        return np.empty(nbytes, dtype=np.uint8)

    def add(self, tokens: list[int], state: np.ndarray) -> None:
        """Keep ``tokens`` and their cells ``state``; the least recently used entries leave past the caps."""
        self.entries.append(Parked(tuple(tokens), state))
        while len(self.entries) > self.slots or (len(self.entries) > 1 and self.tokens > self.max_tokens):
            self._drop(self.entries.pop(0))

    def _drop(self, entry: Parked) -> None:
        whole = entry.state if entry.state.base is None else entry.state.base
        self._spare = sorted([*self._spare, whole], key=lambda b: b.nbytes)[-SPARE:]  # the largest few

    def best(self, tokens: list[int]) -> tuple[Parked | None, int]:
        """The entry sharing the longest prefix with ``tokens`` and its length (0 and None below ``MIN_REUSE``);
        the entry becomes the most recently used."""
        best, length = None, 0
        for e in self.entries:
            n = _common(e.tokens, tokens)
            if n > length:
                best, length = e, n
        if best is None or length < MIN_REUSE:
            return None, 0
        self.entries.remove(best)
        self.entries.append(best)
        return best, length

    def clear(self) -> None:
        for entry in self.entries:
            self._drop(entry)
        self.entries.clear()


def _common(a: tuple, b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
