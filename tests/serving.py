"""Test helpers for servers: our server on a model, served by uvicorn in a daemon thread on a free 127.0.0.1 port
(imported by tests in any folder: pytest puts tests/ on sys.path for its conftest)."""

import socket
import threading
import time

import httpx


def run_app(app):
    """Serve ``app`` in a daemon thread -> (uvicorn server, thread, url) once /health answers."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    for _ in range(200):
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    return uv, thread, url


def start(builder, drafter: str, max_batch: int, model: str = "tiny-llama"):
    """Our server on ``builder``'s target -> (uvicorn server, thread, url, Server)."""
    from specdecode.serve import Server

    server = Server(
        builder.generator(drafter),
        builder.tokenizer,
        builder.encode,
        model,
        builder.eos,
        max_batch=max_batch,
        k=4,
        max_tokens=32,
        drafter=drafter,
    )
    uv, thread, url = run_app(server.app())
    return uv, thread, url, server
