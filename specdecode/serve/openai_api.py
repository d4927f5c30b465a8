"""OpenAI-compatible request parsing and response shapes for ``/v1/chat/completions`` and ``/v1/completions``.

``parse`` checks a JSON body field by field and raises ``ApiError`` (HTTP 400 with an OpenAI-style error body
naming the field) for anything out of range or unsupported; it returns the prompt (chat messages or text) and
a ``GenerationConfig``. ``response_format`` (``json_object``, ``json_schema`` with ``strict``) constrains the output
(engine.constraint). Extensions beside OpenAI's fields: ``top_k`` and ``min_p`` (as vLLM and llama-server take them);
``regex`` (the output matches it); ``k`` (draft length, 0 = plain decoding), ``adaptive`` and ``method``
(verification method) for the speculative engine. Other servers' sampling extensions (``repetition_penalty``,
``typical_p``, ``guided_json``, ...) are refused unless neutral. Every response carries a ``speculative`` object:
that request's accepted / recovered / bonus counts and tokens per target call.

``TextStream`` turns the tokens a request emits into text deltas and applies OpenAI's stop semantics (the
stop string is not returned), holding back text that might still become the start of a stop string.

Not here: HTTP (``app``), the engine thread (``worker``).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from ..core.sampling import SamplingConfig
from ..engine import K_MAX, Constraint, GenerationConfig, Request
from ..verify import METHODS


class ApiError(Exception):
    def __init__(self, message: str, param: str | None = None, status: int = 400, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.message, self.param, self.status, self.kind = message, param, status, kind

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": None}}


# fields OpenAI defines, and other servers' sampling extensions (vLLM, llama-server, llama-cpp-python), that would
# change the output distribution or its shape: refused unless at their neutral value, never ignored (a client sending
# them expects their effect)
UNSUPPORTED = {
    "tools": (None, []),
    "functions": (None, []),
    "tool_choice": (None, "none"),
    "logit_bias": (None, {}),
    "presence_penalty": (None, 0, 0.0),
    "frequency_penalty": (None, 0, 0.0),
    "best_of": (None, 1),
    "echo": (None, False),
    "suffix": (None, ""),
    "audio": (None,),
    "modalities": (None, ["text"]),
    "repetition_penalty": (None, 1, 1.0),
    "repeat_penalty": (None, 1, 1.0),
    "typical_p": (None, 1, 1.0),
    "tfs_z": (None, 1, 1.0),
    "top_a": (None, 0, 0.0),
    "mirostat": (None, 0),
    "mirostat_mode": (None, 0),
    "dynatemp_range": (None, 0, 0.0),
    "dry_multiplier": (None, 0, 0.0),
    "xtc_probability": (None, 0, 0.0),
    "min_tokens": (None, 0),
    "ignore_eos": (None, False),
    "use_beam_search": (None, False),
    "grammar": (None, ""),
    "json_schema": (None,),
    "guided_json": (None,),
    "guided_regex": (None,),
    "guided_choice": (None,),
    "guided_grammar": (None,),
}


def _number(body: dict, name: str, default, low: float, high: float | None = None, low_open: bool = False):
    v = body.get(name, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
        raise ApiError(f"{name} must be a number, got {v!r}", name)
    if (v <= low if low_open else v < low) or (high is not None and v > high):
        lo = f"({low}" if low_open else f"[{low}"
        raise ApiError(f"{name} must be in {lo}, {high if high is not None else 'inf'}], got {v}", name)
    return v


def _int(body: dict, name: str, default, low: int, high: int | None = None):
    v = body.get(name, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise ApiError(f"{name} must be an integer, got {v!r}", name)
    if v < low or (high is not None and v > high):
        raise ApiError(f"{name} must be in [{low}, {high if high is not None else 'inf'}], got {v}", name)
    return v


ROLES = ("system", "developer", "user", "assistant")


def _prompt(body: dict, chat: bool, max_messages: int):
    if chat:
        msgs = body.get("messages")
        if (
            not isinstance(msgs, list)
            or not msgs
            or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in msgs
            )
        ):
            raise ApiError(
                "messages must be a non-empty list of {role, content} objects with string content", "messages"
            )
        if len(msgs) > max_messages:
            raise ApiError(f"messages has {len(msgs)} entries; this server takes at most {max_messages}", "messages")
        bad = next((m["role"] for m in msgs if m["role"] not in ROLES), None)
        if bad is not None:
            raise ApiError(f"messages: unknown role {bad[:40]!r}; use one of {', '.join(ROLES)}", "messages")
        return [{"role": m["role"], "content": m["content"]} for m in msgs]
    p = body.get("prompt")
    if isinstance(p, list) and len(p) == 1 and isinstance(p[0], str):
        p = p[0]
    if not isinstance(p, str) or not p.strip():
        raise ApiError("prompt must be a non-empty string (one prompt per request)", "prompt")
    return p


def _stops(body: dict) -> tuple:
    stop = body.get("stop")
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops) or len(stops) > 4:
        raise ApiError("stop must be a non-empty string or a list of up to 4 non-empty strings", "stop")
    return tuple(stops)


@dataclass(frozen=True)
class Rules:
    """What a request is checked against: the served model, its end-of-sequence ids and the server's defaults and
    caps."""

    model_id: str
    eos: tuple
    default_k: int = 4
    default_adaptive: bool = False
    max_new_default: int = 256
    max_messages: int = 256
    max_tokens_cap: int = 4096


def parse(body, chat: bool, rules: Rules):
    """A request body -> (prompt: messages or text, GenerationConfig, seed or None, stream, include_usage)."""
    model_id, eos, default_k, default_adaptive = rules.model_id, rules.eos, rules.default_k, rules.default_adaptive
    if not isinstance(body, dict):
        raise ApiError("the request body must be a JSON object", None)
    if body.get("model", model_id) != model_id:
        raise ApiError(f"model {body.get('model')!r} is not served here: use {model_id!r}", "model")
    for name, allowed in UNSUPPORTED.items():
        if name in body and body[name] not in allowed:
            raise ApiError(
                f"{name} is not supported by this server (it would change the output distribution or shape)", name
            )
    if _int(body, "n", 1, 1) != 1:
        raise ApiError("n must be 1: one choice per request", "n")
    prompt = _prompt(body, chat, rules.max_messages)
    temperature = _number(body, "temperature", 1.0, 0.0, 2.0)
    top_p = _number(body, "top_p", None, 0.0, 1.0, low_open=True)
    top_k = _int(body, "top_k", None, 1)
    min_p = _number(body, "min_p", None, 0.0, 1.0)
    name = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    max_tokens = _int(body, name, min(rules.max_new_default, rules.max_tokens_cap), 1, rules.max_tokens_cap)
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 1 << 63):
        raise ApiError("seed must be an integer in [0, 2**63)", "seed")
    method = body.get("method")
    if method is not None and method not in METHODS:
        raise ApiError(f"method must be one of {', '.join(METHODS)}, got {method!r}", "method")
    adaptive = body.get("adaptive", default_adaptive)
    if not isinstance(adaptive, bool):
        raise ApiError("adaptive must be true or false", "adaptive")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError("stream must be true or false", "stream")
    opts = body.get("stream_options") or {}
    sampling = SamplingConfig(temperature, top_k=top_k, top_p=top_p, min_p=min_p)
    config = GenerationConfig(
        max_new_tokens=max_tokens,
        k=_int(body, "k", default_k, 0, K_MAX),
        adaptive=adaptive,
        method=method,
        sampling=sampling,
        eos_token_ids=eos,
        stop_strings=_stops(body),
        constraint=_constraint(body),
        logprobs=_logprobs(body, chat),
    )
    return prompt, config, seed, stream, bool(isinstance(opts, dict) and opts.get("include_usage"))


def _logprobs(body: dict, chat: bool) -> int | None:
    """Chat: ``logprobs`` (true/false) and ``top_logprobs`` (0-20); completions: ``logprobs`` (0-5 alternatives)
    -> the alternatives to report per token, None for no logprobs."""
    if not chat:
        return _int(body, "logprobs", None, 0, 5)
    on = body.get("logprobs", False)
    if on is None:
        on = False
    if not isinstance(on, bool):
        raise ApiError("logprobs must be true or false", "logprobs")
    top = _int(body, "top_logprobs", None, 0, 20)
    if top is not None and not on:
        raise ApiError("top_logprobs needs logprobs: true", "top_logprobs")
    return (top or 0) if on else None


def logprobs_json(lps: list, tok, chat: bool, offset: int = 0) -> dict | None:
    """engine.logprobs.TokenLogprob records -> OpenAI's ``logprobs`` object (chat: ``content``; completions:
    ``tokens`` / ``token_logprobs`` / ``top_logprobs`` / ``text_offset`` from ``offset``)."""
    if lps is None:
        return None

    texts = {t: tok.decode([t]) for r in lps for t in (r.token, *(t for t, _ in r.top))}  # each token decoded once

    def num(x: float):
        return x if x != float("-inf") else -9999.0  # JSON has no -inf; OpenAI reports -9999.0 for impossible tokens

    def entry(t: int, lp: float) -> dict:
        return {"token": texts[t], "logprob": num(lp), "bytes": list(texts[t].encode())}

    if chat:
        return {"content": [entry(r.token, r.logprob) | {"top_logprobs": [entry(*x) for x in r.top]} for r in lps]}
    offsets, at = [], offset
    for r in lps:
        offsets.append(at)
        at += len(texts[r.token])
    return {
        "tokens": [texts[r.token] for r in lps],
        "token_logprobs": [num(r.logprob) for r in lps],
        "top_logprobs": [{texts[t]: num(lp) for t, lp in r.top} for r in lps] if lps and lps[0].top else None,
        "text_offset": offsets,
    }


def _constraint(body: dict) -> Constraint | None:
    """``response_format`` / ``regex`` -> the output's constraint (None: free text)."""
    fmt, regex = body.get("response_format"), body.get("regex")
    if regex is not None:
        if not isinstance(regex, str) or not regex:
            raise ApiError("regex must be a non-empty string (a regular expression the output matches)", "regex")
        if fmt not in (None, {"type": "text"}):
            raise ApiError("give either response_format or regex, not both", "regex")
        try:
            return Constraint.regex(regex)
        except ValueError as exc:
            raise ApiError(str(exc), "regex") from None
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind not in ("text", "json_object", "json_schema"):
        raise ApiError('response_format must be {"type": "text" | "json_object" | "json_schema"}', "response_format")
    if kind == "text":
        return None
    if kind == "json_object":
        return Constraint.json_object()
    spec = fmt.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
        raise ApiError("response_format.json_schema must be an object with a schema object", "response_format")
    strict = spec.get("strict", False)
    if not isinstance(strict, bool) and strict is not None:
        raise ApiError("response_format.json_schema.strict must be true or false", "response_format")
    try:
        return Constraint.json_schema(spec.get("schema", {}), strict=bool(strict))
    except ValueError as exc:
        raise ApiError(str(exc), "response_format") from None


