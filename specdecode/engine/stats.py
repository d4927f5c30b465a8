"""Generation statistics (a plain dataclass) and its text reporter, kept apart.

Words as in vLLM: *accepted* draft tokens, *recovered* tokens (drawn from the residual
after a rejection), *bonus* tokens (drawn from p after all drafts were accepted).
acceptance rate = accepted draft tokens / proposed draft tokens.

Each request records its own steps (``record_step``); a session's statistics are the merge of its requests'
(``GenerationStats.merged``) plus what belongs to the batch as a whole: steps, target passes and times
(``PASS_FIELDS``). Not here: the loop that records them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

# fields of the batch as a whole (a session's passes and times), not summed over its requests
PASS_FIELDS = (
    "steps",
    "target_calls",
    "draft_calls",
    "prefill_time",
    "target_time",
    "draft_time",
    "total_time",
    "costs",
)


@dataclass
class GenerationStats:
    new_tokens: int = 0
    steps: int = 0
    proposed: int = 0
    accepted: int = 0
    recovered: int = 0
    bonus: int = 0
    plain: int = 0  # tokens from steps that proposed nothing (plain decoding)
    target_calls: int = 0  # batched target forward passes after the prefill
    row_steps: int = 0  # (row, step) pairs: target verifications per sequence
    draft_calls: int = 0
    prefill_time: float = 0.0
    target_time: float = 0.0
    draft_time: float = 0.0
    total_time: float = 0.0
    per_position_proposed: list = field(default_factory=list)
    per_position_accepted: list = field(default_factory=list)
    rejection_positions: list = field(default_factory=list)  # histogram: index i = rejections at draft position i
    k_history: list = field(default_factory=list)  # histogram of the k used per row-step
    overlap_sum: float = 0.0  # sum over checked draft positions of sum_x min(p, q) (GenerationConfig.measure_overlap)
    overlap_count: int = 0
    forced_drafted: int = 0  # constrained rows: tokens the grammar forced, drafted with q = 1 (not in ``proposed``)
    forced_accepted: int = 0
    masks: int = 0  # constrained rows: grammar masks computed, and the seconds they took
    mask_time: float = 0.0
    costs: str = ""  # the pass-cost table adaptive depths read: "file PATH", "measured now...", "timed per pass"

    @staticmethod
    def merged(parts: list[GenerationStats], passes: GenerationStats | None = None) -> GenerationStats:
        """The sum of ``parts`` (requests' own counts; lists added position by position), with the batch fields
        (``PASS_FIELDS``) taken from ``passes``."""
        out = GenerationStats()
        for part in parts:
            for f in fields(GenerationStats):
                if f.name in PASS_FIELDS:
                    continue
                mine, theirs = getattr(out, f.name), getattr(part, f.name)
                if isinstance(mine, list):
                    _grow(mine, len(theirs))
                    for i, v in enumerate(theirs):
                        mine[i] += v
                else:
                    setattr(out, f.name, mine + theirs)
        if passes is not None:
            for name in PASS_FIELDS:
                setattr(out, name, getattr(passes, name))
        return out

    def record_step(self, k: int, n_accepted: int, *, nodes: int | None = None, bonus: bool | None = None) -> None:
        """One row's step: a draft of depth k (a chain: k tokens) with ``nodes`` draft tokens in all (trees;
        default k), n_accepted of them accepted; ``bonus``: the last token came after a leaf (default n == k)."""
        self.row_steps += 1
        _grow(self.per_position_proposed, k)
        _grow(self.per_position_accepted, k)
        _grow(self.k_history, k + 1)
        self.k_history[k] += 1
        self.proposed += k if nodes is None else nodes
        self.accepted += n_accepted
        for i in range(k):
            self.per_position_proposed[i] += 1
            self.per_position_accepted[i] += i < n_accepted
        if k == 0:
            self.plain += 1
        elif not (n_accepted == k if bonus is None else bonus):
            self.recovered += 1
            _grow(self.rejection_positions, n_accepted + 1)
            self.rejection_positions[n_accepted] += 1
        else:
            self.bonus += 1

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.proposed if self.proposed else 0.0

    @property
    def alpha_estimate(self) -> float:
        """Per-token acceptance: accepted / checked (positions after a rejection are never checked)."""
        checked = self.accepted + self.recovered
        return self.accepted / checked if checked else 0.0

    @property
    def alpha_exact(self) -> float:
        """Mean of sum_x min(p, q) over the checked draft positions (NaN if not measured)."""
        return self.overlap_sum / self.overlap_count if self.overlap_count else float("nan")

    @property
    def tokens_per_target_call(self) -> float:
        return self.new_tokens / self.row_steps if self.row_steps else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.total_time if self.total_time > 0 else 0.0

    @property
    def overhead_time(self) -> float:
        return max(self.total_time - self.prefill_time - self.target_time - self.draft_time, 0.0)

    @property
    def overhead_fraction(self) -> float:
        loop = self.total_time - self.prefill_time
        return self.overhead_time / loop if loop > 0 else 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(
            acceptance_rate=self.acceptance_rate,
            alpha_estimate=self.alpha_estimate,
            alpha_exact=self.alpha_exact,
            tokens_per_target_call=self.tokens_per_target_call,
            tokens_per_second=self.tokens_per_second,
            overhead_time=self.overhead_time,
            overhead_fraction=self.overhead_fraction,
        )
        return d


def _grow(lst: list, n: int) -> None:
    while len(lst) < n:
        lst.append(0)


def format_stats(s: GenerationStats) -> str:
    per_pos = " ".join(f"{a / p:.2f}" if p else "-" for a, p in zip(s.per_position_accepted, s.per_position_proposed))
    lines = [
        f"tokens: {s.new_tokens} in {s.total_time:.2f} s ({s.tokens_per_second:.1f} tok/s); steps {s.steps}; "
        f"target calls {s.target_calls} ({s.tokens_per_target_call:.2f} tokens/call); draft calls {s.draft_calls}",
        f"draft tokens: proposed {s.proposed}, accepted {s.accepted} (acceptance {s.acceptance_rate:.1%}, "
        f"per-token alpha {s.alpha_estimate:.1%}); recovered {s.recovered}; bonus {s.bonus}; plain {s.plain}",
        f"per-position acceptance: {per_pos or '-'}",
        f"rejection positions: {s.rejection_positions or '-'}",
        f"time: prefill {s.prefill_time:.2f} s, target {s.target_time:.2f} s, draft {s.draft_time:.2f} s, "
        f"engine overhead {s.overhead_time:.3f} s ({s.overhead_fraction:.1%} of step time)",
    ]
    if len([c for c in s.k_history if c]) > 1:
        lines.append("k used: " + ", ".join(f"k={k}: {c}" for k, c in enumerate(s.k_history) if c))
    if s.masks:
        lines.append(
            f"grammar: {s.masks} masks in {s.mask_time * 1e3:.1f} ms ({s.mask_time / s.masks * 1e6:.0f} us each); "
            f"forced tokens drafted {s.forced_drafted}, accepted {s.forced_accepted}"
        )
    if s.costs:
        lines.append(f"pass costs: {s.costs}")
    return "\n".join(lines)
