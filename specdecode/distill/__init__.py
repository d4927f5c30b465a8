"""Distillation: train a small draft (a shallow model or an EAGLE head) on the target's own generations.
Not here: the draft architectures (``models.drafts``, ``models.eagle``) or drafting (``engine``)."""

from ..models.drafts import (
    DraftShape,
    ReducedHead,
    build_draft,
    check_compatible,
    is_draft_dir,
    load_draft,
    save_draft,
    vocab_fingerprint,
)
from .config import DistillConfig, DistillResult
from .train import default_out, distill, snapshot_dir

__all__ = [
    "DistillConfig",
    "DistillResult",
    "DraftShape",
    "ReducedHead",
    "build_draft",
    "check_compatible",
    "default_out",
    "distill",
    "is_draft_dir",
    "load_draft",
    "save_draft",
    "snapshot_dir",
    "vocab_fingerprint",
]
