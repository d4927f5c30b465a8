"""Sampling utilities: the *warped* distributions that both target and draft must use.

``logits_to_probs`` applies temperature, top-k, top-p and min-p (in that order, as
Hugging Face does) and returns the distribution a token is actually sampled from. The
speculative identity only holds if the verifier uses the same warped p' and q' that
the target and drafter sample from. Temperature 0 means greedy: the warped
distribution is one-hot on the argmax (lowest index on ties).

This module does not sample with global state: ``sample`` takes an explicit RNG.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch

from .rng import TorchRNG, as_rng
from .validation import check_int, check_logits, check_probs
from .warpers import sparse_rows


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None

    def __post_init__(self):
        t = _real("temperature", self.temperature, "a finite number >= 0 (0 = greedy)")
        if not (math.isfinite(t) and t >= 0):
            raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {self.temperature!r}")
        object.__setattr__(self, "temperature", t)
        if self.top_k is not None:
            check_int("top_k", self.top_k, 1)
        if self.top_p is not None:
            p = _real("top_p", self.top_p, "in (0, 1]")
            if not 0 < p <= 1:
                raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
            object.__setattr__(self, "top_p", p)
        if self.min_p is not None:
            m = _real("min_p", self.min_p, "in [0, 1]")
            if not 0 <= m <= 1:
                raise ValueError(f"min_p must be in [0, 1], got {self.min_p!r}")
            object.__setattr__(self, "min_p", m)

    @property
    def is_greedy(self) -> bool:
        return self.temperature == 0

    def describe(self) -> str:
        parts = [f"T={self.temperature:g}"]
        if self.top_k is not None:
            parts.append(f"top_k={self.top_k}")
        if self.top_p is not None:
            parts.append(f"top_p={self.top_p:g}")
        if self.min_p is not None:
            parts.append(f"min_p={self.min_p:g}")
        return " ".join(parts)


def _real(name: str, value, allowed: str) -> float:
    """A real number (int, float, numpy scalar; not a bool, not NaN) -> float, else a TypeError naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != value:
        raise TypeError(f"{name} must be a number {allowed}, got {value!r}")
    return float(value)


GREEDY = SamplingConfig(temperature=0.0)


def warp_logits(logits: torch.Tensor, cfg: SamplingConfig, by_value: bool = False) -> torch.Tensor:
    """logits: [..., V] -> warped logits [..., V] (removed tokens at -inf; ``logits`` itself when T = 1 and nothing is
    removed: not to be written to). Requires T > 0. HF's warpers' own steps: the reference ``logits_to_probs``'s fast
    path (``core.warpers``) is tested against. by_value (CPU logits): the top-p cut from numpy's sort of the values
    where that decides it (``_top_p_removed_by_value``)."""
    x = logits if cfg.temperature == 1 else logits / cfg.temperature  # x / 1 is x
    if cfg.top_k is not None and cfg.top_k < x.shape[-1]:
        kth = torch.topk(x, cfg.top_k, dim=-1).values[..., -1:]
        x = x.masked_fill(x < kth, float("-inf"))
    if cfg.top_p is not None and cfg.top_p < 1:
        remove = _top_p_removed_by_value(x, cfg.top_p) if by_value else None
        if remove is None:
            sorted_x, order = torch.sort(x, dim=-1, descending=False)  # the same call as HF's TopPLogitsWarper
            remove_sorted = _nucleus_removed(sorted_x, cfg.top_p)
            remove = remove_sorted.scatter(-1, order, remove_sorted)
        x = x.masked_fill(remove, float("-inf"))
    if cfg.min_p is not None and cfg.min_p > 0:
        probs = x.softmax(-1)
        thresh = cfg.min_p * probs.max(-1, keepdim=True).values
        x = x.masked_fill(probs < thresh, float("-inf"))
    return x


def _nucleus_removed(sorted_x: torch.Tensor, top_p: float) -> torch.Tensor:
    """sorted_x: [..., V] warped logits in ascending order -> which sorted positions HF's top-p removes (bool)."""
    cum = sorted_x.softmax(-1).cumsum(-1)
    remove_sorted = cum <= (1 - top_p)
    remove_sorted[..., -1] = False  # always keep the most likely token
    return remove_sorted


