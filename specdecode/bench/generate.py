"""``specdecode bench-generate``: our engine vs Hugging Face generate, interleaved in one process.

For each repeat, every task runs every configuration in a rotating order (A/B
interleaving), so slow phases of a shared machine hit all configurations alike. Reports
medians, ratios measured in the same run, the load average seen, and whether our
greedy output equals HF's plain greedy output token for token. Not here: argument parsing
(``cli.bench_generate``).
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import torch

from ..core.sampling import SamplingConfig
from ..engine import GenerationConfig
from ..models.build import Builder

TASKS = {
    "summarise": (
        "Summarize the following text in a few sentences, reusing its wording:\n\n"
        "The city council met on Tuesday to discuss the new public library. The library will have three floors, "
        "a children's reading room, a maker space with 3D printers, and a cafe. Construction will start in March "
        "and should take eighteen months. The council approved a budget of twelve million dollars, and the mayor "
        "said the library would be open seven days a week. Residents asked for longer opening hours on weekends "
        "and for more parking near the entrance."
    ),
    "code-edit": (
        "Rename the function `add` to `sum_two` and the variable `res` to `total` in this Python code. "
        "Return the full code.\n\n```python\ndef add(a, b):\n    res = a + b\n    return res\n\n\n"
        "def main():\n    res = add(2, 3)\n    print(res)\n    res = add(res, 10)\n    print(res)\n\n\n"
        'if __name__ == "__main__":\n    main()\n```'
    ),
    "story": "Write a short story about a robot who learns to paint.",
}


def run(builder: Builder, tasks: list[str], repeats: int, max_new: int, k: int) -> tuple[list[dict], list[str]]:
    """Every configuration on every task, ``repeats`` times in a rotating order -> (records, configuration names)."""
    greedy = SamplingConfig(0.0)
    hf, eos = builder.target.model, builder.eos
    ours_plain, ours_pl = builder.generator("none"), builder.generator("prompt-lookup")
    prompts = {t: builder.encode(TASKS[t]) for t in tasks}

    def run_hf(ids, pld):
        kw = dict(
            max_new_tokens=max_new,
            do_sample=False,
            eos_token_id=list(eos) or None,
            pad_token_id=eos[0] if eos else None,
        )
        if pld:
            kw["prompt_lookup_num_tokens"] = 10
        t0 = time.perf_counter()
        out = hf.generate(torch.tensor([ids]), **kw)
        return time.perf_counter() - t0, out[0, len(ids) :].tolist(), None

    def run_ours(gen, ids, kk, adaptive):
        cfg = GenerationConfig(max_new_tokens=max_new, k=kk, adaptive=adaptive, sampling=greedy, eos_token_ids=eos)
        t0 = time.perf_counter()
        out = gen.generate([ids], cfg, torch.Generator().manual_seed(0))
        return time.perf_counter() - t0, out.tokens[0], out.stats

    configs = {
        "HF generate": lambda ids: run_hf(ids, False),
        "HF prompt lookup (10)": lambda ids: run_hf(ids, True),
        "ours plain": lambda ids: run_ours(ours_plain, ids, 0, False),
        f"ours prompt lookup k={k}": lambda ids: run_ours(ours_pl, ids, k, False),
        "ours prompt lookup adaptive": lambda ids: run_ours(ours_pl, ids, 16, True),
    }
    for task in tasks:  # warm-up (not timed)
        run_ours(ours_plain, prompts[task][:8], 0, False)
        run_hf(prompts[task][:8], False)
    return _interleave(configs, prompts, tasks, repeats), list(configs)


def _interleave(configs: dict, prompts: dict, tasks: list[str], repeats: int) -> list[dict]:
    names, records = list(configs), []
    for rep in range(repeats):
        for ti, task in enumerate(tasks):
            order = names[(rep + ti) % len(names) :] + names[: (rep + ti) % len(names)]
            for name in order:
                dt, toks, st = configs[name](prompts[task])
                rec = {
                    "task": task,
                    "config": name,
                    "repeat": rep,
                    "seconds": dt,
                    "tokens": len(toks),
                    "ids": toks,
                    "load1": os.getloadavg()[0],
                }
                if st is not None:
                    rec.update(
                        tokens_per_call=st.tokens_per_target_call,
                        alpha=st.alpha_estimate,
                        overhead_fraction=st.overhead_fraction,
                        target_time=st.target_time,
                        total_time=st.total_time,
                    )
                records.append(rec)
                print(f"  rep {rep + 1}/{repeats} {task:<10} {name:<30} {len(toks) / dt:6.1f} tok/s", file=sys.stderr)
    return records


def format_table(records, tasks, names) -> str:
    lines = [
        f"{'task':<10} {'configuration':<30} {'tokens':>6} {'median s':>9} {'tok/s':>7} {'vs HF':>6} {'vs HF PLD':>9} "
        f"{'tok/call':>8} {'alpha':>6} {'overhead':>8} {'same as HF greedy':>17}"
    ]
    for task in tasks:
        recs = [r for r in records if r["task"] == task]
        ref = next(r["ids"] for r in recs if r["config"] == "HF generate")

        def rate(name, recs=recs):
            rs = [r for r in recs if r["config"] == name]
            return statistics.median(r["tokens"] / r["seconds"] for r in rs)

        hf, hf_pld = rate("HF generate"), rate("HF prompt lookup (10)")
        for name in names:
            rs = [r for r in recs if r["config"] == name]
            med_s = statistics.median(r["seconds"] for r in rs)
            rt = rate(name)
            tpc = statistics.median(r["tokens_per_call"] for r in rs) if "tokens_per_call" in rs[0] else float("nan")
            alpha = statistics.median(r["alpha"] for r in rs) if "alpha" in rs[0] else float("nan")
            ovh = (
                statistics.median(r["overhead_fraction"] for r in rs) if "overhead_fraction" in rs[0] else float("nan")
            )
            same = all(r["ids"] == ref for r in rs)
            lines.append(
                f"{task:<10} {name:<30} {rs[0]['tokens']:>6} {med_s:>9.2f} {rt:>7.1f} {rt / hf:>5.2f}x "
                f"{rt / hf_pld:>8.2f}x "
                f"{tpc:>8.2f} {alpha:>6.2f} {ovh:>7.1%} {str(same):>17}"
            )
    return "\n".join(lines)
