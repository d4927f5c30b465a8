"""The one builder from spec strings to objects, used by every command, the benches and the library:
``--model NAME``, ``--drafter SPEC``, ``--tree SPEC`` and ``--dtype``.

Specs are parsed and checked before anything loads (``DrafterSpec``, ``TreeSpec``), so a typo fails
with one clear line. A ``Builder`` loads the target and its tokenizer once and then makes drafters and
generators from specs, loading each draft model once.

Drafters: ``none`` (plain decoding), ``prompt-lookup``, ``suffix`` (prompt, output and a corpus of earlier
outputs shared across the generator's requests), ``early-exit:N`` (the target's first N layers),
``model:NAME`` (a registry model, a local Hugging Face folder, or a draft from ``specdecode distill``:
a small model or an EAGLE head). Trees: ``lookup:M`` (with prompt-lookup: M matches merged),
``static:B1,B2,...`` or ``dynamic:N`` (with a model drafter); with suffix, ``lookup:M`` allows M children a node.

Not here: loading weights (``registry``), the engine loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..engine import (
    CausalLM,
    EagleDrafter,
    EarlyExitDrafter,
    ModelDrafter,
    NoDrafter,
    PromptLookupDrafter,
    SpeculativeGenerator,
    SuffixDrafter,
    TreeShape,
)
from ..engine.constraint import GrammarBook
from ..engine.llama_cpp import LlamaCppLM
from .cache import cache_dir
from .drafts import check_compatible, draft_kind, is_draft_dir
from .eagle import EagleHead, load_eagle
from .gguf import gguf_path
from .registry import SMOLLM2, load_model
from .tokenizers import encode_chat, eos_ids, gguf_tokenizer, load_tokenizer

DEFAULT_MODEL = SMOLLM2
DRAFTER_HELP = "none | prompt-lookup | suffix | early-exit:N | model:NAME"
CORPUS_TOKENS = 65536  # the suffix drafter's shared corpus of earlier outputs, by default


@dataclass(frozen=True)
class DrafterSpec:
    kind: str  # "none" | "prompt-lookup" | "suffix" | "early-exit" | "model"
    arg: str | int | None = None

    @staticmethod
    def parse(spec: str) -> DrafterSpec:
        if spec in ("none", "prompt-lookup", "suffix"):
            return DrafterSpec(spec)
        if spec.startswith("model:") and len(spec) > 6:
            return DrafterSpec("model", spec[6:])
        if spec.startswith("early-exit:"):
            try:
                return DrafterSpec("early-exit", int(spec.split(":", 1)[1]))
            except ValueError:
                pass
        raise ValueError(f"unknown drafter {spec!r}: use {DRAFTER_HELP.replace(' | ', ', ')}")


@dataclass(frozen=True)
class TreeSpec:
    lookup: int = 0  # lookup:M: M prompt-lookup matches merged into a prefix tree
    shape: TreeShape | None = None  # static:... / dynamic:N: grown by a draft model

    @staticmethod
    def parse(spec: str | None) -> TreeSpec | None:
        if not spec:
            return None
        if spec.startswith("lookup:"):
            try:
                m = int(spec.split(":", 1)[1])
            except ValueError:
                m = 0
            if m < 1:
                raise ValueError(f"--tree lookup:M needs a number of matches M >= 1, got {spec!r}")
            return TreeSpec(lookup=m)
        return TreeSpec(shape=TreeShape.parse(spec))


def check_specs(drafter: str, tree: str | None = None) -> tuple[DrafterSpec, TreeSpec | None]:
    """Parse and cross-check a drafter and a tree spec (before any model loads)."""
    d, t = DrafterSpec.parse(drafter), TreeSpec.parse(tree)
    if t is None:
        return d, t
    if (d.kind in ("prompt-lookup", "suffix")) != bool(t.lookup):
        raise ValueError(
            "lookup trees are --drafter prompt-lookup|suffix --tree lookup:M; model drafters take "
            "--tree static:... or dynamic:N"
        )
    if d.kind == "none":
        raise ValueError(
            "--tree needs a drafter: --drafter model:NAME or early-exit:N (static:... / dynamic:N), "
            "or --drafter prompt-lookup (lookup:M)"
        )
    return d, t


BACKENDS = ("hf", "llama.cpp")


def check_device(device: str) -> torch.device:
    """A torch device string -> the device, refused with one clear line when unknown or not present."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}: use cpu, cuda, cuda:N or mps") from None
    present = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not present.get(dev.type, False):
        raise ValueError(f"device {device!r} is not available on this machine")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r} is not available: {torch.cuda.device_count()} CUDA device(s)")
    return dev


def costs_dir() -> Path:
    """Where measured pass costs are kept: one file per backend (its ``cost_key``: model, weights, device, threads)."""
    return cache_dir() / "costs"


