"""Prompt sets shared by the benches and distillation (data only): the benchmark's 7 task categories
(``tasks``) and the training prompts of ``specdecode distill`` (``training``)."""

from .tasks import CATEGORIES, TASKS
from .training import held_out_prompts, training_prompts

__all__ = ["CATEGORIES", "TASKS", "held_out_prompts", "training_prompts"]
