"""Glue for commands: build a target and a drafter from names, encode prompts.

Not here: the engine loop (``engine.generate``) or model fetching (``models.registry``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .engine import CausalLM, EarlyExitDrafter, ModelDrafter, NoDrafter, PromptLookupDrafter, SpeculativeGenerator
from .engine.drafters import EagleDrafter
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
        d = model_drafter(str(arg), target, tok, sampling, draft_dtype or dtype, model)
    return Setup(target, tok, SpeculativeGenerator(target, d, tok), drafter)


def load_model_draft(path: str, target: CausalLM, tokenizer, dtype: str, target_name: str):
    """A draft for ``model:PATH``: a CausalLM (standalone model) or an EAGLE head (on the target's hidden states)."""
    from pathlib import Path

    from .distill.draft import draft_kind, is_draft_dir

    p = Path(path).expanduser()
    if p.is_dir() and is_draft_dir(p):
        check_draft(path, tokenizer, target.vocab_size, target_name)
        if draft_kind(p) == "eagle":
            from .distill.eagle import load_eagle

            return load_eagle(p, target.model)
    dm = CausalLM(load_model(path, dtype), name=path)
    if dm.vocab_size != target.vocab_size:
        raise ValueError(f"drafter {path!r} has vocabulary size {dm.vocab_size} but the target {target_name!r} has "
                         f"{target.vocab_size}: a drafter must share the target's tokenizer")
    return dm


def drafter_for(draft, target: CausalLM, sampling: SamplingConfig, name: str):
    """A drafter object for what ``load_model_draft`` returned."""
    if isinstance(draft, CausalLM):
        return ModelDrafter(draft, sampling, name=name)
    return EagleDrafter(target, draft, sampling, name=name)


def tree_drafter_for(draft, target: CausalLM, sampling: SamplingConfig, shape, mode: str):
    """A tree drafter for what ``load_model_draft`` returned (or an early-exit CausalLM)."""
    from .engine.tree import EagleTreeDrafter, TreeDrafter

    if isinstance(draft, CausalLM):
        return TreeDrafter(draft, sampling, shape, mode)
    return EagleTreeDrafter(target, draft, sampling, shape, mode)


def model_drafter(path: str, target: CausalLM, tokenizer, sampling: SamplingConfig, dtype: str, target_name: str):
    return drafter_for(load_model_draft(path, target, tokenizer, dtype, target_name), target, sampling, f"model:{path}")


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
