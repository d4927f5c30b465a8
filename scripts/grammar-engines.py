"""Mask cost of llguidance and xgrammar on SmolLM2's vocabulary (docs/structured.md, "The constraint engine").

    .venv/bin/pip install --no-deps --target /tmp/xg xgrammar apache-tvm-ffi   # xgrammar without triton & co.
    PYTHONPATH=/tmp/xg .venv/bin/python scripts/grammar-engines.py

Medians over 5 passes of a 5-property JSON schema's valid document: the time to compute the allowed-token mask at
each position, and the time to compile the schema. xgrammar is skipped with one line when it is not importable.
"""

import json
import statistics
import time

import llguidance
import llguidance.hf
import llguidance.torch as lt

from specdecode.models.registry import smollm2_dir
from specdecode.models.tokenizers import load_tokenizer

V = 49152
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "email": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "active": {"type": "boolean"},
    },
    "required": ["name", "age", "email", "tags", "active"],
    "additionalProperties": False,
}
DOC = {"name": "Ada Lovelace", "age": 36, "email": "ada@example.org", "tags": ["math", "poetry"], "active": True}


def timed_masks(reset, fill, consume, ids) -> list[float]:
    out = []
    for _ in range(5):
        reset()
        for t in ids:
            t0 = time.perf_counter()
            fill()
            out.append(time.perf_counter() - t0)
            consume(t)
    return out


def report(name, compile_s, masks):
    print(
        f"{name:12s} compile {compile_s * 1e3:7.1f} ms   mask median {statistics.median(masks) * 1e6:6.1f} us   "
        f"p90 {sorted(masks)[int(0.9 * len(masks))] * 1e6:6.1f} us"
    )


def main():
    smollm2_dir()
    tok = load_tokenizer("smollm2-135m")
    ids = tok.encode(json.dumps(DOC))
    print(f"SmolLM2 vocabulary {V}; document of {len(ids)} tokens")
    vocab = llguidance.hf.from_tokenizer(tok, n_vocab=V)
    t0 = time.perf_counter()
    m = llguidance.LLMatcher(vocab, llguidance.LLMatcher.grammar_from_json_schema(SCHEMA), log_level=0)
    compile_s = time.perf_counter() - t0
    bm = lt.allocate_token_bitmask(1, V)
    report(
        "llguidance", compile_s, timed_masks(m.reset, lambda: lt.fill_next_token_bitmask(m, bm), m.consume_token, ids)
    )
    try:
        import xgrammar as xgr
    except ImportError:
        print("xgrammar: not importable (see the docstring for how to install it beside the pinned torch)")
        return
    t0 = time.perf_counter()
    info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=V)
    compiled = xgr.GrammarCompiler(info).compile_json_schema(json.dumps(SCHEMA))
    compile_s = time.perf_counter() - t0
    gm, xbm = xgr.GrammarMatcher(compiled), xgr.allocate_token_bitmask(1, V)
    report("xgrammar", compile_s, timed_masks(gm.reset, lambda: gm.fill_next_token_bitmask(xbm), gm.accept_token, ids))


if __name__ == "__main__":
    main()
