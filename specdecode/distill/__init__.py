"""Distillation of a small draft for a target (``specdecode distill``): data from the target's own
generations, a shallow draft sharing the target's embeddings with a reduced-vocabulary head, training
with checkpoints. Not here: speculative decoding itself (``engine``)."""

from .draft import DraftShape, ReducedHead, build_draft, check_compatible, is_draft_dir, load_draft, save_draft, vocab_fingerprint
from .train import DistillConfig, DistillResult, distill

__all__ = ["DraftShape", "ReducedHead", "build_draft", "check_compatible", "is_draft_dir", "load_draft", "save_draft",
           "vocab_fingerprint", "DistillConfig", "DistillResult", "distill"]
