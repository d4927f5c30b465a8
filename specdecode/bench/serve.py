"""``specdecode bench-serve``: a load generator (the openai client, N concurrent streams, a fixed mix of grounded
and open-ended requests) against servers started as separate processes on 127.0.0.1: ours (speculative, and
with the drafter off), llama-cpp-python's own OpenAI server and llama.cpp's llama-server on the same GGUF.

Requests are greedy unless a ``SamplingConfig`` is given; each server is asked for exactly those settings in its own
dialect (``sampling_fields``: llama-server and llama-cpp-python fill knobs a request leaves out with their own
defaults, so their neutral values are sent).

Per server and concurrency: total throughput (generated tokens / wall time), p50 / p95 time to first token and
per-token latency (between the first and the last streamed token of a request). Servers run one at a time so
they do not share the CPU. Not here: argument parsing (``cli.bench_serve``).
"""

from __future__ import annotations

import concurrent.futures
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from ..core.sampling import GREEDY, SamplingConfig
from ..prompts import TASKS
from ..prompts.repetitive import WORKLOADS

GROUNDED = ("summarisation", "code-edit", "qa")
OPEN = ("story", "chat")


MIXES = ("mixed", "grounded", "open", "repetitive")
DIALECTS = ("ours", "llama-server", "llama-cpp-python")  # how each server is asked for the sampling settings


