"""Early-exit self-drafts: the target's first n layers + its final norm and head, sharing its weights.

Not here: drafting on the target's own cache (``engine.drafters.EarlyExitDrafter``).
"""

from __future__ import annotations

import copy

import torch


def early_exit_model(model, n_layers: int):
    """A Llama-family model made of the first n_layers of ``model`` + its final norm and head, sharing
    the weights (no copy): an early-exit self-draft that can keep its own KV cache (trees, chains)."""
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "layers"):
        raise ValueError("early exit needs a decoder-only Hugging Face model with model.layers")
    total = len(inner.layers)
    if not 1 <= n_layers < total:
        raise ValueError(f"early-exit layers must be in [1, {total - 1}], got {n_layers}")
    cfg = copy.deepcopy(model.config)
    cfg.num_hidden_layers = n_layers
    if getattr(cfg, "layer_types", None):
        cfg.layer_types = cfg.layer_types[:n_layers]
    with torch.device("meta"):
        draft = type(model)(cfg)
    draft.model.embed_tokens = inner.embed_tokens
    draft.model.layers = torch.nn.ModuleList(list(inner.layers[:n_layers]))
    draft.model.norm = inner.norm
    draft.model.rotary_emb = inner.rotary_emb
    draft.lm_head = model.lm_head
    return draft.eval()
