"""``specdecode bench-serve``: load on our server (speculative, drafter off, HF) vs llama-cpp-python's server."""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import sys
import time

import torch

from .common import add_bench_sampling_args, bench_sampling

NAME = "bench-serve"
HELP = (
    "concurrent streaming load on our server vs llama-cpp-python's server and llama-server: throughput, TTFT, latency"
)
DESCRIPTION = (
    "Starts each server in its own process on 127.0.0.1 (ours on llama.cpp with the suffix or prompt-lookup drafter "
    "and adaptive k, ours on llama.cpp with the drafter off, ours on Hugging Face fp32 with the drafter off, "
    "llama-cpp-python's llama_cpp.server and llama.cpp's llama-server (plain and n-gram spec types, where `make "
    "llama-server` built it) on the same GGUF), one at a time, and drives it with the openai client: N concurrent "
    "streams over a fixed mix of prompts (--mix), greedy unless --temperature (every server is asked for exactly "
    "those settings: llama.cpp's servers get their other samplers' neutral values, as they apply their own defaults "
    "otherwise). Also runs the same requests through `specdecode generate`'s engine in this process, interleaved one "
    "by one with the same request streamed from our server, to show what the server adds at concurrency 1."
)


def add_args(ap) -> None:
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument(
        "--concurrency", default="1,4,16", help="comma-separated numbers of concurrent streams (default 1,4,16)"
    )
    ap.add_argument(
        "--requests", type=int, default=2, help="requests per stream at each concurrency (default 2; at least 4)"
    )
    ap.add_argument("--max-tokens", type=int, default=64, help="max_tokens of every request (default 64)")
    ap.add_argument(
        "--mix",
        default="mixed",
        choices=["mixed", "grounded", "open", "repetitive"],
        help="prompts: grounded (summarisation, code-edit, qa) and open-ended (story, chat) alternating, "
        "or only one kind, or the repetitive workloads' requests in order (prompts/repetitive.py; default mixed)",
    )
    ap.add_argument("--no-hf", action="store_true", help="leave out our server on the Hugging Face backend")
    add_bench_sampling_args(
        ap,
        "sample at this temperature (default 0: greedy; sent as OpenAI's temperature and top_p, top_k and min_p as "
        "extensions); requests still end at the end of sequence",
    )
    ap.add_argument(
        "--soak",
        type=float,
        metavar="MINUTES",
        help="instead: our server alone under mixed load for MINUTES at concurrency 16 (streaming and not, stops, "
        "seeds, 10%% client disconnects, 5%% bad requests), with a ledger (sent = completed + errors by kind, "
        "lost), the server's RSS and open files, throughput and latency percentiles",
    )
    ap.add_argument("--backend", default="llama.cpp", choices=["hf", "llama.cpp"], help="--soak: our server's backend")
    ap.add_argument("--drafter", default="prompt-lookup", help="--soak: our server's drafter (default prompt-lookup)")
    ap.add_argument("--adaptive", action="store_true", help="--soak: adaptive k (k up to 16)")
    ap.add_argument("--json", metavar="FILE", help="also write the rows as JSON lines to FILE")


