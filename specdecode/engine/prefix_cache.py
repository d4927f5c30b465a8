"""Prompt prefixes kept after their requests leave, for the llama.cpp backend's unified cache: a row that leaves
may keep its prompt's cells under a spare sequence id (``park``); a joining row whose prompt starts the same way
gets those cells copied to its own sequence (``llama_memory_seq_cp`` adds a sequence id to the shared cells, no
compute) and prefills only the rest. What llama-server's prompt cache does; here only prompt cells are kept (they
were computed by a prefill, as the joining row's would be), never a row's generated tokens.

Off by default (``LlamaCppLM(prefix_slots=0)``; ``serve`` keeps 8): a reused prefix leaves the joining row's cells
out of position order more often, which changes llama.cpp's attention sums in the last bits (logits move by up to
~5e-3 here), so greedy near-ties may break differently than in a fresh run (docs/backends.md).

Entries are few (``slots``), the least recently used is dropped first, and every entry is dropped as soon as the
cache needs its cells or its sequence id for running rows or tree paths (``PrefixCache.evict`` is the backend's
to call before it decodes).

Not here: the cache edits themselves (``llama_cpp.LlamaCppLM``).
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_REUSE = 8  # a shorter common prefix is prefilled again (a copy is not worth a sequence id)


@dataclass
class Parked:
    seq: int  # the sequence id holding the cells
    tokens: tuple  # the tokens in those cells, positions 0..len-1


class PrefixCache:
    def __init__(self, slots: int):
        self.slots = slots
        self.entries: list[Parked] = []  # least recently used first
        self.reused = 0  # prompt tokens copied instead of prefilled (statistics)

    @property
    def cells(self) -> int:
        """Cells the entries hold at most (shared cells are counted once per entry: an upper bound)."""
        return sum(len(e.tokens) for e in self.entries)

    def seqs(self) -> set[int]:
        return {e.seq for e in self.entries}

    def add(self, seq: int, tokens: list[int]) -> list[int]:
        """Keep ``tokens`` under ``seq`` -> the sequence ids of entries dropped to make room (to be freed)."""
        self.entries.append(Parked(seq, tuple(tokens)))
        dropped = []
        while len(self.entries) > self.slots:
            dropped.append(self.entries.pop(0).seq)
        return dropped

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
        self.reused += length
        return best, length

    def evict(self, count: int = 1) -> list[int]:
        """Drop the ``count`` least recently used entries -> their sequence ids."""
        out = [e.seq for e in self.entries[:count]]
        del self.entries[:count]
        return out


def _common(a: tuple, b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
