"""The training objective and the held-out evaluation of a draft: one forward over labelled examples, the
soft cross-entropy to the teacher, acceptance estimates, the learning-rate schedule.

Held-out acceptance: alpha(T=1) = sum over the teacher's top-64 of min(p, q) (a lower bound of
sum min(p, q): the mass beyond the top 64 is not counted) and the greedy match rate (alpha at T = 0).
The engine measures the real thing (``specdecode bench-draft``). Not here: the training loop (``train``).
"""

from __future__ import annotations

import math

import torch

from ..models.eagle import EagleHead
from .data import Example


def draft_forward(draft, examples: list[Example], pos_in_head: torch.Tensor, steps: int = 1) -> list[tuple]:
    """One forward of a shallow draft or an EAGLE head over right-padded examples.

    Shallow: inputs x_0..x_{L-2}, the hidden state at column c predicts token c + 1. EAGLE: inputs
    (f_j, x_{j+1}), column j predicts token j + 2 (and f^_{j+1} is regressed on f_{j+1}); with
    ``steps`` > 1 also the drafting steps that feed back predicted features (``EagleHead.unrolled``).
    -> one tuple per step (shallow drafts: one): log q over the head's tokens [T, N], teacher head
    indices [T, K] (-1: not in the head), teacher probs [T, K], feature regression loss (0 for
    shallow drafts), and each prediction's example [T] and column [T].
    """
    eagle = isinstance(draft, EagleHead)
    shift = 2 if eagle else 1
    B, L = len(examples), max(len(e.ids) for e in examples) - 1
    ids = torch.zeros(B, L, dtype=torch.long)
    mask = torch.zeros(B, L, dtype=torch.long)
    f_in = torch.zeros(B, L, examples[0].feats.shape[-1]) if eagle else None
    rows, cols, tid, tp, f_tgt = [], [], [], [], []
    for b, e in enumerate(examples):
        x = e.ids[1:] if eagle else e.ids[:-1]
        ids[b, : len(x)] = torch.tensor(x)
        mask[b, : len(x)] = 1
        t = torch.arange(e.start, len(e.ids))  # labelled tokens
        keep = t - shift >= 0
        rows.append(torch.full((int(keep.sum()),), b))
        cols.append((t - shift)[keep])
        tid.append(e.top_ids.long()[keep])
        tp.append(e.top_p.float()[keep])
        if eagle:
            f_in[b, : len(x)] = e.feats[: len(x)].float()
            f_tgt.append(e.feats[(t - 1)[keep]].float())
    rows, cols, hidx, p = torch.cat(rows), torch.cat(cols), pos_in_head[torch.cat(tid)], torch.cat(tp)
    if not eagle:
        hidden = draft.model(input_ids=ids, attention_mask=mask).last_hidden_state  # [B, L, H]
        logits = draft.lm_head.small_logits(hidden[rows, cols])
        return [(torch.log_softmax(logits.float(), dim=-1), hidx, p, torch.zeros(()), rows, cols)]
    f_tgt = torch.cat(f_tgt)
    out = []
    for s, h in enumerate(draft.unrolled(f_in, ids, steps, attention_mask=mask), start=1):
        ok = cols >= s - 1  # step s at column j starts from the true feature of column j - s + 1
        hs = h[rows[ok], cols[ok]]
        reg = torch.nn.functional.smooth_l1_loss(hs.float(), f_tgt[ok])
        out.append(
            (torch.log_softmax(draft.head.small_logits(hs).float(), dim=-1), hidx[ok], p[ok], reg, rows[ok], cols[ok])
        )
    return out


def distill_loss(log_q: torch.Tensor, head_idx: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """log_q [T, N], head_idx [T, K] (-1: token not in the head), p [T, K] -> mean soft cross-entropy."""
    valid = head_idx >= 0
    lq = log_q.gather(1, head_idx.clamp(min=0))
    return -(p * lq * valid).sum(1).mean()


def greedy_hits(log_q: torch.Tensor, head_idx: torch.Tensor) -> torch.Tensor:
    """log_q [T, N], head_idx [T, K] -> [T] bool: the draft's argmax is the teacher's argmax."""
    top = head_idx[:, 0]
    return (log_q.argmax(1) == top) & (top >= 0)


def acceptance(log_q: torch.Tensor, head_idx: torch.Tensor, p: torch.Tensor) -> tuple[float, float]:
    """-> (mean sum over the teacher's top-K of min(p, q) [T = 1], greedy match rate [T = 0])."""
    qk = log_q.exp().gather(1, head_idx.clamp(min=0)) * (head_idx >= 0)
    alpha = torch.minimum(p, qk).sum(1).mean().item()
    return alpha, greedy_hits(log_q, head_idx).float().mean().item()


EVAL_STEPS = 3  # held-out acceptance is also reported for the EAGLE head's 2nd and 3rd drafting steps


@torch.no_grad()
def evaluate(draft, examples: list[Example], pos_in_head: torch.Tensor) -> dict:
    """Held-out loss, alpha(T=1) and greedy match of the first drafting step (true features); for an
    EAGLE head also alpha and greedy match of steps 2 and 3 (``alpha_t1_s2``, ``greedy_match_s2``, ...),
    which draft from the head's own predicted features, and ``greedy_chain``: the mean number of tokens
    a greedy chain of 3 drafted tokens gets accepted (m1 + m1 m2 + m1 m2 m3 over the chains that start
    at each labelled column; teacher-forced contexts)."""
    was = draft.training
    draft.eval()
    tot: dict[str, float] = {}
    n: dict[str, int] = {}

    def add(key, value, count):
        tot[key] = tot.get(key, 0.0) + value * count
        n[key] = n.get(key, 0) + count

    steps = EVAL_STEPS if isinstance(draft, EagleHead) else 1
    for i in range(0, len(examples), 8):
        batch = examples[i : i + 8]
        hits, known = [], []  # per step [B, L]: greedy match / prediction exists, at the column its chain starts
        for s, (lq, hidx, p, _, rows, cols) in enumerate(draft_forward(draft, batch, pos_in_head, steps), start=1):
            a, m = acceptance(lq, hidx, p)
            T = hidx.shape[0]
            sfx = "" if s == 1 else f"_s{s}"
            if s == 1:
                add("loss", distill_loss(lq, hidx, p).item(), T)
            add("alpha_t1" + sfx, a, T)
            add("greedy_match" + sfx, m, T)
            grid = torch.zeros(len(batch), max(len(e.ids) for e in batch), dtype=torch.bool)
            hits.append(grid.index_put((rows, cols - (s - 1)), greedy_hits(lq, hidx)))
            known.append(grid.index_put((rows, cols - (s - 1)), torch.ones_like(rows, dtype=torch.bool)))
        if steps > 1:
            valid = torch.stack(known).all(0)
            length = torch.stack(hits).float().cumprod(0).sum(0)  # m1 + m1 m2 + m1 m2 m3
            if valid.any():
                add("greedy_chain", length[valid].mean().item(), int(valid.sum()))
    draft.train(was)
    return {k: v / max(n[k], 1) for k, v in tot.items()}


def lr_at(progress: float, base: float, warmup: float = 0.03) -> float:
    """Linear warm-up then cosine decay to 10% of base; progress in [0, 1]."""
    if progress < warmup:
        return base * max(progress / warmup, 0.05)
    x = min((progress - warmup) / (1 - warmup), 1.0)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * x)))
