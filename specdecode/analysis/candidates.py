"""Seed 003's ``get_k_candidates``: K i.i.d. draft sequences of length k from a draft model.

Not here: verifying them (``verify.verify_sequences``) or the engine loop.
"""

from __future__ import annotations

import torch

from ..core.rng import TorchRNG
from ..core.sampling import SamplingConfig
from ..engine import CausalLM, DraftSampler, ModelDrafter, TreeShape


def get_k_candidates(
    lm: CausalLM, seq: list[int], k: int, K: int, cfg: SamplingConfig, generator: torch.Generator
) -> tuple[list[list[int]], list[torch.Tensor]]:
    """Returns (candidate_ids_list: K lists of k tokens, candidate_probs_list: K tensors [k, V], the warped q each
    token was drawn from). Drawn as a static tree K,1,...,1 in one draft forward per depth (duplicates kept: they
    are separate i.i.d. drafts). At temperature 0 the K drafts are all the same greedy chain (seed 003's
    observation); greedy trees use the distinct top-m tokens instead."""
    if K < 1 or k < 1:
        raise ValueError(f"K (number of drafts) and k (draft length) must be >= 1, got K={K}, k={k}")
    drafter = ModelDrafter(lm, TreeShape(branching=(K,) + (1,) * (k - 1)))
    drafter.begin([seq])
    sampler = DraftSampler(cfg, "iid", TorchRNG(generator))
    tree = drafter.propose([seq], [k], sampler)[0]
    drafter.observe([[0]])
    kids = tree.children()
    q = tree.q_matrix(torch.float32) if tree.q is not None else None
    ids, probs = [], []
    for first in kids[0]:
        chain, qs, node, parent = [], [], first, 0
        while True:
            chain.append(tree.tokens[node])
            qs.append(
                q[parent]
                if q is not None
                else torch.nn.functional.one_hot(torch.tensor(tree.tokens[node]), lm.vocab_size).float()
            )
            if not kids[node]:
                break
            parent, node = node, kids[node][0]
        ids.append(chain)
        probs.append(torch.stack(qs))
    return ids, probs