def speculative(r: Request) -> dict:
    s = r.stats
    return {
        "accepted": s.accepted,
        "recovered": s.recovered,
        "bonus": s.bonus,
        "proposed": s.proposed,
        "target_calls": s.row_steps,
        "tokens_per_target_call": round(s.tokens_per_target_call, 4),
        "forced": s.forced_accepted,
        "per_position_acceptance": [
            round(a / p, 4) if p else None for a, p in zip(s.per_position_accepted, s.per_position_proposed)
        ],
    }


def finish_reason(r: Request) -> str:
    return "length" if r.reason == "length" else "stop"


def usage(r: Request) -> dict:
    """OpenAI's usage record; ``cached_tokens``: prompt tokens restored from the prefix cache (llama.cpp)."""
    return {
        "prompt_tokens": len(r.prompt),
        "completion_tokens": len(r.new),
        "total_tokens": len(r.prompt) + len(r.new),
        "prompt_tokens_details": {"cached_tokens": r.cached},
    }


class Envelope:
    """The id, timestamps and object names of one response."""

    def __init__(self, chat: bool, model: str):
        self.chat, self.model = chat, model
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())

    def whole(self, text: str, r: Request, logprobs: dict | None = None) -> dict:
        choice = {"index": 0, "finish_reason": finish_reason(r), "logprobs": logprobs}
        choice.update({"message": {"role": "assistant", "content": text}} if self.chat else {"text": text})
        return {
            "id": self.id,
            "object": "chat.completion" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": usage(r),
            "speculative": speculative(r),
        }

    def chunk(
        self,
        text: str | None,
        finish: str | None,
        extra: dict | None = None,
        first: bool = False,
        logprobs: dict | None = None,
    ) -> dict:
        if self.chat:
            delta = {"role": "assistant", "content": text or ""} if first else ({"content": text} if text else {})
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": logprobs}
        else:
            choice = {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": logprobs}
        out = {
            "id": self.id,
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        }
        return {**out, **(extra or {})}


class TextStream:
    """Emitted tokens -> text deltas, cut before the first stop string (not returned, as OpenAI does); text that
    could still turn into a stop string is held back until it cannot."""

    LOOKBACK = 4  # tokens decoded again before the settled point: a token's text can depend on its left neighbour

    def __init__(self, tokenizer, stops: tuple):
        self.tok, self.stops = tokenizer, stops
        self.ids: list[int] = []
        self.settled, self.read = "", 0  # the text of ids[:read], which ends on a whole character
        self.sent = 0
        self.stopped = False

    def feed(self, tokens: list[int], final: bool = False) -> str:
        if self.stopped:
            return ""
        self.ids += tokens
        text = self._text()
        cut = min((i for i in (text.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped, text = True, text[:cut]
        elif not final:
            text = text[: len(text) - self._held(text)]
            if text.endswith("\ufffd"):  # an incomplete UTF-8 character: wait for its other bytes
                text = text.rstrip("\ufffd")
        out = text[self.sent :] if len(text) > self.sent else ""
        self.sent = max(self.sent, len(text))
        return out

    def _text(self) -> str:
        """The text of every id so far, decoding only the tokens after the settled point (and LOOKBACK before it),
        so a long answer costs O(tokens) per step rather than a decode of everything emitted."""
        start = max(0, self.read - self.LOOKBACK)
        head = self.tok.decode(self.ids[start : self.read], skip_special_tokens=True)
        tail = self.tok.decode(self.ids[start:], skip_special_tokens=True)
        if not tail.startswith(head):  # a decoder whose window text differs: decode everything
            return self.tok.decode(self.ids, skip_special_tokens=True)
        if tail.endswith("\ufffd"):  # an incomplete character: not settled yet
            return self.settled + tail[len(head) :]
        self.settled, self.read = self.settled + tail[len(head) :], len(self.ids)
        return self.settled

    def _held(self, text: str) -> int:
        """Characters at the end of ``text`` that are a proper prefix of some stop string."""
        return max((n for s in self.stops for n in range(1, len(s)) if text.endswith(s[:n])), default=0)
