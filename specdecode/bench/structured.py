"""``specdecode bench-structured``: constrained generation on the repetitive JSON workload (``prompts.repetitive``:
records to JSON in one schema, ``RECORD_SCHEMA``), constrained plain decoding against constrained speculative
decoding with and without forced-token drafts, and free plain decoding for the price of the constraint itself.

Each configuration runs the whole request sequence on a fresh generator (our suffix corpus starts empty and fills
as the sequence goes, as it would for a user); configurations rotate within each repeat, so slow phases of a shared
machine hit all alike. Reported: medians of tokens/s; the ratio to constrained plain decoding (the median of the
ratios within each repeat); tokens per target call; forced tokens accepted; grammar mask time per mask and its
share of a one-token pass; whether every output is valid against the schema (``jsonschema``); whether greedy
output equals constrained plain decoding's.

Not here: argument parsing (``cli.bench_structured``), the grammar (``engine.constraint``).
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field

import jsonschema
import torch

from ..core.sampling import SamplingConfig
from ..engine import Constraint, GenerationConfig, GenerationStats
from ..models.build import Builder
from ..prompts.repetitive import RECORD_SCHEMA, WORKLOADS

PLAIN = "constrained plain"
# name -> (drafter, k, adaptive, constrained, forced tokens)
CONFIGS = {
    "free plain (no constraint)": ("none", 0, False, False, False),
    PLAIN: ("none", 0, False, True, False),
    "constrained forced tokens only": ("none", 16, False, True, True),
    "constrained suffix adaptive": ("suffix", 16, True, True, False),
    "constrained suffix adaptive + forced": ("suffix", 16, True, True, True),
    "constrained prompt lookup adaptive + forced": ("prompt-lookup", 16, True, True, True),
}


@dataclass
class Result:
    name: str
    seconds: list = field(default_factory=list)  # per repeat: the whole sequence
    tokens: list = field(default_factory=list)
    outputs: list = field(default_factory=list)  # the last repeat's token lists
    stats: GenerationStats = field(default_factory=GenerationStats)

    @property
    def tok_s(self) -> float:
        return statistics.median(n / s for n, s in zip(self.tokens, self.seconds))


def run_config(builder: Builder, name: str, prompts: list[list[int]], max_new: int) -> tuple[float, list, object]:
    """One configuration over the request sequence on a fresh generator -> (seconds, outputs, merged stats)."""
    drafter, k, adaptive, constrained, forced = CONFIGS[name]
    gen = builder.generator(drafter, None)
    constraint = Constraint.json_schema(RECORD_SCHEMA, forced=forced) if constrained else None
    cfg = GenerationConfig(
        max_new_tokens=max_new,
        k=k,
        adaptive=adaptive,
        sampling=SamplingConfig(0.0),
        eos_token_ids=builder.eos,
        constraint=constraint,
    )
    outputs, parts, t0 = [], [], time.perf_counter()
    for ids in prompts:
        out = gen.generate([ids], cfg, torch.Generator().manual_seed(0))
        outputs.append([t for t in out.tokens[0] if t not in builder.eos])
        parts.append(out.stats)
    return time.perf_counter() - t0, outputs, GenerationStats.merged(parts)


def run_bench(builder: Builder, repeats: int, max_new: int, names: list[str], progress=print) -> list[Result]:
    prompts = [builder.encode(messages) for messages in WORKLOADS["records-json"]]
    builder.grammars.row(Constraint.json_schema(RECORD_SCHEMA))  # the grammar vocabulary built once, before timing
    results = {n: Result(n) for n in names}
    for rep in range(repeats):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            seconds, outputs, stats = run_config(builder, name, prompts, max_new)
            r = results[name]
            r.seconds.append(seconds)
            r.tokens.append(sum(len(o) for o in outputs))
            r.outputs, r.stats = outputs, stats
            progress(f"  repeat {rep + 1}/{repeats} {name}: {r.tokens[-1] / seconds:.1f} tok/s")
    return [results[n] for n in names]


def paired_ratio(r: Result, base: Result) -> float:
    """The median over repeats of r's tok/s over base's in the same repeat (a slow phase hits both alike)."""
    return statistics.median(
        (n / s) / (bn / bs) for n, s, bn, bs in zip(r.tokens, r.seconds, base.tokens, base.seconds)
    )


def valid_outputs(builder: Builder, outputs: list[list[int]]) -> int:
    """How many outputs are JSON valid against ``RECORD_SCHEMA``."""
    good = 0
    for toks in outputs:
        try:
            jsonschema.validate(json.loads(builder.tokenizer.decode(toks, skip_special_tokens=True)), RECORD_SCHEMA)
            good += 1
        except (ValueError, jsonschema.ValidationError):
            pass
    return good


def table(builder: Builder, results: list[Result], t1_ms: float) -> list[dict]:
    """One record per configuration (ratios to constrained plain decoding of the same run)."""
    base = next((r for r in results if r.name == PLAIN), None)
    rows = []
    for r in results:
        s = r.stats
        mask_us = 1e6 * s.mask_time / s.masks if s.masks else float("nan")
        rows.append(
            {
                "configuration": r.name,
                "tokens": r.tokens[-1],
                "tok_s": round(r.tok_s, 1),
                "vs_constrained_plain": round(paired_ratio(r, base), 2) if base else float("nan"),
                "tok_per_call": round(s.tokens_per_target_call, 2),
                "forced_accepted": s.forced_accepted,
                "mask_us": round(mask_us, 1),
                "mask_share_of_T1": round(mask_us / (1000 * t1_ms), 4) if s.masks else float("nan"),
                "valid": f"{valid_outputs(builder, r.outputs)}/{len(r.outputs)}",
                "same_as_plain": None if base is None else r.outputs == base.outputs,
            }
        )
    return rows


def format_rows(rows: list[dict]) -> str:
    head = (
        f"{'configuration':46s} {'tokens':>6s} {'tok/s':>7s} {'vs c-plain':>10s} {'tok/call':>8s} {'forced':>6s} "
        f"{'mask us':>7s} {'% of T(1)':>9s} {'valid':>5s} {'same':>5s}"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"{r['configuration']:46s} {r['tokens']:6d} {r['tok_s']:7.1f} {r['vs_constrained_plain']:9.2f}x "
            f"{r['tok_per_call']:8.2f} {r['forced_accepted']:6d} {r['mask_us']:7.1f} "
            f"{100 * r['mask_share_of_T1']:8.2f}% {r['valid']:>5s} {str(r['same_as_plain']):>5s}"
        )
    return "\n".join(lines)
