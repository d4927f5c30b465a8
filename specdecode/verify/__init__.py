"""Verification algorithms: pure functions on probability tensors.

Chain methods share one signature ``fn(p, q, draft_tokens, rng) -> VerifyResult`` with
p [B, k+1, V], q [B, k, V] or None (one-hot drafts), draft_tokens [B, k] and an explicit
``torch.Generator``. Multi-draft methods work on candidates, sequences or trees.
"""

from .chain import block_verify, greedy_verify, tokenwise_verify, typical_verify
from .gumbel import CounterGumbel, gumbel_sample, gumbel_verify
from .multidraft import (
    rho_star,
    rrs_select,
    spectr_select,
    verify_sequences,
    verify_tree,
)
from .types import PAD, TreeVerifyResult, VerifyResult

CHAIN_METHODS = {
    "tokenwise": tokenwise_verify,
    "greedy": greedy_verify,
    "block": block_verify,
    "typical": typical_verify,  # LOSSY
}
LOSSY_METHODS = frozenset({"typical"})

__all__ = [
    "CHAIN_METHODS", "LOSSY_METHODS", "PAD", "CounterGumbel", "TreeVerifyResult", "VerifyResult",
    "block_verify", "greedy_verify", "gumbel_sample", "gumbel_verify", "rho_star", "rrs_select",
    "spectr_select", "tokenwise_verify", "typical_verify", "verify_sequences", "verify_tree",
]
