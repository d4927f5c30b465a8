"""Tokenizers for registry models and the one chat-template encoder every command uses.

Not here: models (``registry``).
"""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer

from .registry import SMOLLM2, smollm2_dir


class ByteTokenizer:
    """Tokenizer for the toy and tiny models: bytes -> ids (mod vocab). No chat template, no specials."""

    chat_template = None

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size
        self.eos_token_id = None

    def encode(self, text: str) -> list[int]:
        return [b % self.vocab_size for b in text.encode("utf-8")] or [0]

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """Ids past the 256 bytes (in vocabularies larger than 256) are special tokens: no text."""
        return bytes(int(i) for i in ids if int(i) < 256).decode("utf-8", errors="replace")


def load_tokenizer(name: str, model=None):
    """The tokenizer of a registry model or a local folder; a ``ByteTokenizer`` for models without one."""
    if name == SMOLLM2:
        return AutoTokenizer.from_pretrained(str(smollm2_dir()))
    path = Path(name).expanduser()
    if path.is_dir() and (path / "tokenizer_config.json").exists():
        return AutoTokenizer.from_pretrained(str(path))
    vocab = getattr(getattr(model, "config", None), "vocab_size", None) or getattr(model, "vocab_size", 256)
    return ByteTokenizer(int(vocab))


def gguf_tokenizer(name: str, path: str, vocab_size: int):
    """The tokenizer for a model run by llama.cpp: the registry's own for its names (the same as on the Hugging
    Face backend), else the one stored in the GGUF file."""
    if name == SMOLLM2 or name.startswith("tiny-llama"):
        return load_tokenizer(name) if name == SMOLLM2 else ByteTokenizer(vocab_size)
    p = Path(path)
    try:
        return AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)
    except Exception as exc:  # noqa: BLE001 - any failure means the file has no usable tokenizer
        raise ValueError(f"could not read a tokenizer from {p} ({type(exc).__name__}: {str(exc)[:120]})") from None


def encode_chat(tokenizer, prompt: str | list[dict], chat: bool = True) -> list[int]:
    """A prompt (text, or chat messages [{"role", "content"}, ...]) -> token ids, wrapped in the tokenizer's
    chat template with the assistant's turn opened when it has one and ``chat`` is set; otherwise the plain
    encoding (messages joined by spaces)."""
    messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    if not any(str(m.get("content", "")).strip() for m in messages):
        raise ValueError("the prompt is empty")
    if chat and getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "input_ids") else ids)
    text = prompt if isinstance(prompt, str) else " ".join(m["content"] for m in messages)
    return list(tokenizer.encode(text))


def eos_ids(tokenizer) -> tuple:
    eos = getattr(tokenizer, "eos_token_id", None)
    return () if eos is None else (int(eos),)
