"""Early-exit self-drafts: the target's first n layers + its final norm and head, sharing its weights, run as a
draft model with a cache of its own. Early exit is this drafter's capability; the backend interface knows
nothing of it.

Not here: the growth loop and cache catch-up every model drafter shares (``model``, ``grow``).
"""

from __future__ import annotations

import copy

import torch

from ..lm import CausalLM
from .model import ModelDrafter


class EarlyExitDrafter(ModelDrafter):
    """Self-draft: the target's first ``n_layers`` layers + final norm + head (chains, or trees with ``shape``),
    on a cache of their own that catches up on the verified tokens each step like any draft model's."""

    def __init__(self, target: CausalLM, n_layers: int, shape=None):
        if not (isinstance(target, CausalLM) and target.is_hf):
            raise ValueError(f"early-exit drafting needs the Hugging Face backend, not {target.backend}")
        if not 1 <= n_layers < target.num_layers:
            raise ValueError(f"early-exit layers must be in [1, {target.num_layers - 1}], got {n_layers}")
        lm = CausalLM(early_exit_model(target.model, n_layers), name=f"{target.name}-early-exit:{n_layers}")
        super().__init__(lm, shape, name=f"early-exit:{n_layers}")
        self.n_layers = n_layers


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