def request_mix(n: int, max_tokens: int, mix: str = "mixed", sampling: SamplingConfig = GREEDY) -> list[dict]:
    """n chat requests from the bench prompt set (greedy unless ``sampling``): grounded and open-ended prompts
    alternating (``mixed``), or only one kind, or the repetitive workloads' requests."""
    if mix not in MIXES:
        raise ValueError(f"--mix must be one of {', '.join(MIXES)}, got {mix!r}")
    if mix == "repetitive":  # the workloads' requests in order, one workload after another, cycling
        flat = [msgs for seq in WORKLOADS.values() for msgs in seq]
        return [
            {"messages": flat[i % len(flat)], "max_tokens": max_tokens, "sampling": sampling, "kind": "repetitive"}
            for i in range(n)
        ]
    out = []
    for i in range(n):
        kind = {"mixed": "grounded" if i % 2 == 0 else "open"}.get(mix, mix)
        j = i // 2 if mix == "mixed" else i
        cats = GROUNDED if kind == "grounded" else OPEN
        cat = cats[j % len(cats)]
        msgs = TASKS[cat][(j // len(cats)) % len(TASKS[cat])]
        out.append({"messages": msgs, "max_tokens": max_tokens, "sampling": sampling, "kind": kind})
    return out


def sampling_fields(dialect: str, sampling: SamplingConfig) -> dict:
    """Keyword arguments of the openai client's ``create`` that ask a server of ``dialect`` for ``sampling`` and
    nothing more. llama-server and llama-cpp-python's server apply their own defaults to knobs a request leaves out
    (top-k 40, top-p 0.95, min-p 0.05; llama-cpp-python also a repeat penalty of 1.1, even at temperature 0), so
    their neutral values are sent; ours takes top_k and min_p as extensions and applies nothing unasked."""
    if dialect not in DIALECTS:
        raise ValueError(f"a server dialect is one of {', '.join(DIALECTS)}, got {dialect!r}")
    s = sampling
    fields: dict = {"temperature": s.temperature}
    if dialect == "ours":
        if s.top_p is not None:
            fields["top_p"] = s.top_p
        extra = {name: v for name, v in (("top_k", s.top_k), ("min_p", s.min_p)) if v is not None}
    else:
        from .llama_server import filter_knobs

        knobs = filter_knobs(s)
        fields["top_p"] = knobs.pop("top_p")
        extra = knobs
        if dialect == "llama-cpp-python":
            extra["repeat_penalty"] = 1.0
    if extra:
        fields["extra_body"] = extra
    return fields


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """A server process on 127.0.0.1 (started, waited for, stopped)."""

    def __init__(self, cmd: list[str], port: int, ready_path: str, timeout: float = 300):
        import httpx

        self.url = f"http://127.0.0.1:{port}"
        self.log = tempfile.TemporaryFile(mode="w+")  # a pipe would fill up with the server's log and block it
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"{cmd[:4]} exited: {self.log.read()[-500:]}")
            try:
                if httpx.get(self.url + ready_path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"{cmd[:4]} did not answer on {self.url}{ready_path} within {timeout:.0f} s")

    def model_id(self) -> str:
        import httpx

        return httpx.get(self.url + "/v1/models", timeout=10).json()["data"][0]["id"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def ours_cmd(model: str, backend: str, drafter: str, port: int, adaptive: bool, max_batch: int) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "specdecode",
        "serve",
        "--model",
        model,
        "--backend",
        backend,
        "--drafter",
        drafter,
        "--port",
        str(port),
        "--max-batch",
        str(max_batch),
    ]
    return cmd + (["--adaptive", "-k", "16"] if adaptive else [])


def llama_cpp_cmd(gguf: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        gguf,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "8192",
        "--n_threads",
        str(os.cpu_count()),
        "--flash_attn",
        "true",
        # its default (true) cancels the running completion whenever another request arrives
        "--interrupt_requests",
        "false",
    ]


def llama_server_cmd(exe, gguf: str, port: int, spec_type: str | None) -> list[str]:
    """llama.cpp's llama-server with 16 slots (the most concurrent streams the bench drives)."""
    from .llama_server import command

    return command(exe, gguf, port, spec_type, parallel=16)


def model_seconds(url: str) -> float | None:
    """Our server's seconds in target passes so far (``/metrics``), None for other servers."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = httpx.get(url + "/metrics", timeout=10).text
    except httpx.HTTPError:
        return None
    for family in text_string_to_metric_families(text):
        if family.name == "specdecode_model_seconds":
            return sum(sample.value for sample in family.samples)
    return None


def one_request(url: str, model: str, req: dict, dialect: str = "ours") -> dict:
    """Stream one chat completion (its sampling asked in the server's ``dialect``) -> timings (seconds) and the
    number of streamed content chunks."""
    import openai

    client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=600)
    t0 = time.perf_counter()
    first = last = None
    chunks, text = 0, []
    stream = client.chat.completions.create(
        model=model,
        messages=req["messages"],
        max_tokens=req["max_tokens"],
        stream=True,
        stream_options={"include_usage": True},
        **sampling_fields(dialect, req["sampling"]),
    )
    tokens = None
    for ch in stream:
        if getattr(ch, "usage", None):
            tokens = ch.usage.completion_tokens
        if ch.choices and ch.choices[0].delta.content:
            now = time.perf_counter()
            first = first or now
            last = now
            chunks += 1
            text.append(ch.choices[0].delta.content)
    end = time.perf_counter()
    n = tokens if tokens is not None else chunks
    return {
        "ttft": (first or end) - t0,
        "per_token": ((last - first) / (n - 1)) if first and n > 1 else float("nan"),
        "tokens": n,
        "seconds": end - t0,
        "kind": req["kind"],
        "text": "".join(text),
    }


def load(url: str, model: str, reqs: list[dict], concurrency: int, dialect: str = "ours") -> tuple[list[dict], float]:
    """Run ``reqs`` with ``concurrency`` streams at once -> (records, wall seconds)."""
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        recs = list(pool.map(lambda r: one_request(url, model, r, dialect), reqs))
    return recs, time.perf_counter() - t0


def summary(recs: list[dict], wall: float) -> dict:
    def pct(xs, q):
        xs = sorted(x for x in xs if x == x)
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")

    ttft, per = [r["ttft"] for r in recs], [r["per_token"] for r in recs]
    return {
        "requests": len(recs),
        "tokens": sum(r["tokens"] for r in recs),
        "tok_s": sum(r["tokens"] for r in recs) / wall,
        "ttft_p50": statistics.median(ttft),
        "ttft_p95": pct(ttft, 0.95),
        "tpt_p50": pct(per, 0.5),
        "tpt_p95": pct(per, 0.95),
    }


def format_table(rows: list[dict]) -> str:
    lines = [
        f"{'server':<46} {'conc':>4} {'reqs':>4} {'tokens':>6} {'tok/s':>7} {'TTFT p50':>9} {'TTFT p95':>9} "
        f"{'ms/token p50':>12} {'ms/token p95':>12} {'in passes':>9}"
    ]
    for r in rows:
        lines.append(
            f"{r['server']:<46} {r['concurrency']:>4} {r['requests']:>4} {r['tokens']:>6} {r['tok_s']:>7.1f} "
            f"{r['ttft_p50'] * 1000:>7.0f}ms {r['ttft_p95'] * 1000:>7.0f}ms {r['tpt_p50'] * 1000:>10.1f}ms "
            f"{r['tpt_p95'] * 1000:>10.1f}ms {r.get('in_passes', float('nan')):>8.0%}"
        )
    return "\n".join(lines)
