"""The real server on 127.0.0.1 (uvicorn in a thread), talked to with the official `openai` client and raw HTTP:
chat and completions, streaming and not, stops, seeds, max_tokens, greedy text == `specdecode generate`,
continuous batching under 16 concurrent streaming clients, a client killed mid-stream, bad requests."""

import concurrent.futures
import json
import threading
import time

import httpx
import pytest
import torch

openai = pytest.importorskip("openai")
uvicorn = pytest.importorskip("uvicorn")

from serving import start  # noqa: E402  (tests/serving.py)

from specdecode.cli import main  # noqa: E402
from specdecode.core.sampling import SamplingConfig  # noqa: E402
from specdecode.engine import GenerationConfig  # noqa: E402
from specdecode.models import Builder  # noqa: E402

MODEL = "tiny-llama"


@pytest.fixture(scope="module")
def served():
    builder = Builder(MODEL)
    uv, thread, url, server = start(builder, "prompt-lookup", max_batch=8)
    yield url, builder, server
    uv.should_exit = True
    thread.join(timeout=10)


def client(url):
    return openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=60)


def solo(builder, prompt, chat=True, n=32, stop=()):
    ids = builder.encode(prompt, chat)
    cfg = GenerationConfig(
        max_new_tokens=n, k=4, sampling=SamplingConfig(0.0), eos_token_ids=builder.eos, stop_strings=stop
    )
    toks = builder.generator("prompt-lookup").generate([ids], cfg, torch.Generator()).tokens[0]
    return builder.tokenizer.decode(toks, skip_special_tokens=True)


def test_chat_and_completions_streaming_and_not(served):
    url, builder, _ = served
    c = client(url)
    r = c.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "abc abc abc"}], temperature=0, max_tokens=20
    )
    assert r.choices[0].message.content == solo(builder, "abc abc abc", n=20)
    assert r.usage.completion_tokens == 20 and r.choices[0].finish_reason == "length"
    spec = r.model_extra["speculative"]
    assert spec["target_calls"] >= 1 and spec["tokens_per_target_call"] >= 1
    stream = c.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "abc abc abc"}],
        temperature=0,
        max_tokens=20,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == r.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == 20
    t = c.completions.create(model=MODEL, prompt="xyz xyz", temperature=0, max_tokens=12)
    assert t.choices[0].text == solo(builder, "xyz xyz", chat=False, n=12)
    parts = [
        ch.choices[0].text
        for ch in c.completions.create(model=MODEL, prompt="xyz xyz", temperature=0, max_tokens=12, stream=True)
    ]
    assert "".join(parts) == t.choices[0].text
    assert [m.id for m in c.models.list().data] == [MODEL]


def test_greedy_text_equals_specdecode_generate(served, capsys):
    url, _, _ = served
    assert main(["generate", "--model", MODEL, "--max-new-tokens", "24", "--json", "-k", "4", "hello hello"]) == 0
    want = json.loads(capsys.readouterr().out)["outputs"][0]["text"]
    r = client(url).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hello hello"}], temperature=0, max_tokens=24
    )
    assert r.choices[0].message.content == want


def test_stop_strings_seed_and_max_tokens(served):
    url, builder, _ = served
    c = client(url)
    full = solo(builder, "abc abc abc", n=32)
    stop = full[5:8]
    r = c.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "abc abc abc"}], temperature=0, stop=stop
    )
    assert r.choices[0].message.content == full[: full.index(stop)] and r.choices[0].finish_reason == "stop"
    s = "".join(
        ch.choices[0].delta.content or ""
        for ch in c.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "abc abc abc"}], temperature=0, stop=[stop], stream=True
        )
        if ch.choices
    )
    assert s == r.choices[0].message.content
    seeded = [
        c.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], temperature=1.0, seed=7, max_tokens=16
        )
        .choices[0]
        .message.content
        for _ in range(2)
    ]
    assert seeded[0] == seeded[1]
    assert c.completions.create(model=MODEL, prompt="q", max_tokens=3, temperature=0).usage.completion_tokens == 3


def _stream_text(url, prompt, max_tokens, temperature, seed=None, method=None):
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": temperature,
        "stream": True,
    }
    if seed is not None:
        body.update(seed=seed)
    if method:
        body.update(method=method)
    out = []
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=120) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                msg = json.loads(line[6:])
                out.append(msg["choices"][0]["delta"].get("content") or "")
    return "".join(out)


