"""The warped distribution (temperature, then top-k, top-p, min-p, as Hugging Face's warpers) computed on the few
tokens it can keep, without HF's full sort of the vocabulary: the same tokens as HF's steps, or no answer.

HF's ``TopPLogitsWarper`` sorts the whole vocabulary (~4 ms for 49k tokens on this CPU, more than a llama.cpp pass
over one token), and each torch call over the vocabulary costs ~80-250 us right after a llama.cpp pass (cold
caches). Here each row is read by numpy: its largest logit, then the tokens within a span below it (one compare),
and every cut is decided on those candidates, in float64:

- top-k: the k largest; unclear when the (k+1)-th ties the k-th (HF keeps every tie).
- top-p: HF's cumulative probability at a token (ascending order, inclusive) is 1 minus the mass above it, so the
  nucleus is the leading candidates where that exceeds 1 - top_p. Clear when the cut falls inside the candidates,
  between two different logits (every token below sorts below it, whatever the order of ties), with both sums
  around it ``MARGIN`` away from 1 - top_p.
- min-p: the kept tokens whose probability is at least min_p times the largest; clear when none is within a
  relative ``MARGIN`` of that threshold.

``MARGIN`` is far wider than float32 rounding of HF's sums (~1e-7 on a 49k vocabulary), so a clear cut is HF's cut;
an unclear one returns None and the caller runs HF's own steps (``sampling.warp_logits``, the reference this is
tested against). Logits are divided by the temperature in their own precision, as the reference does, so ties
fall alike.

Not here: the dense reference steps, greedy decoding and sampling (``sampling``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .validation import check_logits

# candidates: the logits within this much (times T for top-p) of the row's largest, tried in turn. Steps of 1.5x: the
# top-k cut is found among a few hundred candidates rather than thousands (SmolLM2's 41st largest logit lies a median
# 6.2 below the largest, 11.6 at the 90th percentile), and a wide nucleus fits under MAX_CANDIDATES more often
SPANS = (4.0, 6.0, 9.0, 13.5, 20.0, 30.0, 45.0, 64.0)
# top-k starts at 9: each span tried reads the whole row (~40 us right after a llama.cpp pass), while partitioning a
# few hundred or thousand candidates costs ~5-20; within 9 of the largest SmolLM2 keeps a median 264 tokens, and its
# (k+1)-th largest lies within 9 in ~85% of rows at k = 40 (median 6.0) and ~97% at k = 10 (stop 36)
TOP_K_SPANS = SPANS[2:]
MAX_CANDIDATES = 4096  # more than this: HF's full sort decides
MARGIN = 1e-5
# at most this many candidates: the cut runs on Python floats (``_cut_small``). Right after a llama.cpp pass each numpy
# call costs ~20-40 us (docs/backends.md); top-k 40's last steps made ten of them (~150 us a row), the same
# arithmetic on 40 Python floats ~30 us. Larger sets stay with numpy (``_cut``, the reference it is tested against)
SMALL = 64


def sparse_rows(arr: np.ndarray, temperature: float, top_k, top_p, min_p, tops=None) -> list | None:
    """arr: [R, V] logits (float32 or float64); temperature > 0; top_k (< V), top_p (< 1), min_p (> 0): each None
    when unused, one set; tops: [R] each row's largest logit when the caller has read it (else read here) -> per row
    (probs float64 [m], ids int64 [m] ascending): its warped distribution on m tokens (every other token has
    probability 0), or None when a cut is unclear in some row (then HF's steps decide). NaN or +inf logits raise
    ``check_logits``'s error."""
    out = []
    for r, x in enumerate(arr):
        top = x.max() if tops is None else tops[r]
        if not math.isfinite(top):  # NaN, +inf, or every token of this row removed
            check_logits("logits", torch.from_numpy(arr))
            return None  # one row all -inf among others (the check reads the whole tensor): HF's steps, as before
        if top_k is not None:
            row = _top_k_row(x, top, temperature, top_k, top_p, min_p)
        elif top_p is not None:
            row = _top_p_row(x, top, temperature, top_p, min_p)
        else:
            row = _min_p_row(x, top, temperature, min_p)
        if row is None:
            return None
        out.append(row)
    return out


def _descending(x: np.ndarray, ids: np.ndarray, temperature: float) -> tuple:
    """ids: candidate tokens -> (their logits / T in the logits' precision, descending; the ids in that order).
    numpy divides by T rounded to that precision, as torch's ``logits / T`` does: the same values, the same ties
    (a torch call here costs ~200 us right after a llama.cpp pass)."""
    ids = ids[np.argsort(-x[ids], kind="stable")]
    return x[ids] / x.dtype.type(temperature), ids


def _top_k_row(x, top, temperature, top_k, top_p, min_p):
    need = top_k + 1  # the (k+1)-th tells whether the k-th has a tie outside
    for span in TOP_K_SPANS:
        ids = np.flatnonzero(x >= top - span)
        if len(ids) >= need:
            break
    else:
        ids = np.flatnonzero(x > -np.inf)
        if len(ids) > top_k:
            ids = ids[np.argpartition(x[ids], len(ids) - need)[len(ids) - need :]]
        else:  # the k-th largest is -inf: top-k keeps every finite logit
            v, ids = _descending(x, ids, temperature)
            return _cut(v, ids, _log_softmax(v), top_p, min_p, complete=True)
    if len(ids) > need:
        ids = ids[np.argpartition(x[ids], len(ids) - need)[len(ids) - need :]]
    if need <= SMALL:
        return _top_k_small(x, ids, temperature, top_k, top_p, min_p)
    v, ids = _descending(x, ids, temperature)
    if not v[top_k] < v[top_k - 1]:
        return None  # a logit outside the k largest ties the k-th: HF keeps it
    v, ids = v[:top_k], ids[:top_k]
    return _cut(v, ids, _log_softmax(v), top_p, min_p, complete=True)


def _top_k_small(x, ids, temperature, top_k, top_p, min_p):
    """``_top_k_row``'s last steps on Python floats: ids the tokens of the k + 1 largest logits (any order). The order
    of tied values does not matter: a tie at the k-th is refused here, and ``_cut_small`` cuts between different
    values only."""
    vals = x[ids] / x.dtype.type(temperature)  # as ``_descending``: in the logits' precision
    pairs = sorted(zip(vals.tolist(), ids.tolist()), reverse=True)  # [(logit / T, token)] descending
    if not pairs[top_k][0] < pairs[top_k - 1][0]:
        return None  # a logit outside the k largest ties the k-th: HF keeps it
    v = [a for a, _ in pairs[:top_k]]
    shifted = [a - v[0] for a in v]
    log_total = math.log(math.fsum(map(math.exp, shifted)))
    return _cut_small(v, [i for _, i in pairs[:top_k]], [a - log_total for a in shifted], top_p, min_p, True)


def _top_p_row(x, top, temperature, top_p, min_p):
    t = x.dtype.type(temperature)
    scaled = x if temperature == 1 else x / t  # x / 1 is x
    top_scaled = top / t  # division rounds monotonically: the largest quotient is the largest logit's
    log_total = top_scaled + math.log(float(np.exp(scaled - top_scaled).sum(dtype=np.float64)))
    for span in SPANS:
        ids = np.flatnonzero(x >= top - span * temperature)
        if len(ids) > MAX_CANDIDATES:
            return None
        if np.exp(scaled[ids] - log_total).sum(dtype=np.float64) < top_p:
            continue  # every candidate is kept and the nucleus reaches past them: a wider span, before any sort
        v, ids = _descending(x, ids, temperature)
        row = _cut(v, ids, v.astype(np.float64) - log_total, top_p, min_p, complete=len(ids) == len(x))
        if row is not None:
            return row
    return None


def _min_p_row(x, top, temperature, min_p):
    """Only min-p: the kept tokens have (x - top) / T >= log(min_p); the candidates reach a little below that."""
    ids = np.flatnonzero(x >= top + temperature * (math.log(min_p) - 1e-3))
    if len(ids) > MAX_CANDIDATES:
        return None
    v, ids = _descending(x, ids, temperature)
    return _cut(v, ids, _log_softmax(v), None, min_p, complete=True)


def _log_softmax(v: np.ndarray) -> np.ndarray:
    v64 = v.astype(np.float64)
    shifted = v64 - v64[0]
    return shifted - math.log(float(np.exp(shifted).sum()))


def _cut(v, ids, logp, top_p, min_p, complete: bool):
    """v: [m] candidate logits (divided by T), descending; ids: their tokens; logp: [m] float64 their
    log-probabilities before top-p, or their logits shifted by a constant when top-p is not asked; complete: every
    other token is already removed (or, min-p alone, clearly below its threshold) -> (probs, ids) or None. At most
    ``SMALL`` candidates: ``_cut_small``."""
    if len(v) <= SMALL:
        return _cut_small(v.tolist(), ids.tolist(), logp.tolist(), top_p, min_p, complete)
    probs = np.exp(logp)
    if top_p is not None:
        n_keep = _top_p_count(v, probs, top_p, complete)
        if n_keep is None:
            return None
        probs, v, ids = probs[:n_keep], v[:n_keep], ids[:n_keep]
    if min_p is not None and min_p > 0:
        threshold = min_p * probs[0]  # the largest is the first candidate
        gap = probs - threshold
        if (np.abs(gap) <= MARGIN * threshold).any():
            return None
        keep = gap > 0
        probs, ids = probs[keep], ids[keep]
    order = np.argsort(ids)  # token order: an inverse CDF over them is the one over the vocabulary
    return probs[order] / probs.sum(), ids[order]


def _top_p_count(v, probs, top_p: float, complete: bool) -> int | None:
    """probs: [m] float64 candidate probabilities (descending) -> how many candidates the nucleus keeps, or None."""
    cum = 1.0 - (np.cumsum(probs) - probs)  # HF's cumulative probability at each candidate
    threshold = 1.0 - top_p
    n_keep = int(np.count_nonzero(cum > threshold))  # a leading run; the top candidate has cum 1
    if n_keep == len(v):
        return n_keep if complete and cum[-1] > threshold + MARGIN else None  # else the nucleus may reach past
    if cum[n_keep - 1] > threshold + MARGIN and cum[n_keep] < threshold - MARGIN and v[n_keep - 1] > v[n_keep]:
        return n_keep
    return None


def _cut_small(v: list, ids: list, logp: list, top_p, min_p, complete: bool):
    """``_cut`` on Python floats (the same decisions on the same float64 quantities, up to the last bit of exp and
    of a sum): v, ids, logp lists -> (probs float64 [m], ids int64 [m] ascending) or None."""
    probs = [math.exp(a) for a in logp]
    if top_p is not None:
        n_keep = _top_p_count_small(v, probs, top_p, complete)
        if n_keep is None:
            return None
        probs, ids = probs[:n_keep], ids[:n_keep]
    kept = zip(ids, probs)
    if min_p is not None and min_p > 0:
        threshold = min_p * probs[0]  # the largest is the first candidate
        if any(abs(p - threshold) <= MARGIN * threshold for p in probs):
            return None
        kept = [(i, p) for i, p in kept if p > threshold]
    kept = sorted(kept)  # token order: an inverse CDF over them is the one over the vocabulary
    total = math.fsum(p for _, p in kept)
    return np.array([p / total for _, p in kept]), np.array([i for i, _ in kept], dtype=np.int64)


def _top_p_count_small(v: list, probs: list, top_p: float, complete: bool) -> int | None:
    """``_top_p_count`` on Python floats: HF's cumulative probability at each candidate as numpy's
    ``1 - (cumsum(probs) - probs)`` computes it (the same float64 operations in the same order)."""
    threshold, cum, running = 1.0 - top_p, [], 0.0
    for p in probs:
        running += p
        cum.append(1.0 - (running - p))
    n_keep = sum(c > threshold for c in cum)  # a leading run; the top candidate has cum 1
    if n_keep == len(v):
        return n_keep if complete and cum[-1] > threshold + MARGIN else None
    if cum[n_keep - 1] > threshold + MARGIN and cum[n_keep] < threshold - MARGIN and v[n_keep - 1] > v[n_keep]:
        return n_keep
    return None
