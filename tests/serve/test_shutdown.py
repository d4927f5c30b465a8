"""Stopping the server with streams in flight: new requests are refused at once, requests in flight get
--shutdown-timeout seconds to finish, then end with a final error event; the process exits with status 0 and
leaves no thread behind (127.0.0.1 only, bounded waits)."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

pytest.importorskip("uvicorn")

from test_hostile import MODEL, MSG, Running, _crawl  # noqa: E402

from specdecode.models import Builder  # noqa: E402
from specdecode.serve.guard import Limits  # noqa: E402


def _stream(url: str, out: list, max_tokens: int) -> None:
    body = {"model": MODEL, "messages": MSG, "max_tokens": max_tokens, "temperature": 0, "k": 0, "stream": True}
    try:
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=30) as resp:
            for line in resp.iter_lines():
                if line.startswith("data: "):
                    out.append(line[6:])
    except httpx.HTTPError as exc:  # noqa: PERF203
        out.append(f"transport error: {exc}")


def _ended(events: list) -> str:
    """How a stream ended: "done" (a finish_reason, then [DONE]) or "error" (a final error event)."""
    assert len(events) >= 2 and events[-1] == "[DONE]", events[-3:]
    last = json.loads(events[-2])
    if "error" in last:
        return "error"
    assert last["choices"][0]["finish_reason"], events[-3:]
    return "done"


@pytest.fixture(scope="module")
def builder():
    return Builder(MODEL)


@pytest.mark.parametrize("grace,want", [(0.3, "error"), (20.0, "done")])
def test_stop_with_streams_in_flight(builder, grace, want):
    srv = Running(builder, Limits(shutdown_timeout=grace), max_batch=4)
    _crawl(srv)  # 20 ms a pass: 120 tokens take ~2.5 s
    streams = [[] for _ in range(3)]
    threads = [threading.Thread(target=_stream, args=(srv.url, s, 120)) for s in streams]
    for t in threads:
        t.start()
    for _ in range(200):
        if all(len(s) >= 2 for s in streams):
            break
        time.sleep(0.02)
    srv.uv.handle_exit(signal.SIGTERM, None)  # what uvicorn runs on SIGTERM
    refused = False
    for _ in range(50):  # no longer accepting (uvicorn closes its socket within a tick)
        try:
            httpx.get(srv.url + "/health", timeout=1)
            time.sleep(0.05)
        except httpx.HTTPError:
            refused = True
            break
    assert refused
    for t in threads:
        t.join(timeout=30)
    srv.thread.join(timeout=30)
    assert not srv.thread.is_alive() and not srv.server.worker.thread.is_alive()
    assert [_ended(s) for s in streams] == [want] * 3
    if want == "error":
        assert "shutting down" in json.loads(streams[0][-2])["error"]["message"]


def test_sigterm_exits_with_status_0(tmp_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    env = {**os.environ, "SPECDECODE_CACHE": str(tmp_path)}
    cmd = [
        sys.executable,
        "-m",
        "specdecode",
        "serve",
        "--model",
        MODEL,
        "--port",
        str(port),
        "--shutdown-timeout",
        "1",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        events: list = []
        t = threading.Thread(target=_stream, args=(url, events, 400))
        t.start()
        for _ in range(200):
            if events:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, proc.stderr.read().decode()[-2000:]
        t.join(timeout=30)
        assert _ended(events) in ("done", "error")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
