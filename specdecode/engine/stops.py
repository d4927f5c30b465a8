"""Where plain decoding would have stopped inside one step's tokens: end of sequence, the token budget,
or a stop string. A speculative step emits several tokens at once; this cuts them exactly where a
one-token-at-a-time decoder would have stopped, so the output (tokens, text, streamed pieces) is the
same as plain decoding's.

Not here: decoding text for display or the loop itself.
"""

from __future__ import annotations

from .config import GenerationConfig


class StopRule:
    def __init__(self, config: GenerationConfig, tokenizer=None):
        self.max_new = config.max_new_tokens
        self.eos = frozenset(config.eos_token_ids)
        self.strings = tuple(config.stop_strings)
        if self.strings and tokenizer is None:
            raise ValueError("stop_strings need a tokenizer: pass one to SpeculativeGenerator")
        self.tokenizer = tokenizer
        # a stop string of L characters lies within the last 4L tokens (>= 1 byte each); the margin covers
        # decoders that treat the first token of a window differently (leading spaces)
        self.window = 4 * max((len(s) for s in self.strings), default=0) + 16

    def cut(self, tokens: list[int], so_far: list[int]) -> tuple[int, str | None]:
        """-> (how many of ``tokens`` plain decoding would emit after ``so_far``, the finish reason or None)."""
        room = self.max_new - len(so_far)
        for i, t in enumerate(tokens):
            if i >= room:
                return i, "length"
            if t in self.eos:
                return i + 1, "eos"
            if self.strings and self._stops(so_far + tokens[: i + 1]):
                return i + 1, "stop"
        if len(so_far) + len(tokens) >= self.max_new:
            return len(tokens), "length"
        return len(tokens), None

    def _stops(self, ids: list[int]) -> bool:
        """Does the generated text end in a completed stop string? (Checked after every token, so a match in
        the window can only be the one the last token completed.)"""
        text = self.tokenizer.decode(ids[-self.window :])
        return any(s in text for s in self.strings)
