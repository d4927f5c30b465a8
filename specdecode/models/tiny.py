"""Tiny random Llamas for tests and quick runs (``tiny-llama[:seed]`` in the registry): built from a seed
with an explicit ``torch.Generator``, so two builds are identical. Nothing is downloaded."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def tiny_llama(seed: int = 0, vocab_size: int = 96, layers: int = 2) -> LlamaForCausalLM:
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for prm in model.parameters():
            prm.copy_(
                torch.randn(prm.shape, generator=g) * (0.15 if prm.dim() >= 2 else 0.0)
                + (1.0 if prm.dim() == 1 else 0.0)
            )
    return model.eval()
