"""Speculative generation on real models: the model wrapper (all cache edits), drafters, the one step loop,
adaptive draft length, statistics. Not here: verification math (``verify``) or model loading (``models``)."""

from .adaptive import AdaptiveK
from .config import K_MAX, GenerationConfig, GenerationOutput
from .drafters import EagleDrafter, EarlyExitDrafter, ModelDrafter, NoDrafter, PromptLookupDrafter
from .drafts import DraftTree, Drafter, TreeShape, prefix_tree
from .lm import CausalLM
from .loop import SpeculativeGenerator
from .sampler import DraftSampler
from .stats import GenerationStats, format_stats

__all__ = ["K_MAX", "AdaptiveK", "CausalLM", "DraftSampler", "DraftTree", "Drafter", "EagleDrafter", "EarlyExitDrafter",
           "GenerationConfig", "GenerationOutput", "GenerationStats", "ModelDrafter", "NoDrafter", "PromptLookupDrafter",
           "SpeculativeGenerator", "TreeShape", "format_stats", "prefix_tree"]
