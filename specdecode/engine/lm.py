"""A causal LM with per-row token histories, a KV cache and rollback.

``CausalLM.extend(rows)`` feeds each row its own (possibly empty) list of new tokens in
one forward pass and returns the logits for them; ``rollback(lengths)`` forgets
everything after ``lengths[b]`` tokens of row b. Hugging Face models keep a
``DynamicCache``: rows of a batch may have different lengths (ragged acceptance); after
every pass each row's valid entries are moved to be contiguous from the left, and
entries past a row's length are masked out, so the cache never grows past the longest
row however many rejections occur. Models without a cache (the seed 001 toy family)
are re-run on the full history.

This is the only module that touches cache tensors. It does not sample, draft or verify.
"""

from __future__ import annotations

import time

import torch

try:  # transformers is optional for the toy family
    from transformers import DynamicCache, PreTrainedModel
except ImportError:  # pragma: no cover
    DynamicCache = PreTrainedModel = None


class CausalLM:
    def __init__(self, model: torch.nn.Module, *, name: str = "model"):
        self.model = model.eval()
        self.name = name
        self.is_hf = PreTrainedModel is not None and isinstance(model, PreTrainedModel)
        if self.is_hf:
            cfg = model.config
            self.vocab_size = int(cfg.vocab_size)
            self.max_length = int(getattr(cfg, "max_position_embeddings", 1 << 30))
            self.num_layers = int(cfg.num_hidden_layers)
        else:
            self.vocab_size = int(model.vocab_size)
            self.max_length = int(getattr(model, "max_seq_len", 1 << 30))
            self.num_layers = 0
        self.dtype = next(model.parameters()).dtype
        self.forward_time = 0.0
        self.forward_calls = 0
        self.record_features = False  # keep the last hidden state of every cached position (EAGLE drafts; recorded
        # by extend() and extend_tree/keep_path; early-exit passes do not record)
        self.reset(1)

    # ------------------------------------------------------------ state
    def reset(self, batch_size: int) -> None:
        self.lengths = [0] * batch_size
        self.physical = 0
        self.cache = DynamicCache() if self.is_hf else None
        self.history: list[list[int]] = [[] for _ in range(batch_size)]
        self.features: list[torch.Tensor | None] = [None] * batch_size  # [length_b, H] when record_features
        self._feature_buf: list[torch.Tensor | None] = [None] * batch_size  # storage behind features[b]

    @property
    def batch_size(self) -> int:
        return len(self.lengths)

    def store_features(self, b: int, start: int, h: torch.Tensor) -> None:
        """Row b's hidden states h [n, H] for positions start .. start + n - 1; ``features[b]`` then covers
        positions 0 .. start + n - 1. The storage doubles when full, so a decode step costs O(n), not O(length)."""
        have = 0 if self.features[b] is None else self.features[b].shape[0]
        if start > have:
            raise ValueError("hidden states were not recorded from the start: set record_features before the prefill")
        end = start + h.shape[0]
        buf = self._feature_buf[b]
        if buf is None or buf.shape[0] < end:
            grown = torch.empty(max(end, 64, 2 * (0 if buf is None else buf.shape[0])), h.shape[-1], dtype=h.dtype)
            if start:
                grown[:start] = buf[:start]
            buf = self._feature_buf[b] = grown
        buf[start:end] = h
        self.features[b] = buf[:end]

    # ---------------------------------------------------------- forward
    @torch.inference_mode()
    def extend(self, rows: list[list[int]], *, n_layers: int | None = None) -> torch.Tensor:
        """rows: B lists of new tokens (ragged, may be empty) -> float32 logits [B, n_max, V].

        n_layers: run only the first n layers + final norm + head (early-exit self-draft); only
        those layers' cache grows and it must be cut back with ``rollback_layers``.
        """
        B = len(rows)
        if B != self.batch_size:
            raise ValueError(f"rows must have one list per batch row ({self.batch_size}), got {B}")
        n = [len(r) for r in rows]
        n_max = max(n)
        if n_max == 0:
            return torch.zeros(B, 0, self.vocab_size)
        for b in range(B):
            if self.lengths[b] + n[b] > self.max_length:
                raise ValueError(f"sequence length {self.lengths[b] + n[b]} exceeds the model's context of {self.max_length} tokens")
        t0 = time.perf_counter()
        if self.is_hf:
            logits = self._extend_hf(rows, n, n_max, n_layers)
        else:
            logits = self._extend_full(rows, n, n_max)
        self.forward_time += time.perf_counter() - t0
        self.forward_calls += 1
        return logits

    def _extend_full(self, rows, n, n_max):
        out = torch.zeros(len(rows), n_max, self.vocab_size)
        for b, r in enumerate(rows):
            self.history[b] = self.history[b][: self.lengths[b]] + list(r)
            self.lengths[b] = len(self.history[b])
            if r:
                logits = self.model(torch.tensor([self.history[b]]))
                out[b, : len(r)] = logits[0, -len(r):].float()
        return out

    def _extend_hf(self, rows, n, n_max, n_layers):
        B = len(rows)
        ids = torch.tensor([r + [0] * (n_max - len(r)) for r in rows], dtype=torch.long)
        ragged = any(length != self.physical for length in self.lengths) or any(x != n_max for x in n)
        if ragged:
            P = self.physical
            mask = torch.zeros(B, P + n_max, dtype=torch.long)
            for b in range(B):
                mask[b, : self.lengths[b]] = 1
                mask[b, P : P + n[b]] = 1
            pos = torch.tensor([[self.lengths[b] + i for i in range(n_max)] for b in range(B)], dtype=torch.long)
        else:
            mask = pos = None
        if n_layers is None:
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=self.cache, use_cache=True,
                             output_hidden_states=self.record_features)
            logits = out.logits
            if self.record_features:
                h = out.hidden_states[-1].detach().float()  # [B, n_max, H]: the input of the head
                for b in range(B):
                    self.store_features(b, self.lengths[b], h[b, : n[b]])
        else:
            logits = self._early_exit_forward(ids, mask, pos, n_layers)
        layers = range(len(self.cache.layers)) if n_layers is None else range(n_layers)
        old = self.physical
        self.physical += n_max
        self._compact(layers, old, n)
        return logits.float()

    def _early_exit_forward(self, ids, mask, pos, n_layers):
        from transformers.masking_utils import create_causal_mask

        inner = self.model.model
        h = inner.embed_tokens(ids)
        if pos is None:
            pos = torch.arange(self.physical, self.physical + ids.shape[1])[None].expand(ids.shape[0], -1)
        causal = create_causal_mask(config=inner.config, inputs_embeds=h, attention_mask=mask,
                                    past_key_values=self.cache, position_ids=pos)
        pe = inner.rotary_emb(h, position_ids=pos)
        for layer in inner.layers[:n_layers]:
            h = layer(h, attention_mask=causal, position_embeddings=pe, position_ids=pos,
                      past_key_values=self.cache, use_cache=True)
        return self.model.lm_head(inner.norm(h))

    def _compact(self, layers, old_physical: int, n: list[int]) -> None:
        """Move row b's new entries [old_physical, +n_b) to [length_b, +n_b); crop to the longest row."""
        new_lengths = [length + k for length, k in zip(self.lengths, n)]
        for li in layers:
            layer = self.cache.layers[li]
            for b, (length, k) in enumerate(zip(self.lengths, n)):
                if k and length != old_physical:
                    layer.keys[b, :, length : length + k] = layer.keys[b, :, old_physical : old_physical + k].clone()
                    layer.values[b, :, length : length + k] = layer.values[b, :, old_physical : old_physical + k].clone()
        self.lengths = new_lengths
        self._crop(layers, max(new_lengths))

    def _crop(self, layers, size: int) -> None:
        for li in layers:
            layer = self.cache.layers[li]
            if layer.keys is not None and layer.keys.numel() and layer.keys.shape[2] > size:
                layer.keys = layer.keys[:, :, :size]
                layer.values = layer.values[:, :, :size]
        self.physical = size

    # ---------------------------------------------------------- rollback
    def rollback(self, lengths: list[int]) -> None:
        """Keep only the first lengths[b] tokens of row b (lengths[b] <= current length)."""
        if any(new > old for new, old in zip(lengths, self.lengths)):
            raise ValueError(f"rollback can only shorten rows: {lengths} vs {self.lengths}")
        self.lengths = list(lengths)
        self.features = [f[:length] if f is not None else None for f, length in zip(self.features, lengths)]
        if self.is_hf:
            self._crop(range(len(self.cache.layers)), max(lengths) if lengths else 0)
        else:
            self.history = [h[:length] for h, length in zip(self.history, lengths)]

    def rollback_layers(self, n_layers: int, lengths: list[int]) -> None:
        """Cut the first n_layers back to ``lengths`` after an early-exit draft (other layers untouched)."""
        self.lengths = list(lengths)
        self._crop(range(n_layers), max(lengths))  # also sets physical to the early layers' length
        self.physical = max(self.physical, self._layer_len(n_layers))

    def _layer_len(self, start: int) -> int:
        for layer in self.cache.layers[start:]:
            if layer.keys is not None and layer.keys.numel():
                return layer.keys.shape[2]
        return 0


