"""Adaptive draft length: per-row online acceptance and the pass costs -> k (chains) or depth (trees).

Not here: the loop that feeds it (``loop``), measuring the costs (``costs``) or the closed-form optimum it
generalises (``analysis.theory``).
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field

from .costs import extrapolate

# Lookup drafts are priced by their match length m: draft i of a copy made after m matching tokens is accepted
# about as often as a one-token draft made after m + i (each accepted draft lengthens the match). Counts are kept
# per bucket of that effective match length, starting from a prior that rises with it.
MATCH_EDGES = (1, 2, 3, 4, 6, 9, 13, 20, 32, 64)
PRIOR_STRENGTH = 2.0  # pseudo-observations of the prior in each bucket
MARGIN = 0.02  # a lookup draft must beat plain decoding's expected tokens/s by 2%: never lose to estimation noise


@dataclass
class MatchCounts:
    """Accepted / checked lookup drafts per effective-match bucket (MATCH_EDGES), exponentially forgotten. A
    generator keeps one across its greedy requests (each starts from a copy and hands its counts back when it
    leaves), so what one request learned about matches of a length prices the next one's drafts. Greedy output does
    not depend on k, so this changes speed only; sampled requests start from the prior (a seeded run repeats)."""

    acc: list = field(default_factory=lambda: [0.0] * len(MATCH_EDGES))
    chk: list = field(default_factory=lambda: [0.0] * len(MATCH_EDGES))

    def copy(self) -> MatchCounts:
        return MatchCounts(list(self.acc), list(self.chk))

    def take(self, other: MatchCounts) -> None:
        """Adopt ``other``'s counts (a request that left: it started from these and observed more)."""
        self.acc[:], self.chk[:] = other.acc, other.chk


def match_bucket(m: int) -> int:
    return bisect_right(MATCH_EDGES, m) - 1


def match_prior(m: int) -> float:
    """Prior P(accept) of a one-token lookup draft after m matching tokens: 0.2 at 1, 0.5 at 4, 0.83 at 20, 0.94
    at 64. Cautious: where a pass over k + 1 tokens costs 3-4 passes over one (llama.cpp on a CPU) only long matches
    are drafted until the row's own counts say more; where it costs ~1.5 (a memory-bound GPU or HF) most are."""
    return m / (m + 4.0)


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

    Lookup drafters (prompt lookup, suffix) show their draft and its match length before the pass: such a row is
    priced from what it holds this step (``match_rates``: acceptance by effective match length, see MATCH_EDGES)
    and drafts only where that beats plain decoding by MARGIN; no draft, no cost, no probe.
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
        match_counts: MatchCounts | None = None,
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
        self.matches = (match_counts or MatchCounts()).copy()  # lookup drafts, by effective match bucket
        self.matched = False  # observed a lookup draft (its counts are worth handing back)

    def match_rates(self, match: int, k: int) -> list[float]:
        """P(accept draft i | drafts < i accepted), i < k, for a lookup draft copied after ``match`` tokens."""
        rates = []
        for i in range(k):
            m = min(match + i, MATCH_EDGES[-1])
            b = match_bucket(m)
            acc, chk = self.matches.acc[b], self.matches.chk[b]
            rates.append((acc + PRIOR_STRENGTH * match_prior(m)) / (chk + PRIOR_STRENGTH))
        return rates

    def observe_match(self, match: int, k: int, n_accepted: int) -> None:
        """A lookup draft of depth k copied after ``match`` tokens had n_accepted drafts accepted."""
        counts = self.matches
        self.matched = True
        for i in range(min(k, n_accepted + 1)):
            b = match_bucket(min(match + i, MATCH_EDGES[-1]))
            counts.acc[b] = self.decay * counts.acc[b] + (i < n_accepted)
            counts.chk[b] = self.decay * counts.chk[b] + 1

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

    def best_k(
        self, k_min: int = 0, rates: list[float] | None = None, nodes: Callable[[int], int] | None = None
    ) -> int:
        """argmax_k E[G(k)] / (T(n_k + 1) + n_k t_draft) with E[G(k)] from the per-position acceptance rates and
        n_k the draft tokens at depth k (chains: k). ``rates`` / ``nodes`` given (a lookup draft in hand): k up to
        len(rates), and k > 0 only where it beats plain decoding by MARGIN."""
        lookup = rates is not None
        rates = self.position_rates() if rates is None else rates
        nodes = nodes or self.nodes
        best, best_rate = 0, -1.0
        total, run = 1.0, 1.0
        for k in range(0, len(rates) + 1):
            if k > 0:
                run *= rates[k - 1]
                total += run
            if k < k_min:
                continue
            n = nodes(k)
            r = total / (self.pass_cost(n + 1) + n * self.draft_tok_time)
            if r > best_rate * (1 + (MARGIN if lookup and best == 0 and k > 0 else 1e-9)):
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


