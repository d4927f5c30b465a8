"""Speculative generation on real models: model wrapper, drafters, engine loop, statistics."""

from .drafters import EarlyExitDrafter, ModelDrafter, NoDrafter, PromptLookupDrafter, Proposal
from .generate import METHODS, AdaptiveK, GenerationConfig, GenerationOutput, SpeculativeGenerator
from .lm import CausalLM
from .stats import GenerationStats, format_stats

__all__ = ["METHODS", "AdaptiveK", "CausalLM", "EarlyExitDrafter", "GenerationConfig", "GenerationOutput",
           "GenerationStats", "ModelDrafter", "NoDrafter", "PromptLookupDrafter", "Proposal", "SpeculativeGenerator",
           "format_stats"]
