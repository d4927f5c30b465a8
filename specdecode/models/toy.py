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
        layer = nn.TransformerEncoderLayer(d_model=d_model, nhead=n_heads, dim_feedforward=d_model * 4, dropout=0.1, batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, num_layers=n_layers, enable_nested_tensor=False)
        self.output_projection = nn.Linear(d_model, vocab_size)

    def init_weights(self, generator: torch.Generator) -> "SimpleLanguageModel":
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