def _ints(text: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        vals = []
    if not vals or any(v < 1 for v in vals):
        raise ValueError(f"--concurrency must be comma-separated integers >= 1, got {text!r}")
    return vals


def _in_process(model: str, sampling):
    """The engine behind `specdecode generate` (llama.cpp, suffix, adaptive) -> a function running one request
    in this process (with ``sampling``, seed 0) and returning (tokens, seconds)."""
    from ..engine import GenerationConfig
    from ..models import Builder

    b = Builder(model, backend="llama.cpp")
    gen = b.generator("suffix")

    def one(req: dict) -> tuple[int, float]:
        cfg = GenerationConfig(
            max_new_tokens=req["max_tokens"], k=16, adaptive=True, sampling=sampling, eos_token_ids=b.eos
        )
        t0 = time.perf_counter()
        n = len(gen.generate([b.encode(req["messages"])], cfg, torch.Generator().manual_seed(0)).tokens[0])
        return n, time.perf_counter() - t0

    return one


def _interleaved(bs, url: str, model_id: str, reqs: list[dict], local) -> list[float]:
    """Each request in-process, then the same request streamed from the server, alternating, twice over ->
    per-pair ratios (server tok/s / in-process tok/s): both sides see the same load at nearly the same time."""
    ratios = []
    for _ in range(2):
        for r in reqs:
            n, sec = local(r)
            rec = bs.one_request(url, model_id, r)
            ratios.append((rec["tokens"] / rec["seconds"]) / (n / sec))
    return ratios


def _soak(args) -> int:
    from ..bench import serve as bs
    from ..bench.soak import format_ledger, soak

    if not args.soak > 0:
        raise ValueError(f"--soak must be a number of minutes > 0, got {args.soak}")
    port = bs.free_port()
    server = bs.Served(bs.ours_cmd(args.model, args.backend, args.drafter, port, args.adaptive, 16), port, "/health")
    load0 = os.getloadavg()[0]
    try:
        model_id = server.model_id()
        bs.one_request(server.url, model_id, bs.request_mix(1, args.max_tokens)[0])  # warm-up
        led = soak(server.url, server.proc.pid, model_id, args.soak, 16, args.max_tokens)
    finally:
        server.stop()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(led) + "\n")
    what = f"{args.drafter}{' adaptive' if args.adaptive else ''}"
    print(f"soak: ours on {args.backend}, {what}, {args.soak:g} min at concurrency 16, max_tokens {args.max_tokens}")
    print(format_ledger(led))
    print(f"load average (1 min) before {load0:.2f}, at the end {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    return 0 if led["lost"] == 0 else 1


def _plans(args, bs, gguf: str) -> list[tuple]:
    """(name, command for a port, readiness path, request dialect: ``bench.serve.DIALECTS``) of each server
    compared; llama-server's where it is built."""
    from ..bench import llama_server

    plans = [
        (
            "ours llama.cpp, suffix adaptive",
            lambda p: bs.ours_cmd(args.model, "llama.cpp", "suffix", p, True, 16),
            "/health",
            "ours",
        ),
        (
            "ours llama.cpp, prompt lookup adaptive",
            lambda p: bs.ours_cmd(args.model, "llama.cpp", "prompt-lookup", p, True, 16),
            "/health",
            "ours",
        ),
        (
            "ours llama.cpp, drafter off",
            lambda p: bs.ours_cmd(args.model, "llama.cpp", "none", p, False, 16),
            "/health",
            "ours",
        ),
    ]
    if importlib.util.find_spec("fastapi") and importlib.util.find_spec("sse_starlette"):
        plans.append(
            ("llama-cpp-python llama_cpp.server", lambda p: bs.llama_cpp_cmd(gguf, p), "/v1/models", "llama-cpp-python")
        )
    else:
        print(
            "llama-cpp-python's server needs its [server] extra (fastapi, sse-starlette, starlette-context, "
            "pydantic-settings): left out",
            file=sys.stderr,
        )
    exe = llama_server.binary()
    if exe is None:
        print(llama_server.MISSING, file=sys.stderr)
    for spec in (None, "ngram-mod", "ngram-map-k4v") if exe else ():
        plans.append(
            (
                f"llama-server {spec or 'plain'}",
                lambda p, s=spec: bs.llama_server_cmd(exe, gguf, p, s),
                "/health",
                "llama-server",
            )
        )
    if not args.no_hf:
        plans.insert(
            2,
            (
                "ours HF fp32, drafter off",
                lambda p: bs.ours_cmd(args.model, "hf", "none", p, False, 16),
                "/health",
                "ours",
            ),
        )
    return plans


def _one_server(args, bs, plan: tuple, concs: list[int], sampling, single: list[dict], local) -> tuple[list, list]:
    """Start one planned server, warm it, drive it at each concurrency -> (its rows, the in-process ratios when
    ``local`` is given and this is our suffix server, else [])."""
    name, cmd, ready, dialect = plan
    port = bs.free_port()
    server = bs.Served(cmd(port), port, ready)
    rows, ratios = [], []
    try:
        model_id = server.model_id()
        bs.one_request(server.url, model_id, single[0], dialect)  # warm-up
        if local is not None and name.startswith("ours llama.cpp, suffix"):
            ratios = _interleaved(bs, server.url, model_id, single, local)
        for c in concs:
            reqs = bs.request_mix(max(4, c * args.requests), args.max_tokens, args.mix, sampling)
            before = bs.model_seconds(server.url) if dialect == "ours" else None
            recs, wall = bs.load(server.url, model_id, reqs, c, dialect)
            after = bs.model_seconds(server.url) if before is not None else None
            rows.append({"server": name, "concurrency": c, **bs.summary(recs, wall), "load1": os.getloadavg()[0]})
            rows[-1]["in_passes"] = (after - before) / wall if after is not None else float("nan")
            print(f"  {name} c={c}: {rows[-1]['tok_s']:.1f} tok/s", file=sys.stderr)
    finally:
        server.stop()
    return rows, ratios


def run(args) -> int:
    from ..bench import serve as bs
    from ..models.gguf import gguf_path

    if args.soak is not None:
        return _soak(args)
    concs = _ints(args.concurrency)
    if args.requests < 1 or args.max_tokens < 1:
        raise ValueError(f"--requests and --max-tokens must be >= 1, got {args.requests}, {args.max_tokens}")
    sampling = bench_sampling(args)
    plans = _plans(args, bs, str(gguf_path(args.model)))
    load0 = os.getloadavg()[0]
    single = bs.request_mix(max(4, args.requests), args.max_tokens, args.mix, sampling)
    local = _in_process(args.model, sampling)
    rows, ratios = [], []
    for plan in plans:
        got, interleaved = _one_server(args, bs, plan, concs, sampling, single, local if not ratios else None)
        rows += got
        ratios = ratios or interleaved
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r) + "\n")
    print(bs.format_table(rows))
    if ratios:
        print(
            f"\nour server at concurrency 1 (streamed, openai client) vs `specdecode generate`'s engine in-process, "
            f"same {len(single)} requests interleaved, twice: median {statistics.median(ratios):.2f}x "
            f"(range {min(ratios):.2f}-{max(ratios):.2f}) in tok/s per request"
        )
    how = "greedy" if sampling.is_greedy else f"sampled ({sampling.describe()})"
    print(
        f"prompt mix: {args.mix}, {how}; load average (1 min) before {load0:.2f}, max seen "
        f"{max(r['load1'] for r in rows):.2f} ({os.cpu_count()} cores)"
    )
    return 0
