"""bench-serve's request mix and summary (no servers started here; tests/serve covers the server)."""

import math

import pytest

from specdecode.bench.serve import format_table, llama_cpp_cmd, request_mix, summary


def test_mixes_alternate_or_keep_one_kind():
    assert [r["kind"] for r in request_mix(4, 8)] == ["grounded", "open", "grounded", "open"]
    for kind in ("grounded", "open"):
        reqs = request_mix(7, 8, kind)
        assert {r["kind"] for r in reqs} == {kind}
        assert len({str(r["messages"]) for r in reqs}) == 7  # distinct prompts, not one repeated
    with pytest.raises(ValueError, match="--mix"):
        request_mix(2, 8, "both")


def test_summary_and_table():
    recs = [{"ttft": 0.1 * i, "per_token": 0.01 * i, "tokens": 10} for i in range(1, 5)]
    s = summary(recs, wall=2.0)
    assert s["tokens"] == 40 and math.isclose(s["tok_s"], 20.0)
    assert math.isclose(s["ttft_p50"], 0.25) and math.isclose(s["tpt_p95"], 0.04)
    table = format_table([{"server": "x", "concurrency": 4, **s}])
    assert "20.0" in table.splitlines()[1]


def test_llama_cpp_server_does_not_cancel_running_requests():
    cmd = llama_cpp_cmd("m.gguf", 8000)
    assert cmd[cmd.index("--interrupt_requests") + 1] == "false" and "127.0.0.1" in cmd
