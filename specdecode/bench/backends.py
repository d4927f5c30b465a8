"""``specdecode bench-backends``: our engine on llama.cpp and on Hugging Face against llama-cpp-python's own
plain and prompt-lookup decoding, llama.cpp's ``llama-server`` (plain and each n-gram spec type, when built) and
Hugging Face ``generate``, interleaved in one process, plus the cost of a target pass over n tokens, T(n), for
each backend and weight format.

Task sets: grounded (summarise, code edit), open (story, chat) and repetitive (``prompts.repetitive``: sequences
of requests run one after another; a configuration's time is the sequence's). Every configuration starts each run
of a task with no memory of earlier runs (``Config.fresh``: our suffix corpus and kept prefixes dropped,
llama-cpp-python's cache reset, llama-server restarted), so the repeats measure the same thing; within a task's
sequence, state carries over as it would for a batch job (llama-cpp-python reuses its previous request's common
prefix, llama-server its slot, ours its prefix cache).

Every configuration of a task runs back to back in a rotating order, so slow phases of a shared machine hit
all of them alike; ratios are per-task medians of tokens/s measured in the same run.
Not here: argument parsing (``cli.bench_backends``).
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..core.sampling import SamplingConfig
from ..engine import GenerationConfig
from ..engine.backend import Backend
from ..models.build import Builder
from ..prompts.repetitive import WORKLOADS
from . import llama_server
from .generate import TASKS as _GEN_TASKS
from .serve import Served, free_port

SETS = {
    "grounded": {"summarise": [_GEN_TASKS["summarise"]], "code-edit": [_GEN_TASKS["code-edit"]]},
    "open": {
        "story": [_GEN_TASKS["story"]],
        "chat": ["I keep forgetting to drink water during the day. What are a few simple habits that could help?"],
    },
    "repetitive": WORKLOADS,
}
BASE = "llama-cpp-python plain"  # the configuration every ratio is to
TASKS = {name: prompts for tasks in SETS.values() for name, prompts in tasks.items()}  # name -> requests in order
GREEDY = SamplingConfig(0.0)


@dataclass
class Config:
    """One configuration: ``run(ids)`` -> (seconds, new tokens, stats or None); ``fresh()`` before each run of a
    task forgets what earlier runs left (corpus, server state); ``single``: not run on request sequences."""

    run: Callable
    fresh: Callable = lambda: None
    close: Callable = lambda: None
    single: bool = False


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


def ours_config(
    builder: Builder,
    drafter: str,
    tree: str | None,
    k: int,
    adaptive: bool,
    max_new: int,
    single=False,
    sampling: SamplingConfig = GREEDY,
):
    """Our engine on ``builder``'s target (greedy unless ``sampling``: then seed 0 and no end of sequence, so every
    request runs ``max_new`` tokens)."""
    gen = builder.generator(drafter, tree)
    eos = builder.eos if sampling.is_greedy else ()

    def run(ids):
        cfg = GenerationConfig(max_new_tokens=max_new, k=k, adaptive=adaptive, sampling=sampling, eos_token_ids=eos)
        t0 = time.perf_counter()
        out = gen.generate([ids], cfg, torch.Generator().manual_seed(0))
        toks = out.tokens[0]
        return time.perf_counter() - t0, toks[:-1] if toks and toks[-1] in cfg.eos_token_ids else toks, out.stats

    forget = getattr(gen.drafter, "forget", None)

    def fresh():  # a task starts from nothing: no corpus of earlier outputs, no kept prompts (the target is shared)
        if forget is not None:
            forget()
        builder.target.forget_prefixes()

    return Config(run, fresh=fresh, single=single)


def llama_cpp_python_config(path: str, max_new: int, eos: tuple, pld: int = 0, sampling: SamplingConfig = GREEDY):
    """llama-cpp-python's own greedy decoding (``Llama.generate``), with its prompt-lookup draft when ``pld``; with
    ``sampling``, its own sampler chain with those settings (its order: top-k, top-p, min-p, then the temperature)
    and no end of sequence."""
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

    knobs = dict(temp=0.0, top_k=1, top_p=1.0, min_p=0.0)
    if not sampling.is_greedy:
        knobs = dict(temp=sampling.temperature, **llama_server.filter_knobs(sampling))
        eos = ()  # sampled runs compare speed: every request runs max_new tokens

    def run(ids):  # Llama.generate reuses the longest common prefix with the previous request, its default
        t0 = time.perf_counter()
        toks = []
        for t in llm.generate(ids, repeat_penalty=1.0, **knobs):
            if t in eos:  # the end-of-sequence token is not output (as ours)
                break
            toks.append(int(t))
            if len(toks) >= max_new:
                break
        return time.perf_counter() - t0, toks, None

    return Config(run, fresh=llm.reset)  # a task starts from an empty cache


def hf_generate_config(builder: Builder, max_new: int, pld: int = 0):
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
        toks = out[0, len(ids) :].tolist()
        return time.perf_counter() - t0, toks[:-1] if toks and toks[-1] in eos else toks, None  # EOS not counted

    return Config(run, single=True)


def llama_server_config(exe, gguf: str, max_new: int, spec_type: str | None, eos: tuple) -> Config:
    """llama.cpp's llama-server (its own timings; restarted before each run: its n-gram pools outlive requests)."""
    state: dict = {}

    def fresh():
        close()
        port = free_port()
        state["server"] = Served(llama_server.command(exe, gguf, port, spec_type), port, "/health")

    def close():
        if "server" in state:
            state.pop("server").stop()

    def run(ids):
        if "server" not in state:
            fresh()
        seconds, toks = llama_server.complete(state["server"].url, ids, max_new)
        return seconds, toks[:-1] if toks and toks[-1] in eos else toks, None

    return Config(run, fresh=fresh, close=close)


