"""Drafters (proposers): every step, a draft tree per row (a chain is a tree with one path) with the q
its children were drawn from. One protocol (``engine.drafts.Drafter``); they never verify."""

from ..drafts import NoDrafter
from .eagle import EagleCache, EagleDrafter
from .early_exit import EarlyExitDrafter
from .lookup import PromptLookupDrafter, ngram_continuations
from .model import ModelDrafter
from .suffix import SuffixDrafter

__all__ = [
    "EagleCache",
    "EagleDrafter",
    "EarlyExitDrafter",
    "ModelDrafter",
    "NoDrafter",
    "PromptLookupDrafter",
    "SuffixDrafter",
    "ngram_continuations",
]
