"""``specdecode bench-serve --soak MINUTES``: our server (its own process on 127.0.0.1) under mixed load for a
while, with a ledger that must balance.

Every request is drawn from a seeded mix: streaming or not, greedy or sampled with a seed, with or without stop
strings, 10% cancelled by the client mid-stream (it closes the connection), 5% bad requests (each must get a
4xx); ``concurrency`` clients send back to back until the time is up. The ledger: sent = completed + errors by
kind (client disconnects, 4xx, 5xx, transport errors); lost = requests that got no answer at all, which must be
0. Also: the server's RSS at the start, after a warm-up minute (or a tenth of the run) and at the end, its open
file descriptors at the start and end, throughput, and TTFT / per-token latency p50 and p99 of the completed
streams.

Not here: the throughput comparison (``serve``), argument parsing (``cli.bench_serve``).
"""

from __future__ import annotations

import collections
import concurrent.futures
import json
import os
import random
import statistics
import threading
import time

from .serve import request_mix

BAD_BODIES = [
    b"{not json",
    b'{"messages": "hello"}',
    b'{"messages": [{"role": "user", "content": "x"}], "temperature": -1}',
    b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}',
    b'{"messages": [{"role": "wizard", "content": "x"}]}',
    b'{"messages": [{"role": "user", "content": "x"}], "n": 3}',
]


