"""What one generation is asked to do (``GenerationConfig``), what it returns (``GenerationOutput``), and the
typed refusal of a request the engine cannot run (``Refusal``).

Every field is checked when the config is built, so a bad value fails with one clear error naming it
before any model runs. Not here: the loop (``loop``) or the statistics (``stats``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.sampling import SamplingConfig
from ..core.validation import check_int
from ..verify.registry import METHODS
from .constraint import Constraint
from .stats import GenerationStats

K_MAX = 64


class Refusal(ValueError):
    """A request the engine will not run, and the field it concerns: "prompt", "max_new_tokens", "k",
    "method", "costs", ... (a ``GenerationConfig`` field, or "prompt"). Callers map ``field`` to their own
    names (the server to OpenAI's request fields) without reading the message."""

    def __init__(self, message: str, field: str | None):
        super().__init__(message)
        self.field = field


class RowFault(ValueError):
    """A step found bad output in some rows only (NaN or inf logits): those rows' step was undone (the target and
    the drafter are back where the step began) and only their requests fail; ``rows`` are their batch indices."""

    def __init__(self, message: str, rows: list[int]):
        super().__init__(message)
        self.rows = rows


@dataclass(frozen=True)
class GenerationConfig:
    max_new_tokens: int = 64
    k: int = 4  # draft length (the seed's lookahead_distance); the upper bound when adaptive; trees: see the drafter
    adaptive: bool = False
    method: str | None = None  # a name in verify.METHODS; None: tokenwise for chains, spectr for trees
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    eos_token_ids: tuple = ()
    stop_strings: tuple = ()
    measure_overlap: bool = False  # record sum_x min(p, q) at every checked draft position (exact alpha)
    costs: str | None = None  # adaptive: a cost-table file to read (None: the session's table; see engine.costs)
    constraint: Constraint | None = None  # the output must match it (engine.constraint: JSON schema, regex, ...)
    logprobs: int | None = None  # record each emitted token's log-probability and this many alternatives (0-20)

    def __post_init__(self):
        check_int("max_new_tokens", self.max_new_tokens, 1)
        check_int("k", self.k, 0, K_MAX)
        for name in ("adaptive", "measure_overlap"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.method is not None and self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not isinstance(self.sampling, SamplingConfig):
            raise TypeError(f"sampling must be a SamplingConfig, got {type(self.sampling).__name__}")
        if not isinstance(self.eos_token_ids, (tuple, list)) or not all(
            isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in self.eos_token_ids
        ):
            raise TypeError(f"eos_token_ids must be a tuple of token ids (ints >= 0), got {self.eos_token_ids!r}")
        if not isinstance(self.stop_strings, (tuple, list)) or not all(isinstance(s, str) for s in self.stop_strings):
            raise TypeError(f"stop_strings must be a tuple of strings, got {self.stop_strings!r}")
        if any(s == "" for s in self.stop_strings):
            raise ValueError("stop_strings must not contain an empty string")
        if self.costs is not None and (not isinstance(self.costs, str) or not self.costs):
            raise TypeError(f"costs must be the path of a cost-table file, got {self.costs!r}")
        if self.logprobs is not None:
            check_int("logprobs", self.logprobs, 0, 20)
        if self.constraint is not None and not isinstance(self.constraint, Constraint):
            raise TypeError(f"constraint must be a Constraint, got {type(self.constraint).__name__}")


@dataclass
class GenerationOutput:
    tokens: list  # B lists of new token ids
    kinds: list  # B lists: "accepted" | "forced" | "recovered" | "bonus" | "plain" per token
    stats: GenerationStats
    finish_reasons: list  # "eos" | "stop" | "length"
    method: str = ""  # the verification method that ran (verify.METHODS)
    logprobs: list = field(default_factory=list)  # B lists of logprobs.TokenLogprob (GenerationConfig.logprobs)