def test_sixteen_concurrent_clients_and_a_killed_one(served):
    """64 requests of mixed lengths and settings from 16 concurrent streaming clients; every one completes once;
    every greedy output equals its solo output; a client killed mid-stream does not stall the others."""
    url, builder, server = served
    words = ["abc", "hello", "one two", "xyz", "la la", "foo bar baz", "q", "the cat"]
    jobs = [(f"{words[i % 8]} {i}" * (1 + i % 3), 4 + (i * 7) % 29, 0.0 if i % 4 else 0.8, i) for i in range(64)]
    want = {j: solo(builder, p, n=n) for j, (p, n, t, _) in enumerate(jobs) if t == 0}
    killed = threading.Event()

    def killer():
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "abc abc"}],
            "max_tokens": 400,
            "stream": True,
            "temperature": 0,
        }
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=60) as resp:
            for i, _ in enumerate(resp.iter_lines()):
                if i == 3:
                    break  # the client goes away mid-stream
        killed.set()

    threading.Thread(target=killer).start()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        got = list(
            pool.map(lambda j: _stream_text(url, jobs[j][0], jobs[j][1], jobs[j][2], seed=jobs[j][3]), range(64))
        )
    assert killed.wait(30)
    assert len(got) == 64 and all(g is not None for g in got)
    assert all(got[j] == want[j] for j in want), [j for j in want if got[j] != want[j]]
    for _ in range(100):  # the killed request's row is freed at a step boundary
        if server.worker.metrics.batch == 0:
            break
        time.sleep(0.05)
    metrics = httpx.get(url + "/metrics").text
    assert 'reason="cancelled"' in metrics and "specdecode_tokens_per_target_call" in metrics
    assert "specdecode_queue_length" in metrics and "specdecode_position_acceptance" in metrics


def test_seeded_gumbel_is_the_same_whoever_shares_the_batch(served):
    url, _, _ = served
    alone = _stream_text(url, "tell me", 16, 1.0, seed=5, method="gumbel")
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        crowd = list(
            pool.map(
                lambda i: _stream_text(
                    url, "tell me" if i == 3 else f"other {i}", 16, 1.0, seed=5 if i == 3 else i, method="gumbel"
                ),
                range(6),
            )
        )
    assert crowd[3] == alone


def test_logprobs_equal_plain_decoding_chat_and_completions_streamed_and_not(served):
    """Each token's logprob and top alternatives, read from the speculative server's verification passes, equal the
    ones plain decoding computes in-process (k = 0), greedy and seeded sampling (gumbel: the same tokens)."""
    url, builder, _ = served
    c = client(url)
    for temperature, extra in ((0.0, {}), (0.8, {"method": "gumbel"})):
        cfg = GenerationConfig(
            max_new_tokens=16,
            k=0,
            method=extra.get("method"),
            sampling=SamplingConfig(temperature),
            eos_token_ids=builder.eos,
            logprobs=3,
        )
        ids = builder.encode([{"role": "user", "content": "abc abc abc"}], True)
        want = builder.generator("none").generate([ids], cfg, torch.Generator().manual_seed(4)).logprobs[0]
        kw = dict(model=MODEL, messages=[{"role": "user", "content": "abc abc abc"}], max_tokens=16)
        kw.update(temperature=temperature, seed=4, logprobs=True, top_logprobs=3, extra_body=extra)
        whole = c.chat.completions.create(**kw).choices[0].logprobs.content
        streamed = [
            x
            for ch in c.chat.completions.create(stream=True, **kw)
            if ch.choices[0].logprobs  # the last chunk (finish_reason) has none
            for x in ch.choices[0].logprobs.content
        ]
        for got in (whole, streamed):
            assert [g.token for g in got] == [builder.tokenizer.decode([w.token]) for w in want]
            assert max(abs(g.logprob - w.logprob) for g, w in zip(got, want)) < 1e-4
            assert [len(g.top_logprobs) for g in got] == [3] * len(want)
            assert all(abs(g.top_logprobs[0].logprob - w.top[0][1]) < 1e-4 for g, w in zip(got, want))
    r = c.completions.create(model=MODEL, prompt="abc abc", max_tokens=8, temperature=0, logprobs=2)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == r.usage.completion_tokens
    assert lp.text_offset[0] == 0 and all(len(t) == 2 for t in lp.top_logprobs)
    assert r.choices[0].text == "".join(lp.tokens)