class TreeSegment:
    """Tree tokens appended after a row's verified prefix (batch 1): node parents and depths.

    Node i of the segment sits at cache index ``base + i`` and position ``base + depth[i]``;
    parents[i] is the segment index of its parent (-1 = attached to the verified prefix).
    """

    def __init__(self, base: int):
        self.base = base
        self.parents: list[int] = []
        self.depths: list[int] = []
        self.features: torch.Tensor | None = None  # [len, H] target hidden states when the model records them

    def add(self, parents: list[int]) -> list[int]:
        ids = []
        for par in parents:
            self.parents.append(par)
            self.depths.append(0 if par < 0 else self.depths[par] + 1)
            ids.append(len(self.parents) - 1)
        return ids

    def ancestors(self, i: int) -> list[int]:
        out = []
        while i >= 0:
            out.append(i)
            i = self.parents[i]
        return out

    def attention(self, ids: list[int], dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Segment nodes ``ids`` (just added) -> additive tree mask [1, 1, n, base + len] (each node sees the
        prefix and its ancestors) and position ids [1, n] (base + depth)."""
        total = self.base + len(self.parents)
        allow = torch.zeros(len(ids), total, dtype=torch.bool)
        allow[:, : self.base] = True
        for r, i in enumerate(ids):
            for a in self.ancestors(i):
                allow[r, self.base + a] = True
        mask = torch.zeros(1, 1, len(ids), total, dtype=dtype).masked_fill(~allow[None, None], torch.finfo(dtype).min)
        return mask, torch.tensor([[self.base + self.depths[i] for i in ids]])


@torch.inference_mode()
def extend_tree(lm: CausalLM, seg: TreeSegment, tokens: list[int], parents: list[int]) -> torch.Tensor:
    """Append tree nodes (batch 1) in one forward pass with a tree attention mask.

    tokens/parents: the new nodes; parents index the segment (earlier or new nodes, -1 = the
    prefix). Each node attends to the verified prefix and to its ancestors only. Returns float32
    logits [n, V]. Keep the accepted path afterwards with ``keep_path``.
    """
    if not lm.is_hf or lm.batch_size != 1:
        raise ValueError("tree attention needs a Hugging Face model and batch size 1")
    if lm.physical != seg.base + len(seg.parents):
        raise ValueError("the tree segment does not match the cache")
    ids = seg.add(parents)
    total = seg.base + len(seg.parents)
    if total > lm.max_length:
        raise ValueError(f"the tree needs {total} positions but the model's context is {lm.max_length} tokens")
    mask, pos = seg.attention(ids, lm.dtype)
    t0 = time.perf_counter()
    out = lm.model(input_ids=torch.tensor([tokens]), attention_mask=mask, position_ids=pos,
                   past_key_values=lm.cache, use_cache=True, output_hidden_states=lm.record_features)
    if lm.record_features:  # kept for the accepted path by keep_path (EAGLE heads)
        h = out.hidden_states[-1][0].detach().float()
        seg.features = h if seg.features is None else torch.cat([seg.features, h])
    logits = out.logits[0].float()
    lm.forward_time += time.perf_counter() - t0
    lm.forward_calls += 1
    lm.physical = total
    lm.lengths = [total]
    return logits


@torch.inference_mode()
def keep_path(lm: CausalLM, seg: TreeSegment, path: list[int]) -> None:
    """Keep the verified prefix plus the segment nodes on ``path`` (root first), dropping the rest."""
    for t, node in enumerate(path):
        src, dst = seg.base + node, seg.base + t
        if src != dst:
            for layer in lm.cache.layers:
                layer.keys[:, :, dst] = layer.keys[:, :, src]
                layer.values[:, :, dst] = layer.values[:, :, src]
    new = seg.base + len(path)
    lm._crop(range(len(lm.cache.layers)), new)
    lm.lengths = [new]
    if lm.record_features:
        if seg.features is None:
            raise ValueError("the target records hidden states but the tree pass kept none")
        lm.store_features(0, seg.base, seg.features[path])
