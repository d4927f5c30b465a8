"""The server under hostile conditions (127.0.0.1 only, bounded loops): API keys, every limit, faults in the engine
and recovery, an idle connection, fuzzed bodies. SIGTERM with streams in flight is in test_shutdown.py."""

import concurrent.futures
import json
import socket
import threading
import time

import httpx
import pytest
import torch

pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")
hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from specdecode.cli import main  # noqa: E402
from specdecode.core.sampling import SamplingConfig  # noqa: E402
from specdecode.engine import GenerationConfig  # noqa: E402
from specdecode.models import Builder  # noqa: E402
from specdecode.serve import Server  # noqa: E402
from specdecode.serve.guard import Limits  # noqa: E402
from specdecode.serve.runner import make_server  # noqa: E402
from specdecode.verify import METHODS  # noqa: E402

MODEL = "tiny-llama"
KEY = "test-key-0123456789"
MSG = [{"role": "user", "content": "hello"}]


class Running:
    def __init__(self, builder, limits=None, keys=(), max_batch=4, idle=15.0):
        self.builder = builder
        self.server = Server(
            builder.generator("prompt-lookup"),
            builder.tokenizer,
            builder.encode,
            MODEL,
            builder.eos,
            max_batch=max_batch,
            k=4,
            max_tokens=16,
            api_keys=keys,
            limits=limits or Limits(),
        )
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.uv = make_server(self.server, idle_timeout=idle)
        self.thread = threading.Thread(target=self.uv.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        for _ in range(200):
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)

    def stop(self):
        self.uv.should_exit = True
        self.thread.join(timeout=20)

    def post(self, body, headers=None, **kw):
        return httpx.post(self.url + "/v1/chat/completions", json=body, headers=headers, timeout=30, **kw)


@pytest.fixture(scope="module")
def builder():
    return Builder(MODEL)


@pytest.fixture(scope="module")
def guarded(builder):
    limits = Limits(max_body_bytes=4096, max_messages=3, max_prompt_tokens=200, max_tokens_cap=64)
    srv = Running(builder, limits, keys=(KEY, "second-key-abcdefgh"))
    yield srv
    srv.stop()


def auth(key=KEY):
    return {"Authorization": f"Bearer {key}"}


def solo(builder, n=16):
    ids = builder.encode(MSG, True)
    cfg = GenerationConfig(max_new_tokens=n, k=4, sampling=SamplingConfig(0.0), eos_token_ids=builder.eos)
    return builder.tokenizer.decode(
        builder.generator("prompt-lookup").generate([ids], cfg, torch.Generator()).tokens[0]
    )


def test_api_keys(guarded):
    for path in ("/v1/models", "/metrics"):
        for headers in ({}, auth("wrong-key-000000"), {"Authorization": KEY}):
            r = httpx.get(guarded.url + path, headers=headers)
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key", (path, headers)
        assert httpx.get(guarded.url + path, headers=auth()).status_code == 200
        assert httpx.get(guarded.url + path, headers=auth("second-key-abcdefgh")).status_code == 200
    assert guarded.post({"model": MODEL, "messages": MSG}).status_code == 401
    assert httpx.get(guarded.url + "/health").status_code == 200 and httpx.get(guarded.url + "/").status_code == 200
    client = openai.OpenAI(base_url=guarded.url + "/v1", api_key=KEY, max_retries=0, timeout=30)
    assert client.chat.completions.create(
        model=MODEL, messages=MSG, max_tokens=4, temperature=0
    ).usage.completion_tokens
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=guarded.url + "/v1", api_key="nope-nope-nope", max_retries=0).models.list()


def test_a_non_loopback_bind_needs_a_key(capsys, monkeypatch):
    monkeypatch.delenv("SPECDECODE_API_KEY", raising=False)
    assert main(["serve", "--model", MODEL, "--host", "0.0.0.0"]) == 2
    assert "--api-key" in capsys.readouterr().err
    assert main(["serve", "--model", MODEL, "--api-key", "short"]) == 2  # keys of 8+ characters


