"""The llama-server anchor's code path with a fake binary (CI does not build llama.cpp's server): the command it
is started with, its native /completion protocol, restarts between runs, and the line printed when it is absent."""

import sys
import textwrap

from specdecode.bench import backends, llama_server

FAKE = textwrap.dedent(
    """
    import json, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer

    args = sys.argv[1:]
    port = int(args[args.index("--port") + 1])
    assert args[args.index("--host") + 1] == "127.0.0.1" and "-m" in args
    spec = args[args.index("--spec-type") + 1] if "--spec-type" in args else "none"
    served = []

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _send(self, body):
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._send({"status": "ok"})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            served.append(1)
            assert body["temperature"] == 0.0 and body["cache_prompt"] is False and body["return_tokens"]
            toks = [len(body["prompt"]), len(served), 2][: body["n_predict"]]  # 2: the end-of-sequence token
            self._send({"tokens": toks, "content": spec, "timings": {"prompt_ms": 10.0, "predicted_ms": 30.0}})

    HTTPServer(("127.0.0.1", port), H).serve_forever()
    """
)


def _fake(tmp_path):
    exe = tmp_path / "llama-server"
    exe.write_text(f"#!{sys.executable}\n{FAKE}")
    exe.chmod(0o755)
    return exe


def test_the_anchor_runs_a_fake_server_and_restarts_it_between_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECDECODE_LLAMA_SERVER", str(_fake(tmp_path)))
    exe = llama_server.binary()
    assert exe is not None
    cmd = llama_server.command(exe, "/m.gguf", 1234, "ngram-mod", parallel=4)
    assert cmd[cmd.index("--spec-type") + 1] == "ngram-mod" and "-fa" in cmd and cmd[cmd.index("-np") + 1] == "4"
    cfg = backends.llama_server_config(exe, "/m.gguf", 8, "ngram-mod", eos=(2,))
    try:
        rec = backends.run_task(cfg, "t", "llama-server ngram-mod", 0, [[5, 6, 7], [1]])
        assert rec["ids"] == [[3, 1], [1, 2]]  # both requests on one server; the end-of-sequence token dropped
        assert abs(rec["seconds"] - 0.08) < 1e-9  # the server's own timings, prompt + generation
        rec = backends.run_task(cfg, "t", "llama-server ngram-mod", 1, [[5, 6, 7]])
        assert rec["ids"] == [[3, 1]]  # restarted before the run: the server's state starts empty again
    finally:
        cfg.close()


def test_an_absent_server_is_one_line_and_the_bench_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECDECODE_LLAMA_SERVER", str(tmp_path / "nowhere"))
    assert llama_server.binary() is None
    assert "make llama-server" in llama_server.MISSING


def test_bad_spec_type_is_refused(tmp_path):
    import pytest

    with pytest.raises(ValueError, match="spec type"):
        llama_server.command(tmp_path, "/m.gguf", 1, "eagle")
