"""Constrained output: a JSON schema, any JSON object, a regular expression or a Lark grammar, enforced token by
token with llguidance (its matcher computes the allowed tokens of a state; chosen over xgrammar: see
docs/structured.md).

The contract. A constrained row's target is p_c = warp(mask(logits)): the target's logits with every token the
grammar does not allow at that point set to -inf, then the row's warping (temperature, top-k, top-p). That is
what plain constrained decoding samples here and what Hugging Face's logits processors (which run before its
warpers) and vLLM's grammar bitmask compute. A model drafter's q is masked the same way (q_c), so its drafts are
always allowed; a lookup draft is cut at its first token the grammar does not allow (a deterministic draft: the
cut is exact). Every verification method then runs unchanged on p_c and q_c.

The matcher of a row holds the state after the row's verified tokens and nothing else: masks along draft paths
are computed by consuming the path and rolling it back at once (``RowGrammar.blocked``), so a rejected draft token
never stays in it; ``advance`` consumes the tokens a step emitted, after verification.

Forced tokens (``Constraint.forced``): after a row's draft, the run the grammar forces (a state with one allowed
token, llguidance's fast-forward tokens) is appended to the draft with q = 1. Drafts, not outputs: each is
verified like any other draft, so output and exactness do not depend on them.

Not here: the step (``step``), where masks meet the trees and logits (``constrained``).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

import llguidance
import llguidance.hf
import numpy as np
import torch

KINDS = ("json_schema", "json_object", "regex", "lark")
FORCED_MAX = 32  # forced tokens appended to one draft at most


@dataclass(frozen=True)
class Constraint:
    """What the output must match. ``Constraint.json_schema(schema)``, ``.json_object()``, ``.regex(pattern)``,
    ``.lark(grammar)``; building one checks it (``ValueError`` naming the problem)."""

    kind: str
    source: str  # the schema as JSON text, the pattern, or the Lark grammar
    strict: bool = True  # json_schema: every keyword enforced (False: keywords llguidance lacks are ignored)
    forced: bool = True  # draft the tokens the grammar forces (q = 1)
    any_whitespace: bool = False  # JSON: whitespace anywhere JSON allows it (default: json.dumps's ", " and ": ")

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"constraint kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not isinstance(self.source, str):
            raise TypeError(f"constraint source must be a string, got {type(self.source).__name__}")
        error = llguidance.LLMatcher.validate_grammar(self.grammar)
        if error and not error.startswith("WARNING"):
            raise ValueError(f"invalid {self.kind.replace('_', ' ')}: {_first_line(error)}")

    @staticmethod
    def json_schema(
        schema: dict | str, strict: bool = True, forced: bool = True, any_whitespace: bool = False
    ) -> Constraint:
        if isinstance(schema, str):
            try:
                schema = json.loads(schema)
            except json.JSONDecodeError as exc:
                raise ValueError(f"invalid json schema: not JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(schema, dict):
            raise ValueError(f"invalid json schema: a schema is a JSON object, got {type(schema).__name__}")
        return Constraint("json_schema", json.dumps(schema), strict, forced, any_whitespace)

    @staticmethod
    def json_object(forced: bool = True, any_whitespace: bool = False) -> Constraint:
        return Constraint("json_object", json.dumps({"type": "object"}), True, forced, any_whitespace)

    @staticmethod
    def regex(pattern: str, forced: bool = True) -> Constraint:
        return Constraint("regex", pattern, True, forced)

    @staticmethod
    def lark(grammar: str, forced: bool = True) -> Constraint:
        return Constraint("lark", grammar, True, forced)

    @property
    def grammar(self) -> str:
        """The llguidance grammar (JSON text) of this constraint."""
        if self.kind in ("json_schema", "json_object"):
            try:
                return llguidance.LLMatcher.grammar_from_json_schema(self.source, overrides=self._json_options())
            except ValueError as exc:
                raise ValueError(f"invalid json schema: {_first_line(str(exc))}") from None
        if self.kind == "regex":
            return llguidance.LLMatcher.grammar_from_regex(self.source)
        return llguidance.LLMatcher.grammar_from_lark(self.source)

    def _json_options(self) -> dict:
        layout = {} if self.any_whitespace else {"item_separator": ", ", "key_separator": ": "}
        return {"lenient": not self.strict, "whitespace_flexible": self.any_whitespace, **layout}


def _first_line(message: str) -> str:
    lines = [ln.strip() for ln in message.strip().splitlines() if ln.strip()]
    return " ".join(lines[:3])[:300] if lines else "rejected by the grammar compiler"


class _ByteVocab:
    """llguidance's view of a ``ByteTokenizer`` (token i = byte i; the ids past the bytes, and the end of sequence,
    are special tokens)."""

    def __init__(self, vocab_size: int, eos: int):
        self.tokens = [bytes([i]) if i < 256 and i != eos else f"<|special_{i}|>".encode() for i in range(vocab_size)]
        self.eos_token_id, self.bos_token_id = eos, None
        self.special_token_ids = [i for i in range(vocab_size) if i >= 256 or i == eos]

    def __call__(self, data: bytes) -> list[int]:
        return list(data)


class GrammarBook:
    """One tokenizer's grammar vocabulary (built on first use: ~0.5 s for a 49k vocabulary) and the matchers of
    the rows that ask for one: each a copy of a matcher compiled once per constraint (its caches warm)."""

    CACHED = 64  # compiled constraints kept (least recently used dropped)

    def __init__(self, tokenizer, vocab_size: int):
        self.tokenizer, self.vocab_size = tokenizer, vocab_size
        self._vocab: llguidance.LLTokenizer | None = None
        self._compiled: dict[Constraint, object] = {}
        self._lock = threading.Lock()  # requests are admitted from any thread

    @property
    def eos(self) -> int:
        eos = getattr(self.tokenizer, "eos_token_id", None)
        return self.vocab_size - 1 if eos is None else int(eos)

    def vocab(self) -> llguidance.LLTokenizer:
        if self._vocab is None:
            if self.tokenizer is None:
                raise ValueError("constrained output needs a tokenizer: pass one to SpeculativeGenerator")
            if hasattr(self.tokenizer, "backend_tokenizer"):  # a fast Hugging Face tokenizer
                self._vocab = llguidance.hf.from_tokenizer(self.tokenizer, n_vocab=self.vocab_size)
            else:
                wrapper = llguidance.TokenizerWrapper(_ByteVocab(self.vocab_size, self.eos))
                self._vocab = llguidance.LLTokenizer(wrapper, n_vocab=self.vocab_size)
        return self._vocab

    def row(self, constraint: Constraint) -> RowGrammar:
        """A fresh matcher for one request (``ValueError`` when the grammar does not fit this vocabulary)."""
        with self._lock:
            return self._row(constraint)

    def _row(self, constraint: Constraint) -> RowGrammar:
        vocab = self.vocab()
        template = self._compiled.pop(constraint, None)
        if template is None:
            template = llguidance.LLMatcher(vocab, constraint.grammar, log_level=0)
            if template.is_error():
                raise ValueError(f"invalid {constraint.kind.replace('_', ' ')}: {_first_line(template.get_error())}")
        self._compiled[constraint] = template  # the most recent last
        while len(self._compiled) > self.CACHED:
            self._compiled.pop(next(iter(self._compiled)))
        row = RowGrammar(template.deep_copy(), self.vocab_size, vocab.eos_token, constraint.forced)
        first = row.blocked(())
        if first is None or bool(first.all()):
            raise ValueError(f"the {constraint.kind.replace('_', ' ')} allows no first token of this vocabulary")
        return row


class RowGrammar:
    """One row's matcher: its state is the row's verified tokens; masks of draft paths are cached for one step."""

    def __init__(self, matcher, vocab_size: int, eos: int, forced: bool):
        self.matcher, self.vocab_size, self.eos, self.forced = matcher, vocab_size, eos, forced
        self.mask_seconds = 0.0  # time spent computing masks
        self.masks_computed = 0
        self._masks: dict[tuple, torch.Tensor | None] = {}

    def blocked(self, path: tuple) -> torch.Tensor | None:
        """bool [V]: the tokens NOT allowed after the verified tokens and ``path`` (draft tokens), ready for
        ``masked_fill``; None when the path itself is not allowed. Cached until ``advance``."""
        if path in self._masks:
            return self._masks[path]
        t0 = time.perf_counter()
        m = self.matcher
        n = m.try_consume_tokens(list(path)) if path else 0
        out = None
        if n == len(path):
            out = torch.from_numpy(self._allowed() == 0)
        if n:
            m.rollback(n)
        self._masks[path] = out
        self.mask_seconds += time.perf_counter() - t0
        self.masks_computed += 1
        return out

    def single(self, path: tuple) -> bool:
        """The grammar allows exactly one token after ``path`` (p_c is one-hot there, whatever the logits)."""
        blocked = self.blocked(path)
        return blocked is not None and blocked.numel() - int(np.count_nonzero(blocked.numpy())) == 1

    def forced_run(self, path: tuple, limit: int) -> list[int]:
        """Up to ``limit`` tokens after ``path`` that the grammar forces or fast-forwards (each one allowed where it
        stands), ending at an end of sequence."""
        m, run = self.matcher, []
        n = m.try_consume_tokens(list(path)) if path else 0
        if n < len(path):
            m.rollback(n)
            return []
        while len(run) < limit and not m.is_stopped():
            ff = m.compute_ff_tokens()[: limit - len(run)]
            if not ff:
                only = self._only_token()
                if only is None:
                    break
                ff = [only]
            took = m.try_consume_tokens(ff)
            run += ff[:took]
            if took < len(ff) or self.eos in ff[:took]:
                break
        m.rollback(n + len(run))
        return run

    def _allowed(self) -> np.ndarray:
        """uint8 [V]: 1 where the matcher's current state allows the token."""
        bits = np.frombuffer(self.matcher.compute_bitmask(), dtype=np.uint8)
        return np.unpackbits(bits, bitorder="little")[: self.vocab_size]

    def _only_token(self) -> int | None:
        allowed = np.flatnonzero(self._allowed())
        return int(allowed[0]) if len(allowed) == 1 else None

    def advance(self, tokens: list[int]) -> int | None:
        """Consume the tokens a step emitted (all allowed: they were drawn from p_c) -> the count up to and with an
        end of sequence when one was among them (the row stops there), else None."""
        self._masks.clear()
        for i, t in enumerate(tokens):
            if not self.matcher.consume_token(int(t)):
                raise RuntimeError(f"the grammar refused emitted token {t}: {_first_line(self.matcher.get_error())}")
            if int(t) == self.eos:
                return i + 1
        return None