@pytest.mark.parametrize(
    "body,status,field",
    [
        ({"messages": MSG * 4}, 400, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, 400, "messages"),
        ({"messages": [{"role": "user", "content": "word " * 300}]}, 400, "messages"),  # over max_prompt_tokens
        ({"messages": MSG, "max_tokens": 65}, 400, "max_tokens"),
        ({"messages": MSG, "temperature": 1e999}, 400, "temperature"),  # JSON's Infinity
        ({"messages": MSG, "max_tokens": 10**30}, 400, "max_tokens"),
        ({"messages": MSG, "seed": -1}, 400, "seed"),
    ],
)
def test_limits_name_the_field(guarded, body, status, field):
    content = json.dumps({"model": MODEL, **body}, allow_nan=True)
    r = httpx.post(
        guarded.url + "/v1/chat/completions", content=content, headers={**auth(), "Content-Type": "application/json"}
    )
    assert r.status_code == status and r.json()["error"]["param"] == field, r.text


def test_body_size_content_type_and_nesting(guarded):
    big = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "x" * 5000}]})
    r = httpx.post(
        guarded.url + "/v1/chat/completions", content=big, headers={**auth(), "Content-Type": "application/json"}
    )
    assert r.status_code == 413 and "bytes" in r.json()["error"]["message"]
    ten_mb = b'{"model": "tiny-llama", "messages": [{"role": "user", "content": "' + b"x" * (10 << 20) + b'"}]}'
    r = httpx.post(
        guarded.url + "/v1/chat/completions", content=ten_mb, headers={**auth(), "Content-Type": "application/json"}
    )
    assert r.status_code == 413
    r = httpx.post(
        guarded.url + "/v1/chat/completions", content=b"{}", headers={**auth(), "Content-Type": "text/plain"}
    )
    assert r.status_code == 415
    deep = b"[" * 1500 + b"]" * 1500  # under the size limit, over Python's recursion limit
    r = httpx.post(
        guarded.url + "/v1/chat/completions", content=deep, headers={**auth(), "Content-Type": "application/json"}
    )
    assert r.status_code == 400
    r = httpx.post(guarded.url + "/v1/chat/completions", content=b'{"a": "\xff\xfe"}', headers=auth())
    assert r.status_code == 400


def _crawl(srv, seconds=0.02):
    """Slow every target pass down (the tiny model would finish before the test could crowd it)."""
    target = srv.server.worker.session.target
    real = target.extend

    def crawl(*a, **kw):
        time.sleep(seconds)
        return real(*a, **kw)

    target.extend = crawl


def test_a_full_queue_answers_429_with_retry_after(builder):
    srv = Running(builder, Limits(max_queue=1), max_batch=1)
    try:
        _crawl(srv)
        body = {"model": MODEL, "messages": MSG, "max_tokens": 60, "temperature": 0, "k": 0}
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            first = pool.submit(srv.post, body)
            time.sleep(0.3)
            second = pool.submit(srv.post, body)
            time.sleep(0.3)
            third = srv.post(body)
            assert third.status_code == 429 and third.headers["Retry-After"] == "1", third.text
            assert third.json()["error"]["type"] == "rate_limit_error"
            assert first.result().status_code == 200 and second.result().status_code == 200
    finally:
        srv.stop()