@pytest.mark.parametrize(
    "body,field",
    [
        ({"messages": [{"role": "user", "content": "x"}], "temperature": -1}, "temperature"),
        ({"messages": [{"role": "user", "content": "x"}], "top_p": 0}, "top_p"),
        ({"messages": [{"role": "user", "content": "x"}], "top_p": 1.5}, "top_p"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "x"}], "model": "gpt-9"}, "model"),
        ({"messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
        ({"messages": [{"role": "user", "content": "x"}], "logprobs": "yes"}, "logprobs"),
        ({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 3}, "top_logprobs"),
        ({"messages": [{"role": "user", "content": "x"}], "logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"messages": [{"role": "user", "content": "x"}], "method": "magic"}, "method"),
        ({"messages": [{"role": "user", "content": "x" * 600}]}, "messages"),  # the engine's Refusal, field "prompt"
        ({"messages": [{"role": "user", "content": "x"}], "method": "greedy"}, "method"),  # greedy at temperature 1
        (
            {"messages": [{"role": "user", "content": "x"}], "max_tokens": 600},
            "messages",
        ),  # prompt + max_tokens > context
        ({"messages": "hello"}, "messages"),
        ({"messages": [{"role": "user", "content": "x"}], "stop": [""]}, "stop"),
        ({"messages": [{"role": "user", "content": "x"}], "min_p": 1.5}, "min_p"),
        ({"messages": [{"role": "user", "content": "x"}], "repetition_penalty": 1.2}, "repetition_penalty"),
        ({"messages": [{"role": "user", "content": "x"}], "guided_json": {"type": "object"}}, "guided_json"),
        ({"messages": [{"role": "user", "content": "x"}], "ignore_eos": True}, "ignore_eos"),
    ],
)
def test_bad_requests_get_an_openai_error_naming_the_field(served, body, field):
    url, _, _ = served
    r = httpx.post(url + "/v1/chat/completions", json={"model": MODEL, **body})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == field and err["type"] == "invalid_request_error" and err["message"]
    assert httpx.get(url + "/health").status_code == 200  # still serving


def test_min_p_reaches_the_sampling_and_neutral_extensions_pass():
    from specdecode.serve.openai_api import Rules, parse

    rules = Rules(model_id=MODEL, eos=(0,))
    body = {"messages": [{"role": "user", "content": "x"}], "temperature": 0.8, "top_k": 40, "top_p": 0.95}
    _, cfg, *_ = parse({**body, "min_p": 0.05, "repeat_penalty": 1.0, "typical_p": 1, "ignore_eos": False}, True, rules)
    assert (cfg.sampling.top_k, cfg.sampling.top_p, cfg.sampling.min_p) == (40, 0.95, 0.05)
    assert parse(body, True, rules)[1].sampling.min_p is None


def test_engine_refusals_map_to_openai_fields_by_type():
    from specdecode.engine import Refusal
    from specdecode.serve import openai_param

    assert [openai_param(f, True) for f in ("prompt", "max_new_tokens", "method", "k", "costs")] == [
        "messages",
        "max_tokens",
        "method",
        "k",
        None,
    ]
    assert openai_param("prompt", False) == "prompt" and issubclass(Refusal, ValueError)


def test_malformed_json_and_the_server_keeps_serving(served):
    url, _, _ = served
    r = httpx.post(url + "/v1/chat/completions", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]
    ok = client(url).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=2)
    assert ok.usage.completion_tokens == 2


def test_cached_prompt_tokens_in_usage_and_metrics():
    """On llama.cpp with the prefix cache, a request that repeats an earlier prompt reports the restored tokens as
    OpenAI's ``usage.prompt_tokens_details.cached_tokens`` and in ``specdecode_prompt_tokens_cached_total``."""
    pytest.importorskip("llama_cpp")
    builder = Builder("tiny-llama:1", backend="llama.cpp", prefix_cache=8)
    uv, thread, url, _ = start(builder, "prompt-lookup", max_batch=4, model="tiny-llama:1")
    try:
        c = client(url)
        msgs = [{"role": "user", "content": "the same long question about the same long text, twice over"}]
        first = c.chat.completions.create(model="tiny-llama:1", messages=msgs, temperature=0, max_tokens=8)
        again = c.chat.completions.create(model="tiny-llama:1", messages=msgs, temperature=0, max_tokens=8)
        assert first.usage.prompt_tokens_details.cached_tokens == 0
        assert again.usage.prompt_tokens_details.cached_tokens == again.usage.prompt_tokens - 1  # all but the last
        assert again.choices[0].message.content == first.choices[0].message.content
        metrics = httpx.get(url + "/metrics").text
        want = f'specdecode_prompt_tokens_cached_total{{model="tiny-llama:1"}} {float(again.usage.prompt_tokens - 1)}'
        assert want in metrics
    finally:
        uv.should_exit = True
        thread.join(timeout=10)