def proc_stats(pid: int) -> dict:
    """RSS (MiB) and open file descriptors of a process, from /proc."""
    rss = 0.0
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    return {"rss_mb": rss, "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def plan_request(rng: random.Random, prompts: list[dict], model: str, max_tokens: int) -> dict:
    """One request of the mix: what to send and how the client behaves."""
    roll = rng.random()
    if roll < 0.05:
        return {"kind": "bad", "raw": rng.choice(BAD_BODIES)}
    body = {"model": model, "messages": rng.choice(prompts)["messages"], "max_tokens": max_tokens}
    if rng.random() < 0.5:
        body.update(temperature=0.8, top_p=0.95, seed=rng.randrange(1 << 30))
    else:
        body["temperature"] = 0.0
    if rng.random() < 0.2:
        body["stop"] = [rng.choice([".", "\n\n", " the ", ","])]
    disconnect = roll < 0.15
    body["stream"] = disconnect or rng.random() < 0.7
    return {"kind": "disconnect" if disconnect else "stream" if body["stream"] else "json", "body": body}


def run_one(url: str, plan: dict, headers: dict) -> dict:
    """Send one planned request -> its outcome ("completed", "disconnected", "4xx", "5xx", "transport") and timings."""
    import httpx

    t0 = time.perf_counter()
    try:
        if plan["kind"] == "bad":
            r = httpx.post(url + "/v1/chat/completions", content=plan["raw"], headers=headers, timeout=120)
            return {"outcome": "4xx" if 400 <= r.status_code < 500 else f"{r.status_code // 100}xx"}
        if not plan["body"]["stream"]:
            r = httpx.post(url + "/v1/chat/completions", json=plan["body"], headers=headers, timeout=600)
            if r.status_code != 200:
                return {"outcome": f"{r.status_code // 100}xx"}
            n = r.json()["usage"]["completion_tokens"]
            return {"outcome": "completed", "tokens": n, "seconds": time.perf_counter() - t0}
        return _stream(url, plan, headers, t0)
    except httpx.HTTPError as exc:
        return {"outcome": "transport", "error": type(exc).__name__}


def _stream(url: str, plan: dict, headers: dict, t0: float) -> dict:
    import httpx

    first = last = None
    n, ended = 0, None
    with httpx.stream("POST", url + "/v1/chat/completions", json=plan["body"], headers=headers, timeout=600) as r:
        if r.status_code != 200:
            return {"outcome": f"{r.status_code // 100}xx"}
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                ended = "done"
                break
            event = json.loads(line[6:])
            if "error" in event:
                ended = "error"
                break
            if event["choices"] and event["choices"][0]["delta"].get("content"):
                now = time.perf_counter()
                first, last, n = first or now, now, n + 1
                if plan["kind"] == "disconnect" and n >= 3:
                    return {"outcome": "disconnected"}  # leaving the with-block closes the connection
    if ended != "done":
        return {"outcome": "5xx" if ended == "error" else "transport"}
    out = {"outcome": "completed", "tokens": n, "seconds": time.perf_counter() - t0}
    if first is not None:
        out.update(ttft=first - t0, per_token=(last - first) / (n - 1) if n > 1 else float("nan"))
    return out


def soak(
    url: str,
    pid: int,
    model: str,
    minutes: float,
    concurrency: int = 16,
    max_tokens: int = 64,
    seed: int = 0,
    headers: dict | None = None,
    progress=None,
) -> dict:
    """Drive the server at ``url`` (process ``pid``) for ``minutes`` -> the ledger."""
    headers = {**(headers or {}), "Content-Type": "application/json"}
    prompts = request_mix(24, max_tokens, "mixed")
    rng, lock = random.Random(seed), threading.Lock()
    start, warm_at = proc_stats(pid), max(0.1 * minutes * 60, min(60.0, 0.5 * minutes * 60))
    t0 = time.perf_counter()
    end = t0 + minutes * 60
    records, warm, sent = [], {}, [0]

    def client():
        while time.perf_counter() < end:
            with lock:
                plan = plan_request(rng, prompts, model, max_tokens)
                sent[0] += 1
            try:
                rec = run_one(url, plan, headers)
            except Exception:  # noqa: BLE001 - an answer the client could not read: the request counts as lost
                return
            with lock:
                records.append(rec)
                if not warm and time.perf_counter() - t0 >= warm_at:
                    warm.update(proc_stats(pid))
            if progress:
                progress()

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        for f in [pool.submit(client) for _ in range(concurrency)]:
            f.result()
    wall = time.perf_counter() - t0
    time.sleep(2)  # let the server close what the last clients left
    return ledger(sent[0], records, wall, start, warm or start, proc_stats(pid))


def ledger(sent: int, records: list[dict], wall: float, start: dict, warm: dict, end: dict) -> dict:
    outcomes = collections.Counter(r["outcome"] for r in records)
    done = [r for r in records if r["outcome"] == "completed"]
    streamed = [r for r in done if "ttft" in r]

    def pct(xs, q):
        xs = sorted(x for x in xs if x == x)
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")

    tokens = sum(r["tokens"] for r in done)
    return {
        "sent": sent,
        "outcomes": dict(outcomes),
        "lost": sent - sum(outcomes.values()),
        "wall_s": wall,
        "tokens": tokens,
        "tok_s": tokens / wall if wall else 0.0,
        "ttft_p50": pct([r["ttft"] for r in streamed], 0.5),
        "ttft_p99": pct([r["ttft"] for r in streamed], 0.99),
        "per_token_p50": pct([r["per_token"] for r in streamed], 0.5),
        "per_token_p99": pct([r["per_token"] for r in streamed], 0.99),
        "rss_mb": [start["rss_mb"], warm["rss_mb"], end["rss_mb"]],
        "rss_growth_after_warmup": end["rss_mb"] / warm["rss_mb"] - 1 if warm["rss_mb"] else float("nan"),
        "fds": [start["fds"], end["fds"]],
        "median_request_s": statistics.median([r["seconds"] for r in done]) if done else float("nan"),
    }


def format_ledger(led: dict) -> str:
    o = led["outcomes"]
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(o.items()))
    return "\n".join(
        [
            f"sent {led['sent']} = {kinds}; lost {led['lost']}",
            f"throughput {led['tok_s']:.1f} tok/s ({led['tokens']} tokens in {led['wall_s']:.0f} s); TTFT p50 "
            f"{led['ttft_p50'] * 1000:.0f} ms, p99 {led['ttft_p99'] * 1000:.0f} ms; per token p50 "
            f"{led['per_token_p50'] * 1000:.1f} ms, p99 {led['per_token_p99'] * 1000:.1f} ms",
            "server RSS start / after warm-up / end: "
            + " / ".join(f"{x:.0f} MiB" for x in led["rss_mb"])
            + f" (growth after warm-up {led['rss_growth_after_warmup']:+.1%}); open fds start / end: "
            f"{led['fds'][0]} / {led['fds'][1]}",
        ]
    )
