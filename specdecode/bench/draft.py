"""``specdecode bench-draft``: a trained draft (``specdecode distill``) vs plain decoding on held-out
open-ended prompts, interleaved in one process.

For every prompt and temperature the configurations run back to back in a rotating order: our plain
decoding, the draft at fixed k and adaptive k, draft trees (``--tree``), HF ``generate`` and HF assisted
generation with the same draft. Reports per task and temperature: alpha (pooled accepted / checked, and
exact mean sum min(p, q) from the logits), the measured cost ratio c, tokens per target call, tokens/s and speedups (median of
per-prompt ratios), with the predicted S(alpha, k, c). Not here: the sweep over all drafters (``bench``).
"""

from __future__ import annotations

import json
import os
import statistics
import sys

from ..theory import speedup
from .run import Config, Runner
from .tasks import TASKS


def default_draft(model: str) -> str:
    from ..distill.train import default_out

    return str(default_out(model))


def add_args(ap) -> None:
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--draft", help="trained draft folder (default: the default output of `specdecode distill --model MODEL`)")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--tasks", default="chat,story", help="comma-separated task categories (default chat,story: held out from training)")
    ap.add_argument("--temperatures", default="0,0.8")
    ap.add_argument("-k", default="3,5", help="fixed draft lengths to run, comma-separated (adaptive k always runs; default 3,5)")
    ap.add_argument("--prompts", type=int, default=4, help="prompts per task (default 4)")
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--tree", action="append", default=[], metavar="SPEC",
                    help="also run draft trees of this shape (static:B1,B2,... or dynamic:N; repeatable), grown by the "
                         "draft (EAGLE heads: one head pass per depth) and verified with rrs-wor (greedy walk at T=0)")
    ap.add_argument("--no-hf", action="store_true", help="skip the Hugging Face baselines")
    ap.add_argument("--json", metavar="FILE", help="also write every record as JSON lines to FILE")


def _ints(text: str, name: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{name} must be comma-separated integers, got {text!r}")
    if any(v < 1 for v in vals):
        raise ValueError(f"{name} values must be >= 1, got {text!r}")
    return vals


def cmd(args) -> int:
    from pathlib import Path

    path = args.draft or default_draft(args.model)
    if not Path(path).expanduser().is_dir():
        raise ValueError(f"no trained draft in {path}: run `specdecode distill --model {args.model}` first or pass --draft")
    tasks = [t for t in args.tasks.split(",") if t]
    bad = [t for t in tasks if t not in TASKS]
    if bad:
        raise ValueError(f"unknown task(s) {', '.join(bad)}; choose from {', '.join(TASKS)}")
    if not 1 <= args.prompts <= 10:
        raise ValueError(f"--prompts must be in [1, 10], got {args.prompts}")
    temps = [float(x) for x in args.temperatures.split(",") if x.strip()]
    ks = _ints(args.k, "-k")
    from ..engine.tree import TreeShape

    for spec in args.tree:
        TreeShape.parse(spec)  # a bad shape fails before any model loads
    runner = Runner(args.model, args.dtype)
    runner.draft_model(path)
    d = f"model:{path}"
    records = []
    load0 = os.getloadavg()[0]
    runner.run(Config("none"), runner.encode(TASKS[tasks[0]][0])[:16], 4, 0)  # warm-up, not timed
    runner.run(Config(d, 2), runner.encode(TASKS[tasks[0]][0])[:16], 4, 0)
    for pid in range(args.prompts):
        for ti, task in enumerate(tasks):
            ids = runner.encode(TASKS[task][pid])
            for T in temps:
                cfgs = [Config("none", temperature=T)] + [Config(d, k, False, T) for k in ks] + [Config(d, 8, True, T)]
                cfgs += [Config(d, 0, False, T, method="rrs-wor", tree=spec) for spec in args.tree]
                if not args.no_hf:
                    cfgs += [Config("hf", temperature=T), Config(f"hf-draft:{path}", temperature=T)]
                shift = (pid + ti) % len(cfgs)
                for cfg in cfgs[shift:] + cfgs[:shift]:
                    rec = runner.run(cfg, ids, args.max_new_tokens, seed=pid)
                    rec.update(task=task, prompt_id=pid, temperature=T, label=cfg.label, drafter=cfg.drafter, k=cfg.k,
                               adaptive=cfg.adaptive, load1=os.getloadavg()[0])
                    records.append(rec)
                    print(f"  {task} #{pid} T={T:g} {cfg.label}: {rec.get('tok_s', float('nan')):.1f} tok/s", file=sys.stderr)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            for r in records:
                fh.write(json.dumps(r) + "\n")
    print(format_table(records, tasks, temps))
    print(f"\ndraft {path}; {args.prompts} prompts per task, up to {args.max_new_tokens} new tokens; load average (1 min) "
          f"before {load0:.2f}, max during the run {max(r['load1'] for r in records):.2f} (2 cores)")
    return 0


def format_table(records: list[dict], tasks: list[str], temps: list[float]) -> str:
    lines = [f"{'task':<8} {'T':>4} {'configuration':<36} {'tok/s':>6} {'vs plain':>8} {'vs HF':>6} {'alpha':>6} "
             f"{'exact':>6} {'c':>6} {'tok/call':>8} {'S theory':>8}"]
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
                vs_hf = (f"{statistics.median(r['tok_s'] / hf[r['prompt_id']] for r in rs if r['prompt_id'] in hf):>5.2f}x"
                         if hf else f"{'-':>6}")
                row = f"{task:<8} {T:>4g} {label:<36} {statistics.median(r['tok_s'] for r in rs):>6.1f} {vs_plain:>7.2f}x {vs_hf}"
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

