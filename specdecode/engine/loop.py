"""The speculative decoding engine's front: a target backend and a drafter, and the sessions that run them.

``SpeculativeGenerator.open(max_batch)`` resolves the pass costs (read from the generator's cost folder or a
file the caller names, else measured now, before any row exists) and returns a ``Session``, the one way in:
``admit`` requests, ``step`` the batch, ``cancel``. ``generate`` is written on top of it: admit every prompt,
step until they are done. One session runs on a generator's target at a time.

Not here: the step (``step``), the running batch (``session``), verification math (``verify``), drafting
(``drafters``), model loading (``models``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from .adaptive import MatchCounts
from .backend import Backend
from .config import GenerationConfig, GenerationOutput, Refusal
from .constraint import GrammarBook
from .costs import CostBook, CostTable
from .drafts import Drafter, NoDrafter
from .session import Session, method_for

AUTO = "auto"


class SpeculativeGenerator:
    """target: a backend (``CausalLM``, ``LlamaCppLM``); drafter: any Drafter (NoDrafter = plain decoding);
    tokenizer: for stop strings and constraints; grammars: a ``constraint.GrammarBook`` to share (generators of one
    tokenizer); cost_dir: where pass-cost tables are kept, one file per backend (None: in
    memory only, measured once per generator)."""

    def __init__(
        self,
        target: Backend,
        drafter: Drafter | None = None,
        tokenizer=None,
        *,
        cost_dir: Path | None = None,
        grammars: GrammarBook | None = None,
    ):
        self.target = target
        self.drafter = drafter or NoDrafter()
        self.tokenizer = tokenizer
        self.book = CostBook(cost_dir)
        self._session: Session | None = None
        self.lookup = MatchCounts()  # lookup-draft acceptance by match length, carried across this generator's calls
        # constraints: the grammar vocabulary (built once, on first use) and compiled grammars; shareable
        self.grammars = grammars if grammars is not None else GrammarBook(tokenizer, target.vocab_size)
        lm = self.drafter.lm
        if lm is not None and lm.vocab_size != target.vocab_size:
            raise ValueError(
                f"the draft model's vocabulary ({lm.vocab_size} tokens) differs from the target's "
                f"({target.vocab_size}): a drafter must share the target's tokenizer"
            )

    def open(self, max_batch: int = 8, costs: str | Path | None = AUTO) -> Session:
        """A new session of at most ``max_batch`` running requests. costs: "auto" (the generator's table for its
        target and drafter: read, or measured now), a file (read; missing: measured now and written there, so
        seeded adaptive runs repeat on any machine given it), or None (adaptive requests time every pass)."""
        if not isinstance(max_batch, int) or isinstance(max_batch, bool) or max_batch < 1:
            raise ValueError(f"max_batch must be an integer >= 1, got {max_batch!r}")
        if self._session is not None and self._session.busy:
            raise RuntimeError("this generator's session still runs requests: one session at a time per target")
        self.target.reset(1)  # no row holds tokens: the tables below may be measured
        named: dict[str, CostTable] = {}
        table = None
        if costs == AUTO:
            table = self.book.table(self.target).with_draft(self.drafter.draft_cost(self.book))
        elif costs is not None:
            try:
                table = self.book.named(self.target, Path(costs), lambda: self.drafter.draft_cost(self.book))
            except ValueError as exc:
                raise Refusal(str(exc), "costs") from None
            if table.draft_token is None:
                table = table.with_draft(self.drafter.draft_cost(self.book))
            named[str(costs)] = table
        self._session = Session(
            self.target, self.drafter, self.tokenizer, max_batch, table, named, self.lookup, self.grammars
        )
        return self._session

    def method_for(self, config: GenerationConfig):
        """The verification method this generator runs for ``config`` (refuses a mismatch with the drafter)."""
        return method_for(config, self.drafter)

    @torch.inference_mode()
    def generate(
        self,
        prompts: list[list[int]],
        config: GenerationConfig,
        generator: torch.Generator,
        on_tokens: Callable | None = None,
    ) -> GenerationOutput:
        """prompts: B lists of token ids. on_tokens(row, tokens, kinds) streams each step's tokens. The rows share
        ``generator`` (Gumbel noise: row i on stream i)."""
        if not isinstance(generator, torch.Generator):
            raise TypeError("generator must be a torch.Generator")
        if not isinstance(prompts, (list, tuple)) or not prompts:
            raise Refusal("prompts must be a non-empty list of prompts, each a list of token ids", "prompt")
        session = self.open(len(prompts), (config.costs or AUTO) if config.adaptive else None)
        t_start = time.perf_counter()
        d_time0, d_calls0 = self.drafter.time_spent, self.drafter.calls
        try:
            reqs = session.admit_batch(prompts, config, generator, on_tokens)
            while session.busy:
                for r in session.step():
                    if r.reason == "error":
                        raise r.error
        finally:
            session.close()  # after an error or an interrupt: nothing stays queued or holds rows
        stats = session.stats  # every request has left: the merge of theirs, with the batch's passes
        stats.draft_time = self.drafter.time_spent - d_time0
        stats.draft_calls = self.drafter.calls - d_calls0
        stats.total_time = time.perf_counter() - t_start
        stats.costs = reqs[0].stats.costs
        return GenerationOutput(
            [r.new for r in reqs],
            [r.kinds for r in reqs],
            stats,
            [r.reason for r in reqs],
            reqs[0].method.name,
            [r.logprobs for r in reqs],
        )
