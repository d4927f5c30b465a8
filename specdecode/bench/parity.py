"""``specdecode bench-backends --prompt-lengths``: our decoding on llama.cpp against llama-cpp-python's own plain
decoding of the same GGUF, by prompt length (the plain-parity check: the prefill and the per-step cost both count).

A prompt of n tokens is the first n tokens of a text made of the whole task prompt set (``prompts.tasks``: varied
passages, code, stories, chats; no chat template), continued greedily. Each repeat runs every configuration on every
length back to back in a rotating order; a ratio is the median over repeats of the ratio within each repeat. The
CPU seconds of each run are kept too: on a shared machine they move less than the wall time.
Not here: the task sets and their table (``bench.backends``), argument parsing (``cli.bench_backends``).
"""

from __future__ import annotations

import statistics

from ..core.sampling import SamplingConfig
from ..models.build import Builder
from ..prompts.tasks import TASKS as PROMPT_SET
from . import backends
from .backends import BASE, GREEDY, Config, llama_cpp_python_config, ours_config


def text() -> str:
    """Every message of the prompt set, one after another (~2600 SmolLM2 tokens)."""
    return "\n\n".join(m["content"] for prompts in PROMPT_SET.values() for p in prompts for m in p)


def configurations(lc: Builder, max_new: int, sampling: SamplingConfig = GREEDY) -> dict[str, Config]:
    """llama-cpp-python plain and ours (plain, adaptive prompt lookup and suffix); sampled runs ignore the end of
    sequence (every request runs ``max_new`` tokens) and each library uses its own sampler."""
    return {
        BASE: llama_cpp_python_config(lc.target.path, max_new, lc.eos, sampling=sampling),
        "ours llama.cpp plain": ours_config(lc, "none", None, 0, False, max_new, sampling=sampling),
        "ours llama.cpp prompt lookup adaptive": ours_config(
            lc, "prompt-lookup", None, 16, True, max_new, sampling=sampling
        ),
        "ours llama.cpp suffix adaptive": ours_config(lc, "suffix", None, 16, True, max_new, sampling=sampling),
    }


def run(lc: Builder, cfgs: dict[str, Config], lengths: list[int], repeats: int) -> list[dict]:
    """Every configuration at every prompt length, ``repeats`` times (``backends.run``: one task a length, in a
    rotating order) -> its records, each with its prompt ``length``."""
    ids = lc.encode(text(), chat=False)
    if max(lengths) > len(ids):
        raise ValueError(f"--prompt-lengths must be at most {len(ids)} tokens (the prompt set's text), got {lengths}")
    records = backends.run(cfgs, {f"{n} tokens": [ids[:n]] for n in lengths}, repeats)
    for r in records:
        r["length"], r["ids"] = int(r["task"].split()[0]), r["ids"][0]
    return records


def format_table(records: list[dict], lengths: list[int], names: list[str], compare: bool = True) -> str:
    """Per prompt length: median tok/s (new tokens over the whole request, prefill included), the median and range
    of the ratio to llama-cpp-python plain within a repeat, the ratio of the best runs (the least disturbed on a
    shared machine), the median ratio of CPU seconds a token (this process's threads: time other tenants take
    from it is not counted), and whether the greedy tokens equal llama-cpp-python's ("-" when not ``compare``:
    sampled runs)."""
    lines = [
        f"{'prompt':>6} {'configuration':<40} {'tokens':>6} {'tok/s':>7} {'vs lcp':>7} {'range':>13} "
        f"{'best vs best':>12} {'cpu vs lcp':>10} {'same as lcp':>11}"
    ]
    for n in lengths:
        recs = [r for r in records if r["length"] == n]
        base = {r["repeat"]: r for r in recs if r["config"] == BASE}
        best_base = max(_rate(r) for r in base.values())
        for name in names:
            rs = [r for r in recs if r["config"] == name]
            ratios = [_rate(r) / _rate(base[r["repeat"]]) for r in rs]
            same = all(r["ids"] == base[r["repeat"]]["ids"] for r in rs) if compare else "-"
            cpu = [_cpu(base[r["repeat"]]) / _cpu(r) for r in rs]
            lines.append(
                f"{n:>6} {name:<40} {rs[0]['tokens']:>6} {statistics.median(map(_rate, rs)):>7.1f} "
                f"{statistics.median(ratios):>6.3f}x {min(ratios):>6.3f}-{max(ratios):<6.3f} "
                f"{max(map(_rate, rs)) / best_base:>11.3f}x {statistics.median(cpu):>9.3f}x {str(same):>11}"
            )
    return "\n".join(lines)


def _rate(record: dict) -> float:
    return record["tokens"] / record["seconds"]


def _cpu(record: dict) -> float:
    """CPU seconds a token (the whole request's; ``nan`` where none was measured)."""
    cpu = record.get("cpu_seconds", 0.0)
    return cpu / record["tokens"] if cpu > 0 and record["tokens"] else float("nan")
