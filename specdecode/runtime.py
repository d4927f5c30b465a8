"""Glue for commands: build a target and a drafter from names, encode prompts.

Not here: the engine loop (``engine.generate``) or model fetching (``models.registry``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .engine import CausalLM, EarlyExitDrafter, ModelDrafter, NoDrafter, PromptLookupDrafter, SpeculativeGenerator
from .models.registry import SMOLLM2, load_model, load_tokenizer, parse_drafter
from .sampling import SamplingConfig


@dataclass
class Setup:
    target: CausalLM
    tokenizer: object
    generator: SpeculativeGenerator
    drafter_name: str


def build(model: str, drafter: str, sampling: SamplingConfig, dtype: str = "fp32", draft_dtype: str | None = None) -> Setup:
    kind, arg = parse_drafter(drafter)  # validate before loading anything
    target = CausalLM(load_model(model, dtype), name=model)
    tok = load_tokenizer(model, target.model)
    if kind == "none":
        d = NoDrafter()
    elif kind == "prompt-lookup":
        d = PromptLookupDrafter()
    elif kind == "early-exit":
        d = EarlyExitDrafter(target, int(arg), sampling)
    else:
        dm = CausalLM(load_model(str(arg), draft_dtype or dtype), name=str(arg))
        if dm.vocab_size != target.vocab_size:
            raise ValueError(f"drafter {arg!r} has vocabulary size {dm.vocab_size} but the target {model!r} has "
                             f"{target.vocab_size}: a drafter must share the target's tokenizer")
        check_draft(str(arg), tok, target.vocab_size, model)
        d = ModelDrafter(dm, sampling)
    return Setup(target, tok, SpeculativeGenerator(target, d, tok), drafter)


def check_draft(path: str, tokenizer, vocab_size: int, target_name: str) -> None:
    """A draft trained by ``specdecode distill`` must have been trained for this target's vocabulary."""
    from pathlib import Path

    from .distill.draft import check_compatible, is_draft_dir

    if Path(path).expanduser().is_dir() and is_draft_dir(Path(path).expanduser()):
        check_compatible(Path(path).expanduser(), tokenizer, vocab_size, target_name)


def encode_prompt(tokenizer, text: str, chat: bool) -> list[int]:
    if not text.strip():
        raise ValueError("the prompt is empty")
    if chat and getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        return list(ids)
    return list(tokenizer.encode(text))


def eos_ids(tokenizer) -> tuple:
    eos = getattr(tokenizer, "eos_token_id", None)
    return () if eos is None else (int(eos),)


DEFAULT_MODEL = SMOLLM2