@dataclass
class DepthAsk:
    """One row's question to ``batch_depths``: its controller (None: a fixed depth), the most it may draft, and for
    a lookup draft already in hand its match length and the draft nodes at each depth 0..cap (``nodes[k]``)."""

    ctrl: AdaptiveK | None
    cap: int
    match: int | None = None  # None: a model drafter (drafts after the choice; may probe)
    nodes: list[int] | None = None

    def rates(self) -> list[float]:
        if self.match is None:
            return self.ctrl.position_rates()[: self.cap]
        return self.ctrl.match_rates(self.match, self.cap)

    def nodes_at(self, k: int) -> int:
        return self.nodes[k] if self.nodes is not None else self.ctrl.nodes(k)


def batch_depths(rows: list, tokens_of: Callable[[list[int]], int]) -> list[int]:
    """Draft depths for rows that share one target pass. rows: ``DepthAsk``s, or (controller or None for a fixed
    depth, the most it may draft) pairs; tokens_of(tokens fed per row) -> the tokens the backend computes (its sum
    when rows are separate sequences, rows x the longest when they are padded).

    One adaptive row: its own choice (``AdaptiveK.choose``, or ``best_k`` on its lookup draft). Several: maximise
    the batch's expected tokens per second, sum_b E[G_b] / (T(tokens_of(...)) + draft nodes x t_draft). Draft nodes
    are added one depth at a time, the depth with most expected tokens per node first, and the best prefix of that
    order is kept. Pricing each row alone would be wrong here: at batch 16 on a CPU a draft token costs about what
    a row's own token does, where alone it costs half, so only drafts that are nearly sure to be accepted pay.
    """
    asks = [r if isinstance(r, DepthAsk) else DepthAsk(*r) for r in rows]
    adaptive = [a for a in asks if a.ctrl is not None]
    if not adaptive:
        return [a.cap for a in asks]
    if len(asks) == 1:
        return [_alone(asks[0])]
    ref = adaptive[0].ctrl  # the rows of one generator share its backend's costs and its drafter
    if ref.measuring_first():
        return [0 if a.ctrl else a.cap for a in asks]
    ks = [0 if a.ctrl else a.cap for a in asks]
    nodes = [a.nodes_at(k) if a.ctrl else ref.nodes(k) for a, k in zip(asks, ks)]
    order = _greedy_order(asks)
    gain = float(len(asks))  # expected tokens: every row emits at least one

    def rate() -> float:
        return gain / (ref.pass_cost(tokens_of([n + 1 for n in nodes])) + sum(nodes) * ref.draft_tok_time)

    plain_rate = best_rate = rate()
    best_len, margin = 0, MARGIN if any(a.match is not None for a in adaptive) else 0.0
    for i, (b, g) in enumerate(order):
        if g < 0.01:  # the rest of the order expects even less: never worth a node
            break
        gain += g
        ks[b] += 1
        nodes[b] = asks[b].nodes_at(ks[b])
        r = rate()
        if r > best_rate * (1 + 1e-9) and r > plain_rate * (1 + margin):
            best_rate, best_len = r, i + 1
    ks = [0 if a.ctrl else a.cap for a in asks]
    for b, _ in order[:best_len]:
        ks[b] += 1
    return [min(a.ctrl.settle(k), a.cap) if a.ctrl and a.match is None else k for a, k in zip(asks, ks)]


def _alone(ask: DepthAsk) -> int:
    if ask.match is None:
        return max(0, min(ask.ctrl.choose(), ask.cap))
    if ask.cap == 0 or ask.ctrl.measuring_first():
        return 0
    return ask.ctrl.best_k(rates=ask.rates(), nodes=ask.nodes_at)


def _greedy_order(asks: list[DepthAsk]) -> list[tuple[int, float]]:
    """(row, expected extra tokens) of each deeper draft of the adaptive rows, most expected tokens per node first
    (a row's gains only fall with depth, so the order keeps each row's depths in sequence)."""
    heap, state = [], {}
    for b, a in enumerate(asks):
        if a.ctrl is not None and a.cap > 0:
            state[b] = (a.rates(), 1.0, 0)
            _push(heap, b, a, state[b])
    order = []
    while heap:
        _, b, g = heapq.heappop(heap)
        rates, run, d = state[b]
        state[b] = (rates, g, d + 1)
        order.append((b, g))
        _push(heap, b, asks[b], state[b])
    return order


def _push(heap: list, b: int, ask: DepthAsk, st: tuple) -> None:
    rates, run, d = st
    if d < len(rates):
        g = run * rates[d]
        heapq.heappush(heap, (-g / max(1, ask.nodes_at(d + 1) - ask.nodes_at(d)), b, g))