def configurations(lc: Builder, hf: Builder | None, max_new: int, k: int) -> dict[str, Config]:
    """name -> Config. llama-server's rows only where it is built (``llama_server.binary``)."""
    cfgs = {
        BASE: llama_cpp_python_config(lc.target.path, max_new, lc.eos),
        "llama-cpp-python prompt lookup (10)": llama_cpp_python_config(lc.target.path, max_new, lc.eos, pld=10),
        "ours llama.cpp plain": ours_config(lc, "none", None, 0, False, max_new),
        f"ours llama.cpp prompt lookup k={k}": ours_config(lc, "prompt-lookup", None, k, False, max_new),
        "ours llama.cpp prompt lookup adaptive": ours_config(lc, "prompt-lookup", None, 16, True, max_new),
        "ours llama.cpp suffix adaptive": ours_config(lc, "suffix", None, 16, True, max_new),
    }
    exe = llama_server.binary()
    if exe is None:
        print(llama_server.MISSING, file=sys.stderr)
    else:
        for spec in (None, *llama_server.SPEC_TYPES):
            name = f"llama-server {spec or 'plain'}"
            cfgs[name] = llama_server_config(exe, lc.target.path, max_new, spec, lc.eos)
    if hf is not None:
        cfgs.update(
            {
                "ours HF fp32 plain": ours_config(hf, "none", None, 0, False, max_new, single=True),
                "ours HF fp32 prompt lookup k=10": ours_config(
                    hf, "prompt-lookup", None, 10, False, max_new, single=True
                ),
                "ours HF fp32 prompt lookup adaptive": ours_config(
                    hf, "prompt-lookup", None, 16, True, max_new, single=True
                ),
                "HF generate": hf_generate_config(hf, max_new),
                "HF prompt lookup (10)": hf_generate_config(hf, max_new, pld=10),
            }
        )
    return cfgs


def run(cfgs: dict[str, Config], tasks: dict[str, list[list[int]]], repeats: int) -> list[dict]:
    """Every configuration on every task (a task: requests run in order), ``repeats`` times, in a rotating order."""
    first = next(iter(tasks.values()))[0]
    for cfg in cfgs.values():  # warm-up, not timed
        cfg.run(first[:16])
    names, records = list(cfgs), []
    try:
        for rep in range(repeats):
            for ti, (task, requests) in enumerate(tasks.items()):
                shift = (rep + ti) % len(names)
                for name in names[shift:] + names[:shift]:
                    if cfgs[name].single and len(requests) > 1:
                        continue
                    records.append(run_task(cfgs[name], task, name, rep, requests))
                    r = records[-1]
                    print(
                        f"  rep {rep + 1}/{repeats} {task:<16} {name:<44} {r['tokens'] / r['seconds']:6.1f} tok/s",
                        file=sys.stderr,
                    )
    finally:
        for cfg in cfgs.values():
            cfg.close()
    return records


