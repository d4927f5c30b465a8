"""The seed 001 toy transformer (draft and target), kept as a tiny, fast model family.

Same constructor and forward as the notebook's ``SimpleLanguageModel`` (learned position
embeddings, ``nn.TransformerEncoder`` with a causal mask, no KV cache); built from a seed
with an explicit ``torch.Generator`` so two builds are identical. Dropout is off in eval.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class SimpleLanguageModel(nn.Module):
    def __init__(self, vocab_size: int, d_model: int, n_layers: int, n_heads: int, max_seq_len: int = 512):
        super().__init__()
        self.vocab_size, self.d_model, self.max_seq_len = vocab_size, d_model, max_seq_len
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.position_embedding = nn.Embedding(max_seq_len, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model=d_model, nhead=n_heads, dim_feedforward=d_model * 4, dropout=0.1, batch_first=True
        )
        self.transformer = nn.TransformerEncoder(layer, num_layers=n_layers, enable_nested_tensor=False)
        self.output_projection = nn.Linear(d_model, vocab_size)

    def init_weights(self, generator: torch.Generator) -> SimpleLanguageModel:
        with torch.no_grad():
            for name, prm in self.named_parameters():
                if prm.dim() >= 2:
                    prm.copy_(torch.randn(prm.shape, generator=generator) * 0.02 * (25 if "embedding" in name else 1))
                elif "bias" in name:
                    prm.zero_()
        return self

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids: [B, T] -> logits [B, T, V]."""
        B, T = input_ids.shape
        pos = torch.arange(T, device=input_ids.device)[None].expand(B, T)
        h = self.token_embedding(input_ids) + self.position_embedding(pos)
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool, device=input_ids.device), diagonal=1)
        return self.output_projection(self.transformer(h, mask=mask))


def toy_pair(vocab_size: int = 1000, seed: int = 42) -> tuple[SimpleLanguageModel, SimpleLanguageModel]:
    """(draft, target) as in seed 001: draft d_model 128 x 2 layers, target d_model 256 x 6 layers."""
    g = torch.Generator().manual_seed(seed)
    target = SimpleLanguageModel(vocab_size, 256, 6, 8).init_weights(g).eval()
    draft = SimpleLanguageModel(vocab_size, 128, 2, 4).init_weights(g).eval()
    return draft, target


def similar_draft(
    target: SimpleLanguageModel, similarity: float, n_layers: int | None = None, seed: int = 0
) -> SimpleLanguageModel:
    """A draft made from ``target`` (seed 001's ``create_similar_model``, done as it intends): the target's first
    ``n_layers`` layers (default a third of them, at least 1) plus its embeddings and output projection, every
    weight matrix mixed with fresh noise of the same scale as ``s * w + sqrt(1 - s^2) * noise``, so each weight's
    correlation with the target's is ``similarity`` and its scale is kept. similarity 1 is the target's own first
    layers (an early exit); 0 is an unrelated random model of the same shape. Norms and biases are copied."""
    if not 0.0 <= similarity <= 1.0:
        raise ValueError(f"similarity must be in [0, 1], got {similarity}")
    layers = len(target.transformer.layers)
    n = n_layers or max(1, layers // 3)
    if not 1 <= n <= layers:
        raise ValueError(f"the draft's layers must be in [1, {layers}], got {n}")
    heads = target.transformer.layers[0].self_attn.num_heads
    draft = SimpleLanguageModel(target.vocab_size, target.d_model, n, heads, target.max_seq_len)
    own = dict(target.named_parameters())
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, prm in draft.named_parameters():
            w = own[name]
            if prm.dim() >= 2:
                noise = torch.randn(prm.shape, generator=g) * 0.02 * (25 if "embedding" in name else 1)
                prm.copy_(similarity * w + (1 - similarity**2) ** 0.5 * noise)
            else:
                prm.copy_(w)
    return draft.eval()


def parse_similar(name: str) -> tuple[float, int | None]:
    """``toy-similar:S[:LAYERS]`` -> (similarity, layers or None)."""
    parts = name.split(":")
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        s = float(parts[1])
        n = int(parts[2]) if len(parts) == 3 else None
    except ValueError:
        raise ValueError(
            f"toy-similar needs toy-similar:S[:LAYERS] with S in [0, 1] and LAYERS in [1, 6], got {name!r}"
        ) from None
    if not 0.0 <= s <= 1.0:
        raise ValueError(f"toy-similar: S must be in [0, 1], got {s}")
    return s, n
