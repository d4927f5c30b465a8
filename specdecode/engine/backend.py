"""What the engine needs from a model: the backend interface, and the row bookkeeping every backend shares.

A backend owns every edit of its cache. Rows of a batch are ragged: row b holds ``lengths[b]`` verified
tokens. The engine calls, per step:

* ``extend(rows, need_logits)`` -> float32 logits [B, n_max, V] for every row's new tokens (a chain);
  ``extend_argmax(rows)`` the same pass read as greedy decoding reads it (each position's argmax and its logit);
* ``extend_tree(tokens, parents)`` -> logits of draft-tree nodes appended after each row's prefix, pending
  until ``keep_paths(paths)`` keeps one root-to-node path per row;
* ``rollback(lengths)`` to forget everything after ``lengths[b]`` tokens of row b;
* ``prefill(rows)`` -> logits [B, V] at each row's last new token, where ``prefill_gives_logits`` says that costs
  no pass of its own (a new row's first step then needs no pass over its last prompt token);
* ``add_rows(n)`` / ``remove_rows(keep)`` between steps (requests join and leave a running batch).

With ``record_features`` a backend also keeps the last hidden state of every cached position in
``features[b]`` [length_b, H] (EAGLE heads); ``supports_features`` says whether it can. ``cost_key`` names
the backend for its pass-cost table (``costs``): model, weights, device and threads.

Implementations: ``lm.CausalLM`` (Hugging Face / torch on any device, and cache-less toy models) and
``llama_cpp.LlamaCppLM`` (llama.cpp through llama-cpp-python). Not here: sampling, drafting, verification.
"""

from __future__ import annotations

import torch

from ..core.sampling import greedy_top


class Backend:
    name: str = "model"
    backend: str = "?"  # "hf" | "llama.cpp"
    vocab_size: int
    max_length: int  # positions a row may hold
    capacity: int | None = None  # cache cells shared by all rows of a batch (None: no shared limit)
    num_layers: int
    dtype: torch.dtype
    device: torch.device
    supports_features: bool = False

    def __init__(self):
        self.forward_time = 0.0
        self.forward_calls = 0
        self._record = False
        self.reset(1)

    @property
    def cost_key(self) -> str:
        """What a pass-cost table of this backend is named by (model, weights, device, threads)."""
        raise NotImplementedError

    def batch_tokens(self, fed: list[int]) -> int:
        """Tokens a pass computes when row b is fed fed[b] new tokens (what its cost follows, as T(n) of one row):
        here rows are padded to the longest. Backends that run rows as separate sequences count the sum."""
        return len(fed) * max(fed, default=0)

    # the interface ---------------------------------------------------------
    def extend(self, rows: list[list[int]], *, need_logits: bool = True) -> torch.Tensor | None:
        raise NotImplementedError

    def extend_tree(self, tokens: list[list[int]], parents: list[list[int]]) -> torch.Tensor:
        raise NotImplementedError

    def extend_argmax(self, rows: list[list[int]]) -> tuple[list[list[int]], list[list[float]]]:
        """``extend(rows)`` as greedy decoding reads it -> (ids, top): ids[b][i] the argmax of row b's i-th new
        token's logits, top[b][i] the logit there (the largest; NaN where any is, ``greedy_top``). A backend may
        read these without making the logits tensor (llama.cpp does)."""
        n = [len(r) for r in rows]
        ids, top = greedy_top(self.extend(rows), n)  # from logits [B, n_max, V]
        return [i[:k] for i, k in zip(ids, n)], top

    def extend_skipping(self, rows: list[list[int]], skip: list[set[int]]) -> torch.Tensor:
        """``extend(rows)`` for a caller that will not read the logits at positions ``skip[b]`` of row b (a
        grammar allows one token there): a backend may leave them uncomputed (zeros). This one computes all."""
        return self.extend(rows)

    def keep_paths(self, paths: list[list[int]]) -> None:
        raise NotImplementedError

    @property
    def prefill_gives_logits(self) -> bool:
        """``prefill`` computes the last token's logits inside the prefill's own pass (this backend: no, it runs a
        second pass, so the engine prefills all but the last token and lets the first step feed it)."""
        return False

    def prefill(self, rows: list[list[int]]) -> torch.Tensor:
        """rows: B lists of new tokens (ragged, may be empty) -> float32 logits [B, V] at each row's last new token
        (zeros for an empty row). Here: a pass without the head, then one over the last tokens."""
        self.extend([r[:-1] for r in rows], need_logits=False)
        logits = self.extend([r[-1:] for r in rows])
        out = torch.zeros(len(rows), self.vocab_size, device=self.device)
        for b, r in enumerate(rows):
            if r:
                out[b] = logits[b, 0]
        return out

    def rollback(self, lengths: list[int]) -> None:
        raise NotImplementedError

    def add_rows(self, n: int) -> None:
        """Append n empty rows (continuous batching: requests join between steps)."""
        self.lengths += [0] * n
        self.features += [None] * n
        self._feature_buf += [None] * n

    def remove_rows(self, keep: list[int]) -> None:
        """Keep only the rows ``keep`` (their order), dropping the others' cache entries."""
        self.lengths = [self.lengths[b] for b in keep]
        self.features = [self.features[b] for b in keep]
        self._feature_buf = [self._feature_buf[b] for b in keep]

    def park(self, b: int, tokens: list[int]) -> None:
        """Row b is about to leave; ``tokens`` is its prompt and output, of which it holds the first ``lengths[b]``
        in its cache: a backend with a prefix cache may keep those for a later row (this one keeps nothing)."""

    def reuse_prefix(self, b: int, tokens: list[int]) -> int:
        """Row b is empty and about to prefill ``tokens`` -> how many of them it now holds from a kept prefix
        (this backend keeps none: 0)."""
        return 0

    def forget_prefixes(self) -> None:
        """Drop every kept prefix (the next ``reset`` starts from an empty cache)."""

    # shared bookkeeping ----------------------------------------------------
    @property
    def record_features(self) -> bool:
        return self._record

    @record_features.setter
    def record_features(self, on: bool) -> None:
        if on and not self.supports_features:
            raise ValueError(
                f"the {self.backend} backend cannot give the target's hidden states (needed by EAGLE heads)"
            )
        self._record = bool(on)

    def reset(self, batch_size: int) -> None:
        self.lengths = [0] * batch_size
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
            size = max(end, 64, 2 * (0 if buf is None else buf.shape[0]))
            grown = torch.empty(size, h.shape[-1], dtype=h.dtype, device=h.device)
            if start:
                grown[:start] = buf[:start]
            buf = self._feature_buf[b] = grown
        buf[start:end] = h
        self.features[b] = buf[:end]

    def cut_features(self, lengths: list[int]) -> None:
        self.features = [f[:length] if f is not None else None for f, length in zip(self.features, lengths)]

    def check_rows(self, n: int) -> None:
        if n != self.batch_size:
            raise ValueError(f"rows must have one list per batch row ({self.batch_size}), got {n}")

    def check_context(self, needed: int) -> None:
        if needed > self.max_length:
            raise ValueError(f"sequence length {needed} exceeds the model's context of {self.max_length} tokens")

    def check_shorter(self, lengths: list[int]) -> None:
        if len(lengths) != self.batch_size or any(new > old for new, old in zip(lengths, self.lengths)):
            raise ValueError(f"rollback can only shorten rows: {lengths} vs {self.lengths}")
