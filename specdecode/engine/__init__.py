"""Speculative generation on real models: the backends (each owns every edit of its cache: ``lm`` for Hugging
Face / torch, ``llama_cpp`` for llama.cpp), drafters, the one step loop, the running batch (``Session``, the
one way in), adaptive draft length, pass costs, statistics. Not here: verification math (``verify``) or model
loading (``models``)."""

from .adaptive import AdaptiveK
from .config import K_MAX, GenerationConfig, GenerationOutput, Refusal
from .constraint import Constraint
from .costs import CostBook, CostTable
from .drafters import EagleDrafter, EarlyExitDrafter, ModelDrafter, NoDrafter, PromptLookupDrafter, SuffixDrafter
from .drafts import Drafter, DraftTree, TreeShape, prefix_tree
from .lm import CausalLM
from .loop import SpeculativeGenerator
from .policy import RowPolicy
from .sampler import DraftSampler
from .session import Request, Session
from .stats import GenerationStats, format_stats

__all__ = [
    "K_MAX",
    "AdaptiveK",
    "CausalLM",
    "Constraint",
    "CostBook",
    "CostTable",
    "DraftSampler",
    "DraftTree",
    "Drafter",
    "EagleDrafter",
    "EarlyExitDrafter",
    "GenerationConfig",
    "GenerationOutput",
    "GenerationStats",
    "ModelDrafter",
    "NoDrafter",
    "PromptLookupDrafter",
    "SuffixDrafter",
    "Refusal",
    "Request",
    "RowPolicy",
    "Session",
    "SpeculativeGenerator",
    "TreeShape",
    "format_stats",
    "prefix_tree",
]
