"""The Hugging Face / torch backend: a causal LM with per-row token histories, a KV cache, rollback and
draft-tree passes (the interface is ``backend.Backend``).

``CausalLM.extend(rows)`` feeds each row its own (possibly empty) list of new tokens in one forward
pass and returns their logits; ``rollback(lengths)`` forgets everything after ``lengths[b]`` tokens of
row b. ``extend_tree(tokens, parents)`` appends draft-tree nodes to every row in one pass with a tree
attention mask (each node sees its row's prefix and its own ancestors); ``keep_paths(paths)`` keeps one
root-to-node path per row and drops the other nodes. Hugging Face models keep a ``DynamicCache``: rows
may have different lengths (ragged acceptance); after every pass each row's valid entries are made
contiguous from the left and entries past a row's length are masked, so the cache never grows past the
longest row however many rejections occur. Models without a cache (the seed 001 toy family) are re-run
on the full history (trees: one run per node).

This module edits the Hugging Face cache tensors (``llama_cpp`` edits llama.cpp's cache, EAGLE heads their
own, ``drafters.eagle``); callers only move lengths through this interface. It does not sample, draft or
verify. Every tensor it creates lives on the model's device.
"""

from __future__ import annotations

import time

import torch
from transformers import DynamicCache, PreTrainedModel

from .backend import Backend
from .segments import TreeSegment, tree_attention


