"""``specdecode bench-backends``: our engine on llama.cpp and on Hugging Face against llama-cpp-python's own
plain and prompt-lookup decoding and Hugging Face ``generate``, interleaved in one process, plus the cost of a
target pass over n tokens, T(n), for each backend and weight format.

Every configuration of a task runs back to back in a rotating order, so slow phases of a shared machine hit
all of them alike; ratios are per-task medians of tokens/s measured in the same run. llama-cpp-python's
prompt cache is cleared before each of its runs (it would otherwise skip the prefill that our runs pay).
Not here: argument parsing (``cli.bench_backends``).
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import torch

from ..core.sampling import SamplingConfig
from ..engine import GenerationConfig
from ..engine.backend import Backend
from ..models.build import Builder
from .generate import TASKS as _GEN_TASKS

TASKS = {
    **_GEN_TASKS,
    "chat": "I keep forgetting to drink water during the day. What are a few simple habits that could help?",
}
GREEDY = SamplingConfig(0.0)


def pass_costs(lm: Backend, n_max: int = 16, reps: int = 7, context: int = 128) -> dict[int, float]:
    """Median ms of one target pass over n = 1..n_max new tokens after a ``context``-token prefix."""
    ids = [(17 * i + 11) % min(lm.vocab_size, 20000) for i in range(context + n_max)]
    lm.reset(1)
    lm.extend([ids[:context]], need_logits=False)
    times: dict[int, list] = {n: [] for n in range(1, n_max + 1)}
    for _ in range(reps):
        for n in range(1, n_max + 1):
            t0 = time.perf_counter()
            lm.extend([ids[context : context + n]])
            times[n].append(1000 * (time.perf_counter() - t0))
            lm.rollback([context])
    return {n: statistics.median(v) for n, v in times.items()}


def _ours(builder: Builder, drafter: str, tree: str | None, k: int, adaptive: bool, max_new: int):
    gen = builder.generator(drafter, tree)

    def run(ids):
        cfg = GenerationConfig(
            max_new_tokens=max_new, k=k, adaptive=adaptive, sampling=GREEDY, eos_token_ids=builder.eos
        )
        t0 = time.perf_counter()
        out = gen.generate([ids], cfg, torch.Generator().manual_seed(0))
        return time.perf_counter() - t0, out.tokens[0], out.stats

    return run


def _llama_cpp_python(path: str, max_new: int, eos: tuple, pld: int = 0):
    """llama-cpp-python's own greedy decoding (``Llama.generate``), with its prompt-lookup draft when ``pld``."""
    from llama_cpp import Llama
    from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

    draft = LlamaPromptLookupDecoding(num_pred_tokens=pld) if pld else None
    # flash attention on, as llama.cpp's own default and our backend (llama-cpp-python turns it off by default;
    # its logits then differ from llama.cpp's by up to ~1.3 here, so greedy outputs would not be comparable)
    llm = Llama(
        model_path=path,
        n_ctx=4096,
        n_threads=os.cpu_count(),
        n_batch=512,
        verbose=False,
        draft_model=draft,
        flash_attn=True,
    )

    def run(ids):
        llm.reset()  # no prompt reuse between runs: every configuration pays its prefill
        t0 = time.perf_counter()
        toks = []
        for t in llm.generate(ids, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0):
            toks.append(int(t))
            if t in eos or len(toks) >= max_new:
                break
        return time.perf_counter() - t0, toks, None

    return run


def _hf_generate(builder: Builder, max_new: int, pld: int = 0):
    eos = builder.eos

    def run(ids):
        kw = dict(
            max_new_tokens=max_new,
            do_sample=False,
            eos_token_id=list(eos) or None,
            pad_token_id=eos[0] if eos else None,
        )
        if pld:
            kw["prompt_lookup_num_tokens"] = pld
        t0 = time.perf_counter()
        out = builder.target.model.generate(torch.tensor([ids]), **kw)
        return time.perf_counter() - t0, out[0, len(ids) :].tolist(), None

    return run