def _top_p_removed_by_value(x: torch.Tensor, top_p: float) -> torch.Tensor | None:
    """x: [..., V] warped logits on the CPU -> the tokens HF's top-p removes (bool [..., V]), decided on numpy's sort
    of the values (~1.2 ms for 49k float32 here, torch.sort ~4 ms): HF's softmax and sums run on the sorted values
    alone, so each sorted position's decision is HF's, and the removed positions are a leading run (the sums only
    grow), so the removed tokens are those below the smallest kept value. None where that value ties the largest
    removed one (which of the tied tokens HF removes follows its sort's order of ties): then HF's sort decides."""
    if not x.is_cpu:
        return None
    sorted_x = torch.from_numpy(np.sort(x.numpy(), axis=-1))
    removed = _nucleus_removed(sorted_x, top_p)
    n = removed.sum(-1, keepdim=True)  # [..., 1] removed positions; the last is always kept
    cut = sorted_x.gather(-1, n)  # the smallest kept value
    below = sorted_x.gather(-1, (n - 1).clamp(min=0))
    if bool(((n > 0) & (below == cut) & (cut > float("-inf"))).any()):
        return None
    return x < cut


def logits_to_probs(logits: torch.Tensor, cfg: SamplingConfig, checked: bool = False) -> torch.Tensor:
    """logits: [..., V] -> warped probabilities [..., V] (one-hot argmax when T = 0). Logits may hold -inf (a
    token ruled out) but no NaN or +inf, and not only -inf (checked: the caller has read every row's largest logit
    already, as the engine does after a pass). With top-k, top-p or min-p the distribution is computed on the
    largest logits (``sparse_warp``) and HF's full steps (``dense_probs``) run only where a cut is unclear."""
    fast = _sparse_probs(logits, cfg)
    return fast if fast is not None else dense_probs(logits, cfg, checked=checked)


def dense_probs(
    logits: torch.Tensor, cfg: SamplingConfig, by_value: bool = False, checked: bool = False
) -> torch.Tensor:
    """``logits_to_probs`` by HF's steps over the whole vocabulary, for a caller whose ``sparse_warp`` found no
    answer already (not asked twice); by_value: see ``warp_logits``; checked: see ``logits_to_probs``."""
    if not checked:
        check_logits("logits", logits)
    if cfg.is_greedy:
        idx = logits.argmax(-1, keepdim=True)
        return torch.zeros_like(logits).scatter_(-1, idx, 1.0)
    return warp_logits(logits, cfg, by_value).softmax(-1)


def sample_sparse(dist: tuple, rng) -> int:
    """dist: (probs float64 [m], ids [m] ascending), a ``sparse_warp`` row -> one token drawn with ``rng`` (a
    ``torch.Generator`` or an RNG object): the draw ``sample`` makes from the row written out over the vocabulary
    (inverse CDF in token order: the same float64 sums, the other cells being 0), without writing it out."""
    probs, ids = dist
    rng = as_rng(rng)
    if isinstance(rng, TorchRNG):
        return int(ids[rng.draw_index(probs)])
    return int(ids[int(rng.categorical(torch.from_numpy(probs)[None])[0])])


def _filters(cfg: SamplingConfig, V: int) -> tuple:
    """(top_k, top_p, min_p), each None where it removes nothing from a vocabulary of V tokens."""
    return (
        cfg.top_k if cfg.top_k is not None and cfg.top_k < V else None,
        cfg.top_p if cfg.top_p is not None and cfg.top_p < 1 else None,
        cfg.min_p if cfg.min_p is not None and cfg.min_p > 0 else None,
    )


def sparse_possible(logits: torch.Tensor, cfg: SamplingConfig) -> bool:
    """Whether ``sparse_warp`` can answer for such logits and settings at all: sampled with top-k, top-p or min-p
    (one that removes tokens), on CPU float32 / float64 logits."""
    if cfg.is_greedy or not (torch.is_tensor(logits) and logits.is_floating_point() and logits.numel() > 0):
        return False  # check_logits says what is wrong
    if not logits.is_cpu or logits.dtype not in (torch.float32, torch.float64):
        return False  # an accelerator's vocabulary-wide ops are cheap, and its rows draw with its own generator
    return filters_remove(cfg, logits.shape[-1])


def filters_remove(cfg: SamplingConfig, V: int) -> bool:
    """Whether ``cfg`` samples with a top-k, top-p or min-p that removes tokens from a vocabulary of V: what
    ``sparse_possible`` asks of the settings, for a caller that knows its logits are CPU float32 already."""
    return not cfg.is_greedy and any(f is not None for f in _filters(cfg, V))


def sparse_warp(logits: torch.Tensor, cfg: SamplingConfig) -> list | None:
    """logits [..., V] on the CPU -> per row of the flattened positions, its warped distribution as (probs float64
    [m], ids [m] ascending) when top-k, top-p or min-p leave a few tokens and every cut is clear (``core.warpers``),
    else None (then ``dense_probs`` runs HF's steps)."""
    if not sparse_possible(logits, cfg):
        return None
    return sparse_warp_checked(logits.detach().reshape(-1, logits.shape[-1]).numpy(), cfg)


