"""Adaptive draft length: per-row online acceptance and the pass costs -> k (chains) or depth (trees).

Not here: the loop that feeds it (``loop``), measuring the costs (``costs``) or the closed-form optimum it
generalises (``analysis.theory``).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from .costs import extrapolate


class AdaptiveK:
    """One row's online acceptance and the pass costs -> its k each step.

    The row keeps exponentially forgotten counts of accepted / checked drafts overall (its alpha)
    and per draft position i (the conditional rate a_i = P(accept i | accepted 1..i-1), shrunk
    towards alpha). k maximises E[G(k)] / (T(n_k + 1) + n_k t_draft), with T(n) the cost of a target
    pass over n tokens, n_k the draft tokens at depth k and t_draft the draft cost per token. With
    every a_i = alpha and T linear in n this is exactly k = optimal_k(alpha, c); per-position rates let
    bursty drafters (prompt lookup copies whole spans) use long drafts, and T(n) follows the backend's
    kernels, which are not linear in n.

    Costs: ``costs`` (T(1..17) measured once per backend, ``costs.py``) and ``draft_cost`` fixed per
    generation make the choice a function of the acceptance counts only, so a seeded run repeats; without
    them every pass is timed (an EMA per n) and the first step is plain, so that T(1) is measured.
    k = 0 (plain decoding) when nothing beats it; a row at k = 0 probes with the cheapest draft after
    ``probe_every`` idle steps, and waits twice as long after each probe that accepted nothing.
    """

    def __init__(
        self,
        k_max: int,
        decay: float = 0.9,
        probe_every: int = 8,
        shrink: float = 2.0,
        nodes: Callable[[int], int] | None = None,
        costs: list[float] | None = None,
        draft_cost: float | None = None,
    ):
        self.k_max, self.decay, self.probe_every, self.shrink = k_max, decay, probe_every, shrink
        self.nodes = nodes or (lambda k: k)  # draft tokens at depth k (trees: every node the drafter proposes)
        self.acc, self.chk = 1.0, 2.0
        self.pos_acc = [0.0] * k_max
        self.pos_chk = [0.0] * k_max
        # the same per-position counts split by the row's state: 1 after a step that accepted every draft, 0 after
        # one that rejected (acceptance is bursty: prompt lookup copies whole spans, then misses for a while)
        self.state = 0
        self.st_acc = [[0.0] * k_max, [0.0] * k_max]
        self.st_chk = [[0.0] * k_max, [0.0] * k_max]
        self.idle = 0
        self.wait = probe_every  # idle steps before the next probe (doubles after a failed probe)
        self.probing = False
        self.costs = costs
        self.t_by_n: dict[int, float] = {}  # tokens fed -> seconds per target pass (EMA), without a cost table
        self.fixed_draft = draft_cost is not None
        self.draft_tok_time = draft_cost or 0.0

    def alpha(self) -> float:
        return self.acc / self.chk

    def position_rates(self) -> list[float]:
        """P(accept draft i | drafts < i accepted) in the row's current state: the row's rate at that position
        (shrunk towards its alpha), moved by the state's own counts: down as they say, up only by what exceeds
        one standard error (a few lucky steps must not buy long, costly drafts)."""
        a, acc, chk = self.alpha(), self.st_acc[self.state], self.st_chk[self.state]
        rates = []
        for i in range(self.k_max):
            r = (self.pos_acc[i] + self.shrink * a) / (self.pos_chk[i] + self.shrink)
            n = chk[i] + self.shrink
            s = (acc[i] + self.shrink * r) / n
            rates.append(s if s <= r else max(r, s - (s * (1 - s) / (n + 1)) ** 0.5))
        return rates

    def observe(self, k: int, n_accepted: int) -> None:
        """A step drafted to depth k and n_accepted drafts were accepted."""
        if k == 0:
            return
        if self.probing:
            self.probing = False
            self.wait = self.probe_every if n_accepted else min(2 * self.wait, 64 * self.probe_every)
        checked = n_accepted + (n_accepted < k)
        self.acc = self.decay * self.acc + n_accepted
        self.chk = self.decay * self.chk + checked
        acc, chk = self.st_acc[self.state], self.st_chk[self.state]
        for i in range(min(checked, self.k_max)):
            self.pos_acc[i] = self.decay * self.pos_acc[i] + (i < n_accepted)
            self.pos_chk[i] = self.decay * self.pos_chk[i] + 1
            acc[i] = self.decay * acc[i] + (i < n_accepted)
            chk[i] = self.decay * chk[i] + 1
        self.state = int(n_accepted == k)

    def observe_pass(self, n_fed: int, seconds: float) -> None:
        """Target pass over n_fed tokens took ``seconds`` (kept per n: on CPUs the cost is not linear in n);
        ignored when the costs come from a table."""
        if self.costs is None:
            old = self.t_by_n.get(n_fed)
            self.t_by_n[n_fed] = seconds if old is None else 0.7 * old + 0.3 * seconds

    def observe_draft(self, seconds_per_token: float) -> None:
        """The drafter's time per draft token this step (an EMA), unless its cost is fixed."""
        if not self.fixed_draft:
            t = self.draft_tok_time
            self.draft_tok_time = seconds_per_token if t == 0 else 0.8 * t + 0.2 * seconds_per_token

    def pass_cost(self, n: int) -> float:
        """Seconds of a target pass over n tokens: from the table, measured if seen, else interpolated."""
        if self.costs is not None:
            return extrapolate(self.costs, n)
        if n in self.t_by_n:
            return self.t_by_n[n]
        seen = sorted(self.t_by_n)
        if not seen:
            return 1.0 + 0.015 * (n - 1)
        lo = [m for m in seen if m < n]
        hi = [m for m in seen if m > n]
        if lo and hi:
            a, b = lo[-1], hi[0]
            return self.t_by_n[a] + (self.t_by_n[b] - self.t_by_n[a]) * (n - a) / (b - a)
        base = self.t_by_n[seen[0]]
        if lo:  # extrapolate up with a slope of 1.5% of the smallest pass per token (optimistic: it gets measured)
            return self.t_by_n[lo[-1]] + 0.015 * base * (n - lo[-1])
        return self.t_by_n[hi[0]]

    def best_k(self, k_min: int = 0) -> int:
        """argmax_k E[G(k)] / (T(n_k + 1) + n_k t_draft) with E[G(k)] from the per-position acceptance rates and
        n_k the draft tokens at depth k (chains: k)."""
        rates = self.position_rates()
        best, best_rate = 0, -1.0
        total, run = 1.0, 1.0
        for k in range(0, self.k_max + 1):
            if k > 0:
                run *= rates[k - 1]
                total += run
            if k < k_min:
                continue
            n = self.nodes(k)
            r = total / (self.pass_cost(n + 1) + n * self.draft_tok_time)
            if r > best_rate * (1 + 1e-9):
                best, best_rate = k, r
        return best

    def measuring_first(self) -> bool:
        """True until a plain pass has been timed (no cost table): without T(1) plain decoding would be priced like
        the smallest pass seen so far (a 4-6 token pass costs 1.5x a 1-token one here), and k = 0 would never win."""
        return self.costs is None and 1 not in self.t_by_n and self.k_max > 0

    def choose(self) -> int:
        if self.measuring_first():
            return 0
        return self.settle(self.best_k())

    def settle(self, k: int) -> int:
        """The row was given k: count idle steps at k = 0 and probe with the cheapest draft when it is time."""
        if k == 0:
            self.idle += 1
            if self.idle >= self.wait and self.k_max > 0:
                self.idle = 0
                self.probing = True
                return self.best_k(k_min=1)  # probe with the cheapest useful draft length
        else:
            self.idle = 0
        return k