def configurations(lc: Builder, hf: Builder | None, max_new: int, k: int) -> dict:
    """name -> run(ids) -> (seconds, tokens, stats or None)."""
    cfgs = {
        "llama-cpp-python plain": _llama_cpp_python(lc.target.path, max_new, lc.eos),
        "llama-cpp-python prompt lookup (10)": _llama_cpp_python(lc.target.path, max_new, lc.eos, pld=10),
        "ours llama.cpp plain": _ours(lc, "none", None, 0, False, max_new),
        f"ours llama.cpp prompt lookup k={k}": _ours(lc, "prompt-lookup", None, k, False, max_new),
        "ours llama.cpp prompt lookup adaptive": _ours(lc, "prompt-lookup", None, 16, True, max_new),
        f"ours llama.cpp lookup tree lookup:3 k={k}": _ours(lc, "prompt-lookup", "lookup:3", k, False, max_new),
    }
    if hf is not None:
        cfgs.update(
            {
                "ours HF fp32 plain": _ours(hf, "none", None, 0, False, max_new),
                "ours HF fp32 prompt lookup adaptive": _ours(hf, "prompt-lookup", None, 16, True, max_new),
                "HF generate": _hf_generate(hf, max_new),
                "HF prompt lookup (10)": _hf_generate(hf, max_new, pld=10),
            }
        )
    return cfgs


def run(cfgs: dict, prompts: dict[str, list[int]], repeats: int) -> list[dict]:
    for ids in prompts.values():  # warm-up, not timed
        for fn in cfgs.values():
            fn(ids[:16])
    names, records = list(cfgs), []
    for rep in range(repeats):
        for ti, (task, ids) in enumerate(prompts.items()):
            shift = (rep + ti) % len(names)
            for name in names[shift:] + names[:shift]:
                dt, toks, st = cfgs[name](ids)
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
                        overhead_fraction=st.overhead_fraction,
                        prefill=st.prefill_time,
                    )
                records.append(rec)
                print(f"  rep {rep + 1}/{repeats} {task:<10} {name:<44} {len(toks) / dt:6.1f} tok/s", file=sys.stderr)
    return records


def format_table(records: list[dict], tasks: list[str], names: list[str]) -> str:
    lines = [
        f"{'task':<10} {'configuration':<44} {'tokens':>6} {'tok/s':>7} {'vs lcp':>7} {'vs lcp PLD':>10} "
        f"{'tok/call':>8} {'overhead':>8} {'same tokens as':>16}"
    ]
    for task in tasks:
        recs = [r for r in records if r["task"] == task]

        def rate(name, recs=recs):
            return statistics.median(r["tokens"] / r["seconds"] for r in recs if r["config"] == name)

        base, pld = rate("llama-cpp-python plain"), rate("llama-cpp-python prompt lookup (10)")
        ref = {
            "llama.cpp": next(r["ids"] for r in recs if r["config"] == "llama-cpp-python plain"),
            "HF": next((r["ids"] for r in recs if r["config"] == "HF generate"), None),
        }
        for name in names:
            rs = [r for r in recs if r["config"] == name]
            tpc = statistics.median(r["tokens_per_call"] for r in rs) if "tokens_per_call" in rs[0] else float("nan")
            ovh = (
                statistics.median(r["overhead_fraction"] for r in rs) if "overhead_fraction" in rs[0] else float("nan")
            )
            side = "HF" if "HF" in name else "llama.cpp"
            same = f"{side} plain: {all(r['ids'] == ref[side] for r in rs)}" if ref[side] is not None else "-"
            lines.append(
                f"{task:<10} {name:<44} {rs[0]['tokens']:>6} {rate(name):>7.1f} {rate(name) / base:>6.2f}x "
                f"{rate(name) / pld:>9.2f}x {tpc:>8.2f} {ovh:>7.1%} {same:>16}"
            )
    return "\n".join(lines)


def format_costs(costs: dict[str, dict[int, float]]) -> str:
    ns = sorted(next(iter(costs.values())))
    lines = [
        "T(n), ms per target pass over n new tokens (median; 128-token context)",
        f"{'backend / format':<22} " + " ".join(f"{n:>6}" for n in ns) + f" {'T(9)/T(1)':>10}",
    ]
    for name, t in costs.items():
        lines.append(f"{name:<22} " + " ".join(f"{t[n]:>6.1f}" for n in ns) + f" {t[9] / t[1]:>9.2f}x")
    return "\n".join(lines)
