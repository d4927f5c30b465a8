"""``specdecode bench-backends``: our engine on llama.cpp and Hugging Face vs llama-cpp-python and HF generate."""

from __future__ import annotations

import json
import os
import sys

from ..bench import backends, parity
from ..core.sampling import SamplingConfig
from ..engine.llama_cpp import LlamaCppLM
from ..models.build import Builder
from ..models.gguf import FORMATS, gguf_path
from .common import add_bench_sampling_args, add_prefix_args, bench_sampling, prefix_cache, prompt_lines

NAME = "bench-backends"
HELP = "ours on llama.cpp / HF vs llama-cpp-python (plain, prompt lookup) and HF generate; T(n) per backend and format"
DESCRIPTION = (
    "Interleaved in one process on the same prompts (grounded: summarise, code edit; open: story, chat; repetitive: "
    "sequences of requests that share work, see prompts/repetitive.py): llama-cpp-python plain and with its "
    "LlamaPromptLookupDecoding, llama.cpp's llama-server plain and with each n-gram --spec-type (when `make "
    "llama-server` has built it), ours on llama.cpp (plain, prompt lookup fixed k and adaptive, suffix adaptive, "
    "lookup trees), ours on Hugging Face fp32 (single prompts), HF generate and HF prompt lookup; then the cost of a "
    "target pass over n = 1..16 tokens for each backend and weight format. Greedy; medians; the load average seen."
)


def add_args(ap) -> None:
    ap.add_argument("--model", default="smollm2-135m", help="a registry name with both forms (default smollm2-135m)")
    ap.add_argument("--gguf-format", default=None, choices=list(FORMATS), help="GGUF encoding of the llama.cpp runs")
    ap.add_argument(
        "--tasks",
        default=",".join(backends.TASKS),
        help=f"comma-separated tasks or sets ({', '.join(backends.SETS)}) among {', '.join(backends.TASKS)}",
    )
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats (default 3)")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("-k", type=int, default=4, help="fixed draft length of our prompt lookup (default 4)")
    ap.add_argument("--no-hf", action="store_true", help="leave out the Hugging Face runs")
    ap.add_argument(
        "--costs",
        default="q4_1,q8_0,f16,q4_0",
        help="GGUF formats whose T(n) is measured (comma-separated; '' = none; default q4_1,q8_0,f16,q4_0)",
    )
    ap.add_argument(
        "--prompt-lengths",
        metavar="LIST",
        help="instead of the task sets: plain parity by prompt length (comma-separated token counts, e.g. "
        "16,250,1000,2000): ours plain and adaptive vs llama-cpp-python plain on the same GGUF",
    )
    ap.add_argument(
        "--prompts-file",
        metavar="FILE",
        help="instead of the task sets: your own prompts, one per line, run in order as one workload (each "
        "configuration sees the requests one after another, as a batch job would; the chat template is applied)",
    )
    ap.add_argument(
        "--configs",
        metavar="LIST",
        help="only the configurations whose names contain one of these comma-separated words, e.g. "
        "'ours llama.cpp,llama-server plain' (llama-cpp-python plain, the base of the ratios, always runs)",
    )
    add_prefix_args(ap, 8)
    add_bench_sampling_args(
        ap,
        "with --prompt-lengths: sample at this temperature (default 0: greedy); each library with its own "
        "sampler, no end of sequence, so every request runs --max-new-tokens",
    )
    ap.add_argument("--json", metavar="FILE", help="also write every record as JSON lines to FILE")


