"""An EAGLE-style draft head (Li et al. 2024) on the target's own hidden states.

Input at position j: the target's last hidden state f_j (the input of its head) and the embedding
of token x_{j+1}; ``fc`` maps [f_j; e(x_{j+1})] to the hidden size, one decoder layer (initialised
from the target's last layer) and the target's final norm give a predicted feature f^_{j+1}, and a
reduced-vocabulary head turns it into q(x_{j+2}). Drafting k tokens: the first step uses true
features from the target's cache; later steps feed back the predicted ones.

Saved as a folder with ``eagle.safetensors`` (trainable weights + kept tokens), ``config.json``
(the target's config, for shapes) and ``specdecode_draft.json`` with ``"kind": "eagle"``; the
embeddings are the target's and are not saved. Not here: the drafter loop (``engine.drafters.eagle``),
training (``distill``).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import DynamicCache
from transformers.masking_utils import create_causal_mask

from .drafts import META_FILE, ReducedHead, atomic_folder

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

    def forward(
        self,
        feats: torch.Tensor,
        tokens: torch.Tensor,
        position_ids: torch.Tensor,
        cache=None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """feats [B, T, H] (f_j), tokens [B, T] (x_{j+1}), position_ids [B, T] (j) -> predicted f^_{j+1} [B, T, H]."""
        x = self._fuse(feats, self.embed(tokens))
        mask = create_causal_mask(
            config=self.config, inputs_embeds=x, attention_mask=attention_mask, cache=cache, position_ids=position_ids
        )
        return self._decode(x, mask, self.rotary(x, position_ids=position_ids), position_ids, cache)

    def _fuse(self, feats: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """feats [B, T, H] (f_j), emb [B, T, H] (e(x_{j+1})) -> the layer's input [B, T, H]."""
        return self.fc(torch.cat([feats.to(self.fc.weight.dtype), emb], dim=-1))

    def _decode(self, x: torch.Tensor, mask, pe, position_ids: torch.Tensor, cache) -> torch.Tensor:
        """x [B, T, H], position_ids [B, T] -> the normed output of the decoder layer [B, T, H]."""
        h = self.layer(
            x,
            attention_mask=mask,
            position_embeddings=pe,
            position_ids=position_ids,
            cache=cache,
            use_cache=cache is not None,
        )
        return self.norm(h)

    def unrolled(
        self, feats: torch.Tensor, tokens: torch.Tensor, steps: int, attention_mask: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """The predictions of ``steps`` drafting steps at every column at once (training-time test, as in
        HASS / EAGLE-3), for right-padded rows at positions 0..T-1.

        feats [B, T, H] (true f_j), tokens [B, T] (x_{j+1}), attention_mask [B, T] (1 = real) ->
        ``steps`` tensors [B, T, H]; entry s-1 holds step s's f^_{j+1} at column j (meaningful for
        j >= s - 1). Step s at column j feeds back step s-1's prediction at column j - 1 and attends
        as the drafter does (``engine.drafters.EagleDrafter``): to the true-feature pairs of columns
        <= j - s + 1 and to its own chain's pairs at columns j - s + 2 .. j (one per earlier step).
        """
        cache = DynamicCache()
        T = tokens.shape[1]
        pos = torch.arange(T, device=tokens.device)[None].expand(tokens.shape[0], T)
        outs = [self.forward(feats, tokens, pos, cache=cache, attention_mask=attention_mask)]
        if steps == 1:
            return outs
        emb = self.embed(tokens)
        pe = self.rotary(emb, position_ids=pos)
        j = torch.arange(T, device=tokens.device)
        for s in range(2, steps + 1):
            prev = torch.cat([torch.zeros_like(outs[-1][:, :1]), outs[-1][:, :-1]], dim=1)  # f^_j from column j - 1
            x = self._fuse(prev, emb)
            blocks = [j[None, :] <= j[:, None] - s + 1]  # step 1's keys: true features
            blocks += [j[None, :] == j[:, None] - s + u for u in range(2, s + 1)]  # this chain's earlier steps, itself
            allowed = torch.cat(blocks, dim=1)[None, None]  # [1, 1, T, s * T]; every row keeps its own key
            mask = torch.zeros(allowed.shape, dtype=x.dtype, device=x.device).masked_fill(
                ~allowed, torch.finfo(x.dtype).min
            )
            outs.append(self._decode(x, mask, pe, pos, cache))
        return outs

    def trainable_state(self) -> dict:
        return {k: v for k, v in self.state_dict().items() if not k.startswith("embed.")}


def save_eagle(head: EagleHead, path: Path, tokenizer, meta: dict) -> Path:
    with atomic_folder(path) as tmp:
        save_file({k: v.detach().contiguous() for k, v in head.trainable_state().items()}, str(tmp / EAGLE_FILE))
        head.config.save_pretrained(tmp)
        if hasattr(tokenizer, "save_pretrained"):
            tokenizer.save_pretrained(tmp)
        (tmp / META_FILE).write_text(json.dumps({**meta, "kind": "eagle"}, indent=2) + "\n")
    return Path(path)


def load_eagle(path: Path, target: torch.nn.Module) -> EagleHead:
    """The EAGLE head in ``path`` on top of ``target`` (its embeddings are shared)."""
    path = Path(path)
    try:
        state = load_file(str(path / EAGLE_FILE))
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"could not load the EAGLE head in {path}: {exc}") from None
    kept = state["head.kept"]
    head = EagleHead(target, kept)
    dtype = next(target.parameters()).dtype
    missing, unexpected = head.load_state_dict(
        {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}, strict=False
    )
    if unexpected or [m for m in missing if not m.startswith("embed.")]:
        raise ValueError(
            f"the EAGLE head in {path} does not fit the target (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return head.eval()
