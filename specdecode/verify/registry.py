"""The one registry of verification methods. Adding a method is adding one entry to ``METHODS``.

Each entry names the function that verifies one draft chain per row (batched) and/or one draft tree,
how a drafter must draw the children of a tree node for the method to stay exact (``children``), what
randomness it takes, and whether it is exact. The engine reads everything from here: which methods
exist, which verify trees, which children mode a drafter must use; the CLI lists the names.

Children modes: ``"sample"`` one child per node drawn from q (chains), ``"iid"`` i.i.d. from q (SpecTr
K-SEQ, recursive rejection), ``"wor"`` without replacement (RRS-wor), ``"topm"`` the distinct top-m
tokens (greedy: at T = 0 i.i.d. drafts would all be the same token).

Not here: the algorithms (``chain``, ``multidraft``, ``gumbel``) or how the engine batches rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from .chain import block_verify, greedy_verify, tokenwise_verify, typical_verify
from .gumbel import gumbel_verify
from .multidraft import greedy_tree_verify, verify_tree
from .sparse import tokenwise_sparse

CHILDREN_MODES = ("sample", "iid", "wor", "topm")


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    # chain(p [B, k+1, V], q [B, k, V] | None, drafts [B, k], rng_or_noise, validate=False) -> VerifyResult
    chain: Callable | None = None
    # tree(p [N, V], q [N, V] | None, parents [N], tokens [N], rng, validate=False) -> TreeVerifyResult
    tree: Callable | None = None
    children: str = "sample"  # how a drafter draws children for this method (CHILDREN_MODES)
    exact: bool = True
    noise: bool = False  # takes Gumbel noise at absolute positions instead of a generator
    greedy: bool = False  # an argmax rule on logits (T = 0); needs no probabilities
    # sparse_chain(dists, drafts, rng) -> (accepted, tokens): one row, one-hot q, p as (probs, ids) per position
    sparse_chain: Callable | None = None

    @property
    def verifies_trees(self) -> bool:
        return self.tree is not None


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method(
            "tokenwise",
            "token-wise rejection sampling with a bonus token",
            chain=tokenwise_verify,
            sparse_chain=tokenwise_sparse,
        ),
        Method("block", "block verification (Sun et al. 2024): never fewer tokens than token-wise", chain=block_verify),
        Method(
            "greedy",
            "greedy exact match (T = 0); trees: the longest argmax path",
            chain=greedy_verify,
            tree=greedy_tree_verify,
            children="topm",
            greedy=True,
        ),
        Method("gumbel", "Gumbel-coupled: seeded speculative == seeded plain", chain=gumbel_verify, noise=True),
        Method("typical", "Medusa typical acceptance (LOSSY, opt-in)", chain=typical_verify, exact=False),
        Method(
            "spectr",
            "SpecTr K-SEQ with rho* over i.i.d. children",
            tree=partial(verify_tree, method="spectr"),
            children="iid",
        ),
        Method(
            "rrs",
            "recursive rejection sampling over i.i.d. children",
            tree=partial(verify_tree, method="rrs"),
            children="iid",
        ),
        Method(
            "rrs-wor",
            "recursive rejection sampling over children drawn without replacement",
            tree=partial(verify_tree, method="rrs-wor"),
            children="wor",
        ),
    ]
}

DEFAULT_CHAIN = "tokenwise"
DEFAULT_TREE = "spectr"


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {name!r}")
    return METHODS[name]


def resolve(name: str | None, greedy: bool, branching: bool) -> Method:
    """The method that runs for a requested ``name`` (None: tokenwise for chains, spectr for trees), the
    sampling (``greedy``: T = 0) and a drafter that may propose several children per node (``branching``).
    At T = 0 every method but gumbel verifies greedily. A chain-only method with a branching drafter is refused."""
    method = get_method(name or (DEFAULT_TREE if branching else DEFAULT_CHAIN))
    if method.greedy and not greedy:
        raise ValueError(
            "method 'greedy' is plain greedy decoding: it needs temperature 0 (every method verifies "
            "greedily at temperature 0)"
        )
    if greedy and not method.noise:
        method = METHODS["greedy"]
    if branching and not method.verifies_trees:
        trees = ", ".join(m.name for m in METHODS.values() if m.verifies_trees and not m.greedy)
        raise ValueError(
            f"method {method.name!r} verifies one draft chain per row, but the drafter proposes trees: "
            f"use one of {trees}"
        )
    return method
