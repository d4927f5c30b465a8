"""``specdecode bench-draft``: a trained draft (``specdecode distill``) vs plain decoding on held-out
open-ended prompts, interleaved in one process.

For every prompt and temperature the configurations run back to back in a rotating order: our plain
decoding, the draft at fixed k and adaptive k, draft trees (``--tree``), HF ``generate`` and HF assisted
generation with the same draft. Reports per task and temperature: alpha (pooled accepted / checked, and
exact mean sum min(p, q) from the logits), the measured cost ratio c, tokens per target call, tokens/s and
speedups (median of per-prompt ratios), with the predicted S(alpha, k, c). Not here: the sweep over all drafters
(``run``), argument parsing (``cli.bench_draft``).
"""

from __future__ import annotations

import os
import statistics
import sys

from ..analysis.theory import speedup
from ..prompts import TASKS
from .run import Config, Runner


def run(
    runner: Runner,
    path: str,
    tasks: list[str],
    temps: list[float],
    ks: list[int],
    trees: list[str],
    prompts: int,
    max_new: int,
    hf: bool,
) -> list[dict]:
    """Every configuration on every prompt and temperature, in a rotating order -> one record per run."""
    d = f"model:{path}"
    runner.run(Config("none"), runner.encode(TASKS[tasks[0]][0])[:16], 4, 0)  # warm-up, not timed
    runner.run(Config(d, 2), runner.encode(TASKS[tasks[0]][0])[:16], 4, 0)
    records = []
    for pid in range(prompts):
        for ti, task in enumerate(tasks):
            ids = runner.encode(TASKS[task][pid])
            for T in temps:
                cfgs = [Config("none", temperature=T)] + [Config(d, k, False, T) for k in ks] + [Config(d, 8, True, T)]
                cfgs += [Config(d, 0, False, T, method="rrs-wor", tree=spec) for spec in trees]
                if hf:
                    cfgs += [Config("hf", temperature=T), Config(f"hf-draft:{path}", temperature=T)]
                shift = (pid + ti) % len(cfgs)
                for cfg in cfgs[shift:] + cfgs[:shift]:
                    rec = runner.run(cfg, ids, max_new, seed=pid)
                    rec.update(
                        task=task,
                        prompt_id=pid,
                        temperature=T,
                        label=cfg.label,
                        drafter=cfg.drafter,
                        k=cfg.k,
                        adaptive=cfg.adaptive,
                        load1=os.getloadavg()[0],
                    )
                    records.append(rec)
                    print(
                        f"  {task} #{pid} T={T:g} {cfg.label}: {rec.get('tok_s', float('nan')):.1f} tok/s",
                        file=sys.stderr,
                    )
    return records


def format_table(records: list[dict], tasks: list[str], temps: list[float]) -> str:
    lines = [
        f"{'task':<8} {'T':>4} {'configuration':<36} {'tok/s':>6} {'vs plain':>8} {'vs HF':>6} {'alpha':>6} "
        f"{'exact':>6} {'c':>6} {'tok/call':>8} {'S theory':>8}"
    ]
    for task in tasks:
        for T in temps:
            rs_all = [r for r in records if r["task"] == task and r["temperature"] == T and "tok_s" in r]
            plain = {r["prompt_id"]: r["tok_s"] for r in rs_all if r["drafter"] == "none"}
            hf = {r["prompt_id"]: r["tok_s"] for r in rs_all if r["drafter"] == "hf"}

            def order(r):
                kind = {"none": 0, "hf": 3}.get(r["drafter"], 4 if r["drafter"].startswith("hf-") else 1)
                return kind, bool(r.get("tree")), r["adaptive"], r["k"]

            for label in dict.fromkeys(r["label"] for r in sorted(rs_all, key=order)):
                rs = [r for r in rs_all if r["label"] == label]
                vs_plain = statistics.median(r["tok_s"] / plain[r["prompt_id"]] for r in rs if r["prompt_id"] in plain)
                vs_hf = (
                    f"{statistics.median(r['tok_s'] / hf[r['prompt_id']] for r in rs if r['prompt_id'] in hf):>5.2f}x"
                    if hf
                    else f"{'-':>6}"
                )
                median = statistics.median(r["tok_s"] for r in rs)
                row = f"{task:<8} {T:>4g} {label:<36} {median:>6.1f} {vs_plain:>7.2f}x {vs_hf}"
                if rs[0].get("tree"):  # trees: tokens per target call only (alpha and c are chain figures)
                    tpc = statistics.mean(r["tokens_per_call"] for r in rs)
                    row += f" {'-':>6} {'-':>6} {'-':>6} {tpc:>8.2f} {'-':>8}"
                elif rs[0].get("proposed"):
                    acc = sum(r["accepted"] for r in rs)
                    checked = acc + sum(sum(r["rejection_positions"]) for r in rs)
                    alpha = acc / checked if checked else float("nan")
                    exact = statistics.mean(r["alpha_exact"] for r in rs)
                    c = statistics.median(r["c"] for r in rs)
                    tpc = statistics.mean(r["tokens_per_call"] for r in rs)
                    s = f"{speedup(min(alpha, 0.999), rs[0]['k'], c):>7.2f}x" if not rs[0]["adaptive"] else f"{'-':>8}"
                    row += f" {alpha:>6.3f} {exact:>6.3f} {c:>6.3f} {tpc:>8.2f} {s}"
                lines.append(row)
    return "\n".join(lines)