class Builder:
    """Loads a target once (on the Hugging Face backend, on any torch device, or on llama.cpp); makes drafters
    and generators from spec strings."""

    def __init__(
        self,
        model: str,
        dtype: str = "fp32",
        draft_dtype: str | None = None,
        *,
        backend: str = "hf",
        device: str = "cpu",
        gguf_format: str | None = None,
        prefix_cache: int = 0,
    ):
        if backend not in BACKENDS:
            raise ValueError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.model_name, self.dtype, self.draft_dtype = model, dtype, draft_dtype or dtype
        self.backend, self.device = backend, check_device(device)
        if backend == "llama.cpp":
            if self.device.type != "cpu":
                raise ValueError("the llama.cpp backend runs on the CPU here: leave --device at cpu")
            self.target = LlamaCppLM(str(gguf_path(model, gguf_format)), name=model, prefix_slots=prefix_cache)
            self.tokenizer = gguf_tokenizer(model, self.target.path, self.target.vocab_size)
        else:
            if model.startswith("gguf:") or model.endswith(".gguf"):
                raise ValueError(f"{model} is a GGUF file: use --backend llama.cpp")
            self.target = CausalLM(load_model(model, dtype).to(self.device), name=model)
            self.tokenizer = load_tokenizer(model, self.target.model)
        self.eos = eos_ids(self.tokenizer)
        self.grammars = GrammarBook(self.tokenizer, self.target.vocab_size)  # shared by this Builder's generators
        self._drafts: dict[str, CausalLM | LlamaCppLM | EagleHead] = {}

    def encode(self, prompt: str | list[dict], chat: bool = True) -> list[int]:
        return encode_chat(self.tokenizer, prompt, chat)

    def generator(
        self, drafter: str = "none", tree: str | None = None, corpus_tokens: int = CORPUS_TOKENS
    ) -> SpeculativeGenerator:
        """A generator on this Builder's one target (pass costs kept in ``costs_dir()``); ``corpus_tokens``: the
        suffix drafter's shared corpus cap (0: every request drafts from its own context only)."""
        return SpeculativeGenerator(
            self.target,
            self.drafter(drafter, tree, corpus_tokens),
            self.tokenizer,
            cost_dir=costs_dir(),
            grammars=self.grammars,
        )

    def drafter(self, spec: str, tree: str | None = None, corpus_tokens: int = CORPUS_TOKENS):
        d, t = check_specs(spec, tree)
        shape = t.shape if t else None
        if d.kind == "none":
            return NoDrafter()
        if d.kind == "prompt-lookup":
            return PromptLookupDrafter(matches=t.lookup if t else 1)
        if d.kind == "suffix":
            return SuffixDrafter(corpus_tokens=corpus_tokens, branches=t.lookup if t else 1)
        if d.kind == "early-exit":
            if self.backend != "hf":
                raise ValueError(
                    f"early-exit drafts need the Hugging Face backend (llama.cpp runs whole models); "
                    f"on {self.backend} use prompt-lookup, model:gguf:PATH or a trained draft"
                )
            return EarlyExitDrafter(self.target, int(d.arg), shape)
        draft = self.draft_model(str(d.arg))
        if isinstance(draft, EagleHead):
            return EagleDrafter(self.target, draft, shape, name=spec)
        return ModelDrafter(draft, shape, name=spec)

    def _eagle(self, path: Path) -> EagleHead:
        """An EAGLE head on this target. On llama.cpp the head takes the token embeddings of the model's Hugging
        Face form; the target gives its hidden states from llama.cpp's embeddings output (the backend remakes
        its context for them when a batch starts), so the Builder keeps its one target."""
        if self.backend == "hf":
            return load_eagle(path, self.target.model)
        try:
            hf = load_model(self.model_name, "fp32")
        except ValueError:
            raise ValueError(
                f"an EAGLE head on llama.cpp needs the Hugging Face form of {self.model_name} for its token embeddings"
            ) from None
        return load_eagle(path, hf)

    def draft_model(self, path: str) -> CausalLM | LlamaCppLM | EagleHead:
        """A draft for ``model:PATH``, loaded once: a standalone model (torch, or llama.cpp for gguf:PATH) or an
        EAGLE head."""
        if path not in self._drafts:
            self._drafts[path] = self._load_draft(path)
        return self._drafts[path]

    def _load_draft(self, path: str) -> CausalLM | LlamaCppLM | EagleHead:
        p = Path(path).expanduser()
        if p.is_dir() and is_draft_dir(p):
            check_compatible(p, self.tokenizer, self.target.vocab_size, self.model_name)
            if draft_kind(p) == "eagle":
                return self._eagle(p)
        if path.startswith("gguf:") or path.endswith(".gguf"):
            dm = LlamaCppLM(str(gguf_path(path)), name=path)
        else:
            dm = CausalLM(load_model(path, self.draft_dtype).to(self.device), name=path)
        if dm.vocab_size != self.target.vocab_size:
            raise ValueError(
                f"drafter {path!r} has vocabulary size {dm.vocab_size} but the target {self.model_name!r} "
                f"has {self.target.vocab_size}: a drafter must share the target's tokenizer"
            )
        return dm