def run_task(cfg: Config, task: str, name: str, rep: int, requests: list[list[int]]) -> dict:
    """One run of a task's requests in order -> its record (total seconds and tokens; pass stats of the last)."""
    cfg.fresh()
    seconds, ids, stats, calls = 0.0, [], None, 0.0
    cpu0 = time.process_time()  # this process's threads (a server in a process of its own is not counted)
    for prompt in requests:
        dt, toks, st = cfg.run(prompt)
        seconds += dt
        ids.append(toks)
        if st is not None:
            stats, calls = st, calls + st.target_calls
    rec = {"task": task, "config": name, "repeat": rep, "seconds": seconds, "tokens": sum(map(len, ids)), "ids": ids}
    rec.update(cpu_seconds=time.process_time() - cpu0, load1=os.getloadavg()[0])
    if stats is not None:
        rec.update(tokens_per_call=rec["tokens"] / max(calls, 1), overhead_fraction=stats.overhead_fraction)
    return rec


def format_table(records: list[dict], tasks: list[str], names: list[str]) -> str:
    """Per task: tokens, median tok/s, ratios to llama-cpp-python plain / prompt lookup and to the fastest
    llama-server configuration (plain or spec), tokens per target call, overhead, and whether the greedy tokens
    equal plain decoding's on the same runtime and engine (``_reference``)."""
    lines = [
        f"{'task':<16} {'configuration':<44} {'tokens':>6} {'tok/s':>7} {'vs lcp':>7} {'vs lcp PLD':>10} "
        f"{'vs best l-s':>11} {'tok/call':>8} {'overhead':>8} {'same as plain':>13}"
    ]
    for task in tasks:
        recs = [r for r in records if r["task"] == task]
        rate = {
            n: statistics.median(r["tokens"] / r["seconds"] for r in recs if r["config"] == n)
            for n in names
            if any(r["config"] == n for r in recs)
        }
        base, pld = rate[BASE], rate.get("llama-cpp-python prompt lookup (10)", float("nan"))
        best_ls = max((v for n, v in rate.items() if n.startswith("llama-server")), default=float("nan"))
        for name in rate:
            rs = [r for r in recs if r["config"] == name]
            tpc = statistics.median(r["tokens_per_call"] for r in rs) if "tokens_per_call" in rs[0] else float("nan")
            ovh = statistics.median(r.get("overhead_fraction", float("nan")) for r in rs)
            ref = next((r["ids"] for r in recs if r["config"] == _reference(name)), None)
            same = "-" if ref is None else f"{all(r['ids'] == ref for r in rs)}"
            lines.append(
                f"{task:<16} {name:<44} {rs[0]['tokens']:>6} {rate[name]:>7.1f} {rate[name] / base:>6.2f}x "
                f"{_ratio(rate[name], pld):>10} {_ratio(rate[name], best_ls):>11} {tpc:>8.2f} {ovh:>7.1%} {same:>13}"
            )
    return "\n".join(lines)


def _ratio(rate: float, anchor: float) -> str:
    return "-" if math.isnan(anchor) else f"{rate / anchor:.2f}x"  # "-": that anchor did not run


def _reference(name: str) -> str:
    """The plain configuration a configuration's greedy tokens must equal: the same engine on the same runtime
    (different runtimes round differently, and near-ties then flip: that is not a speculation error)."""
    for prefix, ref in (
        ("ours llama.cpp", "ours llama.cpp plain"),
        ("ours HF", "HF generate"),
        ("HF", "HF generate"),
        ("llama-server", "llama-server plain"),
    ):
        if name.startswith(prefix):
            return ref
    return BASE


def format_costs(costs: dict[str, dict[int, float]]) -> str:
    ns = sorted(next(iter(costs.values())))
    lines = [
        "T(n), ms per target pass over n new tokens (median; 128-token context)",
        f"{'backend / format':<22} " + " ".join(f"{n:>6}" for n in ns) + f" {'T(9)/T(1)':>10}",
    ]
    for name, t in costs.items():
        lines.append(f"{name:<22} " + " ".join(f"{t[n]:>6.1f}" for n in ns) + f" {t[9] / t[1]:>9.2f}x")
    return "\n".join(lines)