class CausalLM(Backend):
    backend = "hf"

    def __init__(self, model: torch.nn.Module, *, name: str = "model"):
        self.model = model.eval()
        self.name = name
        self.is_hf = isinstance(model, PreTrainedModel)
        cfg = model.config if self.is_hf else model
        self.vocab_size = int(cfg.vocab_size)
        self.max_length = int(getattr(cfg, "max_position_embeddings" if self.is_hf else "max_seq_len", 1 << 30))
        self.num_layers = int(cfg.num_hidden_layers) if self.is_hf else 0
        self.supports_features = self.is_hf
        first = next(model.parameters())
        self.dtype, self.device = first.dtype, first.device
        super().__init__()

    @property
    def cost_key(self) -> str:
        return f"hf-{self.name}-{str(self.dtype).replace('torch.', '')}-{self.device}-t{torch.get_num_threads()}"

    def reset(self, batch_size: int) -> None:
        super().reset(batch_size)
        self.physical = 0
        self.cache = DynamicCache() if self.is_hf else None
        self.history: list[list[int]] = [[] for _ in range(batch_size)]
        self._tree: list[TreeSegment] | None = None  # pending draft-tree nodes per row (extend_tree)

    # ---------------------------------------------------------- chains
    @torch.inference_mode()
    def extend(self, rows: list[list[int]], *, need_logits: bool = True) -> torch.Tensor | None:
        """rows: B lists of new tokens (ragged, may be empty) -> float32 logits [B, n_max, V] (None when not
        ``need_logits``: a prefill computes the head at one position only)."""
        self._check_chain(rows)
        if max(map(len, rows), default=0) == 0:
            return torch.zeros(len(rows), 0, self.vocab_size, device=self.device) if need_logits else None
        logits = self._chain(rows, 0 if need_logits else 1)
        return logits if need_logits else None

    @property
    def prefill_gives_logits(self) -> bool:
        return self.is_hf and not self.record_features  # transformers' logits_to_keep: the head at the last tokens

    @torch.inference_mode()
    def prefill(self, rows: list[list[int]]) -> torch.Tensor:
        """rows: B lists of new tokens -> float32 logits [B, V] at each row's last new token (zeros for an empty row);
        on a Hugging Face model in one pass, the head computed at those positions only."""
        if not self.prefill_gives_logits or not any(rows):
            return super().prefill(rows)
        self._check_chain(rows)
        n = [len(r) for r in rows]
        keep = torch.tensor([[max(k - 1, 0)] for k in n], device=self.device)  # [B, 1]: each row's last position
        logits = self._chain(rows, keep)[:, 0]  # [B, V]
        return logits * torch.tensor([float(k > 0) for k in n], device=self.device)[:, None]

    def _chain(self, rows: list[list[int]], keep: int | torch.Tensor) -> torch.Tensor:
        """One pass appending ``rows`` (at least one token in all) -> logits at the positions ``keep`` names
        (transformers' ``logits_to_keep``; the cache-less models give every position)."""
        n = [len(r) for r in rows]
        self.check_context(max(length + k for length, k in zip(self.lengths, n)))
        t0 = time.perf_counter()
        logits = self._extend_hf(rows, n, max(n), keep) if self.is_hf else self._extend_full(rows, max(n))
        self.forward_time += time.perf_counter() - t0
        self.forward_calls += 1
        return logits

    def _check_chain(self, rows: list[list[int]]) -> None:
        self.check_rows(len(rows))
        if self._tree is not None:
            raise ValueError("draft-tree nodes are pending: call keep_paths or rollback before extend")

    def _extend_full(self, rows, n_max):
        out = torch.zeros(len(rows), n_max, self.vocab_size, device=self.device)
        for b, r in enumerate(rows):
            self.history[b] = self.history[b][: self.lengths[b]] + list(r)
            self.lengths[b] = len(self.history[b])
            if r:
                logits = self.model(torch.tensor([self.history[b]], device=self.device))
                out[b, : len(r)] = logits[0, -len(r) :].float()
        return out

    def _extend_hf(self, rows, n, n_max, keep: int | torch.Tensor = 0):
        """keep: transformers' ``logits_to_keep`` (0: every position, 1: the last, [B, 1]: a position per row)."""
        B, P = len(rows), self.physical
        ids = torch.tensor([r + [0] * (n_max - len(r)) for r in rows], dtype=torch.long, device=self.device)
        mask = pos = None
        if any(length != P for length in self.lengths) or any(x != n_max for x in n):  # ragged rows
            mask = torch.zeros(B, P + n_max, dtype=torch.long, device="cpu")  # built on the host, moved once
            for b in range(B):
                mask[b, : self.lengths[b]] = 1
                mask[b, P : P + n[b]] = 1
            pos = torch.tensor(
                [[self.lengths[b] + i for i in range(n_max)] for b in range(B)], dtype=torch.long, device="cpu"
            )
            mask, pos = mask.to(self.device), pos.to(self.device)
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            cache=self.cache,
            use_cache=True,
            output_hidden_states=self.record_features,
            logits_to_keep=keep,
        )
        if self.record_features:
            h = out.hidden_states[-1].detach().float()  # [B, n_max, H]: the input of the head
            for b in range(B):
                self.store_features(b, self.lengths[b], h[b, : n[b]])
        self.physical += n_max
        self._compact(range(len(self.cache.layers)), P, n)
        return out.logits.float()

    def _compact(self, layers, old_physical: int, n: list[int]) -> None:
        """Move row b's new entries [old_physical, +n_b) to [length_b, +n_b); crop to the longest row."""
        for li in layers:
            layer = self.cache.layers[li]
            for b, (length, k) in enumerate(zip(self.lengths, n)):
                if k and length != old_physical:
                    layer.keys[b, :, length : length + k] = layer.keys[b, :, old_physical : old_physical + k].clone()
                    layer.values[b, :, length : length + k] = layer.values[
                        b, :, old_physical : old_physical + k
                    ].clone()
        self.lengths = [length + k for length, k in zip(self.lengths, n)]
        self._crop(layers, max(self.lengths))

    def _crop(self, layers, size: int) -> None:
        for li in layers:
            layer = self.cache.layers[li]
            if layer.keys is not None and layer.keys.numel() and layer.keys.shape[2] > size:
                layer.keys = layer.keys[:, :, :size]
                layer.values = layer.values[:, :, :size]
        self.physical = size

    # ----------------------------------------------------------- trees
    @torch.inference_mode()
    def extend_tree(self, tokens: list[list[int]], parents: list[list[int]]) -> torch.Tensor:
        """Append draft-tree nodes to every row in ONE pass -> float32 logits [B, n_max, V].

        tokens[b] / parents[b]: row b's new nodes (may be empty); parents index the row's pending nodes
        (earlier passes or this one, -1 = attached to the verified prefix). Each node attends to its row's
        prefix and its own ancestors. The nodes stay pending until ``keep_paths`` (or ``rollback``).
        """
        self.check_rows(len(tokens))
        if self._tree is None:
            self._tree = [TreeSegment(length) for length in self.lengths]
        n = [len(t) for t in tokens]
        n_max = max(n)
        if n_max == 0:
            return torch.zeros(len(tokens), 0, self.vocab_size, device=self.device)
        P = self.physical if self.is_hf else 0
        new = [
            seg.add(tok, par, [P + j for j in range(len(par))]) for seg, tok, par in zip(self._tree, tokens, parents)
        ]
        self.check_context(max(seg.base + max(seg.depths, default=-1) + 1 for seg in self._tree))
        t0 = time.perf_counter()
        logits = self._tree_hf(tokens, new, n_max) if self.is_hf else self._tree_full(tokens, new, n_max)
        self.forward_time += time.perf_counter() - t0
        self.forward_calls += 1
        return logits

    def _tree_hf(self, tokens, new, n_max):
        total = self.physical + n_max
        mask, pos = tree_attention(self._tree, new, self.lengths, total, self.dtype, self.device)
        ids = torch.tensor([t + [0] * (n_max - len(t)) for t in tokens], dtype=torch.long, device=self.device)
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            cache=self.cache,
            use_cache=True,
            output_hidden_states=self.record_features,
        )
        self.physical = total
        if self.record_features:
            h = out.hidden_states[-1].detach().float()
            for b, seg in enumerate(self._tree):
                seg.features.append(h[b, : len(tokens[b])])
        return out.logits.float()

    def _tree_full(self, tokens, new, n_max):
        out = torch.zeros(len(tokens), n_max, self.vocab_size, device=self.device)
        for b, (seg, ids) in enumerate(zip(self._tree, new)):
            for r, i in enumerate(ids):
                path = [seg.tokens[a] for a in reversed(seg.ancestors(i))]
                logits = self.model(torch.tensor([self.history[b][: seg.base] + path], device=self.device))
                out[b, r] = logits[0, -1].float()
        return out

    @torch.inference_mode()
    def keep_paths(self, paths: list[list[int]]) -> None:
        """Keep, per row, the pending tree nodes ``paths[b]`` (a root-first chain of segment ids, possibly empty)
        after the verified prefix and drop every other pending node."""
        self.check_rows(len(paths))
        if self._tree is None:
            if any(paths):
                raise ValueError("keep_paths needs pending tree nodes: call extend_tree first")
            return
        for b, (seg, path) in enumerate(zip(self._tree, paths)):
            if self.is_hf and path:
                self._move_entries(b, [seg.slots[i] for i in path], seg.base)
            elif not self.is_hf:
                self.history[b] = self.history[b][: seg.base] + [seg.tokens[i] for i in path]
            if self.record_features and path:
                self.store_features(b, seg.base, seg.hidden_states(path))
            self.lengths[b] = seg.base + len(path)
        self._tree = None
        if self.is_hf:
            self._crop(range(len(self.cache.layers)), max(self.lengths))

    def _move_entries(self, b: int, src: list[int], dst_start: int) -> None:
        src_t = torch.tensor(src, device=self.device)
        dst_t = torch.arange(dst_start, dst_start + len(src), device=self.device)
        if torch.equal(src_t, dst_t):
            return
        for layer in self.cache.layers:
            layer.keys[b, :, dst_t] = layer.keys[b, :, src_t]
            layer.values[b, :, dst_t] = layer.values[b, :, src_t]

    # ------------------------------------------------------------- rows
    def add_rows(self, n: int) -> None:
        if self._tree is not None:
            raise ValueError("draft-tree nodes are pending: rows join between steps")
        super().add_rows(n)
        self.history += [[] for _ in range(n)]
        for layer in self.cache.layers if self.is_hf else []:
            if layer.keys is not None and layer.keys.numel():
                pad = layer.keys.new_zeros((n, *layer.keys.shape[1:]))
                layer.keys = torch.cat([layer.keys, pad])
                layer.values = torch.cat([layer.values, pad.clone()])

    def remove_rows(self, keep: list[int]) -> None:
        if self._tree is not None:
            raise ValueError("draft-tree nodes are pending: rows leave between steps")
        super().remove_rows(keep)
        self.history = [self.history[b] for b in keep]
        if not self.is_hf:
            return
        idx = torch.tensor(keep, dtype=torch.long, device=self.device)
        for layer in self.cache.layers:
            if layer.keys is not None and layer.keys.numel():
                layer.keys, layer.values = layer.keys.index_select(0, idx), layer.values.index_select(0, idx)
        self._crop(range(len(self.cache.layers)), max(self.lengths, default=0))

    # ---------------------------------------------------------- rollback
    def rollback(self, lengths: list[int]) -> None:
        """Keep only the first lengths[b] tokens of row b (lengths[b] <= current length); drops pending tree nodes."""
        self.check_shorter(lengths)
        self._tree = None
        self.lengths = list(lengths)
        self.cut_features(lengths)
        if self.is_hf:
            self._crop(range(len(self.cache.layers)), max(lengths) if lengths else 0)
        else:
            self.history = [h[:length] for h, length in zip(self.history, lengths)]
