"""An EAGLE-style draft head (Li et al. 2024) on the target's own hidden states.

Input at position j: the target's last hidden state f_j (the input of its head) and the embedding
of token x_{j+1}; ``fc`` maps [f_j; e(x_{j+1})] to the hidden size, one decoder layer (initialised
from the target's last layer) and the target's final norm give a predicted feature f^_{j+1}, and a
reduced-vocabulary head turns it into q(x_{j+2}). Drafting k tokens: the first step uses true
features from the target's cache; later steps feed back the predicted ones.

Saved as a folder with ``eagle.safetensors`` (trainable weights + kept tokens), ``config.json``
(the target's config, for shapes) and ``specdecode_draft.json`` with ``"kind": "eagle"``; the
embeddings are the target's and are not saved. Not here: the drafter loop (``engine.drafters``).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from .draft import META_FILE, ReducedHead

EAGLE_FILE = "eagle.safetensors"


class EagleHead(torch.nn.Module):
    def __init__(self, target: torch.nn.Module, kept: torch.Tensor):
        super().__init__()
        inner = getattr(target, "model", None)
        if inner is None or not hasattr(inner, "layers"):
            raise ValueError("an EAGLE head needs a decoder-only Hugging Face target with model.layers (e.g. Llama)")
        cfg = copy.deepcopy(target.config)
        cfg.num_hidden_layers = 1
        if getattr(cfg, "layer_types", None):
            cfg.layer_types = cfg.layer_types[:1]
        self.config = cfg
        H = cfg.hidden_size
        dtype = next(target.parameters()).dtype
        self.embed = inner.embed_tokens  # shared with the target, frozen
        self.fc = torch.nn.Linear(2 * H, H, bias=True, dtype=dtype)
        with torch.no_grad():  # start as "take the token embedding": the layer sees a familiar input
            self.fc.weight.zero_()
            self.fc.weight[:, H:] = torch.eye(H, dtype=dtype)
            self.fc.weight[:, :H] = 0.5 * torch.eye(H, dtype=dtype)
            self.fc.bias.zero_()
        layer_cls = type(inner.layers[-1])
        self.layer = layer_cls(cfg, layer_idx=0).to(dtype)
        self.layer.load_state_dict(inner.layers[-1].state_dict())
        self.norm = copy.deepcopy(inner.norm)
        self.rotary = copy.deepcopy(inner.rotary_emb)
        head = target.get_output_embeddings().weight.detach()
        self.head = ReducedHead(head[kept].clone(), kept, cfg.vocab_size)
        for p in self.embed.parameters():
            p.requires_grad_(False)

    def forward(self, feats: torch.Tensor, tokens: torch.Tensor, position_ids: torch.Tensor,
                cache=None, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """feats [B, T, H] (f_j), tokens [B, T] (x_{j+1}), position_ids [B, T] (j) -> predicted f^_{j+1} [B, T, H]."""
        from transformers.masking_utils import create_causal_mask

        x = self.fc(torch.cat([feats.to(self.fc.weight.dtype), self.embed(tokens)], dim=-1))
        mask = create_causal_mask(config=self.config, inputs_embeds=x, attention_mask=attention_mask,
                                  past_key_values=cache, position_ids=position_ids)
        pe = self.rotary(x, position_ids=position_ids)
        h = self.layer(x, attention_mask=mask, position_embeddings=pe, position_ids=position_ids,
                       past_key_values=cache, use_cache=cache is not None)
        return self.norm(h)

    def trainable_state(self) -> dict:
        return {k: v for k, v in self.state_dict().items() if not k.startswith("embed.")}


def save_eagle(head: EagleHead, path: Path, tokenizer, meta: dict) -> Path:
    import os
    import shutil
    import tempfile

    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".save-", dir=path.parent) as tmp:
        tmp = Path(tmp) / "draft"
        tmp.mkdir()
        save_file({k: v.detach().contiguous() for k, v in head.trainable_state().items()}, str(tmp / EAGLE_FILE))
        head.config.save_pretrained(tmp)
        if hasattr(tokenizer, "save_pretrained"):
            tokenizer.save_pretrained(tmp)
        (tmp / META_FILE).write_text(json.dumps({**meta, "kind": "eagle"}, indent=2) + "\n")
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    return path


def load_eagle(path: Path, target: torch.nn.Module) -> EagleHead:
    """The EAGLE head in ``path`` on top of ``target`` (its embeddings are shared)."""
    from safetensors.torch import load_file

    path = Path(path)
    try:
        state = load_file(str(path / EAGLE_FILE))
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"could not load the EAGLE head in {path}: {exc}")
    kept = state["head.kept"]
    head = EagleHead(target, kept)
    dtype = next(target.parameters()).dtype
    missing, unexpected = head.load_state_dict({k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()},
                                               strict=False)
    if unexpected or [m for m in missing if not m.startswith("embed.")]:
        raise ValueError(f"the EAGLE head in {path} does not fit the target (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return head.eval()



