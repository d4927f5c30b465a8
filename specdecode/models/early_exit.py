"""Early-exit self-drafts: the target's first n layers + its final norm and head (kept in the engine, where the
early-exit drafter lives; re-exported here for model code).

Not here: drafting (``engine.drafters.EarlyExitDrafter``).
"""

from ..engine.drafters.early_exit import early_exit_model

__all__ = ["early_exit_model"]