def test_a_request_past_its_deadline_leaves_the_batch(builder):
    srv = Running(builder, Limits(request_timeout=0.3), max_batch=2)
    try:
        body = {"model": MODEL, "messages": MSG, "max_tokens": 480, "temperature": 0, "k": 0}
        _crawl(srv)  # ~20 ms a pass: 480 tokens cannot finish in 0.3 s
        r = srv.post(body)
        assert r.status_code == 504 and "request-timeout" in r.json()["error"]["message"]
        with httpx.stream("POST", srv.url + "/v1/chat/completions", json={**body, "stream": True}, timeout=30) as resp:
            events = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: {")]
        assert "error" in events[-1] and "request-timeout" in events[-1]["error"]["message"]
        del srv.server.worker.session.target.extend
        for _ in range(100):
            if srv.server.worker.metrics.batch == 0:
                break
            time.sleep(0.05)
        assert srv.server.worker.metrics.batch == 0 and srv.server.worker.session.waiting == 0
    finally:
        srv.stop()


def test_a_fault_in_a_step_fails_its_requests_and_the_server_recovers(builder):
    srv = Running(builder)
    try:
        want = solo(builder)
        target = srv.server.worker.session.target
        real = target.extend
        calls = {"n": 0}

        def flaky(*a, **kw):
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("injected backend fault")
            return real(*a, **kw)

        target.extend = flaky
        r = srv.post({"model": MODEL, "messages": MSG, "max_tokens": 16, "temperature": 0})
        assert r.status_code == 500 and "injected backend fault" in r.json()["error"]["message"]
        del target.extend
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            outs = list(
                pool.map(
                    lambda _: srv.post({"model": MODEL, "messages": MSG, "max_tokens": 16, "temperature": 0}), range(3)
                )
            )
        assert all(o.status_code == 200 and o.json()["choices"][0]["message"]["content"] == want for o in outs)
    finally:
        srv.stop()


def test_an_idle_connection_is_closed(builder):
    srv = Running(builder, idle=1.0)
    try:
        host, port = srv.url[7:].split(":")
        for partial in (b"", b"GET /health HTTP/1.1\r\nHost: x\r\n"):  # nothing sent; headers never finished
            conn = socket.create_connection((host, int(port)), timeout=10)
            conn.sendall(partial)
            t0 = time.time()
            assert conn.recv(100) == b""  # closed by the server
            assert time.time() - t0 < 5
            conn.close()
        assert httpx.get(srv.url + "/health").status_code == 200
    finally:
        srv.stop()


_FIELDS = [
    "model",
    "messages",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "max_tokens",
    "stream",
    "stop",
    "seed",
    "n",
    "k",
    "method",
    "adaptive",
    "logprobs",
    "max_completion_tokens",
]
_junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=12,
)


@st.composite
def bad_bodies(draw):
    """A body that breaks at least one rule: raw bytes, a non-object, or a valid request with one field spoiled."""
    kind = draw(st.sampled_from(["bytes", "json", "spoiled"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200).filter(lambda b: b.strip()[:1] != b"{"))
    if kind == "json":
        return json.dumps(draw(_junk.filter(lambda v: not isinstance(v, dict)))).encode()
    body = {"model": MODEL, "messages": MSG, "max_tokens": 2}
    field = draw(st.sampled_from(_FIELDS))
    value = draw(_junk.filter(lambda v: v is not None and not _fine(field, v)))
    body[field] = value
    return json.dumps(body, allow_nan=True).encode()


def _fine(field, v) -> bool:
    """Values a field may legally take (the strategy avoids them: every body must be refused)."""
    good = {
        "model": lambda v: v == MODEL,
        "stream": lambda v: isinstance(v, bool),
        "adaptive": lambda v: isinstance(v, bool),
        "n": lambda v: v == 1 and not isinstance(v, bool),
        "logprobs": lambda v: isinstance(v, bool),
        "temperature": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 2,
        "top_p": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1,
        "top_k": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "min_p": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1,
        "k": lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 64,
        "seed": lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 63,
        "max_tokens": lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 64,
        "max_completion_tokens": lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 64,
        "stop": lambda v: (
            isinstance(v, str)
            and v
            or (isinstance(v, list) and len(v) <= 4 and all(isinstance(s, str) and s for s in v))
        ),
        "method": lambda v: isinstance(v, str) and v in METHODS and v != "greedy",
        "messages": lambda v: False,
    }
    return bool(good[field](v))


@settings(max_examples=520, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
@given(body=bad_bodies())
def test_fuzzed_bodies_get_a_4xx_and_the_server_keeps_serving(guarded, body):
    r = httpx.post(
        guarded.url + "/v1/chat/completions",
        content=body,
        headers={**auth(), "Content-Type": "application/json"},
        timeout=10,
    )
    assert 400 <= r.status_code < 500, (body[:200], r.status_code, r.text[:200])
    assert r.json()["error"]["message"]


def test_still_serving_after_the_fuzz(guarded):
    r = guarded.post({"model": MODEL, "messages": MSG, "max_tokens": 3, "temperature": 0}, headers=auth())
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 3
