"""Verification algorithms: pure functions on probability tensors.

Chain methods share one signature ``fn(p, q, draft_tokens, rng) -> VerifyResult`` with
p [B, k+1, V], q [B, k, V] or None (one-hot drafts), draft_tokens [B, k] and an explicit
``torch.Generator``. Multi-draft methods work on candidates, sequences or trees. ``METHODS``
(``registry``) lists every method with what it verifies and the children mode it needs.
Nothing here runs a model or touches a cache.
"""

from .chain import block_verify, greedy_verify, tokenwise_verify, typical_verify
from .gumbel import CounterGumbel, gumbel_sample, gumbel_verify
from .multidraft import (
    greedy_tree_verify,
    rho_star,
    rrs_select,
    spectr_select,
    verify_sequences,
    verify_tree,
)
from .registry import METHODS, Method, get_method, resolve
from .types import PAD, TreeVerifyResult, VerifyResult

__all__ = [
    "METHODS",
    "Method",
    "PAD",
    "CounterGumbel",
    "TreeVerifyResult",
    "VerifyResult",
    "block_verify",
    "get_method",
    "greedy_tree_verify",
    "greedy_verify",
    "gumbel_sample",
    "gumbel_verify",
    "resolve",
    "rho_star",
    "rrs_select",
    "spectr_select",
    "tokenwise_verify",
    "typical_verify",
    "verify_sequences",
    "verify_tree",
]