def run(args) -> int:
    tasks = workloads(args)
    if args.repeats < 1 or not 0 <= args.k <= 64:
        raise ValueError(f"--repeats must be >= 1 and -k in [0, 64], got {args.repeats} and {args.k}")
    formats = [f for f in args.costs.split(",") if f]
    if any(f not in FORMATS for f in formats):
        raise ValueError(f"--costs takes formats among {', '.join(FORMATS)}, got {args.costs!r}")
    lengths = _lengths(args.prompt_lengths)
    sampling = _sampling(args, lengths)
    lc = Builder(args.model, backend="llama.cpp", gguf_format=args.gguf_format, prefix_cache=prefix_cache(args))
    if lengths:
        return _parity(args, lc, lengths, sampling)
    hf = None if args.no_hf else Builder(args.model, "fp32")
    load0 = os.getloadavg()[0]
    print(
        f"model {args.model}: llama.cpp {os.path.basename(lc.target.path)}{'' if hf is None else ', HF fp32'}; greedy, "
        f"{args.max_new_tokens} new tokens max, {args.repeats} repeats; load average before {load0:.2f}",
        file=sys.stderr,
    )
    cfgs = choose(backends.configurations(lc, hf, args.max_new_tokens, args.k), args.configs)
    records = backends.run(cfgs, {t: [lc.encode(p) for p in ps] for t, ps in tasks.items()}, args.repeats)
    _write_json(args.json, records)
    print(backends.format_table(records, list(tasks), list(cfgs)))
    print(
        f"\nload average (1 min) before {load0:.2f}, max seen during the run {max(r['load1'] for r in records):.2f} "
        f"({os.cpu_count()} cores)"
    )
    if formats or hf is not None:
        costs = {f"llama.cpp {f}": backends.pass_costs(LlamaCppLM(str(gguf_path(args.model, f)))) for f in formats}
        if hf is not None:
            costs["hf fp32"] = backends.pass_costs(hf.target)
            costs["hf bf16"] = backends.pass_costs(Builder(args.model, "bf16").target)
        print()
        print(backends.format_costs(costs))
    return 0


def workloads(args) -> dict[str, list[str]]:
    """task name -> its requests' prompt texts, in order: the named tasks and sets, or the --prompts-file."""
    if args.prompts_file:
        return {os.path.basename(args.prompts_file)[:16]: prompt_lines(args.prompts_file, "--prompts-file")}
    tasks = [n for t in args.tasks.split(",") if t for n in (backends.SETS[t] if t in backends.SETS else [t])]
    bad = [t for t in tasks if t not in backends.TASKS]
    if bad or not tasks:
        raise ValueError(f"unknown task(s) {', '.join(bad) or args.tasks!r}; choose from {', '.join(backends.TASKS)}")
    return {t: backends.TASKS[t] for t in tasks}


def _words(spec: str | None) -> list[str] | None:
    return None if spec is None else [w.strip() for w in spec.split(",") if w.strip()]


def choose(cfgs: dict, spec: str | None) -> dict:
    """The configurations --configs names (all without it; llama-cpp-python plain always)."""
    words = _words(spec)
    if words is None:
        return cfgs
    chosen = {n: c for n, c in cfgs.items() if n == backends.BASE or any(w in n for w in words)}
    if len(chosen) == 1:
        raise ValueError(f"--configs {spec!r} names no configuration; they are: {', '.join(cfgs)}")
    return chosen


def _lengths(spec: str | None) -> list[int]:
    if not spec:
        return []
    try:
        lengths = [int(x) for x in spec.split(",") if x]
    except ValueError:
        lengths = []
    if not lengths or any(n < 2 for n in lengths):
        raise ValueError(f"--prompt-lengths takes comma-separated token counts >= 2, got {spec!r}")
    return lengths


def _sampling(args, lengths: list[int]) -> SamplingConfig:
    """--temperature and its filters (greedy by default); they apply to --prompt-lengths runs only."""
    sampling = bench_sampling(args)
    if not sampling.is_greedy and not lengths:
        raise ValueError("--temperature applies to --prompt-lengths runs (the task sets compare greedy outputs)")
    return sampling


def _parity(args, lc: Builder, lengths: list[int], sampling: SamplingConfig) -> int:
    load0 = os.getloadavg()[0]
    how = "greedy" if sampling.is_greedy else f"sampled ({sampling.describe()}, no end of sequence)"
    print(
        f"model {args.model}: llama.cpp {os.path.basename(lc.target.path)}; {how}, {args.max_new_tokens} new tokens "
        f"max, prompts of {', '.join(map(str, lengths))} tokens, {args.repeats} repeats; "
        f"load average before {load0:.2f}",
        file=sys.stderr,
    )
    cfgs = parity.configurations(lc, args.max_new_tokens, sampling)
    records = parity.run(lc, cfgs, lengths, args.repeats)
    _write_json(args.json, records)
    print(parity.format_table(records, lengths, list(cfgs), compare=sampling.is_greedy))
    print(
        f"\nload average (1 min) before {load0:.2f}, max seen during the run {max(r['load1'] for r in records):.2f} "
        f"({os.cpu_count()} cores)"
    )
    return 0


def _write_json(path: str | None, records: list[dict]) -> None:
    if path:
        with open(path, "w", encoding="utf-8") as fh:
            for r in records:
                fh.write(json.dumps(r) + "\n")