def sparse_warp_checked(arr: np.ndarray, cfg: SamplingConfig, tops=None) -> list | None:
    """``sparse_warp`` of rows [R, V] read as numpy, for a caller that asked ``sparse_possible`` of their tensor
    already; tops: [R] each row's largest logit, when the caller has read it (the engine's finiteness check)."""
    return sparse_rows(arr, cfg.temperature, *_filters(cfg, arr.shape[-1]), tops)


def dense_rows(logits: torch.Tensor, cfg: SamplingConfig) -> list:
    """logits [..., V] on the CPU -> HF's steps (``dense_probs``) written as ``sparse_warp``'s rows: each flattened
    position's nonzero probabilities (its float32 values, not renormalised) and their ids. A row drawn from it
    draws what the dense row draws (the same float64 sums over the same cells). The top-p cut is read from numpy's
    sort of the values where that decides it (``warp_logits``'s by_value: the same tokens; the sort in a third of the
    time, the row in ~55%)."""
    probs = dense_probs(logits, cfg, by_value=True)
    return [sparse_row(row) for row in probs.reshape(-1, logits.shape[-1]).numpy()]


def sparse_row(probs: np.ndarray) -> tuple:
    """A probability row [V] -> its sparse form: (the nonzero values as float64, their ids ascending)."""
    ids = np.flatnonzero(probs)
    return probs[ids].astype(np.float64), ids


def _sparse_probs(logits: torch.Tensor, cfg: SamplingConfig) -> torch.Tensor | None:
    """``sparse_warp``'s rows written out as probabilities [..., V] (zeros elsewhere), or None."""
    rows = sparse_warp(logits, cfg)
    if rows is None:
        return None
    dtype = np.float64 if logits.dtype == torch.float64 else np.float32
    dense = np.zeros((len(rows), logits.shape[-1]), dtype=dtype)  # calloc'd: untouched pages cost nothing
    for r, (probs, ids) in enumerate(rows):
        dense[r, ids] = probs
    return torch.from_numpy(dense).to(device=logits.device, dtype=logits.dtype).reshape(logits.shape)


def sample(probs: torch.Tensor, rng) -> torch.Tensor:
    """probs: [..., V] -> sampled token ids [...] drawn with the explicit ``rng`` (a torch.Generator)."""
    check_probs("probs", probs)
    return as_rng(rng).categorical(probs)


def greedy(logits_or_probs: torch.Tensor) -> torch.Tensor:
    """[..., V] -> argmax ids [...] (lowest index on ties). On the CPU through numpy, ~10x faster than torch's
    argmax over a 49k vocabulary (it sits on every greedy step)."""
    x = logits_or_probs
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        return torch.from_numpy(x.detach().numpy().argmax(-1))
    return x.argmax(-1)


def greedy_top(logits: torch.Tensor, lengths: list[int]) -> tuple[list, list]:
    """logits [B, n_max, V], lengths[b] the positions of row b that count -> (every position's argmax id [B][n_max],
    the logit there for the first lengths[b] positions of row b): the largest logit, NaN where any is (both
    libraries' argmax picks a NaN first). On the CPU one numpy argmax and a scalar read a position (as
    ``greedy_ids``: right after a pass each library call costs 15-80 us here)."""
    if logits.is_cpu and logits.dtype == torch.float32:  # is_cpu: a third of device.type's cost, cold
        arr = logits.numpy()
        best = arr.argmax(-1).tolist()
        return best, [[float(arr[b, i, best[b][i]]) for i in range(n)] for b, n in enumerate(lengths)]
    ids = logits.argmax(-1)
    top = logits.gather(-1, ids.unsqueeze(-1)).squeeze(-1).tolist()
    return ids.tolist(), [row[:n] for row, n in zip(top, lengths)]


def greedy_ids(logits_or_probs: torch.Tensor) -> list:
    """[..., V] -> the argmax ids (lowest index on ties) as nested Python lists, in one host transfer. On the CPU
    straight through numpy: a greedy step right after a llama.cpp pass finds the caches cold, and each torch call
    then costs ~20-40 us here (``greedy(x).tolist()`` made four)."""
    x = logits_or_probs
    if x.is_cpu and x.dtype in (torch.float32, torch.float64) and not x.requires_grad:
        return x.numpy().argmax(-1).tolist()
    return x.argmax(-1).tolist()
