"""The llama.cpp backend: a GGUF model run by llama.cpp through llama-cpp-python's low-level API, behind the
engine's backend interface (``backend.Backend``).

One llama_context with a unified KV cache. Row b of a batch is sequence id b; a step feeds every row's new
tokens in ONE ``llama_decode`` (long prefills in chunks of ``n_batch`` tokens) and asks for logits only at the
positions the engine reads (a prefill: each row's last token, or none). Rollback removes a row's cells past its
length (``llama_memory_seq_rm``).

Draft trees use sequence ids: every root-to-leaf path of a tree is a sequence of its own and a node's cell
belongs to every path through it (a token may carry several sequence ids; a path that branches off a node
already in the cache starts as a copy of that node's path, ``llama_memory_seq_cp``, which only adds a
sequence id to the shared cells). llama.cpp lets a token attend to the cells of its first sequence at
lower positions, so a node sees its row's prefix and its own ancestors only. ``keep_paths`` copies the
accepted path to the row's sequence and drops every path sequence.

Hidden states for EAGLE heads come from llama.cpp's embeddings output of the same pass (the final-norm
output, the input of the head): a context made with ``embeddings=True``, or remade so when the engine asks
for them (``record_features``) while the backend holds no rows, so one backend object serves every drafter.

Not here: sampling, drafting, verification; finding, building or converting GGUF files (``models.gguf``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .backend import Backend
from .llama_lib import (
    argmax_logits,
    clear_errors,
    copy_floats,
    last_error,
    plan_ubatches,
    ragged_rows,
    require_llama_cpp,
    restore_sequence,
    save_sequence,
    scatter_rows,
    split_rows,
)
from .prefix_cache import MIN_REUSE, PrefixCache

L = None  # the llama_cpp module, imported on first use (llama_lib.require_llama_cpp)


@dataclass
class _RowTree:
    """A row's pending tree nodes: positions (base + depth), the path sequence of each node and the sequence
    ids this row borrowed."""

    base: int
    depth: list = field(default_factory=list)
    seq: list = field(default_factory=list)  # a path sequence through each node (it holds its ancestors)
    parents: list = field(default_factory=list)
    borrowed: list = field(default_factory=list)
    features: list = field(default_factory=list)


class LlamaCppLM(Backend):
    backend = "llama.cpp"

    def __init__(
        self,
        path: str,
        *,
        name: str | None = None,
        n_ctx: int = 8192,
        n_threads: int | None = None,
        max_seqs: int = 256,
        n_batch: int = 512,
        embeddings: bool = False,
        prefix_slots: int = 0,
    ):
        global L
        L = require_llama_cpp()
        self.path, self.name = str(path), name or os.path.basename(str(path))
        if not os.path.isfile(self.path):
            raise ValueError(f"no GGUF file at {self.path}")
        clear_errors()
        self.model = L.llama_model_load_from_file(self.path.encode(), L.llama_model_default_params())
        if not self.model:
            raise ValueError(f"llama.cpp could not load {self.path} ({last_error()}): is it a GGUF model file?")
        self.threads = n_threads or os.cpu_count() or 1
        self.n_batch, self.max_seqs = n_batch, max_seqs
        self.ctx = None
        self.prefix = PrefixCache(prefix_slots, n_ctx)  # cells kept after their rows leave (0: none; prefix_cache)
        self._leaving: dict[int, list[int]] = {}
        self._open_context(n_ctx, embeddings)
        self.vocab_size = int(L.llama_vocab_n_tokens(L.llama_model_get_vocab(self.model)))
        self.max_length = min(int(L.llama_model_n_ctx_train(self.model)), self.n_ctx)
        self.capacity = self.n_ctx  # one unified cache for every row and tree node
        self.num_layers, self.n_embd = int(L.llama_model_n_layer(self.model)), int(L.llama_model_n_embd(self.model))
        self.dtype, self.device = torch.float32, torch.device("cpu")
        self.supports_features = True  # the context is remade with embeddings when they are asked for
        self._batch = L.llama_batch_init(n_batch, 0, max_seqs)
        super().__init__()

    def _open_context(self, n_ctx: int, embeddings: bool) -> None:
        """(Re)make the llama_context: an empty unified cache of ``n_ctx`` cells; ``embeddings``: with hidden states."""
        cp = L.llama_context_default_params()
        cp.n_ctx, cp.n_batch, cp.n_ubatch = n_ctx, self.n_batch, self.n_batch
        cp.n_seq_max, cp.kv_unified, cp.embeddings = self.max_seqs, True, embeddings
        cp.n_threads = cp.n_threads_batch = self.threads
        ctx = L.llama_init_from_model(self.model, cp)
        if not ctx:
            raise ValueError(f"llama.cpp could not make a context for {self.path} ({last_error()})")
        if self.ctx is not None:
            L.llama_free(self.ctx)
        self.ctx, self.embeddings = ctx, embeddings
        self.mem = L.llama_get_memory(self.ctx)
        self.prefix.clear()
        self.n_ctx = int(L.llama_n_ctx(self.ctx))

    @property
    def cost_key(self) -> str:
        return f"llama.cpp-{os.path.basename(self.path)}-t{self.threads}"

    @Backend.record_features.setter
    def record_features(self, on: bool) -> None:
        """Hidden states need a context with embeddings: remade here (empty) while no row holds tokens."""
        if on and not self.embeddings:
            if any(self.lengths):
                raise ValueError(
                    "llama.cpp gives hidden states only from a context made for them: ask for them "
                    "before any row holds tokens"
                )
            self._open_context(self.n_ctx, True)
            self.reset(self.batch_size)
        self._record = bool(on)

    def __del__(self):  # pragma: no cover - interpreter shutdown order varies
        try:
            L.llama_batch_free(self._batch)
            L.llama_free(self.ctx)
            L.llama_model_free(self.model)
        except Exception:  # noqa: BLE001
            pass

    def reset(self, batch_size: int) -> None:
        if batch_size >= self.max_seqs:
            raise ValueError(f"the llama.cpp backend runs at most {self.max_seqs - 1} rows at once, got {batch_size}")
        super().reset(batch_size)
        L.llama_memory_clear(self.mem, False)  # metadata only (zeroing ~190 MB took ~7 ms); kept prefixes: host memory
        self._tree: list[_RowTree] | None = None
        self._leaving = {}
        self._seq = list(range(batch_size))  # the sequence id of each row
        self._free = list(range(self.max_seqs - 1, batch_size - 1, -1))  # ids for new rows and tree paths, pop()

    def add_rows(self, n: int) -> None:
        if self._tree is not None:
            raise ValueError("draft-tree nodes are pending: rows join between steps")
        if len(self._free) < n:
            raise ValueError(f"the llama.cpp backend runs at most {self.max_seqs - 1} rows at once")
        super().add_rows(n)
        self._seq += [self._free.pop() for _ in range(n)]

    def remove_rows(self, keep: list[int]) -> None:
        if self._tree is not None:
            raise ValueError("draft-tree nodes are pending: rows leave between steps")
        for b in set(range(self.batch_size)) - set(keep):
            tokens, seq = self._leaving.get(b), self._seq[b]
            if tokens is not None:  # the row's cells go to host memory, for a later row
                L.llama_memory_seq_rm(self.mem, seq, len(tokens), -1)
                self.prefix.add(tokens, save_sequence(self.ctx, seq, self.prefix.buffer))
            L.llama_memory_seq_rm(self.mem, seq, -1, -1)
            self._free.append(seq)
        self._leaving = {}
        super().remove_rows(keep)
        self._seq = [self._seq[b] for b in keep]

    def park(self, b: int, tokens: list[int]) -> None:
        """Row b, about to leave (``remove_rows``), holds the first ``lengths[b]`` of ``tokens`` (its prompt and
        output) in its cells: keep them for a later row (``prefix_cache``)."""
        if self.prefix.slots and not self.record_features:
            held = tokens[: self.lengths[b]]  # a copy: the caller's list may grow
            if len(held) >= MIN_REUSE:
                self._leaving[b] = held

    def reuse_prefix(self, b: int, tokens: list[int]) -> int:
        """Row b, empty, is about to prefill ``tokens``: the longest kept prefix of them is copied back into its
        sequence (no compute) -> how many tokens it now holds (0 when none is kept or the cache has no room)."""
        if self.record_features or self.lengths[b]:
            return 0
        entry, n = self.prefix.best(tokens)
        if entry is None:
            return 0
        seq = self._seq[b]
        if not restore_sequence(self.ctx, entry.state, seq):
            L.llama_memory_seq_rm(self.mem, seq, -1, -1)
            return 0
        L.llama_memory_seq_rm(self.mem, seq, n, -1)
        self.lengths[b] = n
        self.prefix.reused += n
        return n

    def forget_prefixes(self) -> None:
        self.prefix.clear()

    # ------------------------------------------------------------------ passes
    def _decode(self, entries: list[tuple], outputs: bool, prompt: bool = False, argmax: bool = False) -> tuple:
        """entries: (token, position, [sequence ids][, wanted]) in batch order -> (logits [n, V], hidden states
        [n, H]) of every entry when ``outputs`` (else None; an entry whose ``wanted`` is False: zeros, its head
        not computed; a ``prompt``, i.e. a prefill: only the wanted entries' rows), decoded in the calls
        ``plan_ubatches`` gives. ``argmax`` (every entry wanted): (argmax id, logit there) per entry."""
        logits, feats = [], []
        want_h = outputs and self.record_features
        t0 = time.perf_counter()
        prompt_rows = [e[2][0] for e in entries] if prompt else None  # a step needs only the count
        for start, end in plan_ubatches(len(entries), self.n_batch, prompt_rows):
            chunk = entries[start:end]
            b = self._batch
            b.n_tokens = len(chunk)
            wanted = [outputs and (len(e) < 4 or e[3]) for e in chunk]
            for i, (tok, pos, seqs, *_) in enumerate(chunk):
                b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = tok, pos, len(seqs), wanted[i]
                for j, s in enumerate(seqs):
                    b.seq_id[i][j] = s
            clear_errors()
            rc = L.llama_decode(self.ctx, b)
            if rc == 1:
                raise ValueError(
                    f"the llama.cpp context is full ({self.n_ctx} cells for all rows and tree nodes): "
                    f"use fewer or shorter prompts"
                )
            if rc != 0:
                raise RuntimeError(f"llama_decode failed ({rc}): {last_error()}")
            if argmax:
                logits += argmax_logits(self.ctx, len(chunk), self.vocab_size)
            elif outputs and (not prompt or any(wanted)):
                got = copy_floats(L.llama_get_logits(self.ctx), sum(wanted), self.vocab_size)
                logits.append(got if prompt else scatter_rows(got, wanted))
            if want_h:
                feats.append(copy_floats(L.llama_get_embeddings(self.ctx), len(chunk), self.n_embd))
        self.forward_time += time.perf_counter() - t0
        self.forward_calls += 1
        hidden = (np.concatenate(feats) if len(feats) > 1 else feats[0]) if want_h else None
        if not outputs or argmax:
            return (logits if argmax else None), hidden
        if not logits:
            return np.zeros((0, self.vocab_size), dtype=np.float32), hidden
        return np.concatenate(logits) if len(logits) > 1 else logits[0], hidden

    def batch_tokens(self, fed: list[int]) -> int:
        """Rows are separate sequences of one llama_batch: a pass computes every fed token, no padding."""
        return sum(fed)

    def extend(self, rows: list[list[int]], *, need_logits: bool = True) -> torch.Tensor | None:
        """rows: B lists of new tokens (ragged, may be empty) -> float32 logits [B, n_max, V] (None when not needed)."""
        return self._extend(rows, need_logits, None)

    def extend_argmax(self, rows: list[list[int]]) -> tuple[list[list[int]], list[list[float]]]:
        """``extend(rows)`` as greedy decoding reads it -> (each new token's argmax id, its logit), per row; read in
        llama.cpp's output buffer (no logits copied out, no tensor made)."""
        return split_rows(self._extend(rows, True, None, argmax=True), [len(r) for r in rows])

    def extend_skipping(self, rows: list[list[int]], skip: list[set[int]]) -> torch.Tensor:
        """``extend(rows)`` without the logits (the output head) at positions ``skip[b]`` of row b: zeros there."""
        return self._extend(rows, True, None if self.embeddings else skip)  # embeddings: llama.cpp outputs every entry

    @property
    def prefill_gives_logits(self) -> bool:
        return not self.embeddings  # a context with embeddings outputs every entry: every head is computed then

    def prefill(self, rows: list[list[int]]) -> torch.Tensor:
        """rows: B lists of new tokens -> logits [B, V] at each row's last new token (zeros for an empty row), in
        the prefill's own pass: the output head runs at those entries only."""
        if self.embeddings or not any(rows):
            return super().prefill(rows)
        logits = self._extend(rows, True, [set(range(len(r) - 1)) for r in rows], prompt=True)
        fed = torch.tensor([b for b, r in enumerate(rows) if r])
        return torch.zeros(len(rows), self.vocab_size).index_copy_(0, fed, logits)

    def _extend(self, rows: list[list[int]], need_logits: bool, skip, prompt: bool = False, argmax: bool = False):
        """skip: a set per row of the positions whose head is not computed, or None; prompt: a prefill (see
        ``_decode``)."""
        self.check_rows(len(rows))
        if self._tree is not None:
            raise ValueError("draft-tree nodes are pending: call keep_paths or rollback before extend")
        n = [len(r) for r in rows]
        if max(n) == 0:
            return [] if argmax else (torch.zeros(len(rows), 0, self.vocab_size) if need_logits else None)
        self.check_context(max(length + k for length, k in zip(self.lengths, n)))
        entries = [
            (t, self.lengths[b] + i, (self._seq[b],), skip is None or i not in skip[b])
            for b, r in enumerate(rows)
            for i, t in enumerate(r)
        ]
        logits, feats = self._decode(entries, need_logits or self.record_features, prompt, argmax)
        if feats is not None:
            at = 0
            for b, k in enumerate(n):
                self.store_features(b, self.lengths[b], torch.from_numpy(feats[at : at + k]))
                at += k
        self.lengths = [length + k for length, k in zip(self.lengths, n)]
        if argmax or not need_logits:
            return logits if argmax else None
        return torch.from_numpy(logits) if prompt else ragged_rows(logits, n)

    def extend_tree(self, tokens: list[list[int]], parents: list[list[int]]) -> torch.Tensor:
        """Append draft-tree nodes to every row in ONE pass (see the module docstring) -> logits [B, n_max, V]."""
        self.check_rows(len(tokens))
        if self._tree is None:
            self._tree = [_RowTree(length) for length in self.lengths]
        entries, n = [], [len(t) for t in tokens]
        for b, (row, toks, pars) in enumerate(zip(self._tree, tokens, parents)):
            entries += self._tree_entries(b, row, toks, pars)
        if not entries:
            return torch.zeros(len(tokens), 0, self.vocab_size)
        self.check_context(max(e[1] for e in entries) + 1)
        logits, feats = self._decode(entries, True)
        if feats is not None:
            at = 0
            for row, k in zip(self._tree, n):
                row.features.append(torch.from_numpy(feats[at : at + k]))
                at += k
        return ragged_rows(logits, n)

    def _tree_entries(self, b: int, row: _RowTree, toks: list[int], pars: list[int]) -> list[tuple]:
        """Row b's new nodes -> batch entries; each node carries the path sequences of the new leaves below it."""
        first = len(row.parents)
        for par in pars:
            if not -1 <= par < len(row.parents):
                raise ValueError(f"a tree node's parent must be -1 or an earlier node, got {par}")
            row.parents.append(par)
            row.depth.append(0 if par < 0 else row.depth[par] + 1)
            row.seq.append(None)
        new = range(first, len(row.parents))
        kids = {i: [j for j in new if row.parents[j] == i] for i in new}
        leaves = [i for i in new if not kids[i]]
        leaf_seq, reused = {}, set()
        for leaf in leaves:  # a path sequence per new leaf, holding the cached part of its path
            top = leaf
            while row.parents[top] >= first:
                top = row.parents[top]
            leaf_seq[leaf] = self._path_seq(b, row, row.parents[top], first, reused)
        below = {i: [] for i in new}
        for leaf in leaves:
            i = leaf
            while i >= first:
                below[i].append(leaf_seq[leaf])
                i = row.parents[i]
        for i in new:
            row.seq[i] = below[i][0]
        return [(t, row.base + row.depth[i], tuple(below[i])) for t, i in zip(toks, new)]

    def _path_seq(self, b: int, row: _RowTree, parent: int, first: int, reused: set) -> int:
        """A sequence for a new path below ``parent`` (-1: the prefix). A cached leaf's own path sequence ends at
        it, so the first new path below it extends that sequence; any other new path starts as a copy of the
        prefix and the parent's ancestors (``llama_memory_seq_cp`` only adds a sequence id to those cells)."""
        if parent >= 0 and parent not in reused and parent not in row.parents[:first]:
            reused.add(parent)
            return row.seq[parent]
        if not self._free:
            raise ValueError(
                f"the draft tree has more paths than llama.cpp sequences ({self.max_seqs - self.batch_size})"
            )
        s = self._free.pop()
        row.borrowed.append(s)
        if parent < 0:
            L.llama_memory_seq_cp(self.mem, self._seq[b], s, 0, row.base)
        else:
            L.llama_memory_seq_cp(self.mem, row.seq[parent], s, 0, row.base + row.depth[parent] + 1)
        return s

    def keep_paths(self, paths: list[list[int]]) -> None:
        """Keep, per row, the pending nodes ``paths[b]`` (a root-first chain, possibly empty) after the prefix."""
        self.check_rows(len(paths))
        if self._tree is None:
            if any(paths):
                raise ValueError("keep_paths needs pending tree nodes: call extend_tree first")
            return
        for b, (row, path) in enumerate(zip(self._tree, paths)):
            if path:
                L.llama_memory_seq_cp(self.mem, row.seq[path[-1]], self._seq[b], row.base, row.base + len(path))
                if self.record_features:
                    self.store_features(b, row.base, torch.cat(row.features)[path])
            self._release(row)
            self.lengths[b] = row.base + len(path)
        self._tree = None

    def _release(self, row: _RowTree) -> None:
        for s in row.borrowed:
            L.llama_memory_seq_rm(self.mem, s, -1, -1)
            self._free.append(s)
        row.borrowed = []

    def rollback(self, lengths: list[int]) -> None:
        """Keep only the first lengths[b] tokens of row b; drops pending tree nodes."""
        if self._tree is None and lengths == self.lengths:  # a step that kept all it fed (each call costs, cold)
            return
        self.check_shorter(lengths)
        if self._tree is not None:
            for row in self._tree:
                self._release(row)
            self._tree = None
        for b, (new, old) in enumerate(zip(lengths, self.lengths)):
            if new < old:
                L.llama_memory_seq_rm(self.mem, self._seq[b], new, -1)
        self.lengths = list(lengths)
        self.cut_features(lengths)
