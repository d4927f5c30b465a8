"""The trained draft: a shallow Llama that shares the target's (frozen) token embeddings and has a
reduced-vocabulary head.

On CPU the full 49152-row head costs as much as several decoder layers, so the draft keeps only
the N most frequent tokens of the target's own generations in its head. Its logits are -inf for
every other token, so q = 0 there: verification stays exact (those tokens can still be emitted as
recovered tokens from the residual), the draft simply never proposes them.

A saved draft is a normal Hugging Face Llama folder (tied embeddings, so it also loads without
specdecode, with a full-vocabulary head) plus ``reduced_head.safetensors`` and
``specdecode_draft.json`` (target name, vocabulary fingerprint, training summary).
``load_draft`` puts the reduced head back. Not here: data, training (``distill``).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

META_FILE = "specdecode_draft.json"
HEAD_FILE = "reduced_head.safetensors"


class ReducedHead(torch.nn.Module):
    """hidden [..., H] -> logits [..., V] over the full vocabulary, -inf outside ``kept``."""

    def __init__(self, weight: torch.Tensor, kept: torch.Tensor, vocab_size: int):
        # weight: [N, H] rows of the head for the kept tokens; kept: [N] token ids (long)
        super().__init__()
        if weight.shape[0] != kept.shape[0]:
            raise ValueError(f"head has {weight.shape[0]} rows but {kept.shape[0]} kept tokens")
        self.weight = torch.nn.Parameter(weight)
        self.register_buffer("kept", kept.long())
        self.vocab_size = int(vocab_size)

    def small_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [..., H] -> logits over the kept tokens only [..., N] (training)."""
        return hidden @ self.weight.T

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        small = self.small_logits(hidden)
        out = small.new_full((*small.shape[:-1], self.vocab_size), float("-inf"))
        out[..., self.kept] = small
        return out


@dataclass(frozen=True)
class DraftShape:
    layers: int = 2
    head_tokens: int = 8192  # 0 = the full vocabulary

    def __post_init__(self):
        if self.layers < 1:
            raise ValueError(f"--layers must be >= 1, got {self.layers}")
        if self.head_tokens < 0:
            raise ValueError(f"--head-tokens must be >= 0 (0 = full vocabulary), got {self.head_tokens}")


def vocab_fingerprint(tokenizer, vocab_size: int) -> str:
    """A short hash of the tokenizer's vocabulary (token -> id), to refuse a draft made for another target."""
    get_vocab = getattr(tokenizer, "get_vocab", None)
    if get_vocab is None:
        text = f"bytes:{vocab_size}"
    else:
        text = json.dumps(sorted(get_vocab().items(), key=lambda kv: kv[1]), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def kept_tokens(counts: torch.Tensor, n: int, always: tuple = ()) -> torch.Tensor:
    """counts [V] (teacher probability mass per token) -> the n tokens with most mass (+ always), sorted [n]."""
    V = counts.shape[0]
    if n == 0 or n >= V:
        return torch.arange(V)
    top = torch.topk(counts.double(), n).indices.tolist()
    chosen = set(top)
    extra = [int(t) for t in always if int(t) not in chosen]
    keep = top[: n - len(extra)] + extra
    return torch.tensor(sorted(keep), dtype=torch.long)


def build_draft(target: torch.nn.Module, shape: DraftShape, kept: torch.Tensor) -> torch.nn.Module:
    """A new draft from a Llama-family target: its first ``shape.layers`` decoder layers (copied, trainable),
    its final norm (copied), its embeddings (shared, frozen) and a head of the kept rows of its tied head."""
    inner = getattr(target, "model", None)
    if inner is None or not hasattr(inner, "layers"):
        raise ValueError("distillation needs a decoder-only Hugging Face target with model.layers (e.g. Llama)")
    total = len(inner.layers)
    if shape.layers >= total:
        raise ValueError(f"--layers must be below the target's {total} layers, got {shape.layers}")
    cfg = copy.deepcopy(target.config)
    cfg.num_hidden_layers = shape.layers
    cfg.tie_word_embeddings = True
    if getattr(cfg, "layer_types", None):
        cfg.layer_types = cfg.layer_types[: shape.layers]
    draft = type(target)(cfg).to(next(target.parameters()).dtype)
    draft.model.embed_tokens = inner.embed_tokens  # shared and frozen
    for i in range(shape.layers):
        draft.model.layers[i].load_state_dict(inner.layers[i].state_dict())
    draft.model.norm.load_state_dict(inner.norm.state_dict())
    head = target.get_output_embeddings().weight.detach()
    draft.lm_head = ReducedHead(head[kept].clone(), kept, cfg.vocab_size)
    for p in draft.model.embed_tokens.parameters():
        p.requires_grad_(False)
    return draft


def trainable_state(draft) -> dict:
    return {k: v for k, v in draft.state_dict().items() if not k.startswith("model.embed_tokens")}


@contextlib.contextmanager
def atomic_folder(path: Path):
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` (so a crash leaves the old
    folder or nothing, never half a draft)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".save-", dir=path.parent) as tmp:
        folder = Path(tmp) / "draft"
        folder.mkdir()
        yield folder
        if path.exists():
            shutil.rmtree(path)
        os.replace(folder, path)


def save_draft(draft, path: Path, tokenizer, meta: dict) -> Path:
    """Write the draft as a Hugging Face folder + reduced head + metadata (atomic: temp folder, rename)."""
    head: ReducedHead = draft.lm_head
    with atomic_folder(path) as tmp:
        draft.lm_head = torch.nn.Linear(head.weight.shape[1], head.vocab_size, bias=False)
        try:
            draft.tie_weights()
            draft.save_pretrained(tmp)
        finally:
            draft.lm_head = head
        save_file({"weight": head.weight.detach().contiguous(), "kept": head.kept.contiguous()}, str(tmp / HEAD_FILE))
        if hasattr(tokenizer, "save_pretrained"):
            tokenizer.save_pretrained(tmp)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return Path(path)


def is_draft_dir(path: Path) -> bool:
    return (Path(path) / META_FILE).exists()


def draft_kind(path: Path) -> str:
    """'shallow' (a standalone small model) or 'eagle' (a head on the target's hidden states)."""
    return read_meta(path).get("kind", "shallow")


def read_meta(path: Path) -> dict:
    try:
        return json.loads((Path(path) / META_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}/{META_FILE} is unreadable ({exc})") from None


def load_draft(path: Path, dtype: torch.dtype) -> torch.nn.Module:
    """A saved draft with its reduced head back in place (eval mode)."""
    path = Path(path)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
        head = load_file(str(path / HEAD_FILE))
    except Exception as exc:  # noqa: BLE001 - any loader failure means a bad folder
        raise ValueError(f"could not load the trained draft in {path}: {exc}") from None
    model.lm_head = ReducedHead(head["weight"].to(dtype), head["kept"], model.config.vocab_size)
    return model.eval()


def check_compatible(path: Path, tokenizer, vocab_size: int, target_name: str) -> None:
    """Raise if the draft in ``path`` was trained for a target with another vocabulary."""
    meta = read_meta(path)
    want = vocab_fingerprint(tokenizer, vocab_size)
    if meta.get("vocab_fingerprint") != want:
        raise ValueError(
            f"the draft in {path} was trained for {meta.get('target', '?')!r}, whose vocabulary differs from "
            f"the target {target_name!r}'s (fingerprint {meta.get('vocab_fingerprint')} != {want}): "
            f"train a draft for this target with `specdecode distill --model {target_name}`"
        )
