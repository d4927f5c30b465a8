"""Where models and trained drafts are cached: ``$SPECDECODE_CACHE`` (default ``~/.cache/specdecode``)."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "SPECDECODE_CACHE"


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "specdecode")


def default_draft_dir(model: str, arch: str = "eagle", layers: int = 2, head_tokens: int = 8192) -> Path:
    """Where ``specdecode distill`` saves a draft by default (and where the benches look for one)."""
    name = model.rstrip("/").split("/")[-1]
    return (
        cache_dir()
        / "drafts"
        / (f"{name}-eagle-V{head_tokens}" if arch == "eagle" else f"{name}-L{layers}-V{head_tokens}")
    )