def batch_depths(rows: list[tuple[AdaptiveK | None, int]], tokens_of: Callable[[list[int]], int]) -> list[int]:
    """Draft depths for rows that share one target pass. rows: (the row's controller, or None for a fixed depth;
    the most it may draft); tokens_of(tokens fed per row) -> the tokens the backend computes (its sum when rows
    are separate sequences, rows x the longest when they are padded).

    One adaptive row: its own choice (``AdaptiveK.choose``). Several: maximise the batch's expected tokens per
    second, sum_b E[G_b] / (T(tokens_of(...)) + draft nodes x t_draft). Draft nodes are added one depth at a time,
    the depth with most expected tokens per node first, and the best prefix of that order is kept. Pricing each
    row alone would be wrong here: at batch 16 on a CPU a draft token costs about what a row's own token does,
    where alone it costs half, so only drafts that are nearly sure to be accepted pay.
    """
    ctrls = [c for c, _ in rows if c is not None]
    if not ctrls:
        return [cap for _, cap in rows]
    if len(rows) == 1:
        return [max(0, min(ctrls[0].choose(), rows[0][1]))]
    if ctrls[0].measuring_first():
        return [0 if c else cap for c, cap in rows]
    ref = ctrls[0]  # the rows of one generator share its backend's costs and its drafter
    ks = [0 if c else cap for c, cap in rows]
    nodes = [ref.nodes(k) for k in ks]
    order = _greedy_order(rows)
    gain = float(len(rows))  # expected tokens: every row emits at least one

    def rate() -> float:
        return gain / (ref.pass_cost(tokens_of([n + 1 for n in nodes])) + sum(nodes) * ref.draft_tok_time)

    best_rate, best_len = rate(), 0
    for i, (b, g) in enumerate(order):
        if g < 0.01:  # the rest of the order expects even less: never worth a node
            break
        gain += g
        ks[b] += 1
        nodes[b] = ref.nodes(ks[b])
        r = rate()
        if r > best_rate * (1 + 1e-9):
            best_rate, best_len = r, i + 1
    ks = [0 if c else cap for c, cap in rows]
    for b, _ in order[:best_len]:
        ks[b] += 1
    return [min(c.settle(k), cap) if c else k for (c, cap), k in zip(rows, ks)]


def _greedy_order(rows: list[tuple[AdaptiveK | None, int]]) -> list[tuple[int, float]]:
    """(row, expected extra tokens) of each deeper draft of the adaptive rows, most expected tokens per node first
    (a row's gains only fall with depth, so the order keeps each row's depths in sequence)."""
    heap, state = [], {}
    for b, (c, cap) in enumerate(rows):
        if c is not None and cap > 0:
            state[b] = (c.position_rates(), 1.0, 0)
            _push(heap, b, c, state[b], cap)
    order = []
    while heap:
        _, b, g = heapq.heappop(heap)
        rates, run, d = state[b]
        state[b] = (rates, g, d + 1)
        order.append((b, g))
        _push(heap, b, rows[b][0], state[b], rows[b][1])
    return order


def _push(heap: list, b: int, c: AdaptiveK, st: tuple, cap: int) -> None:
    rates, run, d = st
    if d < min(cap, c.k_max):
        g = run * rates[d]
        heapq.heappush(heap, (-g / max(1, c.nodes(d + 1) - c.nodes(d)), b, g))
