"""``specdecode bench-trees``: draft trees vs a single draft chain on the real model, interleaved.

Same drafter (early exit of the target with its own KV cache, or a trained draft / EAGLE head from
``specdecode distill``; or prompt lookup), same prompts, greedy and sampled; chains of k tokens vs trees
whose verify pass holds a comparable number of tokens. Reports tokens per target call, tokens/s and the
speedup vs plain decoding from the same run. Not here: argument parsing (``cli.bench_trees``).
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

from ..core.sampling import SamplingConfig
from ..engine import GenerationConfig, SpeculativeGenerator
from ..models.build import Builder
from ..prompts import TASKS

# (name, tree spec | "pld" (prompt-lookup chain) | None (the draft's chain), k)
CONFIGS = [
    ("plain", None, 0),
    ("chain k=4", None, 4),
    ("chain k=8", None, 8),
    ("tree static:2,2,1 (10 nodes)", "static:2,2,1", 0),
    ("tree static:4,1,1,1 (16 nodes)", "static:4,1,1,1", 0),
    ("tree dynamic:8", "dynamic:8", 0),
    ("tree dynamic:16", "dynamic:16", 0),
    ("prompt lookup chain k=8", "pld", 8),
    ("prompt lookup tree lookup:2 x 8 (<=16 nodes)", "lookup:2", 8),
    ("prompt lookup tree lookup:4 x 4 (<=16 nodes)", "lookup:4", 4),
]


def select(only: str | None) -> list[tuple]:
    """The configurations whose name contains one of the comma-separated words (plain always runs)."""
    words = [w.strip() for w in (only or "").split(",") if w.strip()]
    return [c for c in CONFIGS if c[0] == "plain" or not words or any(w in c[0] for w in words)]


def _generator(builder: Builder, draft: str, tree: str | None, k: int) -> SpeculativeGenerator:
    if k == 0 and tree is None:
        return builder.generator("none")
    if tree == "pld":
        return builder.generator("prompt-lookup")
    if tree and tree.startswith("lookup:"):
        return builder.generator("prompt-lookup", tree)
    return builder.generator(draft, tree)


def run(
    builder: Builder, draft: str, tasks: list[str], temps: list[float], configs: list[tuple], max_new: int, repeats: int
) -> list[dict]:
    """Every configuration on every task and temperature, ``repeats`` times -> one row per run."""
    gens = {name: _generator(builder, draft, tree, k) for name, tree, k in configs}
    rows = []
    for rep in range(repeats):
        for task in tasks:
            ids = builder.encode(TASKS[task][rep % len(TASKS[task])])
            for T in temps:
                for name, _, k in configs:
                    gc = GenerationConfig(
                        max_new_tokens=max_new, k=max(k, 1), sampling=SamplingConfig(T), eos_token_ids=builder.eos
                    )
                    t0 = time.perf_counter()
                    out = gens[name].generate([ids], gc, torch.Generator().manual_seed(rep))
                    dt = time.perf_counter() - t0
                    rows.append(
                        dict(
                            task=task,
                            T=T,
                            config=name,
                            rep=rep,
                            tok_s=out.stats.new_tokens / dt,
                            tpc=out.stats.tokens_per_target_call,
                        )
                    )
                    print(
                        f"  {task} T={T:g} {name}: {rows[-1]['tok_s']:.1f} tok/s, {rows[-1]['tpc']:.2f} tokens/call",
                        file=sys.stderr,
                    )
    return rows


def format_table(rows: list[dict], tasks: list[str], temps: list[float], configs: list[tuple]) -> str:
    lines = [f"{'task':<14} {'T':>4} {'configuration':<46} {'tokens/call':>11} {'tok/s':>7} {'vs plain':>8}"]
    for task in tasks:
        for T in temps:
            plain = [r for r in rows if r["task"] == task and r["T"] == T and r["config"] == "plain"]
            for name, _, _ in configs:
                rs = [r for r in rows if r["task"] == task and r["T"] == T and r["config"] == name]
                ratio = statistics.median(r["tok_s"] / p["tok_s"] for r, p in zip(rs, plain))
                lines.append(
                    f"{task:<14} {T:>4g} {name:<46} {statistics.median(r['tpc'] for r in rs):>11.2f} "
                    f"{statistics.median(r['tok_s'] for r in rs):>7.1f} {ratio:>7.2f}x"
                )
    return "\n".join(lines)
